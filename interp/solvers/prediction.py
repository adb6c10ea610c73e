r"""The shared base of the exponential integrators for Gaussian-base interpolants (DPM-Solver, DPM-Solver++, DEIS,
iPNDM, UniPC, the momentum samplers, SDE-DPM-Solver++).

A Gaussian-base interpolant :math:`x_t = \alpha(t) x_0 + \beta(t) x_1`, :math:`x_0 \sim N(0, I)`, is a diffusion
with signal coefficient :math:`a_t = \beta(t)` and noise coefficient :math:`n_t = \alpha(t)` (diffusion
convention: :math:`x = a\hat x + n\hat\epsilon`), with log signal-to-noise ratio :math:`\lambda = \log(a/n)`.

:class:`DiffusionView` is the one place where flow time and the diffusion convention meet (docs/design.md,
"Time"): ``t`` runs 0 (noise) -> 1 (data) throughout, :math:`\lambda(t)` increases with ``t``. The field handed to
:func:`~interp.integrate` may predict the velocity, the score, the noise or the data; :class:`PredictionSolver`
converts it to what a solver needs (its ``parameterisation``) through
:meth:`interp.interpolants.Interpolant.posterior`. :class:`NoiseSpaceSolver` is the base of the solvers that step
:math:`\bar x = x/a` in :math:`\rho = n/a` with the noise prediction (DEIS, iPNDM, heavy ball, GHVB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import check_same_shape
from ..grids import invert_monotone
from ..interpolants import Interpolant
from ..schedules import LinearSchedule, TrigonometricSchedule, VPSchedule
from .base import ODESolver

PREDICTIONS = {"velocity": "velocity", "score": "score", "noise": "x0", "data": "x1", "x0": "x0", "x1": "x1"}
"""What a field handed to these solvers may predict, and the :meth:`Interpolant.posterior` keyword it maps to."""


class DiffusionView:
    r"""Flow-time schedule of a Gaussian-base interpolant read in the diffusion convention.

    ``signal(t)`` = :math:`\beta(t)` (coefficient of the data), ``noise(t)`` = :math:`\alpha(t)` (of the
    Gaussian), ``log_snr(t)`` = :math:`\lambda = \log\beta - \log\alpha` and its inverse :meth:`time_of`.
    """

    def __init__(self, interpolant: Interpolant):
        if not isinstance(interpolant, Interpolant):
            raise TypeError(f"interpolant must be an interp Interpolant, got {type(interpolant).__name__}")
        if not interpolant.gaussian_base:
            raise ValueError(
                f"exponential integrators need a Gaussian-base interpolant (x = alpha x0 + beta x1, x0 ~ N(0, I)); "
                f"{interpolant.name!r} is two-sided: use an explicit Runge-Kutta solver on its velocity"
            )
        self.interpolant, self.schedule = interpolant, interpolant.schedule
        self._memo: dict = {}

    def _memoised(self, name: str, t: Tensor, compute, *key):
        """``compute()`` once per scalar time: a sampler asks for the same few schedule values at each grid time
        several times a step, and each costs a dozen tiny tensor operations (the driver overhead that matters for
        small fields). Times that carry a gradient (searched grids) or are not scalars are never memoised."""
        if not isinstance(t, Tensor) or t.ndim != 0 or t.requires_grad:
            return compute()
        full_key = (name, float(t), t.dtype, t.device) + key
        value = self._memo.get(full_key)
        if value is None:
            if len(self._memo) >= 4096:
                self._memo.clear()
            value = self._memo[full_key] = compute()
        return value

    def signal(self, t: Tensor) -> Tensor:
        return self._memoised("signal", t, lambda: self.schedule.beta(t))

    def noise(self, t: Tensor) -> Tensor:
        return self._memoised("noise", t, lambda: self.schedule.alpha(t))

    def log_snr(self, t: Tensor) -> Tensor:
        return self._memoised(
            "log_snr", t, lambda: torch.log(self.schedule.beta(t)) - torch.log(self.schedule.alpha(t))
        )

    def posterior(self, t: Tensor, x: Tensor, **given: Tensor):
        """:meth:`Interpolant.posterior` at a time shared by the batch, with the schedule coefficients memoised."""
        if not isinstance(t, Tensor) or t.ndim != 0:
            return self.interpolant.posterior(t, x, **given)
        for name, value in given.items():
            check_same_shape(x, value, "x", name)
        c = self._memoised(
            "coefficients", t, lambda: self.interpolant.coefficients(t.reshape(1), x[:1]), x.ndim, x.dtype, x.device
        )
        return self.interpolant._posterior_gaussian_base(t.reshape(1), x, c, given)

    def time_of(self, lam: Tensor) -> Tensor:
        r"""The time with :math:`\lambda(t)` = ``lam``: closed forms for the linear, trigonometric and VP
        schedules (differentiable, so searched grids can move intermediate points), bisection otherwise."""
        s = self.schedule
        if isinstance(s, LinearSchedule):  # lambda = log(t / (1 - t))
            return torch.sigmoid(lam)
        if isinstance(s, TrigonometricSchedule):  # lambda = log tan(pi t / 2)
            return (2 / math.pi) * torch.atan(torch.exp(lam))
        if isinstance(s, VPSchedule):
            # beta^2 = sigmoid(2 lambda); -log beta = b_min tau / 2 + (b_max - b_min) tau^2 / 4, t = 1 - tau
            c = 0.5 * torch.nn.functional.softplus(-2 * lam)
            a, b = 0.25 * (s.beta_max - s.beta_min), 0.5 * s.beta_min
            tau = 2 * c / (b + torch.sqrt(b * b + 4 * a * c))  # the positive root, stable for small c
            return 1 - tau
        lo, hi = s.time_range
        return invert_monotone(self.log_snr, lam.detach().reshape(-1), lo + 1e-12, hi).reshape(lam.shape).to(lam)

    def at(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(signal, noise, log_snr)`` at a scalar time."""
        return self.signal(t), self.noise(t), self.log_snr(t)


def dynamic_threshold(x: Tensor, ratio: float = 0.995, max_value: float = 1.0) -> Tensor:
    r"""Dynamic thresholding of a data prediction (Saharia et al. 2022, "Imagen", Sec. 2.3): per sample, ``s`` =
    the ``ratio`` quantile of :math:`|\hat x|`, clamped to ``[1, max_value]``; return ``clamp(x, -s, s) / s``."""
    flat = x.reshape(x.shape[0], -1)
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1.0, max=max_value)
    s = s.reshape((-1,) + (1,) * (x.ndim - 1))
    return torch.clamp(x, -s, s) / s


@dataclass
class StepHistory:
    """What a multistep solver carries between steps: the grid, each step's order, the step index and past
    model outputs."""

    grid: Tensor
    orders: list = field(default_factory=list)
    index: int = 0
    times: list = field(default_factory=list)
    lams: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return self.grid.shape[0] - 1

    def push(self, t: Tensor, lam: Tensor, output: Tensor, keep: int) -> None:
        self.times.append(t)
        self.lams.append(lam)
        self.outputs.append(output)
        del self.times[:-keep], self.lams[:-keep], self.outputs[:-keep]


class PredictionSolver(ODESolver):
    r"""Base of the solvers that step with a noise or data prediction of a Gaussian-base interpolant.

    Args:
        interpolant: a Gaussian-base :class:`~interp.interpolants.Interpolant` (``flow``, ``gvp``, ``vp`` or custom).
        prediction: what the field passed to :func:`~interp.integrate` returns: ``"velocity"``
            (default), ``"score"``, ``"noise"`` (:math:`E[x_0\mid x]`) or ``"data"`` (:math:`E[x_1\mid x]`).
        thresholding: ``None`` or ``(ratio, max_value)`` for :func:`dynamic_threshold` of data predictions.
        warmup: how a multistep method starts before its history is full: ``"lower"`` (lower orders, no extra
            evaluation, as the reference implementations; the first-order first step caps the global order at 2)
            or ``"singlestep"`` (singlestep DPM-Solver steps, a few extra evaluations, the full declared order).

    Subclasses declare ``parameterisation`` (``"noise"`` or ``"data"``) and ``order``. The grid must keep
    :math:`\lambda` finite (``t > 0`` where :math:`\beta(0) = 0`, as for ``flow``); data-prediction solvers may
    end at a time where :math:`\alpha = 0` (denoise to zero, one first-order step).
    """

    parameterisation: str = "data"
    needs_grid = True

    history_order: int = 1
    lower_order_final: int = 0

    def __init__(self, interpolant: Interpolant, prediction: str = "velocity", thresholding=None, warmup="lower"):
        self.view = DiffusionView(interpolant)
        if warmup not in ("lower", "singlestep"):
            raise ValueError(f"warmup must be 'lower' or 'singlestep'; got {warmup!r}")
        self.warmup = warmup
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {sorted(PREDICTIONS)}; got {prediction!r}")
        self.prediction = prediction
        if thresholding is not None:
            ratio, max_value = thresholding
            if not (0 < ratio <= 1 and max_value >= 1):
                raise ValueError(f"thresholding needs 0 < ratio <= 1 and max_value >= 1; got {thresholding}")
            if self.parameterisation != "data":
                raise ValueError(f"{self.name} steps with the noise prediction; thresholding acts on data predictions")
        self.thresholding = thresholding

    def predict_pair(self, field, t: Tensor, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """One field evaluation as ``(noise prediction, data prediction)``; thresholding acts on the data. Only
        what this solver uses is converted (the other entry may be ``None``)."""
        value = field(t, x)
        key = PREDICTIONS[self.prediction]
        if key == "x0":
            noise, data = value, None
        elif key == "x1":
            noise, data = None, value
        else:
            posterior = self.view.posterior(t, x, **{key: value})
            noise, data = posterior.x0, posterior.x1
        if self.thresholding is not None:
            data = dynamic_threshold(self._data(t, x, noise) if data is None else data, *self.thresholding)
            noise = None
        if noise is None and (self.parameterisation == "noise" or self.warmup == "singlestep"):
            noise = self._noise(t, x, data)
        if data is None and self.parameterisation == "data":
            data = self._data(t, x, noise)
        return noise, data

    def _noise(self, t, x, data):
        return self.view.posterior(t, x, x1=data).x0

    def _data(self, t, x, noise):
        return self.view.posterior(t, x, x0=noise).x1

    def predict(self, field, t: Tensor, x: Tensor) -> Tensor:
        """One field evaluation, converted to this solver's parameterisation."""
        noise, data = self.predict_pair(field, t, x)
        return data if self.parameterisation == "data" else noise

    def warm_step(self, field, t0, t1, x, state: StepHistory, noise: Tensor) -> Tensor | None:
        """With ``warmup="singlestep"``, the first ``history_order - 1`` steps of a multistep method are singlestep
        DPM-Solver steps of order ``min(history_order, 3)`` (one order short of the method is enough to keep its
        global order), from the noise prediction ``noise`` at ``t0``; the caller has already stored its output at
        ``t0``. Returns ``None`` (and does nothing) when this is not a warm-up step."""
        if self.warmup != "singlestep" or state.index >= self.history_order - 1:
            return None
        state.index += 1

        def predict_noise(t, y):
            return self.predict_pair(field, t, y)[0]

        return singlestep_update(self.view, predict_noise, t0, t1, x, noise, min(self.history_order, 3))

    def begin_step(self, field, t0, t1, x, state: StepHistory, output: Tensor, noise, keep: int):
        """Store ``output`` at ``t0``, then either take a warm-up step (returns ``(None, x_next)``) or claim this
        step's order (returns ``(order, None)``)."""
        state.push(t0, self.view.log_snr(t0), output, keep=keep)
        warm = self.warm_step(field, t0, t1, x, state, noise)
        if warm is not None:
            return None, warm
        order = state.orders[state.index]
        state.index += 1
        return order, None

    def init(self, field, t0, x0, grid: Tensor | None = None) -> StepHistory:
        if grid is None:
            raise ValueError(f"{self.name} needs the whole grid (run it through interp.integrate)")
        grid = grid.to(x0)
        if not bool((grid[1:] > grid[:-1]).all()):
            raise ValueError(f"{self.name} samples towards the data: the grid must increase (noise t=0 -> data t=1)")
        noise = self.view.noise(grid)
        lam = self.view.log_snr(grid[:-1])
        if not torch.isfinite(lam).all():
            raise ValueError(
                f"log-SNR is infinite at t = {float(grid[0])}: start the grid where beta(t) > 0 and alpha(t) > 0 "
                "(e.g. t_start = 1e-3 for the flow and gvp schedules)"
            )
        if bool(noise[-1] == 0) and self.parameterisation != "data":
            raise ValueError(f"{self.name} cannot step to alpha(t) = 0 (infinite log-SNR); end the grid before t = 1")
        return StepHistory(grid=grid, orders=self.step_orders(grid.shape[0] - 1))

    def step_orders(self, n_steps: int) -> list[int]:
        """The order each step of an ``n_steps`` grid uses (warm start and final rules included)."""
        return multistep_orders(self.history_order, n_steps, self.lower_order_final)

    def __repr__(self) -> str:
        name = self.view.interpolant.name
        return f"{type(self).__name__}({name!r}, order={self.order}, prediction={self.prediction!r})"


def multistep_orders(order: int, n_steps: int, lower_order_final: int) -> list[int]:
    """Warm start (step ``i`` uses at most ``i + 1`` past outputs) and, on grids of fewer than
    ``lower_order_final`` steps, order 1 at the last step and at most 2 at the one before (as diffusers does)."""
    orders = []
    for i in range(n_steps):
        k = min(order, i + 1)
        if n_steps < lower_order_final:
            k = min(k, n_steps - i)
        orders.append(k)
    return orders


class NoiseSpaceSolver(PredictionSolver):
    r"""Shared by the solvers that step :math:`\bar x = x/a` in :math:`\rho = n/a` with the noise prediction."""

    parameterisation = "noise"

    def rho(self, t: Tensor) -> Tensor:
        return self.view.noise(t) / self.view.signal(t)

    def rho_dot(self, t: Tensor) -> Tensor:
        r""":math:`d\rho/dt = (\dot\alpha\beta - \alpha\dot\beta)/\beta^2`, with
        :math:`\dot\alpha = \alpha\dot\alpha/\alpha` (finite where
        :math:`\dot\alpha` alone is not, as for VP near ``t = 1``)."""
        s = self.view.schedule
        alpha, beta = s.alpha(t), s.beta(t)
        return (s.alpha_alpha_dot(t) * beta / alpha - alpha * s.beta_dot(t)) / beta**2

    def advance(self, x: Tensor, t0: Tensor, t1: Tensor, increment: Tensor) -> Tensor:
        """``x`` at ``t1`` from :math:`\\bar x_1 = \\bar x_0 + ` ``increment``."""
        return self.view.signal(t1) * (x / self.view.signal(t0) + increment)


def _first_order(x, a_s, a_u, n_u, h, eps):
    return (a_u / a_s) * x - n_u * torch.expm1(h) * eps


def singlestep_update(view: DiffusionView, predict_noise, t0, t1, x, eps0, order: int) -> Tensor:
    """One singlestep DPM-Solver-``order`` step from ``t0`` to ``t1`` given the noise prediction ``eps0`` at ``t0``
    (``order - 1`` further evaluations of ``predict_noise``)."""
    a0, l0 = view.signal(t0), view.log_snr(t0)
    a1, n1, l1 = view.at(t1)
    h = l1 - l0
    if order == 1:
        return _first_order(x, a0, a1, n1, h, eps0)

    def point(r):
        t = view.time_of(l0 + r * h)
        return t, view.signal(t), view.noise(t)

    if order == 2:
        r1 = 0.5
        s1, a_s1, n_s1 = point(r1)
        u1 = _first_order(x, a0, a_s1, n_s1, r1 * h, eps0)
        d1 = predict_noise(s1, u1) - eps0
        return _first_order(x, a0, a1, n1, h, eps0) - (n1 / (2 * r1)) * torch.expm1(h) * d1
    r1, r2 = 1 / 3, 2 / 3
    s1, a_s1, n_s1 = point(r1)
    s2, a_s2, n_s2 = point(r2)
    u1 = _first_order(x, a0, a_s1, n_s1, r1 * h, eps0)
    d1 = predict_noise(s1, u1) - eps0
    phi_2 = torch.expm1(r2 * h) / (r2 * h) - 1
    u2 = _first_order(x, a0, a_s2, n_s2, r2 * h, eps0) - (n_s2 * r2 / r1) * phi_2 * d1
    d2 = predict_noise(s2, u2) - eps0
    return _first_order(x, a0, a1, n1, h, eps0) - (n1 / r2) * (torch.expm1(h) / h - 1) * d2
