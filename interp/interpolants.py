r"""Stochastic interpolants: samples, regression targets and conversions between parameterisations.

:math:`x_t = \alpha(t) x_0 + \beta(t) x_1 + \gamma(t) z`, :math:`z \sim N(0, I)` (Albergo, Boffi &
Vanden-Eijnden 2023, Eq. 2.1). The fields a model may learn are conditional expectations given
:math:`x_t = x`:

* velocity :math:`b = E[\dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z \mid x]` (ABV Eq. 2.10),
* mean velocity :math:`v = E[\dot\alpha x_0 + \dot\beta x_1 \mid x]`, so that :math:`b = v - \gamma\dot\gamma s`,
* denoiser :math:`\eta = E[z \mid x]` and score :math:`s = \nabla \log\rho_t = -\eta/\gamma` (ABV Eq. 2.14),
* endpoint predictions :math:`\hat x_0 = E[x_0\mid x]`, :math:`\hat x_1 = E[x_1\mid x]`.

Since :math:`x = \alpha\hat x_0 + \beta\hat x_1 + \gamma\eta` exactly, :class:`Posterior` holds
:math:`(\hat x_0, \hat x_1, s)` and derives the rest. Storing the score and using :math:`\gamma\dot\gamma`
(finite at the ends, unlike :math:`\dot\gamma` for Brownian-bridge :math:`\gamma`) keeps the conversions finite
at ``t = 0`` and ``t = 1``.

For a Gaussian base (:math:`x_0 \sim N(0, I)`, :math:`\gamma \equiv 0`) one prediction determines the others:
:math:`s = -\hat x_0/\alpha` (Tweedie), and velocity, noise and data predictions are related by
:math:`x = \alpha\hat x_0 + \beta\hat x_1`, :math:`b = \dot\alpha\hat x_0 + \dot\beta\hat x_1`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import batch_time, check_batch, check_same_shape, time_column
from ._random import randn_like
from .schedules import (
    BrownianGamma,
    LinearSchedule,
    NoGamma,
    NoiseSchedule,
    Schedule,
    TrigonometricSchedule,
    VPSchedule,
)


@dataclass(frozen=True)
class Coefficients:
    """Schedule values at a time, shaped to broadcast against a state ``(batch, ...)``."""

    alpha: Tensor
    beta: Tensor
    gamma: Tensor
    alpha_dot: Tensor
    beta_dot: Tensor
    alpha_alpha_dot: Tensor
    gamma_gamma_dot: Tensor


def _divide(numerator: Tensor, denominator: Tensor, what: str, t: Tensor) -> Tensor:
    """Divide, raising (instead of returning inf/NaN) where the denominator vanishes."""
    zero = (denominator == 0).reshape(denominator.shape[0], -1).any(dim=1)
    if zero.any():
        where = t[zero][0] if t.shape[0] == zero.shape[0] else t[0]  # coefficients of a shared time: one row
        raise ValueError(f"cannot compute {what}: its denominator vanishes at t = {float(where)}")
    return numerator / denominator


class Interpolant:
    r"""An interpolant :math:`x_t = \alpha x_0 + \beta x_1 + \gamma z` built from a mean schedule and a noise schedule.

    Args:
        schedule: the mean coefficients :math:`\alpha, \beta` (:mod:`interp.schedules`).
        noise: the latent noise :math:`\gamma` (default :class:`~interp.schedules.NoGamma`).
        name: identifier recorded in results.

    A Gaussian-base schedule (``schedule.gaussian_base``) requires :math:`\gamma \equiv 0`: its noise is
    :math:`x_0` itself.

    Example:
        >>> from interp.schedules import LinearSchedule, BrownianGamma
        >>> interpolant = Interpolant(LinearSchedule(), BrownianGamma(1.0))
        >>> x0, x1 = torch.randn(8, 2), torch.randn(8, 2) + 3
        >>> sample = interpolant.sample(x0, x1, torch.rand(8), generator=torch.Generator().manual_seed(0))
        >>> sample.xt.shape
        torch.Size([8, 2])
    """

    def __init__(self, schedule: Schedule, noise: NoiseSchedule | None = None, *, name: str | None = None):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be an interp.schedules.Schedule, got {type(schedule).__name__}")
        noise = NoGamma() if noise is None else noise
        if not isinstance(noise, NoiseSchedule):
            raise TypeError(f"noise must be an interp.schedules.NoiseSchedule, got {type(noise).__name__}")
        if schedule.gaussian_base and not noise.is_zero:
            raise ValueError("a Gaussian-base schedule needs noise=NoGamma(): its noise is x0 itself")
        self.schedule, self.noise = schedule, noise
        self.name = name or (schedule.name if noise.is_zero else f"{schedule.name}-{noise.name}")

    @property
    def gaussian_base(self) -> bool:
        return self.schedule.gaussian_base

    @property
    def time_range(self) -> tuple[float, float]:
        """Times on which every coefficient used by the fields is finite."""
        return self.schedule.time_range

    def __repr__(self) -> str:
        return f"Interpolant({self.schedule!r}, {self.noise!r}, name={self.name!r})"

    # ------------------------------------------------------------------ coefficients
    def coefficients(self, t, x: Tensor) -> Coefficients:
        """The schedule at ``t`` (scalar or ``(batch,)``), each of shape ``(batch, 1, ..., 1)`` like ``x``."""
        tb = batch_time(t, x)
        s, n = self.schedule, self.noise

        def col(value: Tensor) -> Tensor:
            return time_column(value, x)

        return Coefficients(
            alpha=col(s.alpha(tb)),
            beta=col(s.beta(tb)),
            gamma=col(n.gamma(tb)),
            alpha_dot=col(s.alpha_dot(tb)),
            beta_dot=col(s.beta_dot(tb)),
            alpha_alpha_dot=col(s.alpha_alpha_dot(tb)),
            gamma_gamma_dot=col(n.gamma_gamma_dot(tb)),
        )

    # ------------------------------------------------------------------ sampling and targets
    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        t,
        *,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> InterpolantSample:
        """Draw :math:`x_t` for paired endpoints ``x0``, ``x1`` of shape ``(batch, ...)`` at times ``t``.

        ``z`` is drawn from ``generator`` unless given (it is unused when :math:`\\gamma \\equiv 0`).
        """
        check_batch(x0, "x0")
        check_batch(x1, "x1")
        check_same_shape(x0, x1, "x0", "x1")
        tb = batch_time(t, x0)
        if z is None:
            z = randn_like(x0, generator) if not self.noise.is_zero else torch.zeros_like(x0)
        else:
            check_batch(z, "z")
            check_same_shape(x0, z, "x0", "z")
        c = self.coefficients(tb, x0)
        xt = c.alpha * x0 + c.beta * x1 + c.gamma * z
        return InterpolantSample(interpolant=self, t=tb, x0=x0, x1=x1, z=z, xt=xt, coefficients=c)

    # ------------------------------------------------------------------ conversions
    def posterior(
        self,
        t,
        x: Tensor,
        *,
        velocity: Tensor | None = None,
        mean_velocity: Tensor | None = None,
        score: Tensor | None = None,
        denoiser: Tensor | None = None,
        x0: Tensor | None = None,
        x1: Tensor | None = None,
    ) -> Posterior:
        r"""Recover every parameterisation at :math:`x_t = x` from the ones given.

        Gaussian base: give exactly one of ``velocity`` (= ``mean_velocity``), ``score``, ``x0`` (the noise
        prediction) or ``x1`` (the data prediction).

        Otherwise the noise part needs ``score`` or ``denoiser`` (or both ``x0`` and ``x1`` when :math:`\gamma>0`),
        plus one of ``velocity``, ``mean_velocity``, ``x0``, ``x1`` for the mean part. With :math:`\gamma\equiv 0`
        the score is independent information: give it only if you need it.
        """
        check_batch(x, "x")
        tb = batch_time(t, x)
        given = {
            k: v
            for k, v in dict(
                velocity=velocity, mean_velocity=mean_velocity, score=score, denoiser=denoiser, x0=x0, x1=x1
            ).items()
            if v is not None
        }
        for k, v in given.items():
            check_batch(v, k)
            check_same_shape(x, v, "x", k)
        # A shared (scalar) time: the schedule once, broadcast over the batch (samplers call this every step).
        c = self.coefficients(tb[:1], x[:1]) if torch.as_tensor(t).ndim == 0 else self.coefficients(tb, x)
        if self.gaussian_base:
            return self._posterior_gaussian_base(tb, x, c, given)
        return self._posterior_two_sided(tb, x, c, given)

    def _posterior_gaussian_base(self, t, x, c: Coefficients, given: dict) -> Posterior:
        if "mean_velocity" in given:
            given["velocity"] = given.pop("mean_velocity")
        if "denoiser" in given or len(given) != 1:
            raise ValueError(
                "a Gaussian-base interpolant takes exactly one of velocity, score, x0 (noise prediction) or x1 "
                f"(data prediction); got {sorted(given) or 'none'}"
            )
        ((kind, value),) = given.items()
        if kind in ("x0", "x1"):
            x0, x1 = _other_endpoint(kind, value, x, c, t)
        elif kind == "score":
            x0 = -c.alpha * value
            x1 = _divide(x + c.alpha**2 * value, c.beta, "x1 from the score (beta = 0)", t)
        else:  # velocity: solve [alpha beta; alpha_dot beta_dot][x0; x1] = [x; b], multiplied through by alpha
            det = c.alpha**2 * c.beta_dot - c.alpha_alpha_dot * c.beta
            x0 = _divide(c.alpha * (c.beta_dot * x - c.beta * value), det, "x0 from the velocity", t)
            x1 = _divide(c.alpha**2 * value - c.alpha_alpha_dot * x, det, "x1 from the velocity", t)
        score = value if kind == "score" else None
        return Posterior(self, t, x, c, x0=x0, x1=x1, given_score=score)

    def _posterior_two_sided(self, t, x, c: Coefficients, given: dict) -> Posterior:
        accepted = "velocity, mean_velocity, x0 or x1 (plus score or denoiser when gamma > 0)"
        if "score" in given and "denoiser" in given:
            raise ValueError("give score or denoiser, not both")
        score = given.pop("score", None)
        if "denoiser" in given:
            score = -_divide(given.pop("denoiser"), c.gamma, "the score from the denoiser (gamma = 0)", t)
        if score is None and set(given) == {"x0", "x1"}:
            if self.noise.is_zero:
                raise ValueError("with gamma = 0 the score is not a function of x0 and x1; pass score=")
            residual = x - c.alpha * given["x0"] - c.beta * given["x1"]
            score = -_divide(residual, c.gamma**2, "the score from x0 and x1 (gamma = 0)", t)
            return Posterior(self, t, x, c, x0=given["x0"], x1=given["x1"], given_score=score)
        if score is None and not self.noise.is_zero:
            raise ValueError(f"with gamma > 0 the conversion needs score or denoiser; got {sorted(given)}")
        if len(given) != 1:
            raise ValueError(f"give exactly one of {accepted}; got {sorted(given) or 'none'}")
        ((kind, value),) = given.items()
        # m = alpha x0_hat + beta x1_hat = x - gamma * eta = x + gamma^2 s
        mean = x if score is None else x + c.gamma**2 * score
        if kind in ("x0", "x1"):
            x0, x1 = _other_endpoint(kind, value, mean, c, t)
        else:
            v = value
            if kind == "velocity" and score is not None:
                v = value + c.gamma_gamma_dot * score
            det = c.alpha * c.beta_dot - c.alpha_dot * c.beta
            x0 = _divide(c.beta_dot * mean - c.beta * v, det, "x0 from the velocity", t)
            x1 = _divide(c.alpha * v - c.alpha_dot * mean, det, "x1 from the velocity", t)
        return Posterior(self, t, x, c, x0=x0, x1=x1, given_score=score)


def _other_endpoint(kind: str, value: Tensor, mean: Tensor, c: Coefficients, t: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``mean = alpha x0 + beta x1`` for the endpoint not given; returns ``(x0, x1)``."""
    if kind == "x0":
        return value, _divide(mean - c.alpha * value, c.beta, "x1 from x0 (beta = 0)", t)
    return _divide(mean - c.beta * value, c.alpha, "x0 from x1 (alpha = 0)", t), value


@dataclass(frozen=True)
class InterpolantSample:
    r"""A draw of :math:`x_t` with its endpoints and latent noise; the regression targets are properties."""

    interpolant: Interpolant
    t: Tensor
    x0: Tensor
    x1: Tensor
    z: Tensor
    xt: Tensor
    coefficients: Coefficients

    @property
    def mean_velocity(self) -> Tensor:
        r"""Target of :math:`v`: :math:`\dot\alpha x_0 + \dot\beta x_1`."""
        c = self.coefficients
        return c.alpha_dot * self.x0 + c.beta_dot * self.x1

    @property
    def velocity(self) -> Tensor:
        r"""Target of :math:`b`: :math:`\dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z`.

        Raises where :math:`\dot\gamma` is infinite (Brownian :math:`\gamma` at t = 0 or 1): sample times in the
        open interval, or learn the mean velocity and the denoiser separately.
        """
        if self.interpolant.noise.is_zero:
            return self.mean_velocity
        gamma_dot = time_column(self.interpolant.noise.gamma_dot(self.t), self.x0)
        out = self.mean_velocity + gamma_dot * self.z
        if not torch.isfinite(out).all():
            raise ValueError("the velocity target is infinite here: gamma_dot diverges; sample t in the open interval")
        return out

    @property
    def denoiser(self) -> Tensor:
        r"""Target of :math:`\eta`: the latent noise :math:`z`."""
        return self.z


class Posterior:
    r"""Conditional expectations at :math:`x_t = x`: :math:`\hat x_0, \hat x_1` and the score, with derived fields."""

    def __init__(self, interpolant: Interpolant, t: Tensor, x: Tensor, c: Coefficients, *, x0, x1, given_score):
        self.interpolant, self.t, self.x, self._c = interpolant, t, x, c
        self.x0, self.x1 = x0, x1
        self._score = given_score

    @property
    def score(self) -> Tensor:
        r""":math:`\nabla\log\rho_t(x)`."""
        if self._score is not None:
            return self._score
        if self.interpolant.gaussian_base:
            self._score = -_divide(self.x0, self._c.alpha, "the score (alpha = 0)", self.t)
            return self._score
        raise ValueError("with gamma = 0 the score is not determined by the mean predictions; pass score=")

    @property
    def mean_velocity(self) -> Tensor:
        r""":math:`v = \dot\alpha\hat x_0 + \dot\beta\hat x_1`."""
        c = self._c
        out = c.alpha_dot * self.x0 + c.beta_dot * self.x1
        if not torch.isfinite(out).all():
            raise ValueError(f"the velocity is infinite here; stay inside time_range {self.interpolant.time_range}")
        return out

    @property
    def velocity(self) -> Tensor:
        r""":math:`b = v - \gamma\dot\gamma s`."""
        if self.interpolant.noise.is_zero:
            return self.mean_velocity
        return self.mean_velocity - self._c.gamma_gamma_dot * self.score

    @property
    def denoiser(self) -> Tensor:
        r""":math:`\eta = E[z\mid x] = -\gamma s`; on a Gaussian base the noise is :math:`\hat x_0`."""
        if self.interpolant.gaussian_base:
            return self.x0
        if self.interpolant.noise.is_zero:
            return torch.zeros_like(self.x)
        return -self._c.gamma * self.score


def matching_time(source: Interpolant, target: Interpolant, t: Tensor, iterations: int = 80) -> Tensor:
    r"""The time of ``source`` with the signal-to-noise ratio :math:`\beta/\alpha` that ``target`` has at ``t``
    (both Gaussian base; bisection on ``source.time_range``, where the SNR increases)."""
    for interpolant in (source, target):
        if not interpolant.gaussian_base:
            raise ValueError("SNR matching needs Gaussian-base interpolants")
    t = torch.as_tensor(t, dtype=torch.float64)
    snr = target.schedule.beta(t) / target.schedule.alpha(t)
    lo, hi = source.time_range
    low, high = torch.full_like(t, lo), torch.full_like(t, hi)
    s = source.schedule
    if bool((s.beta(high) / s.alpha(high) < snr).any()) or bool((s.beta(low) / s.alpha(low) > snr).any()):
        raise ValueError("the target's signal-to-noise ratio at t lies outside the source's range on its time_range")
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        below = s.beta(mid) / s.alpha(mid) < snr
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return 0.5 * (low + high)


def rescheduled_score(score: Callable[[Tensor, Tensor], Tensor], source: Interpolant, target: Interpolant):
    r"""A model's score read on another Gaussian-base schedule by matching signal-to-noise ratios.

    At the source time :math:`s(t)` with the target's SNR, :math:`x_{src} = c\,x_{tgt}` with
    :math:`c = \alpha_{src}(s)/\alpha_{tgt}(t)`, so :math:`\rho_{tgt}(x) = c^d\rho_{src}(cx)` and
    :math:`\nabla\log\rho_{tgt}(x) = c\,\nabla\log\rho_{src}(cx)`: e.g. a flow-matching model run as a VP diffusion
    (rollover budget forcing's optional conversion, Kim et al. 2025).
    """

    def converted(t, x):
        tb = batch_time(t, x)
        ts = matching_time(source, target, tb.double())
        c = (source.schedule.alpha(ts) / target.schedule.alpha(tb.double())).to(x)
        c = time_column(c, x)
        return c * score(ts.to(x.dtype), c * x)

    return converted


# ---------------------------------------------------------------------- presets
PRESETS: dict[str, Callable[[], Interpolant]] = {
    "linear": lambda: Interpolant(LinearSchedule(), name="linear"),
    "trig": lambda: Interpolant(TrigonometricSchedule(), name="trig"),
    "linear-brownian": lambda: Interpolant(LinearSchedule(), BrownianGamma(1.0), name="linear-brownian"),
    "flow": lambda: Interpolant(LinearSchedule(gaussian_base=True), name="flow"),
    "gvp": lambda: Interpolant(TrigonometricSchedule(gaussian_base=True), name="gvp"),
    "vp": lambda: Interpolant(VPSchedule(), name="vp"),
}
"""Named interpolants. Two-sided: ``linear``, ``trig`` (:math:`\\gamma=0`), ``linear-brownian``
(:math:`\\gamma=\\sqrt{t(1-t)}`). Gaussian base: ``flow`` (linear), ``gvp`` (trigonometric), ``vp``."""


def preset(name: str) -> Interpolant:
    """The named interpolant from :data:`PRESETS`."""
    if name not in PRESETS:
        raise ValueError(f"unknown interpolant preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]()
