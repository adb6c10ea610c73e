r"""Forecasts from a window model: many sample paths per series, from which the quantiles and the median are read.

Every method samples whole windows ``context + horizon`` in the model's scaled units (:mod:`.model`) and keeps the
horizon, mapped back by the context's ``(m, s)``:

* ``self-guidance`` (TSDiff, Kollovieh et al. 2023): the reverse SDE of the unconditional model (Euler–Maruyama,
  :class:`~interp.feynman_kac.BaseSampler`), after each step :math:`x \leftarrow x - c\,\alpha_t^2\,\nabla_x
  E(\hat x_1(x))` with :math:`E` the squared error of the data prediction on the observed context (``mean``), or
  the pinball loss at one quantile level per sample path, the paths spread evenly over the nine levels
  (``quantile``). Guidance starts once the data coefficient :math:`\beta_t` of the interpolant reaches
  ``guide_from`` (0.05). With a noise-predicting model (tried first) the data prediction
  :math:`\hat x_1 = (x - \alpha_t\hat\varepsilon)/\beta_t` has a Jacobian of order :math:`1/\beta_t` there (the
  exact one cancels it; a learned one does not) and the guided step overflowed; the models now predict the data
  (:mod:`.model`), whose Jacobian is bounded, and the earliest steps' guidance is negligible anyway;
* ``fk-guidance``: :func:`interp.feynman_kac.posterior_sample` per series with the likelihood
  :math:`N(y_{ctx}; x_{ctx}, \sigma_y^2)` on the observed context: guided moves with Feynman–Kac weights and
  resampling, so the particles target the model's own conditional (exactly, as the Gaussian check shows, up to the
  time step and the particle count), then resampled to equal weights;
* ``refine-*`` (TSDiff's refinement): start every path at a base forecast (seasonal naive or AutoETS) and run
  unadjusted Langevin steps (:class:`interp.langevin.ULA`) on the model's score at a small noise level plus the
  observation term on the context;
* ``conditional`` (TSDiff-Cond): the reverse SDE of a model that sees the context as conditioning channels.

Measured on M1 yearly (docs/tour/time-series.md): the conditional model beats the seasonal naive and the statistical
baselines on WQL; the methods built on the unconditional model do not reach the seasonal naive — that model's
unguided samples already score WQL 0.29, and guidance, FK weighting or refinement on it move the forecast little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from interp.feynman_kac import BaseSampler, linear_gaussian_start, posterior_sample, weighted_resample
from interp.langevin import ULA, as_target
from interp.metrics import FORECAST_QUANTILES

from .model import WindowModel, context_condition, scale_context

GUIDANCE = ("mean", "quantile")


@dataclass
class Contexts:
    """The observed contexts of the series, scaled: ``values`` / ``mask`` ``(series, context)``, and the
    ``(m, s)`` of each."""

    values: np.ndarray
    mask: np.ndarray
    m: np.ndarray
    s: np.ndarray

    @classmethod
    def of(cls, histories, context: int, spread: float = 1.0) -> Contexts:
        rows = np.full((len(histories), context), np.nan)
        for i, history in enumerate(histories):
            tail = np.asarray(history, dtype=np.float64)[-context:]
            rows[i, context - tail.shape[0] :] = tail
        mask = np.isfinite(rows)
        raw = np.where(mask, rows, 0.0)
        m, s = scale_context(raw, mask.astype(np.float64), spread)
        return cls((raw - m[:, None]) / s[:, None] * mask, mask, m, s)

    def __len__(self) -> int:
        return self.values.shape[0]

    def scaled(self, forecast: np.ndarray) -> np.ndarray:
        """A forecast ``(series, ...)`` in the model's units."""
        shape = (-1,) + (1,) * (forecast.ndim - 1)
        return (forecast - self.m.reshape(shape)) / self.s.reshape(shape)

    def unscaled(self, x: np.ndarray) -> np.ndarray:
        shape = (-1,) + (1,) * (x.ndim - 1)
        return x * self.s.reshape(shape) + self.m.reshape(shape)


@dataclass
class SamplingConfig:
    """Sample paths per series, reverse-SDE steps, the guidance scale and its start (:math:`\beta_t`), FK guidance's
    observation noise (window units), the refinement's Langevin steps and noise level, and the rows per batch."""

    samples: int = 50
    steps: int = 50
    guidance_scale: float = 4.0
    guide_from: float = 0.05
    sigma_y: float = 0.5
    refine_steps: int = 40
    refine_noise: float = 0.1
    # rows per network call: measured on 2 CPU cores (window 54, width 32), a guided step costs 290-300 us a row
    # at 512-2048 rows and 780 at 8192 (half the time in the kernel, allocating and freeing the large buffers)
    chunk: int = 2048

    def __post_init__(self):
        for name in ("samples", "steps", "refine_steps", "chunk"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not (self.guidance_scale >= 0 and np.isfinite(self.guidance_scale)):
            raise ValueError(f"guidance_scale must be finite and >= 0; got {self.guidance_scale}")
        if not (self.sigma_y > 0 and np.isfinite(self.sigma_y)):
            raise ValueError(f"sigma_y must be finite and > 0; got {self.sigma_y}")
        if not (0 < self.refine_noise < 1 and 0 <= self.guide_from < 1):
            raise ValueError(
                f"need 0 < refine_noise < 1 and 0 <= guide_from < 1; got {self.refine_noise}, {self.guide_from}"
            )


def _grid(model: WindowModel, steps: int) -> Tensor:
    # The flow path's data coefficient is exactly 0 at t = 0, where the data prediction the samplers read off the
    # score is undefined: it starts at t = 1e-3 (the base law there differs by beta(1e-3) x1). VP's is not.
    t0, t1 = model.interpolant.time_range
    if float(model.interpolant.schedule.beta(torch.tensor([t0], dtype=torch.float64))) == 0:
        t0 = 1e-3
    return torch.linspace(t0, t1, steps + 1, dtype=torch.float64)


def _chunks(n_series: int, per: int, chunk: int):
    size = max(1, chunk // per)
    for a in range(0, n_series, size):
        yield a, min(n_series, a + size)


def _device(model: WindowModel) -> torch.device:
    return next(model.net.parameters()).device


def _pinball(residual: Tensor, q: Tensor) -> Tensor:
    return torch.maximum(q * residual, (q - 1) * residual)


def guided_reverse_sde(interpolant, score, energy, shape: tuple[int, int], grid: Tensor, *, scale: float,
                       guide_from: float, generator, dtype=torch.float32, device="cpu") -> Tensor:  # fmt: skip
    r"""TSDiff's self-guidance from ``shape`` base draws at ``grid[0]``: Euler–Maruyama steps of the reverse SDE of
    ``score``, each followed (before the last) by :math:`x \leftarrow x - c\,\alpha_t^2\nabla_x E(\hat x_1(x))`
    with ``energy`` :math:`E` of the data prediction, once the data coefficient :math:`\beta_t` reaches
    ``guide_from``. Shared by the forecasts and the closed-form check (:mod:`.gaussian`)."""
    base = BaseSampler(interpolant, score)
    x = base.start(*shape, grid[:1], generator, dtype, device)
    schedule = interpolant.schedule
    for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
        with torch.no_grad():
            drift, _ = base.evaluate(t0, x)
            x = base.move(x, drift, t0, t1, generator)
        t = t1.reshape(1)
        if scale > 0 and t1 < grid[-1] and float(schedule.beta(t)) >= guide_from:
            x = x.detach().requires_grad_(True)
            _, x1 = base.evaluate(t1, x)
            (gradient,) = torch.autograd.grad(energy(x1), x)
            x = (x - scale * float(schedule.alpha(t)) ** 2 * gradient).detach()
    return x.detach()


def self_guided(model: WindowModel, ctx: Contexts, config: SamplingConfig, guidance: str, generator) -> np.ndarray:
    """Sample paths ``(series, samples, horizon)`` in the model's units by self-guidance."""
    if guidance not in GUIDANCE:
        raise ValueError(f"unknown guidance {guidance!r}; choose from {', '.join(GUIDANCE)}")
    n, c, device = config.samples, model.context, _device(model)
    grid = _grid(model, config.steps)
    levels = torch.tensor(FORECAST_QUANTILES, device=device)[torch.arange(n, device=device) % len(FORECAST_QUANTILES)]
    field = model.field()
    out = np.empty((len(ctx), n, model.horizon))
    for a, b in _chunks(len(ctx), n, config.chunk):
        y = torch.as_tensor(ctx.values[a:b], dtype=torch.float32, device=device).repeat_interleave(n, 0)
        mask = torch.as_tensor(ctx.mask[a:b], dtype=torch.float32, device=device).repeat_interleave(n, 0)
        q = levels.repeat(b - a)[:, None]

        def energy(x1: Tensor, y=y, mask=mask, q=q) -> Tensor:
            residual = (y - x1[:, :c]) * mask
            return (residual**2).sum() if guidance == "mean" else _pinball(residual, q).sum()

        x = guided_reverse_sde(model.interpolant, field.score, energy, (y.shape[0], c + model.horizon), grid,
                               scale=config.guidance_scale, guide_from=config.guide_from, generator=generator,
                               device=device)  # fmt: skip
        out[a:b] = x[:, c:].reshape(b - a, n, model.horizon).double().cpu().numpy()
    return out


def fk_guided(model: WindowModel, ctx: Contexts, config: SamplingConfig, generator, progress=None) -> np.ndarray:
    """Sample paths ``(series, samples, horizon)`` of the Feynman–Kac-corrected guided sampler, one weighted run
    per series resampled to equal weights."""
    n, c, device = config.samples, model.context, _device(model)
    grid = _grid(model, config.steps)
    field = model.field()
    out = np.empty((len(ctx), n, model.horizon))
    eye = torch.eye(c + model.horizon, dtype=torch.float64)
    for i in range(len(ctx)):
        observed = np.flatnonzero(ctx.mask[i])
        A = eye[observed]
        y64 = torch.as_tensor(ctx.values[i, observed], dtype=torch.float64)
        start, log_z = linear_gaussian_start(model.interpolant, float(grid[0]), A, y64, config.sigma_y, n, generator)
        y = y64.to(device, torch.float32)
        index = torch.as_tensor(observed, device=device)

        def log_likelihood(x: Tensor, y=y, index=index) -> Tensor:
            return -0.5 * ((x[:, index] - y) ** 2).sum(1) / config.sigma_y**2

        run = posterior_sample(
            model.interpolant, field.score, log_likelihood, grid, start=start.to(device, torch.float32),
            start_log_normaliser=log_z, generator=generator, progress=False,
        )  # fmt: skip
        out[i] = weighted_resample(run, n, generator=generator)[:, c:].double().cpu().numpy()
        if progress is not None:
            progress(1)
    return out


def refined(model: WindowModel, ctx: Contexts, base: np.ndarray, config: SamplingConfig, generator) -> np.ndarray:
    """Sample paths ``(series, samples, horizon)``: Langevin refinement of the base forecast ``base`` ``(series,
    horizon)`` (original units) on the model's score at noise level ``refine_noise`` plus the context term."""
    n, c, device = config.samples, model.context, _device(model)
    schedule = model.interpolant.schedule
    times = torch.linspace(*model.interpolant.time_range, 2001, dtype=torch.float64)
    t_ref = times[int(torch.argmin((schedule.alpha(times) - config.refine_noise).abs()))]
    beta = float(schedule.beta(t_ref.reshape(1)))
    field = model.field()
    step = 0.1 * config.refine_noise**2
    kernel = ULA(step)
    out = np.empty((len(ctx), n, model.horizon))
    start = np.concatenate([ctx.values, ctx.scaled(base)], axis=1)
    for a, b in _chunks(len(ctx), n, config.chunk):
        y = torch.as_tensor(ctx.values[a:b], dtype=torch.float32, device=device).repeat_interleave(n, 0)
        mask = torch.as_tensor(ctx.mask[a:b], dtype=torch.float32, device=device).repeat_interleave(n, 0)

        def score(x: Tensor, y=y, mask=mask) -> Tensor:
            # the model's score of the data at the reference level, in data units (x_t = beta x + alpha z)
            with torch.no_grad():
                prior = beta * field.score(t_ref, beta * x)
            observed = torch.zeros_like(x)
            observed[:, :c] = -(x[:, :c] - y) * mask / config.sigma_y**2
            return prior + observed

        target = as_target(score=score)
        x = torch.as_tensor(start[a:b], dtype=torch.float32, device=device).repeat_interleave(n, 0)
        state = kernel.init(target, x)
        for _ in range(config.refine_steps):
            state = kernel.step(target, state, generator)
        out[a:b] = state.x[:, c:].reshape(b - a, n, model.horizon).double().cpu().numpy()
    return out


def conditional(model: WindowModel, ctx: Contexts, config: SamplingConfig, generator) -> np.ndarray:
    """Sample paths ``(series, samples, horizon)`` of the conditional model's reverse SDE. (Replacing the context
    positions of the state after each step by a fresh draw of the interpolant there, as in training, was tried:
    Tourism quarterly WQL 0.260 against 0.255, M1 yearly 0.146 against 0.144 — no gain, so it is not done.)"""
    if not model.conditional:
        raise ValueError("conditional sampling needs a model trained with conditional=True")
    n, c, device = config.samples, model.context, _device(model)
    grid = _grid(model, config.steps)
    out = np.empty((len(ctx), n, model.horizon))
    length = c + model.horizon
    for a, b in _chunks(len(ctx), n, config.chunk):
        values = torch.zeros(b - a, length, device=device)
        mask = torch.zeros(b - a, length, device=device)
        values[:, :c] = torch.as_tensor(ctx.values[a:b], dtype=torch.float32, device=device)
        mask[:, :c] = torch.as_tensor(ctx.mask[a:b], dtype=torch.float32, device=device)
        condition = context_condition(values, mask, c).repeat_interleave(n, 0)
        base = BaseSampler(model.interpolant, model.field(condition).score)
        x = base.start(condition.shape[0], length, grid[:1], generator, torch.float32, device)
        with torch.no_grad():
            for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
                drift, _ = base.evaluate(t0, x)
                x = base.move(x, drift, t0, t1, generator)
        out[a:b] = x[:, c:].reshape(b - a, n, model.horizon).double().cpu().numpy()
    return out


def summarise(paths: np.ndarray, quantiles=FORECAST_QUANTILES) -> tuple[np.ndarray, np.ndarray]:
    """``(median (series, horizon), quantiles (series, levels, horizon))`` of sample paths ``(series, samples,
    horizon)``."""
    levels = np.quantile(paths, quantiles, axis=1)
    return np.quantile(paths, 0.5, axis=1), np.moveaxis(levels, 0, 1)
