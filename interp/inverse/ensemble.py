r"""Approximation-free posterior sampling: the weighted ensemble and FK steering with the likelihood as reward
(docs/algorithms.md §5 and §7).

* :func:`ensemble_sample`: :func:`interp.feynman_kac.posterior_sample` — particles targeting
  :math:`q_t(x)\,N(y; Hx, \sigma_y^2 I)` at every t, so the weighted particles at t = 1 sample the posterior with
  no approximation beyond the time step, and the log normalising constant estimates the evidence
  :math:`\log p(y)`. It starts from :math:`q_{t_0}L` drawn exactly (:func:`exact_start`, weighted by
  :func:`start_log_ratio` where the prior's :math:`\beta_{t_0} \ne 0`) and takes the
  likelihood's pull :math:`\epsilon H^\top(y - Hx)/\sigma_y^2` semi-implicitly (the midpoint rule, or fully
  implicitly where the step is very stiff) through the operator's Gram solve, so a sharp likelihood (small
  :math:`\sigma_y`) does not make the steps diverge.
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
from numpy.polynomial.legendre import leggauss
from torch import Tensor

from .._checks import check_count
from .._random import randn_like, seeded_generator
from ..feynman_kac import BaseSampler, fk_steer, posterior_sample
from ..feynman_kac.correctors import noise_fn
from ..grids import check_grid
from ..results import Trajectory
from ..smc import ResamplePolicy
from .guidance import start_noise
from .measurement import Measurement, Prior

__all__ = ["MIDPOINT_LIMIT", "ensemble_sample", "exact_start", "fk_sample", "start_log_ratio"]

# The likelihood's pull eps*H^T(y - Hx)/sigma^2 is stiff for small sigma_y. With a = h*eps*||P||, P = H^T H/sigma^2,
# it is taken by the theta = 1/2 (midpoint) step up to MIDPOINT_LIMIT, which keeps the stationary law of that linear
# pull exact for every a: the fully implicit step shrinks its variance by 2/(2 + a), and the weights, derived for the
# exact dynamics, carried that into the evidence (0.4-8.7 nats at sigma_y = 0.05); explicit Euler-Maruyama widens it
# by 2/(2 - a), and taken below a = 1/2 it put the 64D pooling evidence at sigma_y = 0.05 0.35 nats high (0.14 with
# the midpoint). Fully implicit above MIDPOINT_LIMIT, where the midpoint's stiff modes barely decay (its factor
# (1 - a/2)/(1 + a/2) tends to -1) and left the mode masses 0.14 off on a sigma_y = 0.02 test.
# docs/algorithms.md section 7 has the measurements.
MIDPOINT_LIMIT = 20.0
START_NODES = 4  # Gauss-Legendre nodes of start_log_ratio (exact to 1e-9 on the validation priors)


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


def start_log_ratio(prior: Prior, x: Tensor, t0: float, nodes: int = START_NODES) -> Tensor:
    r""":math:`\log q_{t_0}(x) - \log N(x; 0, \alpha_{t_0}^2I)` at the particles ``x`` ``(n, ...)``, ``(n,)``: the
    weights that make :func:`exact_start`'s draws (exact for :math:`\beta_{t_0} = 0`) exact for the prior's own
    marginal, whose :math:`\beta_{t_0}` need not be 0 (0.0066 at the VP path's t = 0).

    By Tweedie, :math:`\nabla\log q_t(x) + x/\alpha_t^2 = (\beta_t/\alpha_t^2)\,E[x_1\mid x_t = x]`, so the
    log-ratio is :math:`(\beta/\alpha^2)\int_0^1 \hat x_1(t_0, \tau x)\cdot x\,d\tau` (Gauss–Legendre,
    ``nodes`` data predictions) plus its value at 0, :math:`\log E\exp(-\beta^2|x_1|^2/2\alpha^2) \approx
    -\beta^2E|x_1|^2/2\alpha^2`, which no prior model gives and is left out (6e-3 nats for the 64D validation
    prior; docs/algorithms.md §7).
    """
    alpha, beta = prior.coefficients(torch.tensor(t0))
    if beta == 0:
        return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    tau, weight = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in leggauss(nodes))
    tau, weight = (tau + 1) / 2, weight / 2  # on [0, 1]
    t = torch.tensor(t0, dtype=x.dtype, device=x.device)
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for node, w in zip(tau, weight, strict=True):
        total = total + w * (prior.x1(t, node * x) * x).reshape(x.shape[0], -1).sum(1)
    return (beta / alpha**2 * total).double()


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
    mixing: float = 1.0,
    policy: ResamplePolicy | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> Trajectory:
    """Weighted particles for the posterior of ``measurement`` (``extras["log_weight"]`` at the end of the
    returned trajectory; ``attrs["log_normaliser"]`` estimates :math:`\\log p(y)`).

    ``mixing``: the Langevin rate as a multiple of the prior's diffusion rate, :math:`\\epsilon(t) =
    \\text{mixing}\\cdot\\eta(t)`. The weights do not depend on it; how fast resampled copies become distinct
    does. In many dimensions the weights need frequent resampling, and at ``mixing = 1`` the copies stay close
    for so long that the final particles descend from a handful of early ones (``attrs["distinct_ancestors"]``):
    the evidence then scatters by nats from seed to seed, and more particles do not help. A larger rate cures it,
    but the Euler–Maruyama step's bias grows with :math:`h\\epsilon`, so raise the steps with it
    (docs/algorithms.md §7 has the measurements).
    """
    _single(measurement, "the ensemble sampler")
    check_count(n, "n")
    if not (isinstance(mixing, (int, float)) and math.isfinite(mixing) and mixing > 0):
        raise ValueError(f"mixing must be a positive number (a multiple of the diffusion rate); got {mixing!r}")
    grid = check_grid(torch.as_tensor(grid, dtype=torch.float64))
    generator = seeded_generator(generator, measurement.y.device)
    started = time.perf_counter()
    start, log_z = exact_start(prior, measurement, float(grid[0]), n, generator, dtype)
    log_ratio = start_log_ratio(prior, start, float(grid[0]))  # the start made exact for the prior's marginal
    log_z += float(torch.logsumexp(log_ratio, 0)) - math.log(n)
    H, sigma2 = measurement.operator, measurement.noise_std**2
    stiffness = float(H.gram_eigenvalues().max()) / sigma2  # the largest eigenvalue of P = H^T H / sigma^2

    def precision_solve(v: Tensor, c: float) -> Tensor:
        """(I + theta c P)^{-1} v, P = H^T H / sigma^2, through the operator's Gram solve (Woodbury:
        v - H^T (HH^T + sigma^2/(theta c) I)^{-1} H v), the theta of the module's limit for a = c ||P||."""
        a = c * stiffness
        if a == 0:
            return v
        theta = 0.5 if a <= MIDPOINT_LIMIT else 1.0
        return v - H.adjoint(H.gram_solve(H(v), 1.0, sigma2 / (theta * c)))

    eta = noise_fn("diffusion", prior.interpolant, 1.0)
    out = posterior_sample(
        prior.interpolant, prior.score, measurement.log_likelihood, grid, start=(start, log_ratio),
        start_log_normaliser=log_z,
        noise=lambda t: mixing * eta(t), precision_solve=precision_solve, policy=policy, generator=generator,
        progress=progress,
    )  # fmt: skip
    out.nfe += START_NODES if prior.coefficients(grid[0])[1] != 0 else 0  # the start weights' predictions
    out.attrs.update(seconds=time.perf_counter() - started, noise_std=measurement.noise_std, mixing=float(mixing))
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
