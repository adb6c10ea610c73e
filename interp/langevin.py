r"""Langevin kernels: ULA, MALA, underdamped Langevin (BAOAB, OBABO), annealed Langevin with a score field.

Each kernel is a small object with ``init(target, x) -> state`` and ``step(target, state, generator) -> state``
over immutable state records (docs/design.md, "Solvers are objects"); :func:`run_chains` is the one driver
(recording, thinning, progress, non-finite guard) and returns :class:`Chains`, whose ``to_xarray()`` has dims
``(chain, draw, dim)`` — the layout ArviZ reads, so ``arviz.ess(chains.to_xarray())`` gives effective sample sizes.

Targets are :class:`LangevinTarget`: a log-density (its gradient by autograd) and/or a score
:math:`\nabla\log\pi`; :func:`as_target` accepts a callable log-density or any object with ``log_density`` (and
optionally ``score``) methods, such as :class:`~interp.analytic.GaussianMixture` and the 2-D targets.

* **ULA** (Roberts & Tweedie 1996): :math:`x \leftarrow x + h\nabla\log\pi(x) + \sqrt{2h}\,\xi`; biased at
  :math:`O(h)` (on :math:`N(0, s^2)` its stationary variance is :math:`s^2/(1 - h/(2s^2))`).
* **MALA** (Roberts & Tweedie 1996): the ULA proposal with a Metropolis–Hastings test; unbiased.
* **Underdamped** (unit mass and temperature): :math:`dx = v\,dt`,
  :math:`dv = \nabla\log\pi\,dt - \gamma v\,dt + \sqrt{2\gamma}\,dW`, split as BAOAB or OBABO
  (Leimkuhler & Matthews 2013): B a half kick, A a half drift, O the exact Ornstein–Uhlenbeck velocity update.
  BAOAB has weak order 2 for configurational averages and samples a Gaussian target's configuration exactly.
* **Denoising MCMC** (Kim & Ye 2022): Langevin–Gibbs over (state, noise level), then an ODE denoise.
* **Annealed Langevin** (Song & Ermon 2019; the corrector of Song et al. 2021): Langevin steps on
  :math:`s(x, \sigma_k)` for decreasing noise levels with step :math:`2(r|\xi|/|s|)^2`, norms averaged over the
  chains (docs/algorithms.md §6).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import check_matrix
from ._grad import autograd_on, check_graph, grad_leaf
from ._random import rand, randn_like
from .results import NetCDFResult, result_attrs, to_numpy
from .stepping import FusedSteps, NonFiniteStateError, StepLoop, seeded_generator

__all__ = [
    "BAOAB",
    "MALA",
    "OBABO",
    "ULA",
    "AnnealedLangevin",
    "Chains",
    "DenoisingMCMC",
    "DenoisingResult",
    "LangevinState",
    "LangevinTarget",
    "as_target",
    "run_chains",
]


@dataclass(frozen=True)
class LangevinTarget:
    """A target :math:`\\pi` on ``(chains, dim)`` states: ``log_density`` ``(chains,)`` (unnormalised is fine) and/or
    ``score`` :math:`\\nabla\\log\\pi` ``(chains, dim)``; a missing score comes from the log-density by autograd."""

    log_density: Callable[[Tensor], Tensor] | None = None
    score: Callable[[Tensor], Tensor] | None = None
    log_density_and_score: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None  # both in one pass, if cheaper

    def __post_init__(self):
        if self.log_density is None and self.score is None:
            raise ValueError("a Langevin target needs a log_density or a score")

    def value_and_score(self, x: Tensor, *, need_value: bool) -> tuple[Tensor | None, Tensor]:
        """``(log π(x) or None, ∇log π(x))``, each checked for shape."""
        if need_value and self.log_density_and_score is not None:
            value, grad = self.log_density_and_score(x)
            if value.shape != x.shape[:1]:
                raise ValueError(
                    f"log_density must return shape (chains,) {tuple(x.shape[:1])}; got {tuple(value.shape)}"
                )
        elif self.score is not None:
            value = self._value(x) if need_value else None
            grad = self.score(x)
        else:
            with autograd_on():
                xg = grad_leaf(x)
                value = self._value(xg)
                if check_graph(value, self._value, xg, "the log-density (pass score= to give its gradient)"):
                    (grad,) = torch.autograd.grad(value.sum(), xg)
                else:
                    grad = torch.zeros_like(x)
            value = value.detach()
        if grad.shape != x.shape:
            raise ValueError(f"score must return the state's shape {tuple(x.shape)}; got {tuple(grad.shape)}")
        return value, grad.detach()

    def traced_value_and_score(self, x: Tensor, need_value: bool) -> tuple[Tensor | None, Tensor]:
        """:meth:`value_and_score` for compiled steps: tensor work only, the gradient by :func:`torch.func.grad`
        (traceable in one graph). The shape and graph checks are left to the eager start (:meth:`_Kernel.init`),
        which evaluates the target the same way first."""
        if need_value and self.log_density_and_score is not None:
            return self.log_density_and_score(x)
        if self.score is not None:
            return (self.log_density(x) if need_value else None), self.score(x)

        def total(y):
            value = self.log_density(y)
            return value.sum(), value

        grad, value = torch.func.grad(total, has_aux=True)(x)
        return (value if need_value else None), grad

    def _value(self, x: Tensor) -> Tensor:
        if self.log_density is None:
            raise ValueError("this kernel needs the target's log-density (Metropolis test); give log_density=")
        value = self.log_density(x)
        if value.shape != x.shape[:1]:
            raise ValueError(f"log_density must return shape (chains,) {tuple(x.shape[:1])}; got {tuple(value.shape)}")
        return value


def as_target(target=None, *, log_density=None, score=None) -> LangevinTarget:
    """A :class:`LangevinTarget` from a callable log-density, an object with ``log_density`` (and optionally
    ``score``) methods, or the keyword functions."""
    if isinstance(target, LangevinTarget):
        return target
    if target is not None:
        if hasattr(target, "log_density"):
            both = getattr(target, "log_density_and_score", None) if log_density is None and score is None else None
            log_density = log_density or target.log_density
            score = score or getattr(target, "score", None)
            if both is not None:
                return LangevinTarget(log_density, score, both)
        elif callable(target):
            log_density = log_density or target
        else:
            raise TypeError(f"target must be a log-density callable or have .log_density; got {type(target).__name__}")
    return LangevinTarget(log_density, score)


@dataclass(frozen=True)
class LangevinState:
    """One step's chains: ``x`` ``(chains, dim)``, ``log_density`` ``(chains,)`` or ``None``, ``score`` at ``x``,
    velocity ``v`` (underdamped kernels), per-chain ``accepted`` counts (MALA) and the number of ``steps`` taken."""

    x: Tensor
    score: Tensor
    log_density: Tensor | None = None
    v: Tensor | None = None
    accepted: Tensor | None = None
    steps: int = 0


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite; got {value}")
    return value


def _check_state(x: Tensor) -> Tensor:
    return check_matrix(x, "the initial chains", rows="chains")


Carry = tuple  # (x, score, log_density, v, accepted): a LangevinState's tensors, None where a kernel has none


def _carry(state: LangevinState) -> Carry:
    return state.x, state.score, state.log_density, state.v, state.accepted


def _from_carry(state: LangevinState, carry: Carry, steps: int) -> LangevinState:
    x, score, log_density, v, accepted = carry
    return replace(state, x=x, score=score, log_density=log_density, v=v, accepted=accepted, steps=steps)


def _safe(x_new: Tensor, x_old: Tensor) -> tuple[Tensor, Tensor]:
    """``(rows of x_new that are finite, else x_old's; the non-finite rows)``: a target never sees a NaN state."""
    bad = ~torch.isfinite(x_new).all(dim=1)
    return torch.where(bad[:, None], x_old, x_new), bad


class _Kernel:
    """A kernel is three pieces (docs/design.md, "Compiled stepping"): :meth:`draws` (the step's noise, from the
    generator, in a fixed order), :meth:`advance` (the update as tensor arithmetic only: no host synchronisation,
    no Python branch on a value, so K steps can be fused and compiled) returning per-chain flags of a step that
    must not be taken, and :meth:`error` (the exception those flags mean). :meth:`step` is the three in a row."""

    needs_log_density = False

    def init(self, target: LangevinTarget, x: Tensor, generator=None) -> LangevinState:
        x = _check_state(x)
        value, grad = target.value_and_score(x, need_value=self.needs_log_density)
        if value is not None and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"the log-density is not finite at {bad} starting chains: start inside the support")
        if not torch.isfinite(grad).all():
            raise ValueError("the score is not finite at the starting chains")
        return LangevinState(x=x, score=grad, log_density=value, steps=0)

    def draws(self, x: Tensor, generator) -> tuple[Tensor, ...]:
        return (randn_like(x, generator),)

    def advance(self, value_and_score, carry: Carry, noise: tuple[Tensor, ...]) -> tuple[Carry, Tensor]:
        raise NotImplementedError

    def error(self, state: LangevinState, flags: Tensor) -> Exception:
        """The exception for a step whose :meth:`advance` flagged chains (``state`` is the state before it)."""
        step = state.steps + 1
        return NonFiniteStateError(step, step * self.step_size, f"{type(self).__name__} (reduce step_size)")

    def step(self, target: LangevinTarget, state: LangevinState, generator=None, *, noise=None) -> LangevinState:
        """One step from ``state``; its noise is drawn from ``generator`` unless given (``noise``, as
        :meth:`draws` returns it: a replay draws nothing)."""
        noise = self.draws(state.x, generator) if noise is None else noise
        carry, flags = self.advance(_eager(target), _carry(state), noise)
        if bool(flags.any()):
            raise self.error(state, flags)
        return _from_carry(state, carry, state.steps + 1)


def _eager(target: LangevinTarget):
    return lambda x, need_value: target.value_and_score(x, need_value=need_value)


class ULA(_Kernel):
    """Unadjusted Langevin: :math:`x + h\\nabla\\log\\pi(x) + \\sqrt{2h}\\,\\xi` (step ``h``)."""

    def __init__(self, step_size: float):
        self.step_size = _positive("step_size", step_size)

    def advance(self, value_and_score, carry, noise):
        x, score, _, _, accepted = carry
        h = self.step_size
        y, bad = _safe(x + h * score + math.sqrt(2 * h) * noise[0], x)
        _, grad = value_and_score(y, False)
        return (y, grad, None, None, accepted), bad  # a flagged row keeps its last finite state


class MALA(_Kernel):
    """Metropolis-adjusted Langevin: the ULA proposal accepted with probability
    :math:`\\min(1, \\pi(y)q(x|y)/(\\pi(x)q(y|x)))`, :math:`q(y|x) = N(y; x + h\\nabla\\log\\pi(x), 2hI)`."""

    needs_log_density = True

    def __init__(self, step_size: float):
        self.step_size = _positive("step_size", step_size)

    def init(self, target, x, generator=None):
        state = super().init(target, x)
        return replace(state, accepted=torch.zeros(x.shape[0], dtype=torch.long, device=x.device))

    def draws(self, x, generator):
        return randn_like(x, generator), rand(x.shape[0], generator, x)

    def advance(self, value_and_score, carry, noise):
        x, score, log_density, _, accepted = carry
        (z, u), h = noise, self.step_size
        # a non-finite proposal is rejected below, never evaluated
        y, rejected = _safe(x + h * score + math.sqrt(2 * h) * z, x)
        finite = ~rejected
        value_y, grad_y = value_and_score(y, True)
        forward = -((y - x - h * score) ** 2).sum(dim=1) / (4 * h)
        backward = -((x - y - h * grad_y) ** 2).sum(dim=1) / (4 * h)
        log_ratio = value_y - log_density + backward - forward
        # -inf (outside the support) is a rejection; NaN is a broken target, and rejecting it forever would freeze
        # the chain at acceptance 0 without a word.
        score_finite = torch.isfinite(grad_y).all(dim=1)
        broken = finite & (torch.isnan(value_y) | (torch.isfinite(value_y) & ~score_finite))
        valid = finite & torch.isfinite(value_y) & score_finite
        accept = torch.log(u) < torch.where(valid, log_ratio, -math.inf)
        keep = accept[:, None]
        carry = (
            torch.where(keep, y, x),
            torch.where(keep, grad_y, score),
            torch.where(accept, value_y, log_density),
            None,
            accepted + accept.long(),
        )
        return carry, broken

    def error(self, state, flags):
        first = int(torch.nonzero(flags)[0])
        return ValueError(
            f"MALA step {state.steps + 1}: the target gave a NaN log-density or a non-finite score where the "
            f"log-density is finite, at {int(flags.sum())} finite proposal(s) (first: chain {first}); a target "
            "must return -inf outside its support, never NaN"
        )


class _Underdamped(_Kernel):
    def __init__(self, step_size: float, friction: float = 1.0):
        self.step_size = _positive("step_size", step_size)
        self.friction = _positive("friction", friction)

    def init(self, target, x, generator=None):
        state = super().init(target, x)
        return replace(state, v=randn_like(state.x, generator))  # the velocity starts at its stationary N(0, I)

    def _ou(self, v: Tensor, dt: float, z: Tensor) -> Tensor:
        c = math.exp(-self.friction * dt)
        return c * v + math.sqrt(1 - c * c) * z


class BAOAB(_Underdamped):
    """Underdamped Langevin by B (h/2 kick) A (h/2 drift) O (exact OU over h) A B; one score per step."""

    def advance(self, value_and_score, carry, noise):
        x0, score, _, v, accepted = carry
        h = self.step_size
        v = v + 0.5 * h * score
        x = x0 + 0.5 * h * v
        v = self._ou(v, h, noise[0])
        x, bad = _safe(x + 0.5 * h * v, x0)
        _, grad = value_and_score(x, False)
        v = v + 0.5 * h * grad
        return (x, grad, None, v, accepted), bad


class OBABO(_Underdamped):
    """Underdamped Langevin by O (OU over h/2) B (h/2 kick) A (h drift) B O; one score per step."""

    def draws(self, x, generator):
        return randn_like(x, generator), randn_like(x, generator)

    def advance(self, value_and_score, carry, noise):
        x0, score, _, v, accepted = carry
        h = self.step_size
        v = self._ou(v, 0.5 * h, noise[0])
        v = v + 0.5 * h * score
        x, bad = _safe(x0 + h * v, x0)
        _, grad = value_and_score(x, False)
        v = v + 0.5 * h * grad
        v = self._ou(v, 0.5 * h, noise[1])
        return (x, grad, None, v, accepted), bad


class AnnealedLangevin:
    """Annealed Langevin dynamics with a noise-conditional score ``score(x, sigma)`` (Song & Ermon 2019):
    ``steps_per_level`` Langevin steps at each of the decreasing ``noise_levels``, step size
    :math:`2(r\\,\\overline{|\\xi|}/\\overline{|s|})^2` with the norms averaged over the chains (the
    predictor–corrector's corrector, Song et al. 2021, ``snr`` = r)."""

    def __init__(self, noise_levels: Sequence[float], steps_per_level: int = 10, snr: float = 0.16):
        levels = [float(s) for s in noise_levels]
        if not levels or any(not (math.isfinite(s) and s > 0) for s in levels):
            raise ValueError(f"noise_levels must be positive and finite; got {levels}")
        if any(b > a for a, b in zip(levels[:-1], levels[1:], strict=False)):
            raise ValueError("noise_levels must decrease")
        if not (isinstance(steps_per_level, int) and steps_per_level >= 1):
            raise ValueError(f"steps_per_level must be a positive integer; got {steps_per_level!r}")
        self.noise_levels, self.steps_per_level, self.snr = levels, steps_per_level, _positive("snr", snr)

    def sample(
        self, score: Callable[[Tensor, float], Tensor], x: Tensor, generator=None, *, progress: bool = False
    ) -> Tensor:
        """Run every level on ``x`` ``(chains, dim)``; returns the final chains. A non-finite state raises
        :class:`~interp.stepping.NonFiniteStateError` naming the step and, as its time, the noise level."""
        x = _check_state(x)
        n_steps = len(self.noise_levels) * self.steps_per_level
        loop = StepLoop("AnnealedLangevin", n_steps, progress=progress, start=1, advice="reduce snr")
        for k in loop.steps():
            sigma = self.noise_levels[(k - 1) // self.steps_per_level]
            s = score(x, sigma)
            if s.shape != x.shape:
                raise ValueError(f"score must return the state's shape {tuple(x.shape)}; got {tuple(s.shape)}")
            z = randn_like(x, generator)
            # norms averaged over the chains, as in Song et al.'s corrector: a per-chain ratio blows up at a
            # chain sitting on a mode, where |s| -> 0
            grad_norm = s.flatten(1).norm(dim=1).mean().clamp_min(torch.finfo(x.dtype).tiny)
            eps = 2 * (self.snr * z.flatten(1).norm(dim=1).mean() / grad_norm) ** 2
            x = x + eps * s + torch.sqrt(2 * eps) * z
            loop.guard(k, sigma, x)
        return x


@dataclass
class DenoisingResult(NetCDFResult):
    """Denoising MCMC output: the denoised samples ``(chains, dim)``, each chain's last state and noise level
    (``(chains, dim)``, ``(chains,)``), the level index chosen at every step ``(chains, steps)``, the seed of the
    generator that drove the chains and the settings."""

    samples: Tensor
    state: Tensor
    level: Tensor
    level_trace: Tensor
    seed: int | None = None
    settings: dict = field(default_factory=dict)

    def to_xarray(self) -> xr.Dataset:
        return xr.Dataset(
            {
                "samples": (("chain", "dim"), to_numpy(self.samples)),
                "state": (("chain", "dim"), to_numpy(self.state)),
                "level": (("chain",), to_numpy(self.level)),
                "level_trace": (("chain", "step"), to_numpy(self.level_trace)),
            },
            attrs=result_attrs("DenoisingMCMC", self.seed, **self.settings),
        )


class DenoisingMCMC:
    r"""Denoising MCMC (Kim & Ye 2022): Langevin–Gibbs over the pair (state, noise level), then an ODE denoise.

    On interpolant time (data at ``t_end``), with ``levels`` a grid of times: at each step
    :math:`x \leftarrow x + \tfrac\eta2 s(t, x) + \sqrt\eta\,\xi` at the chain's level ``t``, then
    :math:`t \sim p(t \mid x) \propto \rho_t(x)` over ``levels`` (exact Gibbs, from ``log_density(t, x)``) or
    :math:`t =` ``level_predictor(x)`` (a learned noise-level estimate, snapped to the grid). The joint law
    :math:`\propto\rho_t(x)` has :math:`x \mid t \sim \rho_t` and uniform levels, so carrying each chain from its
    level to ``t_end`` with the probability-flow ODE (``velocity``, RK4, ``steps_per_unit`` steps per unit of time)
    gives samples of :math:`\rho_{t_{end}}`, up to the Langevin step's :math:`O(\eta)` bias and the ODE's error.
    """

    def __init__(self, levels: Sequence[float], step_size: float, n_steps: int, *, steps_per_unit: int = 100):
        levels = torch.as_tensor(levels, dtype=torch.float64)
        if levels.ndim != 1 or levels.numel() < 1 or not torch.isfinite(levels).all():
            raise ValueError("levels must be a non-empty 1-D sequence of finite times")
        if not (isinstance(n_steps, int) and n_steps >= 1 and isinstance(steps_per_unit, int) and steps_per_unit >= 1):
            raise ValueError(f"n_steps and steps_per_unit must be positive integers; got {n_steps}, {steps_per_unit}")
        self.levels, self.step_size = levels, _positive("step_size", step_size)
        self.n_steps, self.steps_per_unit = n_steps, steps_per_unit

    def sample(
        self,
        score: Callable[[Tensor, Tensor], Tensor],
        velocity: Callable[[Tensor, Tensor], Tensor],
        x0: Tensor,
        *,
        log_density: Callable[[Tensor, Tensor], Tensor] | None = None,
        level_predictor: Callable[[Tensor], Tensor] | None = None,
        t_end: float = 1.0,
        generator: torch.Generator | None = None,
        progress: bool = True,
    ) -> DenoisingResult:
        """Run the chains from ``x0`` ``(chains, dim)`` (starting at the middle level) and denoise them."""
        from .driver import integrate
        from .solvers import RK4

        if (log_density is None) == (level_predictor is None):
            raise ValueError("give exactly one of log_density (exact Gibbs over levels) or level_predictor")
        if not float(self.levels.max()) < t_end:
            raise ValueError(f"every level must lie before t_end = {t_end}")
        x = _check_state(x0)
        generator = seeded_generator(generator, x.device)
        levels = self.levels.to(x.device, x.dtype)
        n = x.shape[0]
        index = torch.full((n,), levels.numel() // 2, dtype=torch.long, device=x.device)
        trace = torch.empty(n, self.n_steps, dtype=torch.long, device=x.device)
        eta = self.step_size
        loop = StepLoop("DenoisingMCMC", self.n_steps, progress=progress, advice="reduce step_size")
        for k in loop.steps():
            s = score(levels[index], x)
            if s.shape != x.shape:
                raise ValueError(f"score must return the state's shape {tuple(x.shape)}; got {tuple(s.shape)}")
            x = x + 0.5 * eta * s + math.sqrt(eta) * randn_like(x, generator)
            loop.guard(k + 1, k + 1, x)
            if log_density is not None:
                logits = torch.stack([log_density(level.expand(n), x) for level in levels], dim=1)
                device = generator.device if generator is not None else x.device
                index = torch.multinomial(torch.softmax(logits, dim=1).to(device), 1, generator=generator)[:, 0]
                index = index.to(x.device)
            else:
                predicted = level_predictor(x).reshape(n)
                index = torch.argmin((predicted[:, None] - levels[None, :]).abs(), dim=1)
            trace[:, k] = index
        samples = torch.empty_like(x)
        for i in torch.unique(index).tolist():
            rows = index == i
            start = float(levels[i])
            m = max(1, math.ceil((t_end - start) * self.steps_per_unit))
            grid = torch.linspace(start, t_end, m + 1, dtype=torch.float64)
            samples[rows] = integrate(velocity, x[rows], grid, RK4(), progress=False).final
        settings = dict(step_size=eta, n_steps=self.n_steps, steps_per_unit=self.steps_per_unit, t_end=t_end)
        return DenoisingResult(samples, x, levels[index], trace, generator.initial_seed(), settings)


@dataclass
class Chains(NetCDFResult):
    """Recorded draws ``(chain, draw, dim)``, MALA acceptance rate per chain, the kernel's name and settings, and
    the seed of the generator that drove the chains."""

    draws: Tensor
    acceptance: Tensor | None
    kernel: str
    settings: dict = field(default_factory=dict)
    seed: int | None = None

    def to_xarray(self) -> xr.Dataset:
        data = {"x": (("chain", "draw", "dim"), to_numpy(self.draws))}
        if self.acceptance is not None:
            data["acceptance"] = (("chain",), to_numpy(self.acceptance))
        return xr.Dataset(data, attrs=result_attrs(self.kernel, self.seed, **self.settings))


def run_chains(
    kernel,
    target,
    x0: Tensor,
    n_steps: int,
    *,
    generator: torch.Generator | None = None,
    burn_in: int = 0,
    thin: int = 1,
    progress: bool = True,
    block: int | None = None,
    compile: bool = False,
) -> Chains:
    """Run ``kernel`` for ``n_steps`` from ``x0`` ``(chains, dim)``; keep every ``thin``-th state after ``burn_in``.

    Steps run in blocks of ``block`` (default 32; 8 when compiled, since longer blocks compile for minutes and run
    no faster; docs/design.md, "Compiled stepping"): the noise of a block is drawn first, in
    the order single steps draw it, the steps then run without a host synchronisation, and the finiteness flags are
    read once per block. ``compile=True`` fuses each block into one :func:`torch.compile` call (the same numbers as
    eager up to floating-point rounding; the first block pays the compilation, reported in
    ``Chains.settings["compile_seconds"]``; a warning and eager steps where compilation is unavailable). Worth it
    for long runs: compilation takes tens of seconds on a CPU.

    Raises :class:`~interp.stepping.NonFiniteStateError` naming the step when a chain leaves the finite states (the
    flagged block is replayed eagerly with its noise to find the step), and MALA's ``ValueError`` for a target that
    returns NaN.
    """
    target = as_target(target)
    block = (8 if compile else 32) if block is None else block
    for name, value, low in (("n_steps", n_steps, 1), ("burn_in", burn_in, 0), ("thin", thin, 1), ("block", block, 1)):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    if burn_in >= n_steps:
        raise ValueError(f"burn_in ({burn_in}) must be below n_steps ({n_steps})")
    generator = seeded_generator(generator, x0.device)
    state = kernel.init(target, x0, generator)
    keep = range(burn_in + thin, n_steps + 1, thin)
    name = type(kernel).__name__
    loop = StepLoop(name, n_steps, keep=keep, progress=progress, start=1, advice="reduce step_size")
    block = min(block, n_steps)
    value_and_score = target.traced_value_and_score if compile else _eager(target)
    fused = FusedSteps(
        lambda carry, noise: kernel.advance(value_and_score, carry, noise), block, compile=compile, name=name
    )
    started = time.perf_counter()
    bar = tqdm(total=n_steps, desc=name, disable=None if progress else True, leave=False)
    done = 0
    while done < n_steps:
        size = min(block, n_steps - done)
        draws = [kernel.draws(state.x, generator) for _ in range(size)]
        noise = tuple(torch.stack(parts) for parts in zip(*draws, strict=True))
        if size == block:
            carry, states, bad = fused(_carry(state), noise)
        else:  # the last, shorter block runs eagerly: a compiled call of another length would compile again
            carry, states, bad = FusedSteps(fused.step, size)(_carry(state), noise)
        if bool(bad):  # one host synchronisation per block: replay it step by step to name the step
            replayed = []
            for k in range(size):
                state = kernel.step(target, state, noise=tuple(n[k] for n in noise))
                loop.guard(state.steps, state.steps * kernel.step_size, state.x)
                replayed.append(state.x)
            # not raised (a compiled block can round differently from eager): the eager replay is the chain
            carry, states = _carry(state), torch.stack(replayed)
        state = _from_carry(state, carry, done + size)
        for k in range(size):
            loop.keep(done + k + 1, states[k])
        done += size
        bar.update(size)
    bar.close()
    acceptance = state.accepted.to(x0.dtype) / n_steps if state.accepted is not None else None
    settings = {name: getattr(kernel, name) for name in ("step_size", "friction") if hasattr(kernel, name)}
    settings.update(n_steps=n_steps, burn_in=burn_in, thin=thin, block=block, compiled=int(fused.compiled))
    if compile:
        settings["seconds"] = time.perf_counter() - started
        settings["compile_seconds"] = fused.first_call_seconds
        if fused.fallback:
            settings["compile_fallback"] = fused.fallback
    draws = torch.stack(loop.states, dim=1)
    return Chains(draws, acceptance, name, settings, generator.initial_seed())
