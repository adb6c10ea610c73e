r"""Reconstruction guidance: DPS, ΠGDM and second-order Tweedie on a DDIM sampler (docs/algorithms.md §7).

Each method approximates the likelihood of the measurement given the *noisy* state,
:math:`p_t(y\mid x_t) = \int N(y; Hx_1, \sigma_y^2I)\,p(x_1\mid x_t)\,dx_1`, by replacing
:math:`p(x_1\mid x_t)` with something tractable around the data prediction :math:`\hat x_1(x_t)`:

* **ΠGDM** (Song et al. 2023): :math:`N(\hat x_1, r_t^2 I)`, :math:`r_t^2 = \alpha_t^2/(\alpha_t^2 + \beta_t^2)`
  (the posterior variance of a unit-variance data prior), so
  :math:`g = J^\top H^\top(r_t^2HH^\top + \sigma_y^2I)^{-1}(y - H\hat x_1)` with
  :math:`J = \partial\hat x_1/\partial x_t`, one vector–Jacobian product;
* **second-order Tweedie** (Boys et al. 2023; Rout et al. 2023): the covariance
  :math:`\mathrm{Cov}[x_1\mid x_t] = (\alpha_t^2/\beta_t)\,J` in place of :math:`r_t^2I` — the whole Jacobian in low
  dimension (``covariance="full"``: one backward pass per coordinate), or its diagonal from Hutchinson probes
  (``"diagonal"``, :math:`\operatorname{diag}J \approx E[v\odot J^\top v]`, exact in expectation when :math:`J` is
  symmetric, as it is for an exact score), the measurement covariance then taken diagonal,
  :math:`\operatorname{diag}(HDH^\top) = (H\circ H)\operatorname{diag}D`, each variance floored at
  ``VARIANCE_FLOOR`` :math:`\cdot r_t^2`; or the whole :math:`HCH^\top + \sigma_y^2I` solved by conjugate
  gradients (``"cg"``, one vector–Jacobian product per iteration);
* **DPS** (Chung et al. 2023): no covariance; a step :math:`-\zeta\,\nabla_{x_t}\|y - H\hat x_1\|^2/\|y - H\hat x_1\|`
  after each prior step (the paper's :math:`\zeta_t = \zeta/\|y - H\hat x_1\|`).

ΠGDM and second-order Tweedie use :math:`g \approx \nabla_{x_t}\log p_t(y\mid x_t)` in one of two ways
(``update``):

* ``"score"`` adds it to the prior's score, i.e. moves the predictions to :math:`\hat x_0 - \alpha_t g` and
  :math:`\hat x_1 + (\alpha_t^2/\beta_t)g` before the DDIM step; for a Gaussian prior :math:`N(\mu, I)` ΠGDM's
  :math:`g` is the exact likelihood score, so it samples the exact posterior up to the time step (the check in
  tests/test_inverse.py). On a *trained* network the factor :math:`\alpha_t^2/\beta_t` multiplies the error of
  :math:`J` (itself :math:`\propto 1/\beta_t`) early on, and the image runs diverged (docs/algorithms.md §7);
* ``"state"`` adds :math:`\bar b_{t'}\bar b_t r_t^2\,g` to the state after the DDIM step, with
  :math:`\bar b = \beta/\sqrt{\alpha^2+\beta^2}` — the update of the ΠGDM authors' code (their paper's Algorithm 1
  writes :math:`\bar b_t g`; the code multiplies :math:`r_t^2` back, so the step is about
  :math:`\bar b_{t'}H^+(y - H\hat x_1)`, bounded where :math:`r_t\to 0`). Not exact for any prior, but stable on
  trained models.

The covariance is held fixed when differentiating, as both papers do.

The DDIM step from :math:`t` to :math:`t'` with :math:`\eta\in[0,1]` (0: deterministic, 1: ancestral DDPM) is
written for any Gaussian-base schedule by normalising to the variance-preserving one
(:math:`a = \alpha/\sqrt{\alpha^2+\beta^2}`, :math:`b = \beta/\sqrt{\alpha^2+\beta^2}`):
:math:`c = \eta\sqrt{\alpha'^2+\beta'^2}\,(a'/a)\sqrt{1 - b^2/b'^2}`, :math:`x' = \beta'\hat x_1 +
\sqrt{\alpha'^2 - c^2}\,\hat x_0 + c\,\xi`.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_count, check_positive
from .._grad import autograd_on, check_graph, grad_leaf
from .._random import randn_like, seeded_generator
from ..grids import check_grid
from ..results import Trajectory
from .measurement import Measurement, Prior

__all__ = ["COVARIANCES", "GUIDANCE", "UPDATES", "ddim_step", "guided_sample", "start_noise"]

GUIDANCE = ("dps", "pigdm", "tweedie2")
COVARIANCES = ("full", "diagonal", "cg")
UPDATES = ("score", "state")
VARIANCE_FLOOR = 0.01


def start_noise(prior: Prior, t0: float, n: int, shape, generator, dtype, device) -> Tensor:
    r""":math:`\alpha_{t_0}\xi`, the prior's marginal at :math:`t_0` where :math:`\beta_{t_0}\approx 0`."""
    alpha, _ = prior.coefficients(torch.tensor(t0))
    device_g = generator.device if generator is not None else device
    return alpha * torch.randn(n, *shape, generator=generator, dtype=dtype, device=device_g).to(device)


def ddim_step(prior: Prior, t: float, t_next: float, x0: Tensor, x1: Tensor, eta: float, generator) -> Tensor:
    """One DDIM step from the predictions ``x0`` (noise) and ``x1`` (data) at ``t`` to time ``t_next``."""
    a, b = prior.coefficients(torch.tensor(t))
    a2, b2 = prior.coefficients(torch.tensor(t_next))
    c = 0.0
    if eta > 0 and a2 > 0 and b > 0:
        s, s2 = math.hypot(a, b), math.hypot(a2, b2)
        ratio = (b / s) / (b2 / s2)
        c = eta * s2 * ((a2 / s2) / (a / s)) * math.sqrt(max(0.0, 1 - ratio**2))
        c = min(c, a2)
    out = b2 * x1 + math.sqrt(max(0.0, a2**2 - c**2)) * x0
    return out + c * randn_like(x0, generator) if c > 0 else out


def _r2(alpha: float, beta: float) -> float:
    """ΠGDM's :math:`r_t^2`, the posterior variance of a unit-variance data prior."""
    return alpha**2 / (alpha**2 + beta**2)


def _state_step(prior: Prior, t: float, t_next: float) -> float:
    r"""The authors' code's weight on :math:`g` added to the state: :math:`\bar b_{t'}\bar b_t r_t^2` with
    :math:`\bar b = \beta/\sqrt{\alpha^2+\beta^2}` (the variance-preserving signal scale) — :math:`r_t^2` multiplied
    back, so the step is about :math:`\bar b_{t'}H^+(y - H\hat x_1)` and stays bounded where :math:`r_t \to 0`."""
    a, b = prior.coefficients(torch.tensor(t))
    a2, b2 = prior.coefficients(torch.tensor(t_next))
    return (b2 / math.hypot(a2, b2)) * (b / math.hypot(a, b)) * _r2(a, b)


def _vjp(output: Tensor, x: Tensor, cotangent: Tensor, *, keep: bool) -> Tensor:
    (grad,) = torch.autograd.grad(output, x, cotangent, retain_graph=keep)
    return grad


class _Guidance:
    """The likelihood-score approximation :math:`g(t, x)` of one method, given the graph of :math:`\\hat x_1(x)`."""

    def __init__(self, method: str, measurement: Measurement, *, covariance: str, probes: int, iterations: int,
                 generator):  # fmt: skip
        self.method, self.measurement, self.generator = method, measurement, generator
        self.covariance, self.probes, self.iterations = covariance, probes, iterations
        self.backward = 0

    def __call__(self, x: Tensor, x1: Tensor, alpha: float, beta: float, y: Tensor) -> Tensor:
        m = self.measurement
        H, sigma2 = m.operator, m.noise_std**2
        residual = y - H(x1)
        if self.method == "pigdm":
            weighted = H.gram_solve(residual, _r2(alpha, beta), sigma2)
            self.backward += 1
            return _vjp(x1, x, H.adjoint(weighted), keep=False)
        if self.covariance == "full":
            return self._full(x, x1, alpha, beta, residual)
        if self.covariance == "cg":
            return self._cg(x, x1, alpha, beta, residual)
        return self._diagonal(x, x1, alpha, beta, residual)

    def _cg(self, x, x1, alpha, beta, residual):
        """(H C H^T + sigma^2 I)^{-1} residual by conjugate gradients, C = (alpha^2/beta) J^T applied by one
        vector-Jacobian product per iteration (J^T = J for an exact score), without forming H C H^T; a fixed number
        of iterations from 0 (early stopping regularises it where C is near-singular)."""
        H, sigma2 = self.measurement.operator, self.measurement.noise_std**2
        scale = alpha**2 / beta
        n = x.shape[0]

        def dot(a: Tensor, b: Tensor) -> Tensor:
            return (a * b).reshape(n, -1).sum(1)

        def column(v: Tensor) -> Tensor:
            return v.reshape(n, *([1] * (residual.ndim - 1)))

        def apply(u: Tensor) -> Tensor:
            v = H.adjoint(u)
            return H(scale * _vjp(x1, x, v, keep=True)) + sigma2 * u

        u, r = torch.zeros_like(residual), residual.clone()
        p, rr = r.clone(), dot(r, r)
        for _ in range(self.iterations):
            ap = apply(p)
            curvature = dot(p, ap)
            # a direction of non-positive curvature (a network's J can be indefinite) ends that sample's iteration
            step = torch.where(curvature > 0, rr / curvature.clamp_min(1e-30), torch.zeros_like(rr))
            u, r = u + column(step) * p, r - column(step) * ap
            new = dot(r, r)
            p, rr = r + column(torch.where(step > 0, new / rr.clamp_min(1e-30), torch.zeros_like(rr))) * p, new
        self.backward += self.iterations + 1
        return _vjp(x1, x, H.adjoint(u), keep=False)

    def _full(self, x, x1, alpha, beta, residual):
        H, sigma2 = self.measurement.operator, self.measurement.noise_std**2
        n, d = x.shape[0], x[0].numel()
        flat = x1.reshape(n, d)
        rows = []
        for i in range(d):  # J[:, i, :] = d x1_i / d x, one backward pass per output coordinate
            rows.append(_vjp(flat[:, i], x, torch.ones(n, dtype=x.dtype, device=x.device), keep=True).reshape(n, d))
        self.backward += d
        jac = torch.stack(rows, 1)
        jac = 0.5 * (jac + jac.transpose(1, 2))
        A = H.matrix().to(x)
        cov = (alpha**2 / beta) * jac
        C = A @ cov @ A.T + sigma2 * torch.eye(A.shape[0], dtype=x.dtype, device=x.device)
        weighted = torch.linalg.solve(C, residual.reshape(n, -1, 1)).squeeze(-1)
        self.backward += 1
        return _vjp(x1, x, H.adjoint(weighted.reshape(residual.shape)), keep=False)

    def _diagonal(self, x, x1, alpha, beta, residual):
        H, sigma2 = self.measurement.operator, self.measurement.noise_std**2
        estimate = torch.zeros_like(x)
        for _ in range(self.probes):
            v = torch.randint(0, 2, x.shape, generator=self.generator, device=self.generator.device)
            v = (2.0 * v - 1).to(x)
            estimate += v * _vjp(x1, x, v, keep=True)
        self.backward += self.probes + 1
        # a variance is positive, and one estimated at ~0 from a few probes (noise, or a non-symmetric network
        # Jacobian) weights the residual by 1 / sigma_y^2: it blew up the noiseless image runs. So the estimate is
        # floored at VARIANCE_FLOOR times PiGDM's r_t^2
        diag = ((alpha**2 / beta) * (estimate / self.probes)).clamp_min(VARIANCE_FLOOR * _r2(alpha, beta))
        weighted = residual / (H.squared(diag) + sigma2).clamp_min(1e-12)
        return _vjp(x1, x, H.adjoint(weighted), keep=False)


def guided_sample(
    prior: Prior,
    measurement: Measurement,
    grid,
    n: int | None = None,
    *,
    method: str = "pigdm",
    zeta: float = 1.0,
    weight: float = 1.0,
    eta: float = 1.0,
    covariance: str = "full",
    probes: int = 4,
    iterations: int = 10,
    update: str = "score",
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> Trajectory:
    r"""Posterior samples of :math:`x_1` given ``measurement`` by reconstruction guidance along ``grid``.

    Args:
        grid: increasing times, noise to data (the last is the data end, where the sample is :math:`\hat x_1`).
        n: samples (default: one per measurement row).
        method: ``"dps"``, ``"pigdm"`` or ``"tweedie2"``.
        zeta: DPS's step size :math:`\zeta`: each step moves :math:`x_t` by about :math:`2\zeta` whatever the
            residual, so :math:`\zeta` must sit below the residual's final size or the last steps overshoot
            (images: 0.1–1 as in the paper; a 2D toy: 0.05–0.1).
        weight: the guidance weight on :math:`g` (ΠGDM / second-order Tweedie; 1 is the posterior).
        eta: the DDIM noise (1: ancestral, 0: deterministic).
        covariance: second-order Tweedie's ``"full"`` Jacobian (low dimension), ``"diagonal"`` (Hutchinson with
            ``probes`` Rademacher vectors, the measurement covariance taken diagonal) or ``"cg"`` (the whole
            measurement covariance :math:`HCH^\top + \sigma_y^2I`, solved by ``iterations`` conjugate-gradient
            steps of one vector–Jacobian product each: what a blur needs, whose :math:`HCH^\top` is far from
            diagonal).
        update: ``"score"`` (exact for a Gaussian prior) or ``"state"`` (the ΠGDM authors' step; use it on trained
            image models): the module docstring says how they differ.

    Returns a :class:`~interp.results.Trajectory` with the start and the samples; ``nfe`` counts the prior's
    evaluations and ``attrs["backward"]`` the backward passes through it.
    """
    if method not in GUIDANCE:
        raise ValueError(f"unknown guidance method {method!r}; choose from {', '.join(GUIDANCE)}")
    if method != "dps":
        measurement.require_linear(method)
    if update not in UPDATES:
        raise ValueError(f"update must be one of {', '.join(UPDATES)}; got {update!r}")
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}; got {covariance!r}")
    check_positive(zeta, "zeta", allow_zero=True)
    check_positive(weight, "weight", allow_zero=True)
    check_count(probes, "probes")
    check_count(iterations, "iterations")
    if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):
        raise ValueError(f"eta must lie in [0, 1]; got {eta!r}")
    grid = check_grid(torch.as_tensor(grid, dtype=torch.float64))
    n = measurement.batch if n is None else check_count(n, "n")
    y = measurement.rows(n)
    dtype = dtype or (y.dtype if y.is_floating_point() else torch.get_default_dtype())
    generator = seeded_generator(generator, y.device)
    guidance = _Guidance(method, measurement, covariance=covariance, probes=probes, iterations=iterations,
                         generator=generator)  # fmt: skip
    x = start_noise(prior, float(grid[0]), n, measurement.operator.shape, generator, dtype, y.device)
    y = y.to(dtype)
    first, nfe, started = x, 0, time.perf_counter()
    bar = tqdm(total=len(grid) - 1, desc=method, disable=None if progress else True, leave=False)
    for step, (t, t_next) in enumerate(zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True)):
        alpha, beta = prior.coefficients(torch.tensor(t))
        with autograd_on():
            xg = grad_leaf(x)
            tt = torch.tensor(t, dtype=dtype, device=x.device)
            x1 = prior.x1(tt, xg)
            nfe += 1
            x0 = (xg - beta * x1) / alpha
            if not x1.requires_grad or beta == 0:
                g = None  # at beta = 0 the state carries no information about x1: the likelihood is flat in it
            elif method == "dps":
                measured = measurement.operator(x1)
                check_graph(measured, measurement.operator, x1, "the measurement operator")
                norm = measured.sub(y).reshape(n, -1).norm(dim=1)
                (g,) = torch.autograd.grad((norm**2).sum(), xg, retain_graph=False)
                g = -zeta * g / norm.clamp_min(1e-12).reshape(n, *([1] * (x.ndim - 1)))
                guidance.backward += 1
            else:
                g = weight * guidance(xg, x1, alpha, beta, y)
        x0, x1 = x0.detach(), x1.detach()
        if g is not None and method != "dps" and update == "score":
            x0, x1 = x0 - alpha * g, x1 + (alpha**2 / beta) * g
        x = ddim_step(prior, t, t_next, x0, x1, eta, generator)
        if g is not None and method == "dps":
            x = x + g
        elif g is not None and update == "state":
            x = x + _state_step(prior, t, t_next) * g
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"{method}: the state became non-finite at t = {t:.4g} (step {step}); "
                                     "lower zeta / weight or use more steps")  # fmt: skip
        bar.update()
    bar.close()
    return Trajectory(
        times=grid[[0, -1]], states=torch.stack([first.detach(), x.detach()]), grid=grid, solver=method, nfe=nfe,
        seed=generator.initial_seed(),
        attrs={"backward": guidance.backward, "seconds": time.perf_counter() - started,
               "noise_std": measurement.noise_std, "eta": float(eta),
               **({"zeta": zeta} if method == "dps" else {"weight": weight, "update": update}),
               **({"covariance": covariance} if method == "tweedie2" else {})},
    )  # fmt: skip
