r"""Schedules of a stochastic interpolant :math:`x_t = \alpha(t) x_0 + \beta(t) x_1 + \gamma(t) z`.

Two independent objects (Albergo, Boffi & Vanden-Eijnden 2023, "Stochastic interpolants", Sec. 2):

* a :class:`Schedule` gives the mean coefficients :math:`\alpha(t)` (on :math:`x_0`), :math:`\beta(t)` (on
  :math:`x_1`) and their time derivatives, with :math:`\alpha(0)=\beta(1)=1`, :math:`\alpha(1)=\beta(0)=0`;
* a :class:`NoiseSchedule` gives the latent-noise coefficient :math:`\gamma(t)` with
  :math:`\gamma(0)=\gamma(1)=0`, its derivative, and the product :math:`\gamma\dot\gamma` that every
  field formula actually uses. For the Brownian-bridge choice :math:`\gamma=\sigma\sqrt{t(1-t)}`,
  :math:`\dot\gamma` diverges at both ends while :math:`\gamma\dot\gamma=\sigma^2(1-2t)/2` stays finite.

Every method takes a tensor ``t`` of any shape and returns a tensor of that shape, dtype and device.
A Gaussian-base ("one-sided") schedule puts :math:`x_0 \sim N(0, I)` at ``t = 0`` and data at ``t = 1``
(flow-matching convention, docs/design.md "Time").
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

TimeFunction = Callable[[Tensor], Tensor]


def time_derivative(fn: TimeFunction, t: Tensor) -> Tensor:
    """Elementwise :math:`d f/dt` of a scalar function applied elementwise to ``t``, by autograd."""
    with torch.enable_grad():
        tt = t.detach().clone().requires_grad_(True)
        y = fn(tt)
        (grad,) = torch.autograd.grad(y.sum(), tt, allow_unused=True)
    return torch.zeros_like(t) if grad is None else grad.detach()


class Schedule(ABC):
    r"""Mean coefficients :math:`\alpha(t), \beta(t)` of an interpolant and their derivatives.

    Attributes:
        name: short identifier used in results.
        gaussian_base: ``True`` when the schedule is meant for :math:`x_0 \sim N(0, I)` (one-sided).
        time_range: the closed interval on which the coefficients and their derivatives are finite.
    """

    name: str = "schedule"
    gaussian_base: bool = False
    time_range: tuple[float, float] = (0.0, 1.0)

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """:math:`\\alpha(t)`, the coefficient of :math:`x_0` (1 at t = 0, 0 at t = 1); same shape as ``t``."""

    @abstractmethod
    def beta(self, t: Tensor) -> Tensor:
        """:math:`\\beta(t)`, the coefficient of :math:`x_1` (0 at t = 0, 1 at t = 1); same shape as ``t``."""

    def alpha_dot(self, t: Tensor) -> Tensor:
        """:math:`\\dot\\alpha(t)` (by autograd unless a schedule gives it in closed form)."""
        return time_derivative(self.alpha, t)

    def beta_dot(self, t: Tensor) -> Tensor:
        """:math:`\\dot\\beta(t)` (by autograd unless a schedule gives it in closed form)."""
        return time_derivative(self.beta, t)

    def alpha_alpha_dot(self, t: Tensor) -> Tensor:
        r""":math:`\alpha\dot\alpha = \tfrac12 d(\alpha^2)/dt`; override where :math:`\dot\alpha` is singular."""
        return self.alpha(t) * self.alpha_dot(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearSchedule(Schedule):
    r""":math:`\alpha = 1 - t`, :math:`\beta = t` (rectified flow; Liu et al. 2023, Lipman et al. 2023)."""

    name = "linear"

    def __init__(self, gaussian_base: bool = False):
        self.gaussian_base = gaussian_base

    def alpha(self, t):
        return 1 - t

    def beta(self, t):
        return t.clone()

    def alpha_dot(self, t):
        return -torch.ones_like(t)

    def beta_dot(self, t):
        return torch.ones_like(t)


class TrigonometricSchedule(Schedule):
    r""":math:`\alpha=\cos(\pi t/2)`, :math:`\beta=\sin(\pi t/2)` (ABV 2023); with a Gaussian base this is the
    GVP schedule of SiT (Ma et al. 2024), :math:`\alpha^2+\beta^2 = 1`."""

    name = "trig"

    def __init__(self, gaussian_base: bool = False):
        self.gaussian_base = gaussian_base

    def alpha(self, t):
        return torch.cos(0.5 * math.pi * t)

    def beta(self, t):
        return torch.sin(0.5 * math.pi * t)

    def alpha_dot(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def beta_dot(self, t):
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)


class VPSchedule(Schedule):
    r"""Variance-preserving schedule of score-based diffusion (Song et al. 2021), flow convention.

    With diffusion time :math:`\tau = 1 - t` and linear noise rate :math:`b(\tau)=b_{min}+\tau(b_{max}-b_{min})`,
    :math:`\beta(t) = \exp(-\tfrac12\int_0^{\tau} b) = \exp(-\tfrac12 b_{min}\tau - \tfrac14(b_{max}-b_{min})\tau^2)`
    (on the data :math:`x_1`), :math:`\alpha(t) = \sqrt{1-\beta(t)^2}` (on the noise :math:`x_0`).

    :math:`\beta(0) = e^{-(b_{min}+b_{max})/4} \approx 0.0066` for the defaults, not 0: the base end is Gaussian
    only approximately, as in the diffusion models it reproduces. :math:`\dot\alpha` diverges at ``t = 1``;
    :math:`\alpha\dot\alpha = -\beta\dot\beta` stays finite. ``time_range`` stops at ``1 - t_end`` (the usual
    ``t_end = 1e-3`` of diffusion samplers).
    """

    name = "vp"
    gaussian_base = True

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_end: float = 1e-3):
        if not (0 <= beta_min < beta_max):
            raise ValueError(f"need 0 <= beta_min < beta_max; got beta_min={beta_min}, beta_max={beta_max}")
        if not (0 < t_end < 0.5):
            raise ValueError(f"t_end must lie in (0, 0.5); got {t_end}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.time_range = (0.0, 1.0 - t_end)

    def _log_beta(self, t):
        tau = 1 - t
        return -0.5 * self.beta_min * tau - 0.25 * (self.beta_max - self.beta_min) * tau**2

    def beta(self, t):
        return torch.exp(self._log_beta(t))

    def beta_dot(self, t):
        tau = 1 - t
        return self.beta(t) * 0.5 * (self.beta_min + (self.beta_max - self.beta_min) * tau)

    def alpha(self, t):
        return torch.sqrt(-torch.expm1(2 * self._log_beta(t)))

    def alpha_dot(self, t):
        return self.alpha_alpha_dot(t) / self.alpha(t)

    def alpha_alpha_dot(self, t):
        return -self.beta(t) * self.beta_dot(t)

    def __repr__(self):
        return f"VPSchedule(beta_min={self.beta_min}, beta_max={self.beta_max})"


class CustomSchedule(Schedule):
    r"""A schedule from user callables; missing derivatives are taken by autograd.

    The end conditions :math:`\alpha(0)=\beta(1)=1`, :math:`\alpha(1)=\beta(0)=0` are checked at construction.

    Example:
        >>> s = CustomSchedule(lambda t: (1 - t) ** 2, lambda t: 1 - (1 - t) ** 2)
    """

    name = "custom"

    def __init__(
        self,
        alpha: TimeFunction,
        beta: TimeFunction,
        alpha_dot: TimeFunction | None = None,
        beta_dot: TimeFunction | None = None,
        *,
        gaussian_base: bool = False,
        name: str = "custom",
        atol: float = 1e-6,
    ):
        for label, fn in (("alpha", alpha), ("beta", beta)):
            if not callable(fn):
                raise TypeError(f"{label} must be callable t -> Tensor")
        self._alpha, self._beta = alpha, beta
        self._alpha_dot, self._beta_dot = alpha_dot, beta_dot
        self.gaussian_base = gaussian_base
        self.name = name
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
        a, b = self.alpha(ends), self.beta(ends)
        expected = {"alpha(0)": (a[0], 1.0), "alpha(1)": (a[1], 0.0), "beta(0)": (b[0], 0.0), "beta(1)": (b[1], 1.0)}
        for label, (value, target) in expected.items():
            if not abs(float(value) - target) <= atol:
                raise ValueError(f"custom schedule needs {label} = {target}; got {float(value)}")

    def alpha(self, t):
        return self._alpha(t)

    def beta(self, t):
        return self._beta(t)

    def alpha_dot(self, t):
        return self._alpha_dot(t) if self._alpha_dot is not None else time_derivative(self._alpha, t)

    def beta_dot(self, t):
        return self._beta_dot(t) if self._beta_dot is not None else time_derivative(self._beta, t)

    def __repr__(self):
        return f"CustomSchedule(name={self.name!r})"


class NoiseSchedule(ABC):
    r"""Latent-noise coefficient :math:`\gamma(t) \ge 0` with :math:`\gamma(0)=\gamma(1)=0`."""

    name: str = "gamma"

    @abstractmethod
    def gamma(self, t: Tensor) -> Tensor:
        """:math:`\\gamma(t)`, the coefficient of the latent noise :math:`z` (0 at both ends)."""

    def gamma_dot(self, t: Tensor) -> Tensor:
        """:math:`\\dot\\gamma(t)`; may be infinite at the ends — use :meth:`gamma_gamma_dot` there."""
        return time_derivative(self.gamma, t)

    def gamma_gamma_dot(self, t: Tensor) -> Tensor:
        r""":math:`\gamma\dot\gamma = \tfrac12 d(\gamma^2)/dt`, finite where :math:`\dot\gamma` is not."""
        return self.gamma(t) * self.gamma_dot(t)

    @property
    def is_zero(self) -> bool:
        """Whether :math:`\\gamma \\equiv 0` (then no latent noise is drawn)."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoGamma(NoiseSchedule):
    r""":math:`\gamma \equiv 0`: a deterministic interpolant."""

    name = "none"

    def gamma(self, t):
        return torch.zeros_like(t)

    def gamma_dot(self, t):
        return torch.zeros_like(t)

    def gamma_gamma_dot(self, t):
        return torch.zeros_like(t)

    @property
    def is_zero(self) -> bool:
        return True


class BrownianGamma(NoiseSchedule):
    r"""Brownian-bridge noise :math:`\gamma = \sigma\sqrt{t(1-t)}`, :math:`\gamma\dot\gamma = \sigma^2(1-2t)/2`.

    :math:`\dot\gamma` is infinite at ``t = 0`` and ``t = 1``; use :meth:`gamma_gamma_dot` there.
    """

    name = "brownian"

    def __init__(self, sigma: float = 1.0):
        if not sigma > 0:
            raise ValueError(f"sigma must be positive; got {sigma}")
        self.sigma = float(sigma)

    def gamma(self, t):
        return self.sigma * torch.sqrt(t * (1 - t))

    def gamma_dot(self, t):
        return self.sigma * (1 - 2 * t) / (2 * torch.sqrt(t * (1 - t)))

    def gamma_gamma_dot(self, t):
        return 0.5 * self.sigma**2 * (1 - 2 * t)

    def __repr__(self):
        return f"BrownianGamma(sigma={self.sigma})"


class _ScaledGamma(NoiseSchedule):
    """A noise schedule :math:`a\\,g(t)` with a positive scale :math:`a`."""

    def __init__(self, scale: float = 1.0):
        if not scale > 0:
            raise ValueError(f"scale must be positive; got {scale}")
        self.scale = float(scale)

    def __repr__(self):
        return f"{type(self).__name__}(scale={self.scale})"


class QuadraticGamma(_ScaledGamma):
    r""":math:`\gamma = a\,t(1-t)` (ABV 2023), smooth at both ends."""

    name = "quadratic"

    def gamma(self, t):
        return self.scale * t * (1 - t)

    def gamma_dot(self, t):
        return self.scale * (1 - 2 * t)


class SinSquaredGamma(_ScaledGamma):
    r""":math:`\gamma = a \sin^2(\pi t)` (ABV 2023), smooth at both ends."""

    name = "sin2"

    def gamma(self, t):
        return self.scale * torch.sin(math.pi * t) ** 2

    def gamma_dot(self, t):
        return self.scale * math.pi * torch.sin(2 * math.pi * t)


class CustomGamma(NoiseSchedule):
    r"""A noise coefficient from a user callable.

    Give ``gamma`` (then :math:`\gamma\dot\gamma` is taken by autograd of :math:`\gamma`), or ``gamma_squared``
    :math:`t \mapsto \gamma(t)^2` (then :math:`\gamma\dot\gamma = \tfrac12 d\gamma^2/dt`, finite even where
    :math:`\gamma` has a square-root singularity). :math:`\gamma(0) = \gamma(1) = 0` is checked.
    """

    name = "custom"

    def __init__(
        self,
        gamma: TimeFunction | None = None,
        *,
        gamma_squared: TimeFunction | None = None,
        atol: float = 1e-6,
    ):
        if (gamma is None) == (gamma_squared is None):
            raise ValueError("give exactly one of gamma or gamma_squared")
        self._gamma, self._gamma_squared = gamma, gamma_squared
        ends = self.gamma(torch.tensor([0.0, 1.0], dtype=torch.float64))
        if not float(ends.abs().max()) <= atol:
            raise ValueError(f"custom gamma needs gamma(0) = gamma(1) = 0; got {ends.tolist()}")

    def gamma(self, t):
        if self._gamma is not None:
            return self._gamma(t)
        return torch.sqrt(torch.clamp(self._gamma_squared(t), min=0))

    def gamma_dot(self, t):
        if self._gamma is not None:
            return time_derivative(self._gamma, t)
        return self.gamma_gamma_dot(t) / self.gamma(t)

    def gamma_gamma_dot(self, t):
        if self._gamma_squared is not None:
            return 0.5 * time_derivative(self._gamma_squared, t)
        return self.gamma(t) * self.gamma_dot(t)
