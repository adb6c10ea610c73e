r"""Weighted posterior sampling with a prior model and a likelihood :math:`L(y\mid x)` (docs/algorithms.md §5): the
particles target :math:`\tilde q_t(x) = q_t(x) L(y\mid x)` at every t, so at t = 1 they sample the posterior
:math:`p(x\mid y)` with no approximation beyond the time step, and the log normalising constant estimates the
evidence :math:`\log p(y)`.

With :math:`g = \nabla\log L` and the generic FK residual (see :mod:`interp.feynman_kac.correctors`):

:math:`u = b + \epsilon(s + g)` and :math:`R = b\cdot g` (any interpolant, any :math:`\epsilon \ge 0`; no
Laplacian). docs/algorithms.md's variant — drift :math:`a x + (\eta+\epsilon)(s + g)` with weight
:math:`a\,x\cdot g + \eta(\Delta\log L + |g|^2 + 2\langle s, g\rangle)` on a Gaussian base, the
:math:`a\,x\cdot g` term being what its variance-exploding form (:math:`a = 0`) drops — is an equally exact
Fokker–Planck residual (checked to 1e-13 against the exact marginals), but on the VP schedule, where
:math:`a \approx \eta \approx 10` near t = 0, its weights fluctuate so much that at 2000 steps it still missed the
evidence by 3.2 nats (this form: 0.015 at 200 steps), so it is not offered.

Start from :math:`q_{t_0} L` normalised: on a Gaussian base with a linear-Gaussian likelihood
:func:`linear_gaussian_start` draws it exactly and gives its log normaliser.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._grad import autograd_on, check_graph, grad_leaf
from .._random import seeded_generator
from ..interpolants import Interpolant
from ..results import Trajectory
from ..smc import ResamplePolicy
from ..stepping import NonFiniteStateError
from ._loop import Move, euler_maruyama, run_weighted
from .correctors import noise_fn

__all__ = ["linear_gaussian_start", "posterior_sample"]


def _grad(log_likelihood: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    with autograd_on():
        xg = grad_leaf(x)
        value = log_likelihood(xg)
        if not isinstance(value, Tensor) or value.shape != (x.shape[0],):
            shape = getattr(value, "shape", type(value).__name__)
            raise ValueError(f"log_likelihood must return a ({x.shape[0]},) tensor; got {shape}")
        if not torch.isfinite(value).all():
            # at finite particles: a likelihood that returns NaN/inf, or particles driven far out by a step too
            # large for a sharp likelihood (its gradient grows like 1/noise^2) — the message names both
            raise FloatingPointError(
                f"log_likelihood returned a non-finite value at particles up to |x| = {float(x.abs().max()):.3g}: "
                "it is NaN/inf there, or the particles diverged because the likelihood is too sharp for this "
                "step (use more steps)"
            )
        if not check_graph(value, log_likelihood, xg, "log_likelihood"):
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(value.sum(), xg)
    return grad.detach()


def posterior_sample(
    interpolant: Interpolant,
    score: Callable[[Tensor, Tensor], Tensor],
    log_likelihood: Callable[[Tensor], Tensor],
    grid,
    *,
    start: Tensor | tuple[Tensor, Tensor],
    start_log_normaliser: float = 0.0,
    velocity: Callable[[Tensor, Tensor], Tensor] | None = None,
    noise="diffusion",
    precision_solve: Callable[[Tensor, float], Tensor] | None = None,
    policy: ResamplePolicy | None = None,
    scheme: str = "systematic",
    generator: torch.Generator | None = None,
    record=False,
    progress: bool = True,
) -> Trajectory:
    r"""Weighted particles for :math:`q_t(x)L(y\mid x)` along ``grid`` (increasing, data at t = 1).

    Args:
        score: the prior model's score.
        velocity: the prior model's velocity (may be left out on a Gaussian base).
        log_likelihood: :math:`x \mapsto \log L(y\mid x)`, ``(n, ...) -> (n,)``, differentiable (autograd gives
            :math:`\nabla\log L`).
        start: particles from :math:`q_{t_0}L/Z_{t_0}` (or ``(particles, log_weights)``), with
            ``start_log_normaliser`` :math:`\log Z_{t_0}`.
        precision_solve: for a Gaussian likelihood, :math:`(v, c) \mapsto (I + cP)^{-1}v` with :math:`P` the
            Hessian of :math:`-\log L`; the likelihood's pull is then taken drift-implicitly,
            :math:`x' = x + (I + h\epsilon P)^{-1}(h u + \sqrt{2\epsilon h}\,\xi)`, stable whatever
            :math:`h\epsilon\|P\|` (explicit Euler–Maruyama diverges once it exceeds 2: a sharp likelihood,
            :math:`\|P\| \sim 1/\sigma_y^2`, would need thousands of steps). A solve that returns
            :math:`(I + \theta cP)^{-1}v` takes the θ-method instead (:func:`interp.inverse.ensemble_sample` uses
            the midpoint θ = ½, which keeps the stationary law of the likelihood's linear pull exact).
    Returns a weighted :class:`~interp.results.Trajectory`; ``attrs["log_normaliser"]`` estimates the evidence.
    """
    if velocity is None and not interpolant.gaussian_base:
        raise ValueError("off a Gaussian base give the prior's velocity field")
    epsilon = noise_fn(noise, interpolant, 1.0)
    x, log_weights = start if isinstance(start, tuple) else (start, None)
    generator = seeded_generator(generator, x.device)
    calls = [0]

    def step(i: int, t0: Tensor, t1: Tensor, x: Tensor) -> Move:
        h, tt = t1 - t0, t0.reshape(1).double()
        eps = epsilon(tt).to(x)
        s = score(t0, x)
        calls[0] += 1
        if not torch.isfinite(x).all():
            # a likelihood too sharp for an explicit step: more steps, or precision_solve
            raise NonFiniteStateError(i, float(t0), "fk-posterior")
        g = _grad(log_likelihood, x)
        if velocity is None:
            b = interpolant.posterior(t0, x, score=s).velocity
        else:
            b = velocity(t0, x)
            calls[0] += 1
        drift = b + eps * (s + g)
        rate = (b * g).reshape(x.shape[0], -1).sum(1)

        def advance(take) -> Tensor:
            y, d = (x, drift) if take is None else (take(x), take(drift))
            moved = euler_maruyama(y, d, eps, h, generator)
            if precision_solve is None:
                return moved
            return y + precision_solve(moved - y, float(h * eps))

        return Move((h * rate).double(), advance)

    return run_weighted(
        step,
        x,
        log_weights,
        torch.as_tensor(grid, dtype=torch.float64),
        name="fk-posterior",
        policy=ResamplePolicy("ess", 0.5) if policy is None else policy,
        scheme=scheme,
        generator=generator,
        record=record,
        progress=progress,
        log_normaliser=start_log_normaliser,
        nfe=lambda: calls[0],
    )


def linear_gaussian_start(
    interpolant: Interpolant, t0: float, A: Tensor, y: Tensor, noise_std: float, n: int, generator=None
) -> tuple[Tensor, float]:
    r"""Exact draws of :math:`N(x; 0, \alpha_0^2 I)\,N(y; Ax, \sigma^2 I)` normalised, and
    :math:`\log Z_{t_0} = \log N(y; 0, \alpha_0^2 AA^\top + \sigma^2 I)` (Gaussian base,
    :math:`\beta(t_0)\approx 0`)."""
    if not interpolant.gaussian_base:
        raise ValueError("linear_gaussian_start needs a Gaussian-base interpolant")
    if not noise_std > 0:
        raise ValueError(f"noise_std must be positive; got {noise_std}")
    A, y = torch.as_tensor(A, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if A.ndim != 2 or y.shape != (A.shape[0],):
        raise ValueError(f"A must be (m, d) and y (m,); got {tuple(A.shape)} and {tuple(y.shape)}")
    alpha0 = float(interpolant.schedule.alpha(torch.tensor([float(t0)], dtype=torch.float64)))
    d, m = A.shape[1], A.shape[0]
    precision = torch.eye(d, dtype=torch.float64) / alpha0**2 + A.T @ A / noise_std**2
    cov = torch.linalg.inv(precision)
    mean = cov @ A.T @ y / noise_std**2
    chol = torch.linalg.cholesky(0.5 * (cov + cov.T))
    generator = seeded_generator(generator, "cpu")
    xi = torch.randn(n, d, generator=generator, dtype=torch.float64, device=generator.device).cpu()
    marginal = alpha0**2 * A @ A.T + noise_std**2 * torch.eye(m, dtype=torch.float64)
    log_z = float(torch.distributions.MultivariateNormal(torch.zeros(m, dtype=torch.float64), marginal).log_prob(y))
    return mean + xi @ chol.T, log_z
