r"""RED-Diff (Mardani et al. 2023): variational posterior mode-seeking with a diffusion prior as regulariser
(docs/algorithms.md §7).

The reconstruction :math:`\mu` starts at :math:`H^\top(HH^\top + \sigma_y^2I)^{-1}y` (:math:`H^+y` regularised:
the paper's :math:`H^+y` amplifies the noise of an ill-conditioned operator; 0 for a nonlinear one) and is
optimised by Adam along the grid from high noise to low. At each time a fresh :math:`\xi\sim N(0, I)` gives
:math:`x_t = \beta_t\mu + \alpha_t\xi` and the step minimises

:math:`\|y - H\mu\|^2/(2\sigma_y^2) + \lambda\,w(t)\,\langle\mathrm{sg}[\hat x_0(x_t) - \xi], \mu\rangle`,
:math:`w(t) = \alpha_t/\beta_t`

(:math:`\hat x_0` the noise prediction; the stop-gradient makes the second term's gradient the score-matching
residual, no backward pass through the prior). It returns one point per run, not posterior samples: the spread
of several runs is optimisation noise, and its coverage is reported as such.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from .._checks import check_count, check_positive
from .._grad import check_graph
from .._random import randn_like, seeded_generator
from ..grids import check_grid
from ..results import Trajectory
from .measurement import Measurement, Prior

__all__ = ["red_diff"]


def red_diff(
    prior: Prior,
    measurement: Measurement,
    grid,
    n: int | None = None,
    *,
    lam: float = 0.25,
    learning_rate: float = 0.1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> Trajectory:
    """``n`` RED-Diff reconstructions (one per measurement row by default), one prior evaluation per grid time
    before the last; ``grid`` increasing (noise to data), visited from its start."""
    sigma = measurement.require_noise("RED-Diff")
    check_positive(lam, "lam", allow_zero=True)
    check_positive(learning_rate, "learning_rate")
    grid = check_grid(torch.as_tensor(grid, dtype=torch.float64))
    n = measurement.batch if n is None else check_count(n, "n")
    y = measurement.rows(n)
    dtype = dtype or y.dtype
    y = y.to(dtype)
    generator = seeded_generator(generator, y.device)
    H = measurement.operator
    # The paper starts at H^+ y; with noise that amplifies the noise of an ill-conditioned operator (a blur's pinv
    # by up to 1/rcond), so the start is the Tikhonov solution H^T (HH^T + sigma^2 I)^{-1} y, which is H^+ y at
    # sigma -> 0 and the posterior mean under a N(0, I) prior otherwise.
    init = (
        H.adjoint(H.gram_solve(y, 1.0, sigma**2))
        if H.linear
        else torch.zeros(n, *H.shape, dtype=dtype, device=y.device)
    )
    mu = init.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([mu], lr=learning_rate)
    started, nfe = time.perf_counter(), 0
    times = [t for t in grid[:-1].tolist() if prior.coefficients(torch.tensor(t))[1] > 0]
    for t in tqdm(times, desc="red-diff", disable=None if progress else True, leave=False):
        alpha, beta = prior.coefficients(torch.tensor(t))
        with torch.no_grad():
            noise = randn_like(mu, generator)
            xt = beta * mu + alpha * noise
            x1 = prior.x1(torch.tensor(t, dtype=dtype, device=y.device), xt)
            residual = (xt - beta * x1) / alpha - noise
        nfe += 1
        with torch.enable_grad():
            measured = measurement.operator(mu)
            check_graph(measured, measurement.operator, mu, "the measurement operator")
            fit = 0.5 * (measured - y).reshape(n, -1).pow(2).sum(1) / sigma**2
            # summed over the coordinates like the data term (a mean would weaken the prior like 1/dim:
            # docs/algorithms.md §7)
            regulariser = lam * (alpha / beta) * (residual * mu).reshape(n, -1).sum(1)
            loss = (fit + regulariser).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
        optimiser.step()
        if not torch.isfinite(mu).all():
            raise FloatingPointError(f"RED-Diff: the reconstruction became non-finite at t = {t:.4g}; "
                                     "lower learning_rate or lam")  # fmt: skip
    return Trajectory(
        times=grid[[0, -1]], states=torch.stack([init.detach(), mu.detach()]), grid=grid, solver="red-diff", nfe=nfe,
        seed=generator.initial_seed(),
        attrs={"lam": lam, "learning_rate": learning_rate, "seconds": time.perf_counter() - started,
               "noise_std": measurement.noise_std},
    )  # fmt: skip
