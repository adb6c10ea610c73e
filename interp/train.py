"""Training loop: AdamW, warm-up + cosine learning rate, gradient clipping, EMA weights, tqdm progress,
evaluation hook, atomic checkpoints and bit-for-bit resume on CPU.

A :class:`Trainer` draws each batch from two sources (a sampler ``(n, generator) -> Tensor`` or a data tensor
to subsample), re-pairs it with a :class:`~interp.couplings.Coupling`, and minimises an
:class:`~interp.losses.InterpolantLoss`. Everything random comes from one ``torch.Generator`` whose state is
part of the checkpoint, so a run stopped and resumed reproduces the uninterrupted run exactly on CPU.
Checkpoints are written to a temporary file and renamed, and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import check_count, check_positive
from ._files import write_atomically
from .couplings import Coupling, IndependentCoupling
from .losses import InterpolantLoss

Sampler = Callable[[int, torch.Generator], Tensor]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TrainingError(FloatingPointError):
    """The loss became non-finite; names the step. The last checkpoint written is kept as it was."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: names the file and the problem (unreadable, not a checkpoint of
    :class:`Trainer`, another architecture, or written with another configuration)."""


# Settings that only steer how a run is watched or where it writes; a resume may change them freely. Every other
# field of TrainConfig changes the numbers and must match the checkpoint's unless named in ``override``.
RUN_ONLY_FIELDS = ("device", "progress", "eval_every", "checkpoint_every", "checkpoint_path")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; an unknown or absent device is a ``ValueError``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r} ({error})") from None
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device here")
    if out.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    return out


@dataclass
class TrainConfig:
    """Options of :class:`Trainer`; every number has its meaning in the name."""

    steps: int = 1000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    cosine_decay: bool = True
    grad_clip_norm: float | None = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    eval_every: int = 0
    checkpoint_every: int = 0
    checkpoint_path: str | None = None

    def __post_init__(self):
        check_count(self.steps, "steps", minimum=1)
        check_count(self.batch_size, "batch_size", minimum=1)
        check_positive(self.learning_rate, "learning_rate")
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)
        check_count(self.warmup_steps, "warmup_steps", minimum=0)
        # A negative clip norm would scale gradients by a negative factor (gradient ascent), zero would freeze
        # training: no clipping is None, never a number <= 0.
        if self.grad_clip_norm is not None:
            check_positive(self.grad_clip_norm, "grad_clip_norm (None for no clipping)")
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay must lie in [0, 1); got {self.ema_decay!r}")
        check_count(self.seed, "seed", minimum=0)
        check_count(self.eval_every, "eval_every", minimum=0)
        check_count(self.checkpoint_every, "checkpoint_every", minimum=0)
        if not isinstance(self.device, (str, torch.device)):
            raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda'; got {self.device!r}")
        if self.checkpoint_every and not self.checkpoint_path:
            raise ValueError("checkpoint_every needs checkpoint_path")


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, dict]] = field(default_factory=list)


def _source(data, name: str) -> Sampler:
    if callable(data):
        return data
    if isinstance(data, Tensor):
        if data.ndim < 1 or data.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty tensor of shape (n, ...)")
        if not torch.isfinite(data).all():
            raise ValueError(f"{name} must be finite")

        def sample(n: int, generator: torch.Generator) -> Tensor:
            index = torch.randint(data.shape[0], (n,), generator=generator, device=generator.device)
            return data[index.to(data.device)]

        return sample
    raise TypeError(f"{name} must be a sampler (n, generator) -> Tensor or a data tensor; got {type(data).__name__}")


def _needs_noise(loss) -> bool:
    """Whether ``loss`` takes Gaussian noise ``z``: its ``needs_noise`` attribute, else its interpolant's γ ≠ 0."""
    needs = getattr(loss, "needs_noise", None)
    return bool(needs) if needs is not None else not loss.interpolant.noise.is_zero


CHECKPOINT_KEYS = ("model", "ema", "optimiser", "scheduler", "generator", "step", "losses", "config")


def _read_checkpoint(name: str, device: torch.device) -> dict:
    """The checkpoint's dictionary, or a :class:`CheckpointError` saying what is wrong with the file."""
    if not os.path.isfile(name):
        raise CheckpointError(f"checkpoint {name!r} does not exist or is not a file")
    if os.path.getsize(name) == 0:
        raise CheckpointError(f"checkpoint {name!r} is empty (0 bytes): an interrupted copy?")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before failing on them
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(name, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own advice here (weights_only=False) would run arbitrary code from the file; not repeated.
        raise CheckpointError(
            f"checkpoint {name!r} is not a torch checkpoint that loads safely (weights_only=True): random bytes, "
            "another format, or a pickle holding code"
        ) from None
    except (OSError, EOFError, RuntimeError, ValueError) as error:
        problem = f"{type(error).__name__}: {error}"
        raise CheckpointError(f"checkpoint {name!r} is truncated or corrupt ({problem})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {name!r} holds a {type(state).__name__}, not a Trainer checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        bare = "model" in missing
        hint = " (it looks like a bare model state_dict: load it with model.load_state_dict)" if bare else ""
        raise CheckpointError(f"checkpoint {name!r} is not a Trainer checkpoint: it lacks {missing}{hint}")
    return state


class Trainer:
    """Fits ``model`` to ``loss`` on pairs drawn from ``x0`` and ``x1``.

    Example:
        >>> trainer = Trainer(MLP((2,)), InterpolantLoss(preset("linear"), Parameterisation.VELOCITY),
        ...                   rho0.sample, rho1.sample, config=TrainConfig(steps=500))  # doctest: +SKIP
        >>> result = trainer.fit()                                                      # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        loss: InterpolantLoss,
        x0,
        x1,
        *,
        coupling: Coupling | None = None,
        config: TrainConfig | None = None,
        paired: bool = False,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.config = config or TrainConfig()
        self.device = resolve_device(self.config.device)
        self.rank, self.world_size = world()
        if self.config.batch_size % self.world_size:
            raise ValueError(
                f"batch_size {self.config.batch_size} must be divisible by the number of processes {self.world_size}"
            )
        self.model = model.to(self.device)
        self.dtype = next(
            (p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.get_default_dtype()
        )
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self._ema_pairs = (list(self.ema.parameters()), list(self.model.parameters()))  # walked once, not per step
        # Under torch.distributed (e.g. launched by torchrun) gradients are averaged across processes by DDP.
        self.module = nn.parallel.DistributedDataParallel(self.model) if self.world_size > 1 else self.model
        self.loss, self.coupling = loss, coupling or IndependentCoupling()
        self.sample_x0, self.sample_x1 = _source(x0, "x0"), _source(x1, "x1")
        self.paired = paired
        if paired:
            # Rows of x0 and x1 are pairs (x0_i, x1_i) of a given coupling: draw the same rows from both.
            if not (isinstance(x0, Tensor) and isinstance(x1, Tensor) and x0.shape[0] == x1.shape[0]):
                raise ValueError("paired=True needs x0 and x1 as tensors with the same number of rows")
            if coupling is not None:
                raise ValueError("paired=True keeps the given pairs; do not pass a coupling")
            self._pairs = (x0, x1)
        self.optimiser = torch.optim.AdamW(
            self.model.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimiser, self._lr_factor)
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self.step = 0
        self.result = TrainResult()

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if c.warmup_steps and step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        if not c.cosine_decay:
            return 1.0
        progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        if self.config.ema_warmup:
            # Without a warm-up the average keeps a weight decay**n on the random initialisation after n steps
            # (37 % after 1000 steps at 0.999), so a short run's EMA network is partly untrained. The usual
            # remedy (the num_updates form of tf.train.ExponentialMovingAverage): average with decay
            # min(decay, (1 + n) / (10 + n)), which forgets the initialisation within tens of steps and is
            # the plain decay once n > 10 / (1 - decay).
            decay = min(decay, (1 + self.step) / (10 + self.step))
        # one fused call over every parameter (the same lerp per element as a loop of Tensor.lerp_, which cost a
        # Python round trip per tensor every step)
        torch._foreach_lerp_(*self._ema_pairs, 1 - decay)
        for ema_b, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            ema_b.copy_(b)

    def train_step(self) -> float:
        """One optimiser step on the global batch.

        Every process draws the whole global batch, its coupling (so OT is solved on the global batch) and the
        times and noise from the same generator, then keeps its own slice: one process and several give the
        same gradients up to the order of floating-point sums.
        """
        n = self.config.batch_size
        # Data follow the model's device and floating dtype (a float64 sampler can feed a float32 network).
        if self.paired:
            data0, data1 = self._pairs
            index = torch.randint(data0.shape[0], (n,), generator=self.generator, device=self.generator.device)
            x0 = data0[index.to(data0.device)].to(self.device, self.dtype)
            x1 = data1[index.to(data1.device)].to(self.device, self.dtype)
        else:
            x0 = self.sample_x0(n, self.generator).to(self.device, self.dtype)
            x1 = self.sample_x1(n, self.generator).to(self.device, self.dtype)
            x0, x1 = self.coupling.pair(x0, x1, self.generator)
        t = self.loss.sample_times(n, self.generator, dtype=x0.dtype, device=x0.device)
        z = None
        if self.loss.antithetic or _needs_noise(self.loss):
            z = torch.randn(x0.shape, generator=self.generator, dtype=x0.dtype, device=self.generator.device)
            z = z.to(self.device)
        part = slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)
        value = self.loss(self.module, x0[part], x1[part], self.generator, t=t[part], z=None if z is None else z[part])
        if not torch.isfinite(value):
            raise TrainingError(f"the loss became non-finite at step {self.step}; the last checkpoint is kept")
        self.optimiser.zero_grad(set_to_none=True)
        value.backward()
        if self.config.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self.optimiser.step()
        self.scheduler.step()
        self._update_ema()
        self.step += 1
        value = value.detach()
        if self.world_size > 1:
            dist.all_reduce(value)
            value = value / self.world_size
        return float(value)

    def fit(self, evaluate: Callable[[Trainer], dict] | None = None) -> TrainResult:
        """Train until ``config.steps``; ``evaluate(trainer)`` runs every ``eval_every`` steps."""
        c = self.config
        self.model.train()
        show = c.progress and self.rank == 0
        bar = tqdm(total=c.steps, initial=self.step, desc="train", disable=None if show else True, leave=False)
        while self.step < c.steps:
            value = self.train_step()
            self.result.losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}")
            if evaluate is not None and c.eval_every and self.step % c.eval_every == 0:
                self.result.evaluations.append((self.step, evaluate(self)))
            if c.checkpoint_every and self.step % c.checkpoint_every == 0 and self.rank == 0:
                self.save(c.checkpoint_path)
        bar.close()
        return self.result

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step,
            "losses": list(self.result.losses),
            "config": {k: v for k, v in asdict(self.config).items() if v is not None},
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
        state = self.state_dict()
        write_atomically(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: str | os.PathLike, *, override: tuple[str, ...] | list[str] = ()) -> None:
        """Resume from a checkpoint written by :meth:`save` (loaded with ``weights_only=True``).

        The checkpoint's configuration is compared with this trainer's: a field that changes the numbers
        (everything but device, progress and the eval/checkpoint cadence) and differs is a :class:`CheckpointError`,
        unless named in ``override`` — then this trainer's value is used (a new ``learning_rate`` or
        ``weight_decay`` is written into the restored optimiser). Every problem with the file is a
        :class:`CheckpointError` naming it.
        """
        name = os.fspath(path)
        unknown = set(override) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ValueError(f"override names fields TrainConfig does not have: {sorted(unknown)}")
        state = _read_checkpoint(name, self.device)
        self._check_architecture(name, state["model"])
        self._check_config(name, state["config"], override)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        try:
            self.optimiser.load_state_dict(state["optimiser"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.generator.set_state(state["generator"].cpu())
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            problem = f"an unusable optimiser or generator state: {error}"
            raise CheckpointError(f"checkpoint {name!r} has {problem}") from None
        self.step = int(state["step"])
        self.result = TrainResult(losses=list(state["losses"]))
        if "learning_rate" in override or "weight_decay" in override:
            lr = self.config.learning_rate
            self.scheduler.base_lrs = [lr for _ in self.optimiser.param_groups]
            for group in self.optimiser.param_groups:
                group["initial_lr"], group["weight_decay"] = lr, self.config.weight_decay
                group["lr"] = lr * self._lr_factor(self.step)

    def _check_architecture(self, name: str, saved: dict) -> None:
        """Compare parameter names and shapes before anything is loaded, so a refused resume changes nothing."""
        mine = self.model.state_dict()
        problems = [f"missing {k}" for k in mine if k not in saved]
        problems += [f"unexpected {k}" for k in saved if k not in mine]
        problems += [
            f"{k}: checkpoint {tuple(saved[k].shape)}, model {tuple(v.shape)}"
            for k, v in mine.items()
            if k in saved and tuple(getattr(saved[k], "shape", ())) != tuple(v.shape)
        ]
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise CheckpointError(f"checkpoint {name!r} was written for a different architecture: {shown}")

    def _check_config(self, name: str, saved: dict, override) -> None:
        current = {k: v for k, v in asdict(self.config).items() if v is not None}
        differ = [
            f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
            for k in sorted(set(saved) | set(current))
            if k not in RUN_ONLY_FIELDS and k not in override and saved.get(k) != current.get(k)
        ]
        if differ:
            raise CheckpointError(
                f"checkpoint {name!r} was written with another configuration ({'; '.join(differ)}); resume with the "
                "same TrainConfig, or name the fields to change: trainer.load(path, override=(...))"
            )
