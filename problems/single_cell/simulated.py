r"""A simulated time course with known dynamics: cells in a bifurcating double-well (Waddington) landscape.

:math:`dX = (a X_1 - X_1^3,\ c)\,dt + \sigma\,dW` from a tight cloud at the origin: the first coordinate leaves the
unstable ridge :math:`X_1 = 0` for the wells :math:`\pm\sqrt a` while the second drifts at speed ``c`` (interp's
:class:`~interp.bridges.DoubleWell` simulated by :func:`~interp.bridges.simulate_snapshots`, each particle
observed once). Because the dynamics are known, the true population at a held-out time is known too: a large
independent sample of it (``truth``) replaces the few held-out cells as the target of the metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from interp.bridges import DoubleWell, simulate_snapshots

from .data import anndata_module

TIME_KEY = "time"


def double_well(
    *,
    n_cells: int = 200,
    n_truth: int = 2000,
    times=(0.0, 0.75, 1.5, 2.25, 3.0),
    a: float = 2.0,
    c: float = 1.0,
    sigma: float = 0.3,
    start_std: float = 0.1,
    seed: int = 0,
):
    """AnnData of ``n_cells`` cells per time (``obs['time']``, ``X`` the 2-D state) and ``truth``: for every
    interior time, ``n_truth`` fresh cells of the true marginal."""
    anndata = anndata_module()
    generator = torch.Generator().manual_seed(seed)
    times_t = torch.as_tensor(times, dtype=torch.float64)

    def start(n, gen):
        return start_std * torch.randn(n, 2, generator=gen, dtype=torch.float64)

    drift = DoubleWell(a, c)
    observed = simulate_snapshots(drift, start, times_t, sigma, n_cells, generator=generator)
    fresh = simulate_snapshots(drift, start, times_t, sigma, n_truth, generator=generator)
    x = torch.cat(observed).numpy()
    labels = np.repeat(np.asarray(times, dtype=np.float64), n_cells)
    obs = pd.DataFrame({TIME_KEY: labels}, index=[f"cell{i}" for i in range(x.shape[0])])
    adata = anndata.AnnData(X=x, obs=obs, var=pd.DataFrame(index=["x1", "x2"]))
    adata.uns["source"] = f"simulated double well: a={a}, c={c}, sigma={sigma}, seed={seed}"
    truth = {float(t): fresh[k].numpy() for k, t in enumerate(times) if 0 < k < len(times) - 1}
    return adata, truth
