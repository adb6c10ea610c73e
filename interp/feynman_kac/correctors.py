r"""Feynman–Kac correctors: weighted SDE samplers for :math:`\tilde q_t = \prod_i q_{i,t}^{\beta_i}` built from the
fields of models of :math:`q_{i,t}` — annealing :math:`q^\beta`, products of experts :math:`q_1 q_2`, and
classifier-free-guidance / RLG geometric mixing :math:`q_u^{1-w} q_c^w` (Skreta et al. 2025; docs/algorithms.md §5).

**Derivation (interp convention: data at t = 1, the grid increases).** For any SDE
:math:`dX = u\,dt + \sqrt{2\epsilon}\,dW` and any unnormalised path :math:`\tilde q_t`, the weights
:math:`w = \exp\int R\,dt` with the Fokker–Planck residual of :math:`\log\tilde q`,

.. math:: R = \partial_t\log\tilde q + \nabla\cdot u + u\cdot\nabla\log\tilde q
          - \epsilon(\Delta\log\tilde q + |\nabla\log\tilde q|^2),

make :math:`E[f(X_t)w_t] \propto \int f\tilde q_t` when :math:`X_{t_0}\sim\tilde q_{t_0}/Z_{t_0}`, and
:math:`\log E[w_t] = \log Z_t/Z_{t_0}` (this is :func:`interp.diagnostics.fokker_planck_residual`). Each model's
path satisfies :math:`\partial_t\log q_i = -\nabla\cdot b_i - b_i\cdot s_i`; with :math:`S = \sum\beta_i s_i`,
:math:`B = \sum\beta_i`, two drifts make every unknown divergence and Laplacian cancel:

* ``form="velocity"`` (any interpolant): :math:`u = \sum\beta_i b_i + \epsilon S`,
  :math:`R = \sum_i\beta_i\, b_i\cdot(S - s_i)`;
* ``form="divergence"`` (any interpolant): :math:`u = \sum\gamma_i b_i + \epsilon S` with
  :math:`\gamma_i = \beta_i/B`, :math:`R = \sum_i(\gamma_i-\beta_i)\nabla\cdot b_i + \sum_i\gamma_i b_i\cdot S
  - \sum_i\beta_i b_i\cdot s_i`; for annealing :math:`u = b + \epsilon\beta s` and :math:`R = -(\beta-1)\nabla\cdot b`,
  constant on every Gaussian mode, so it is the low-variance choice when the divergence is known (exact fields) or
  affordable (autograd trace; a Hutchinson estimate inside the exponent would bias the weights);
* ``form="diffusion"`` (Gaussian base, :math:`b = a x + \eta s` with :math:`a = \dot\beta/\beta`,
  :math:`\eta = \alpha(\alpha\dot\beta - \dot\alpha\beta)/\beta`): :math:`u = a x + (\eta + \epsilon) S`,
  :math:`R = -(B-1)\,d\,a + \eta(|S|^2 - \sum_i\beta_i|s_i|^2)`. With :math:`\epsilon = \eta` this is
  Skreta et al.'s reverse SDE and weight (their :math:`f = -a`, :math:`g^2/2 = \eta`): annealing
  :math:`\eta\beta(\beta-1)|s|^2`, product :math:`2\eta\langle s_1, s_2\rangle`, CFG
  :math:`\eta w(w-1)|s_c - s_u|^2`.

Which form to use (measured on a 3-mode mixture, β = 3, ``validate --suite feynman-kac``): ``"velocity"`` moves the
modes' centres :math:`B` times too fast late in the path, ``"diffusion"`` mixes the noise too strongly early
(near the Gaussian end, where the velocity form is exact for a Gaussian), and both pay in weight variance;
``"divergence"`` is exact for every Gaussian mode. None of the weights depends on :math:`\epsilon`: any noise
level is exact in the limit of small steps. ``noise``
picks it: ``"diffusion"`` (:math:`\epsilon=\eta`, the target-score variant), ``"tempered"``
(:math:`\epsilon = \eta/B`, the tempered-noise variant: the noise of the reverse SDE of a base
:math:`N(0, I/B)`), ``0`` (a weighted ODE), or any float / callable of ``t``.

Start: :math:`\tilde q_{t_0}` normalised. On a Gaussian base at :math:`t_0` each :math:`q_{i,t_0}` is
:math:`N(0, \alpha_0^2 I)` up to :math:`O(\beta(t_0))`, so the start is :math:`N(0, \alpha_0^2 I/B)` with
:math:`\log Z_{t_0} = -\tfrac d2(B-1)\log(2\pi\alpha_0^2) - \tfrac d2\log B`; other interpolants pass ``start``
(particles and optional log-weights) and ``start_log_normaliser``. The returned ``log_normaliser`` attribute
estimates :math:`\log\int\prod_i q_{i,t_1}^{\beta_i}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._random import seeded_generator
from ..density.ode import field_divergence
from ..interpolants import Interpolant
from ..results import Trajectory
from ..smc import ResamplePolicy
from ._loop import Move, euler_maruyama, run_weighted

Field = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "Composition",
    "Expert",
    "anneal",
    "fk_correct",
    "gaussian_base_rates",
    "geometric",
    "product",
    "rlg",
    "score_from_velocity",
]


@dataclass(frozen=True)
class Expert:
    """One factor :math:`q_i^{\\beta_i}` of the target: the model's score field, its exponent and (optionally)
    its velocity field and the velocity's divergence ``(t, x) -> (n,)``. On a Gaussian base the velocity follows
    from the score and may be left out; ``form="divergence"`` takes the exact autograd trace when no divergence
    is given."""

    score: Field
    exponent: float = 1.0
    velocity: Field | None = None
    divergence: Callable[[Tensor, Tensor], Tensor] | None = None

    def __post_init__(self):
        for name in ("velocity", "divergence"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"{name} must be a callable (t, x) -> Tensor")
        if not callable(self.score):
            raise TypeError("score must be a field (t, x) -> Tensor")
        if not (math.isfinite(self.exponent) and self.exponent != 0):
            raise ValueError(f"an exponent must be finite and non-zero; got {self.exponent}")


@dataclass(frozen=True)
class Composition:
    r"""The target :math:`\prod_i q_i^{\beta_i}` as a tuple of :class:`Expert`."""

    experts: tuple[Expert, ...]
    name: str = "composition"

    def __post_init__(self):
        if not self.experts or not all(isinstance(e, Expert) for e in self.experts):
            raise TypeError("a composition needs at least one Expert")
        if self.total_exponent <= 0:
            raise ValueError(f"the exponents must sum to a positive number; got {self.total_exponent}")

    @property
    def total_exponent(self) -> float:
        return float(sum(e.exponent for e in self.experts))


def anneal(score: Field, beta: float, *, velocity: Field | None = None, divergence: Field | None = None) -> Composition:
    r""":math:`q^\beta` (:math:`\beta > 0`; :math:`\beta > 1` sharpens, :math:`\beta < 1` flattens)."""
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive number; got {beta}")
    return Composition((Expert(score, float(beta), velocity, divergence),), name=f"anneal(beta={beta:g})")


def product(*experts: Field | Expert) -> Composition:
    r""":math:`\prod_i q_i` from two or more score fields (or :class:`Expert`)."""
    if len(experts) < 2:
        raise ValueError("a product needs at least two experts")
    return Composition(tuple(e if isinstance(e, Expert) else Expert(e) for e in experts), name="product")


def geometric(unconditional: Field | Expert, conditional: Field | Expert, w: float) -> Composition:
    r""":math:`q_u^{1-w} q_c^{w}`: classifier-free guidance with weight ``w`` (the plain CFG drift
    :math:`s_u + w(s_c - s_u)` samples this only after the corrector's weights)."""
    if not math.isfinite(w) or w in (0.0, 1.0):
        raise ValueError(f"w must be finite and not 0 or 1 (those are single models); got {w}")

    def as_expert(e, exponent):
        return Expert(e.score, exponent, e.velocity, e.divergence) if isinstance(e, Expert) else Expert(e, exponent)

    return Composition((as_expert(unconditional, 1.0 - w), as_expert(conditional, float(w))), name=f"cfg(w={w:g})")


def rlg(interpolant: Interpolant, reference: Field, tuned: Field, w: float) -> Composition:
    r"""RLG (Jin et al. 2025): :math:`v = v_{ref} + w(v_{RL} - v_{ref})`, i.e. :math:`p_{ref}^{1-w}p_{RL}^w`, from two
    velocity fields of a Gaussian-base interpolant; sampled exactly with the corrector's weights."""
    return geometric(
        Expert(score_from_velocity(interpolant, reference), 1.0, reference),
        Expert(score_from_velocity(interpolant, tuned), 1.0, tuned),
        w,
    )


def score_from_velocity(interpolant: Interpolant, velocity: Field) -> Field:
    """The score of a Gaussian-base interpolant from its velocity field (:meth:`Interpolant.posterior`)."""
    if not interpolant.gaussian_base:
        raise ValueError("the score follows from the velocity only on a Gaussian base; pass the score too")

    def score(t, x):
        return interpolant.posterior(t, x, velocity=velocity(t, x)).score

    return score


def gaussian_base_rates(interpolant: Interpolant, t: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`a = \dot\beta/\beta` and :math:`\eta = \alpha(\alpha\dot\beta - \dot\alpha\beta)/\beta`, so that
    :math:`b = a x + \eta s` on a Gaussian base (finite where :math:`\beta(t) > 0`)."""
    s = interpolant.schedule
    beta = s.beta(t)
    if bool((beta <= 0).any()):
        raise ValueError(f"the Gaussian-base rates need beta(t) > 0; t = {float(t.min())} has beta = 0: start later")
    alpha = s.alpha(t)
    return s.beta_dot(t) / beta, (alpha**2 * s.beta_dot(t) - s.alpha_alpha_dot(t) * beta) / beta


def noise_fn(noise, interpolant: Interpolant, total: float) -> Callable[[Tensor], Tensor]:
    """The samplers' :math:`\\epsilon(t)`: ``"diffusion"`` (the Gaussian-base rate η(t)), ``"tempered"`` (η/``total``),
    a number >= 0 or a callable of ``t``."""
    if noise in ("diffusion", "tempered"):
        if not interpolant.gaussian_base:
            raise ValueError(f"noise={noise!r} needs a Gaussian-base interpolant; give a number or a callable")
        scale = 1.0 if noise == "diffusion" else 1.0 / total
        return lambda t: scale * gaussian_base_rates(interpolant, t)[1]
    if callable(noise):
        return noise
    if isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0:
        return lambda t: torch.full_like(t, float(noise))
    raise ValueError(f"noise must be 'diffusion', 'tempered', a number >= 0 or a callable of t; got {noise!r}")


def _sum_sq(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).pow(2).sum(1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).reshape(a.shape[0], -1).sum(1)


def fk_correct(
    composition: Composition,
    interpolant: Interpolant,
    grid,
    *,
    n: int | None = None,
    dim: int | None = None,
    start: Tensor | tuple[Tensor, Tensor] | None = None,
    start_log_normaliser: float | None = None,
    form: str = "divergence",
    noise="diffusion",
    policy: ResamplePolicy | None = None,
    scheme: str = "systematic",
    generator: torch.Generator | None = None,
    record=False,
    progress: bool = True,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> Trajectory:
    r"""Weighted particles for :math:`\prod_i q_{i,t}^{\beta_i}` along ``grid`` (increasing, data at t = 1).

    Args:
        composition: the target (:func:`anneal`, :func:`product`, :func:`geometric`, :func:`rlg`).
        interpolant: the interpolant every model was trained on.
        grid: increasing times; on a Gaussian base the first must have :math:`\beta(t) > 0` for ``form="diffusion"``.
        n: number of particles for the default Gaussian-base start.
        dim: their dimension.
        start: initial particles ``(n, ...)`` drawn from :math:`\tilde q_{t_0}` (or ``(particles, log_weights)``
            targeting it by importance weights); required off a Gaussian base.
        start_log_normaliser: :math:`\log Z_{t_0}` of the start (known for the Gaussian-base default).
        form: ``"divergence"`` (default), ``"velocity"`` (both any interpolant; velocities needed off a Gaussian
            base) or ``"diffusion"`` (Gaussian base); see the module docstring for the drifts and weights.
        noise: :math:`\epsilon(t)`: ``"diffusion"``, ``"tempered"``, a float or a callable of ``t``.
        policy: when to resample (default: ESS below half the particles).

    Returns:
        A :class:`~interp.results.Trajectory` with ``extras["log_weight"]``, ``extras["origin"]`` (index of each
        particle's ancestor at the start), ``series`` ``ess``, ``resampled``, ``log_normaliser`` per grid time, and
        ``attrs["log_normaliser"]``.
    """
    if not isinstance(composition, Composition):
        raise TypeError(f"composition must be a Composition, got {type(composition).__name__}")
    if form not in ("diffusion", "velocity", "divergence"):
        raise ValueError(f"form must be 'divergence', 'velocity' or 'diffusion'; got {form!r}")
    gaussian = interpolant.gaussian_base
    if form == "diffusion" and not gaussian:
        raise ValueError("form='diffusion' needs a Gaussian-base interpolant; use form='velocity'")
    if not gaussian and any(e.velocity is None for e in composition.experts):
        raise ValueError("off a Gaussian base every expert needs its velocity field")
    policy = ResamplePolicy("ess", 0.5) if policy is None else policy
    total = composition.total_exponent
    epsilon = noise_fn(noise, interpolant, total)
    grid_t = torch.as_tensor(grid, dtype=torch.float64)
    device = torch.device(device) if device is not None else (generator.device if generator is not None else "cpu")
    generator = seeded_generator(generator, device)

    if start is None:
        if not gaussian:
            raise ValueError("off a Gaussian base give start (particles from the start target)")
        if not (isinstance(n, int) and n >= 1 and isinstance(dim, int) and dim >= 1):
            raise ValueError(f"the default start needs positive integers n and dim; got n={n!r}, dim={dim!r}")
        t0 = grid_t[:1]
        alpha0 = float(interpolant.schedule.alpha(t0))
        noise0 = torch.randn(n, dim, generator=generator, dtype=dtype, device=generator.device).to(device)
        x = noise0 * (alpha0 / math.sqrt(total))
        log_weights = None
        if start_log_normaliser is None:
            start_log_normaliser = -0.5 * dim * (total - 1) * math.log(2 * math.pi * alpha0**2) - 0.5 * dim * math.log(
                total
            )
    else:
        x, log_weights = start if isinstance(start, tuple) else (start, None)
    calls = [0]
    experts = composition.experts

    def _velocity(e: Expert, s: Tensor, t: Tensor, x: Tensor) -> Tensor:
        if e.velocity is None:
            return interpolant.posterior(t, x, score=s).velocity
        calls[0] += 1
        return e.velocity(t, x)

    def _divergence(e: Expert, s: Tensor, t: Tensor, x: Tensor) -> Tensor:
        if e.divergence is not None:
            out = e.divergence(t, x)
        else:  # exact trace of the velocity's Jacobian, one vector-Jacobian product per coordinate
            field = e.velocity or (lambda tt, y: interpolant.posterior(tt, y, score=e.score(tt, y)).velocity)
            out = field_divergence(field, t, x)[1][0]
            calls[0] += 1
        if out.shape != (x.shape[0],):
            raise ValueError(f"a divergence returned {tuple(out.shape)}; expected ({x.shape[0]},)")
        return out

    betas = [e.exponent for e in experts]

    def fields(t: Tensor, x: Tensor):
        scores = [e.score(t, x) for e in experts]
        calls[0] += len(experts)
        for s in scores:
            if s.shape != x.shape:
                raise ValueError(f"a score returned {tuple(s.shape)} for a state of shape {tuple(x.shape)}")
        big_s = sum(b * s for b, s in zip(betas, scores, strict=True))
        return scores, big_s

    def step(i: int, t0: Tensor, t1: Tensor, x: Tensor) -> Move:
        h = t1 - t0
        tt = t0.reshape(1)
        eps = epsilon(tt.double()).to(x)
        scores, big_s = fields(t0, x)
        if form == "diffusion":
            a, eta = (v.to(x) for v in gaussian_base_rates(interpolant, tt.double()))
            drift = a * x + (eta + eps) * big_s
            rate = -(total - 1) * x[0].numel() * a + eta * (
                _sum_sq(big_s) - sum(b * _sum_sq(s) for b, s in zip(betas, scores, strict=True))
            )
        else:
            velocities = [_velocity(e, s, t0, x) for e, s in zip(experts, scores, strict=True)]
            weights = betas if form == "velocity" else [b / total for b in betas]
            drift = sum(g * v for g, v in zip(weights, velocities, strict=True)) + eps * big_s
            terms = zip(weights, betas, velocities, scores, strict=True)
            rate = sum(g * _dot(v, big_s) - b * _dot(v, s) for g, b, v, s in terms)
            if form == "divergence":
                terms = zip(weights, betas, experts, scores, strict=True)
                rate = rate + sum((g - b) * _divergence(e, s, t0, x) for g, b, e, s in terms if g != b)
        increment = (h * rate).double()

        def advance(take) -> Tensor:
            y, d = (x, drift) if take is None else (take(x), take(drift))
            return euler_maruyama(y, d, eps, h, generator)

        return Move(increment, advance)

    return run_weighted(
        step,
        x,
        log_weights,
        grid_t,
        name=f"fk-{form}",
        policy=policy,
        scheme=scheme,
        generator=generator,
        record=record,
        progress=progress,
        log_normaliser=float(start_log_normaliser or 0.0),
        nfe=lambda: calls[0],
        attrs={"target": composition.name, "total_exponent": total, "form": form},
    )
