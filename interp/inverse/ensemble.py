r"""Approximation-free posterior sampling: the weighted ensemble and FK steering with the likelihood as reward
(docs/algorithms.md §5 and §7).

* :func:`ensemble_sample`: :func:`interp.feynman_kac.posterior_sample` — particles targeting
  :math:`q_t(x)\,N(y; Hx, \sigma_y^2 I)` at every t, so the weighted particles at t = 1 sample the posterior with
  no approximation beyond the time step, and the log normalising constant estimates the evidence
  :math:`\log p(y)`. It starts from :math:`q_{t_0}L` drawn exactly (:func:`exact_start`) and takes the
  likelihood's pull :math:`\epsilon H^\top(y - Hx)/\sigma_y^2` drift-implicitly through the operator's Gram
  solve, so a sharp likelihood (small :math:`\sigma_y`) does not make the steps diverge.
* :func:`fk_sample`: :func:`interp.feynman_kac.fk_steer` with the reward :math:`\log N(y; H\hat x_1, \sigma_y^2I)`
  of the data prediction and :math:`\lambda = 1`, whose final correction makes the weighted particles target
  :math:`p(x)\,L(y\mid x)`, the posterior, too; the potentials only guide the resampling.

Both need :math:`\sigma_y > 0` (the likelihood is a density) and one measurement (one population of particles);
for many measurements run one population each.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from .._checks import check_count
from .._random import randn_like, seeded_generator
from ..feynman_kac import BaseSampler, fk_steer, posterior_sample
from ..grids import check_grid
from ..results import Trajectory
from ..smc import ResamplePolicy
from .guidance import start_noise
from .measurement import Measurement, Prior

__all__ = ["EXPLICIT_LIMIT", "ensemble_sample", "exact_start", "fk_sample"]

EXPLICIT_LIMIT = 0.5  # steps with h*eps*||P|| below this stay explicit (stability needs < 2)


def exact_start(prior: Prior, measurement: Measurement, t0: float, n: int, generator=None, dtype=None):
    r"""``n`` exact draws of :math:`N(x; 0, \alpha_{t_0}^2I)\,N(y; Hx, \sigma^2I)` normalised, and its log normaliser
    :math:`\log N(y; 0, C)`, :math:`C = \alpha_{t_0}^2HH^\top + \sigma^2I` (the prior's marginal at a :math:`t_0`
    with :math:`\beta_{t_0}\approx 0`).

    Matheron's rule, with the operator's own :math:`(sHH^\top + cI)^{-1}` (no dense matrix): draw
    :math:`x = \alpha_{t_0}\xi` and :math:`n`, then :math:`x + \alpha_{t_0}^2H^\top C^{-1}(y - Hx - \sigma n)`.
    """
    H = measurement.require_linear("the exact start")
    sigma = measurement.require_noise("the exact start")
    if measurement.batch != 1:
        raise ValueError(f"the exact start takes one measurement; got {measurement.batch} rows")
    y = measurement.y.to(dtype or measurement.y.dtype)
    generator = seeded_generator(generator, y.device)
    alpha, _ = prior.coefficients(torch.tensor(t0))
    x = start_noise(prior, t0, n, H.shape, generator, y.dtype, y.device)
    simulated = H(x) + sigma * randn_like(y.expand(n, *y.shape[1:]), generator)
    x = x + alpha**2 * H.adjoint(H.gram_solve(y - simulated, alpha**2, sigma**2))
    quadratic = float((y * H.gram_solve(y, alpha**2, sigma**2)).sum())
    log_z = -0.5 * (quadratic + float(H.log_det_gram(alpha**2, sigma**2)) + H.out_dim * math.log(2 * math.pi))
    return x, log_z


def _single(measurement: Measurement, what: str) -> None:
    measurement.require_noise(what)
    if measurement.batch != 1:
        raise ValueError(f"{what} samples the posterior of one measurement; got {measurement.batch} rows (run one "
                         "population per measurement)")  # fmt: skip


def ensemble_sample(
    prior: Prior,
    measurement: Measurement,
    grid,
    n: int,
    *,
    policy: ResamplePolicy | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> Trajectory:
    """Weighted particles for the posterior of ``measurement`` (``extras["log_weight"]`` at the end of the
    returned trajectory; ``attrs["log_normaliser"]`` estimates :math:`\\log p(y)`)."""
    _single(measurement, "the ensemble sampler")
    check_count(n, "n")
    grid = check_grid(torch.as_tensor(grid, dtype=torch.float64))
    generator = seeded_generator(generator, measurement.y.device)
    started = time.perf_counter()
    start, log_z = exact_start(prior, measurement, float(grid[0]), n, generator, dtype)
    H, sigma2 = measurement.operator, measurement.noise_std**2
    stiffness = float(H.gram_eigenvalues().max()) / sigma2  # the largest eigenvalue of P = H^T H / sigma^2

    def precision_solve(v: Tensor, c: float) -> Tensor:
        """(I + c H^T H / sigma^2)^{-1} v = v - H^T (HH^T + sigma^2/c I)^{-1} H v (Woodbury, through the operator),
        only where the explicit step would be near its stability limit (c ||P|| = 2): the weights are derived for
        the explicit dynamics, and the implicit step, stable but damped, biases them (the evidence most)."""
        if c * stiffness < EXPLICIT_LIMIT:
            return v
        return v - H.adjoint(H.gram_solve(H(v), 1.0, sigma2 / c))

    out = posterior_sample(
        prior.interpolant, prior.score, measurement.log_likelihood, grid, start=start, start_log_normaliser=log_z,
        precision_solve=precision_solve, policy=policy, generator=generator, progress=progress,
    )  # fmt: skip
    out.attrs.update(seconds=time.perf_counter() - started, noise_std=measurement.noise_std)
    return out


def fk_sample(
    prior: Prior,
    measurement: Measurement,
    grid,
    n: int,
    *,
    lam: float = 1.0,
    every: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> Trajectory:
    """FK steering toward :math:`p(x)L(y\\mid x)^\\lambda` with the reward :math:`\\log L(y\\mid\\hat x_1)`
    (``lam = 1``: the posterior)."""
    _single(measurement, "FK steering")
    check_count(n, "n")
    grid = check_grid(torch.as_tensor(grid, dtype=torch.float64))
    generator = seeded_generator(generator, measurement.y.device)
    dtype = dtype or measurement.y.dtype
    started = time.perf_counter()
    start = start_noise(prior, float(grid[0]), n, measurement.operator.shape, generator, dtype, measurement.y.device)
    base = BaseSampler(prior.interpolant, prior.score)
    out = fk_steer(
        base, measurement.log_likelihood, grid, lam=lam, every=every, start=start, generator=generator,
        progress=progress, dtype=dtype, device=measurement.y.device,
    )  # fmt: skip
    out.attrs.update(seconds=time.perf_counter() - started, noise_std=measurement.noise_std)
    return out
