r"""The forecasting model: a denoiser of windows ``context + horizon`` long, trained across every series of a task.

Windows. Each training window is cut from a series' *history* (the held-out values are never seen): its last
position is drawn among the history's positions that leave a whole window, or, for a series shorter than a window,
the series is right-aligned and the missing front positions are masked. A window is put on a common scale by its
context alone (what is known at forecast time): :math:`x = (y - m)/(\kappa\,\ell)` with :math:`m` the mean of the
observed context values, :math:`\ell` their mean absolute value (TSDiff's scale, Kollovieh et al. 2023; 1 for an
all-zero context) and :math:`\kappa` one number per task, the standard deviation of the centred, level-scaled
training values, so that the windows have unit spread like the Gaussian base. Centring takes the level out of the
windows; a scale by the context's own deviation (tried first) makes the windows of trending series heavy-tailed
(measured on M1 yearly: 26% of the windows reach :math:`|x| > 6`, the largest 73, against a largest 28 at
standard deviation 0.97 with the level), and the diffusion model then samples paths that run away.

Training. The loss is interp's regression (:class:`~interp.losses.InterpolantLoss`'s targets) averaged over the
*observed* positions only, so padding teaches nothing. A training row is ``(2, window)``: values and their mask (the
trainer's rows are single tensors); the base draws have the same shape and their second channel is unused.
``conditional=True`` is the paper's TSDiff-Cond: the network also sees the observed context (values and mask, as
conditioning channels). It is scored on the whole window, the context included: the sampler evolves the context
positions too, and a model scored on the horizon alone leaves them to an untrained field whose states drift out
of the training range and spoil the horizon through the convolutions (measured on Tourism quarterly: WQL 0.33 at
1500 training steps, 0.53 at 4000, against 0.12 for the seasonal naive).

Interpolants: ``vp`` (as the paper) or ``flow`` (the linear Gaussian-base path), both predicting the data. The
conditional model predicts it through a skip connection, :math:`\hat x_1 = \beta_t x + \alpha_t F(t, x)`
(:class:`SkipDataPrediction`; ``ModelConfig.skip``, default: conditional models only). A plain data prediction
over-smooths near the data end, where the score :math:`(\beta_t\hat x_1 - x)/\alpha_t^2` amplifies every error
of :math:`\hat x_1`: on the closed-form AR(2) + seasonal windows (``validate/time_series.py``) the trained
conditional model's forecast variance came out 78-88 % too small (mean error 0.54-0.72 exact standard deviations),
against 14-26 % with the skip (mean error 0.16-0.33); on Tourism quarterly its WQL went from 0.257 to 0.099 (M1
yearly 0.145 to 0.148). The unconditional model keeps the plain prediction: with the skip, self-guidance at scale 4
diverged on Tourism quarterly (WQL 1.67 against 0.32), though it helped on M1 yearly (0.171 against 0.255).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from interp.fields import LearnedField
from interp.interpolants import preset
from interp.losses import InterpolantLoss, Parameterisation
from interp.nets import TemporalConvNet
from interp.train import TrainConfig, Trainer

# Both predict the data (the window): a bounded prediction pulls a sampled path that leaves the data's range back
# (score (beta x1_hat - x)/alpha^2). A noise prediction (TSDiff's) extrapolates: measured on M1 yearly, 800 steps, a
# third of the unguided VP paths ran away to |x| ~ 300, the network predicting noise -0.2 x for such states.
INTERPOLANTS = {"vp": Parameterisation.X1, "flow": Parameterisation.X1}


def scale_context(values: np.ndarray, mask: np.ndarray, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(m, s)`` of :math:`x = (y - m)/s` from the observed context values (``values``, ``mask``
    ``(rows, context)``): ``m`` their mean, ``s`` their mean absolute value times ``spread`` (1 in place of the
    mean absolute value where it is 0; a row with no observed value gets ``(0, spread)``)."""
    count = mask.sum(1)
    safe = np.maximum(count, 1)
    m = np.where(count > 0, (values * mask).sum(1) / safe, 0.0)
    level = (np.abs(values) * mask).sum(1) / safe
    return m, np.where(level > 0, level, 1.0) * spread


def training_windows(histories, context: int, horizon: int) -> tuple[Tensor, float]:
    r"""Every window of ``context + horizon`` values in the histories, scaled by its context, and the task's
    ``spread`` :math:`\kappa`: ``(windows, 2, window)`` float32, channel 0 the values (0 where missing), channel 1
    the mask. A history shorter than a window gives one right-aligned window; missing values (NaN) in a history
    are masked."""
    length = context + horizon
    values, masks = [], []
    for history in histories:
        y = np.asarray(history, dtype=np.float64)
        if y.shape[0] < length:
            padded = np.full(length, np.nan)
            padded[length - y.shape[0] :] = y
            rows = padded[None]
        else:
            rows = np.lib.stride_tricks.sliding_window_view(y, length)
        mask = np.isfinite(rows)
        keep = mask[:, context:].any(1) & mask[:, :context].any(1)
        values.append(np.where(mask, rows, 0.0)[keep])
        masks.append(mask[keep])
    values, masks = np.concatenate(values), np.concatenate(masks).astype(np.float64)
    if values.shape[0] == 0:
        raise ValueError("no training window has observed values in both its context and its horizon")
    m, s = scale_context(values[:, :context], masks[:, :context])
    scaled = (values - m[:, None]) / s[:, None] * masks
    spread = float(np.sqrt((scaled**2).sum() / masks.sum()))
    spread = spread if spread > 0 else 1.0
    windows = np.stack([scaled / spread, masks], axis=1)
    return torch.as_tensor(windows, dtype=torch.float32), spread


class WindowLoss:
    """The interpolant regression averaged over each window's observed positions; rows ``(batch, 2, window)`` as
    :func:`training_windows` makes them (a ``conditional`` model also gets the observed context as its condition)."""

    antithetic = False
    needs_noise = False

    def __init__(self, interpolant: str, context: int, *, conditional: bool = False):
        if interpolant not in INTERPOLANTS:
            raise ValueError(f"unknown interpolant {interpolant!r}; choose from {', '.join(INTERPOLANTS)}")
        self.interpolant = preset(interpolant)
        self.inner = InterpolantLoss(self.interpolant, INTERPOLANTS[interpolant])
        self.context, self.conditional = context, conditional

    def sample_times(self, batch, generator, *, dtype, device) -> Tensor:
        return self.inner.sample_times(batch, generator, dtype=dtype, device=device)

    def __call__(self, model, x0: Tensor, x1: Tensor, generator=None, *, t: Tensor, z=None) -> Tensor:
        values, mask = x1[:, 0], x1[:, 1]
        sample = self.interpolant.sample(x0[:, 0], values, t, generator=generator)
        if self.conditional:
            condition = context_condition(values, mask, self.context)
            prediction = model(t, sample.xt, condition)
        else:
            prediction = model(t, sample.xt)
        squared = (prediction - self.inner.target(sample)).pow(2) * mask
        return (squared.sum(1) / mask.sum(1).clamp(min=1)).mean()


class SkipDataPrediction(torch.nn.Module):
    r"""The data prediction :math:`\hat x_1 = \beta_t x + \alpha_t F(t, x)` of a network :math:`F` (a skip
    connection weighted by the interpolant's coefficients, as the preconditioning of Karras et al. 2022): near the
    data end (:math:`\alpha_t \to 0`) the state passes through and the network only corrects it, at the noise end it
    predicts the data outright; its target stays bounded at both ends."""

    def __init__(self, net: torch.nn.Module, interpolant_name: str):
        super().__init__()
        self.net, self.schedule = net, preset(interpolant_name).schedule

    def forward(self, t, x: Tensor, condition: Tensor | None = None) -> Tensor:
        tt = torch.as_tensor(t, dtype=torch.float64, device=x.device).reshape(-1)
        alpha, beta = (f(tt).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))) for f in (self.schedule.alpha,
                                                                                      self.schedule.beta))  # fmt: skip
        out = self.net(t, x) if condition is None else self.net(t, x, condition)
        return beta * x + alpha * out


def context_condition(values: Tensor, mask: Tensor, context: int) -> Tensor:
    """The conditioning channels of TSDiff-Cond: the observed context values and their mask, zero over the
    horizon, ``(batch, 2, window)``."""
    given = mask.clone()
    given[:, context:] = 0
    return torch.stack([values * given, given], dim=1)


@dataclass
class ModelConfig:
    """Architecture and training budget of the window model; ``skip``: predict the data through
    :class:`SkipDataPrediction` (``None``: for conditional models only)."""

    interpolant: str = "vp"
    width: int = 32
    depth: int = 4
    steps: int = 1500
    batch: int = 256
    learning_rate: float = 2e-3
    ema_decay: float = 0.999
    device: str = "cpu"
    skip: bool | None = None

    def __post_init__(self):
        if self.interpolant not in INTERPOLANTS:
            raise ValueError(f"unknown interpolant {self.interpolant!r}; choose from {', '.join(INTERPOLANTS)}")
        for name in ("width", "depth", "steps", "batch"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0 and 0 <= self.ema_decay < 1):
            raise ValueError(
                f"need learning_rate > 0 and 0 <= ema_decay < 1; got {self.learning_rate}, {self.ema_decay}"
            )


@dataclass
class WindowModel:
    """A trained window model: its EMA network, the interpolant, the window's split, the task's ``spread``
    (:func:`training_windows`) and the training losses."""

    net: TemporalConvNet
    interpolant_name: str
    context: int
    horizon: int
    spread: float
    conditional: bool
    losses: list[float]

    @property
    def interpolant(self):
        return preset(self.interpolant_name)

    def field(self, condition: Tensor | None = None) -> LearnedField:
        """The model as an interp field (score, velocity, data prediction); ``condition`` ``(batch, 2, window)``
        for a conditional model, the batch matching the states it is called on."""
        if self.conditional and condition is None:
            raise ValueError("a conditional model needs the condition of the states it is called on")

        def model(t, x):
            return self.net(t, x, condition) if self.conditional else self.net(t, x)

        return LearnedField(self.interpolant, {INTERPOLANTS[self.interpolant_name]: model})


def train_model(
    histories, context: int, horizon: int, config: ModelConfig, *, conditional: bool = False, seed: int = 0,
    progress: bool = False,
) -> WindowModel:  # fmt: skip
    """Train a window model on every window of ``histories`` with interp's :class:`~interp.train.Trainer`."""
    windows, spread = training_windows(histories, context, horizon)
    return fit_windows(windows, spread, context, config, conditional=conditional, seed=seed, progress=progress)


def fit_windows(
    windows: Tensor, spread: float, context: int, config: ModelConfig, *, conditional: bool = False, seed: int = 0,
    progress: bool = False,
) -> WindowModel:  # fmt: skip
    """Train a window model on ``windows`` ``(rows, 2, window)`` (values and mask, as :func:`training_windows` makes
    them, in units of ``spread``)."""
    if windows.ndim != 3 or windows.shape[1] != 2 or not context < windows.shape[2]:
        raise ValueError(
            f"need windows (rows, 2, window) longer than the context {context}; got {tuple(windows.shape)}"
        )
    length = windows.shape[2]
    horizon = length - context
    torch.manual_seed(seed)
    net = TemporalConvNet(length, width=config.width, depth=config.depth, condition_channels=2 if conditional else 0)
    net = net.float()  # the windows are float32, whatever the default dtype
    if config.skip if config.skip is not None else conditional:  # the default: conditional models only (docs above)
        net = SkipDataPrediction(net, config.interpolant)
    loss = WindowLoss(config.interpolant, context, conditional=conditional)
    train = TrainConfig(
        steps=config.steps, batch_size=config.batch, learning_rate=config.learning_rate, ema_decay=config.ema_decay,
        warmup_steps=min(100, config.steps // 10), seed=seed, device=config.device, progress=progress,
    )  # fmt: skip

    def base(n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, 2, length, generator=generator, device=generator.device)

    trainer = Trainer(net, loss, base, windows.to(config.device, torch.float32), config=train)
    result = trainer.fit()
    ema = trainer.ema.eval().requires_grad_(False)
    return WindowModel(ema, config.interpolant, context, horizon, spread, conditional, result.losses)
