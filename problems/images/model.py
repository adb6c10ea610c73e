r"""Image models: a :class:`~interp.nets.UNet` trained with interp's :class:`~interp.train.Trainer` as a field of
one of two interpolants from the same data —

* ``flow``: the linear Gaussian-base path :math:`x_t = (1-t)\,\varepsilon + t\,x_1` trained on the velocity
  (flow matching, Lipman et al. 2023; rectified flow);
* ``vp``: the variance-preserving path trained on the noise :math:`\varepsilon` (DDPM's ε-prediction, Ho et al.
  2020) — the model that diffusers' schedulers consume.

Class conditioning (``conditional=True``): the label rides along as an extra constant channel of each training row
(the trainer's rows are single tensors) and is replaced by the "no class" label with probability
``label_dropout`` (drawn from the trainer's generator), so one network is both the conditional and the
unconditional model of classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from interp.fields import LearnedField
from interp.interpolants import preset
from interp.losses import InterpolantLoss, Parameterisation
from interp.nets import UNet
from interp.train import TrainConfig, Trainer

from .data import Images

INTERPOLANTS = {"flow": Parameterisation.VELOCITY, "vp": Parameterisation.X0}


@dataclass
class ImageModelConfig:
    """Architecture, objective and training budget of an image model."""

    interpolant: str = "flow"
    width: int = 32
    multipliers: tuple[int, ...] = (1, 2, 2)
    attention: tuple[int, ...] = ()
    blocks: int = 1
    conditional: bool = False
    label_dropout: float = 0.1
    steps: int = 2000
    batch: int = 128
    learning_rate: float = 2e-4
    ema_decay: float = 0.999
    warmup: int = 100
    device: str = "cpu"
    checkpoint: str | None = None
    checkpoint_every: int = 0

    def __post_init__(self):
        if self.interpolant not in INTERPOLANTS:
            raise ValueError(f"unknown interpolant {self.interpolant!r}; choose from {', '.join(INTERPOLANTS)}")
        for name in ("width", "steps", "batch", "blocks"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0 and 0 <= self.ema_decay < 1):
            raise ValueError(
                f"need learning_rate > 0 and 0 <= ema_decay < 1; got {self.learning_rate}, {self.ema_decay}"
            )
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout must lie in [0, 1); got {self.label_dropout}")


class LabelledLoss:
    """The interpolant regression on rows ``(channels + 1, height, width)``: the images and, in the last channel,
    their label (a conditional model gets it, dropped to the null label with probability ``label_dropout``)."""

    antithetic = False
    needs_noise = False

    def __init__(self, interpolant: str, *, null_label: int | None, label_dropout: float):
        self.inner = InterpolantLoss(preset(interpolant), INTERPOLANTS[interpolant])
        self.null_label, self.label_dropout = null_label, label_dropout

    def sample_times(self, batch, generator, *, dtype, device) -> Tensor:
        return self.inner.sample_times(batch, generator, dtype=dtype, device=device)

    def __call__(self, model, x0: Tensor, x1: Tensor, generator=None, *, t: Tensor, z=None) -> Tensor:
        images, base = x1[:, :-1], x0[:, :-1]
        if self.null_label is None:
            return self.inner(model, base, images, generator, t=t)
        labels = x1[:, -1, 0, 0].round().long()
        dropped = torch.rand(labels.shape, generator=generator, device=generator.device) < self.label_dropout
        labels = torch.where(dropped.to(labels.device), self.null_label, labels)
        return self.inner(lambda s, x: model(s, x, labels), base, images, generator, t=t)


@dataclass
class ImageModel:
    """A trained image model: the EMA network, its interpolant, and the training losses."""

    net: UNet
    interpolant_name: str
    shape: tuple[int, int, int]
    losses: list[float]

    @property
    def interpolant(self):
        return preset(self.interpolant_name)

    @property
    def device(self) -> torch.device:
        """Where the network's parameters are (the samplers put the noise and labels there)."""
        return next(iter(self.net.parameters()), torch.empty(0)).device

    @property
    def parameterisation(self) -> Parameterisation:
        return INTERPOLANTS[self.interpolant_name]

    def predict(self, t, x: Tensor, label: Tensor | None = None) -> Tensor:
        """The network's own prediction (velocity for ``flow``, noise for ``vp``)."""
        return self.net(t, x, label) if self.net.num_classes else self.net(t, x)

    def field(self, label: Tensor | None = None) -> LearnedField:
        """The model as an interp field; ``label`` ``(batch,)`` for a conditional model (``None``: unconditional)."""
        return LearnedField(self.interpolant, {self.parameterisation: lambda t, x: self.predict(t, x, label)})


def training_rows(data: Images) -> Tensor:
    """The training images with their labels as an extra constant channel (0 where the data has none)."""
    n, _, height, width = data.train.shape
    labels = data.train_labels if data.train_labels is not None else torch.zeros(n, dtype=torch.long)
    plane = labels.float()[:, None, None, None].expand(n, 1, height, width)
    return torch.cat([data.train, plane], dim=1)


def network(config: ImageModelConfig, channels: int, classes: int = 0) -> UNet:
    """The (untrained) U-Net of ``config``, float32 whatever the default dtype."""
    return UNet(channels, width=config.width, multipliers=config.multipliers, attention=config.attention,
                blocks=config.blocks, num_classes=classes).float()  # fmt: skip


def train_image_model(data: Images, config: ImageModelConfig, *, seed: int = 0, progress: bool = False) -> ImageModel:
    """Train a U-Net field on ``data``'s training split (resuming from ``config.checkpoint`` when it exists)."""
    if config.conditional and data.train_labels is None:
        raise ValueError(f"{data.name} has no labels: train an unconditional model (conditional=False)")
    classes = int(data.train_labels.max()) + 1 if config.conditional else 0
    torch.manual_seed(seed)
    net = network(config, data.shape[0], classes)
    loss = LabelledLoss(config.interpolant, null_label=net.null_label if classes else None,
                        label_dropout=config.label_dropout)  # fmt: skip
    train = TrainConfig(
        steps=config.steps, batch_size=config.batch, learning_rate=config.learning_rate, ema_decay=config.ema_decay,
        warmup_steps=min(config.warmup, config.steps // 10), seed=seed, device=config.device, progress=progress,
        checkpoint_every=config.checkpoint_every, checkpoint_path=config.checkpoint,
    )  # fmt: skip
    rows = training_rows(data)

    def base(n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, *rows.shape[1:], generator=generator, device=generator.device)

    trainer = Trainer(net, loss, base, rows.to(config.device), config=train)
    if config.checkpoint and Path(config.checkpoint).is_file():
        trainer.load(config.checkpoint)
    result = trainer.fit()
    return ImageModel(trainer.ema.eval().requires_grad_(False), config.interpolant, data.shape, result.losses)
