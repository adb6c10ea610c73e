r"""A measurement :math:`y = Hx + \sigma_y n` and a prior given by its data prediction :math:`\hat x_1(x_t)`.

Every method of :mod:`interp.inverse` samples :math:`x_1` given :math:`y` from a prior model on a Gaussian-base
interpolant :math:`x_t = \alpha_t x_0 + \beta_t x_1`, :math:`x_0\sim N(0, I)` (interp's convention: noise at
t = 0, data at t = 1; docs/algorithms.md §7 writes :math:`\sigma_t, \alpha_t` for interp's
:math:`\alpha_t, \beta_t`). The prior enters only through :math:`\hat x_1 = E[x_1\mid x_t]`, from which
:meth:`~interp.interpolants.Interpolant.posterior` gives the noise prediction and the score, so a velocity, noise,
score or data-prediction network plugs in through :class:`~interp.fields.LearnedField`, and the exact fields of
:class:`~interp.analytic.ExactMarginals` through :meth:`Prior.from_field` too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._random import randn_like
from ..interpolants import Interpolant, Posterior
from .operators import LinearOperator, Operator

__all__ = ["Measurement", "Prior"]


class Prior:
    """A prior model: its Gaussian-base ``interpolant`` and ``data_prediction(t, x)`` :math:`= \\hat x_1`."""

    def __init__(self, interpolant: Interpolant, data_prediction: Callable[[Tensor, Tensor], Tensor]):
        if not isinstance(interpolant, Interpolant):
            raise TypeError(f"interpolant must be an Interpolant; got {type(interpolant).__name__}")
        if not interpolant.gaussian_base:
            raise ValueError(
                "the inverse-problem methods need a Gaussian-base interpolant (x_t = alpha x0 + beta x1, "
                f"x0 ~ N(0, I)); {interpolant.name} is not one"
            )
        if not callable(data_prediction):
            raise TypeError("data_prediction must be callable (t, x) -> E[x1 | x_t = x]")
        self.interpolant, self.data_prediction = interpolant, data_prediction

    @classmethod
    def from_field(cls, field) -> Prior:
        """From a :class:`~interp.fields.LearnedField` (its ``x1``) or :class:`~interp.analytic.ExactMarginals`
        (its ``x1_mean``; the base must be standard normal)."""
        if hasattr(field, "x1_mean"):
            rho0 = field.rho0
            eye = torch.eye(rho0.dim, dtype=rho0.covariances.dtype)
            standard = rho0.n_components == 1 and not rho0.means.any() and torch.allclose(rho0.covariances[0], eye)
            if not standard:
                raise ValueError("the exact prior's rho0 must be N(0, I): the methods assume a standard normal base")
            return cls(field.interpolant, field.x1_mean)
        if hasattr(field, "x1") and hasattr(field, "interpolant"):
            return cls(field.interpolant, field.x1)
        raise TypeError(f"cannot read a data prediction from {type(field).__name__}; give Prior(interpolant, fn)")

    def coefficients(self, t: Tensor) -> tuple[float, float]:
        """:math:`(\\alpha_t, \\beta_t)` at a scalar time."""
        tt = torch.as_tensor(t, dtype=torch.float64).reshape(1)
        s = self.interpolant.schedule
        return float(s.alpha(tt)), float(s.beta(tt))

    def x1(self, t: Tensor, x: Tensor) -> Tensor:
        out = self.data_prediction(t, x)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the data prediction must have the state's shape {tuple(x.shape)}; got {got}")
        return out

    def posterior(self, t: Tensor, x: Tensor, x1: Tensor | None = None) -> Posterior:
        """Every parameterisation at :math:`x_t = x` from the data prediction (computed unless given)."""
        return self.interpolant.posterior(t, x, x1=self.x1(t, x) if x1 is None else x1)

    def score(self, t: Tensor, x: Tensor) -> Tensor:
        return self.posterior(t, x).score


class Measurement:
    """``y`` observed through ``operator`` with Gaussian noise of standard deviation ``noise_std`` (0: noiseless).

    ``y`` is ``out_shape`` (one measurement, shared by every sample) or ``(n, *out_shape)`` (one per row: each
    sample reconstructs its own signal)."""

    def __init__(self, operator: Operator, y: Tensor, noise_std: float):
        if not isinstance(operator, Operator):
            raise TypeError(f"operator must be an interp.inverse operator; got {type(operator).__name__}")
        if not (isinstance(noise_std, (int, float)) and not isinstance(noise_std, bool) and math.isfinite(noise_std)
                and noise_std >= 0):  # fmt: skip
            raise ValueError(f"noise_std must be a finite number >= 0; got {noise_std!r}")
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a tensor; got {type(y).__name__}")
        if tuple(y.shape) == operator.out_shape:
            y = y[None]
        operator.check_measurement(y)
        if not torch.isfinite(y).all():
            raise ValueError("the measurement y holds NaN or inf values")
        self.operator, self.y, self.noise_std = operator, y, float(noise_std)

    @classmethod
    def simulate(cls, operator: Operator, x: Tensor, noise_std: float, generator: torch.Generator | None = None):
        """Measure the signals ``x`` ``(n, *shape)``: :math:`y = Hx + \\sigma n`, one row per signal."""
        y = operator(x)
        if noise_std:
            y = y + noise_std * randn_like(y, generator)
        return cls(operator, y.detach(), noise_std)

    @property
    def linear(self) -> bool:
        return self.operator.linear

    @property
    def batch(self) -> int:
        return self.y.shape[0]

    def require_linear(self, method: str) -> LinearOperator:
        if not self.operator.linear:
            raise ValueError(f"{method} needs a linear operator (adjoint and HH^T); {self.operator!r} is not")
        return self.operator

    def require_noise(self, method: str) -> float:
        if self.noise_std <= 0:
            raise ValueError(f"{method} needs noise_std > 0 (its likelihood is singular at 0); give a small "
                             "positive value to stand in for a noiseless measurement")  # fmt: skip
        return self.noise_std

    def residual(self, x: Tensor) -> Tensor:
        """:math:`y - Hx`, ``(n, *out_shape)``."""
        return self.y.to(x) - self.operator(x)

    def log_likelihood(self, x: Tensor) -> Tensor:
        """:math:`\\log N(y; Hx, \\sigma^2 I)` per row, ``(n,)``."""
        sigma = self.require_noise("the likelihood")
        r = self.residual(x).reshape(x.shape[0], -1)
        m = r.shape[1]
        return -0.5 * (r**2).sum(1) / sigma**2 - 0.5 * m * math.log(2 * math.pi * sigma**2)

    def rows(self, n: int) -> Tensor:
        """The measurement of each of ``n`` samples, ``(n, *out_shape)``."""
        if self.batch not in (1, n):
            raise ValueError(f"the measurement has {self.batch} rows; cannot pair it with {n} samples")
        return self.y.expand(n, *self.y.shape[1:])
