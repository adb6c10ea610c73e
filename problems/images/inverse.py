r"""Inverse problems on a trained image prior: box and random inpainting, super-resolution ×2 / ×4, Gaussian
deblurring and denoising, each at measurement noise :math:`\sigma_y \in` ``noise``, reconstructed by every method of
:mod:`interp.inverse` from the same unconditional VP model (docs/algorithms.md §7).

For each test image (the first ``images`` of the test split) the measurement is :math:`y = Hx + \sigma_y n` with a
seeded draw; every method draws ``samples`` reconstructions per image (the ensemble: one population of
``particles`` per image, resampled by its final weights). Scores, per task, noise and method:

* ``psnr`` / ``ssim`` (scikit-image, data range 2 on images in [-1, 1]) of the *mean* reconstruction of each image
  against the truth, averaged over images (the posterior mean is what PSNR rewards);
* ``fd``: FD-CNN of all reconstructions against the training images, and ``accuracy``: the classifier's accuracy on
  them (the truth's label);
* ``coverage``: the fraction of pixels whose true value lies in the samples' central 90 % interval (nominal 0.90;
  RED-Diff's spread is optimisation noise, not a posterior);
* ``nfe``: network evaluations per image, all its reconstructions together (a backward pass through the network
  counted as one more); ``seconds`` per image.

A method whose state diverges (a ``FloatingPointError``) gets a row of NaN, a blank panel and its name in the
table's ``diverged`` attribute.

:math:`\sigma_y = 0` (noiseless) is accepted by DPS, ΠGDM and second-order Tweedie; RED-Diff and the ensemble need a
likelihood with :math:`\sigma_y > 0` and use ``stand_in`` in its place (the table's attribute says which).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import Tensor

from interp import grids as time_grids
from interp.inverse import COVARIANCES as TWEEDIE_COVARIANCES
from interp.inverse import (
    START_NODES,
    UPDATES,
    Downsample,
    Identity,
    Measurement,
    Prior,
    box_mask,
    ensemble_sample,
    gaussian_blur,
    guided_sample,
    random_mask,
    red_diff,
)
from interp.metrics import frechet_distance

from .classifier import FeatureNet, train_classifier
from .data import Images, load_dataset
from .model import ImageModel, ImageModelConfig, train_image_model

TASKS = ("box", "random", "sr2", "sr4", "deblur", "denoise")
METHODS = ("dps", "pigdm", "tweedie2", "red-diff", "ensemble")
COVARIANCES = tuple(c for c in TWEEDIE_COVARIANCES if c != "full")  # the full Jacobian: a backward pass per pixel
CG_ITERATIONS = 10
"""Second-order Tweedie's conjugate-gradient iterations per step with ``covariance="cg"``."""
METRICS = ("psnr", "ssim", "fd", "accuracy", "coverage", "nfe", "seconds")
MODEL = ImageModelConfig(interpolant="vp", width=32, multipliers=(1, 2), steps=2000, learning_rate=1e-3)
"""The default prior: the command line's digits model (``--interpolant vp``, its other defaults)."""


@dataclass
class Reconstruction:
    """What is reconstructed and how: tasks, noise levels, methods, images, samples per image, the steps of every
    method, DPS's ζ, RED-Diff's λ, the ensemble's particles per image (default: as many as the network
    evaluations of DPS and ΠGDM, a forward and a backward pass per sample and step, allow — ``2 * samples`` less
    the start weights' share), ΠGDM's and second-order
    Tweedie's ``update`` (``"state"``, their authors' step: the exact-score one diverges on trained models,
    docs/algorithms.md §7), second-order Tweedie's measurement ``covariance`` (``"diagonal"`` or ``"cg"``), its
    Hutchinson ``probes`` per step and its ``tweedie_steps`` (default: as many as DPS's network evaluations allow —
    a step costs a forward pass, a backward pass and one more per probe or CG iteration, against DPS's two) and the
    σ standing in for 0."""

    tasks: tuple[str, ...] = TASKS
    noise: tuple[float, ...] = (0.0, 0.05)
    methods: tuple[str, ...] = METHODS
    images: int = 32
    samples: int = 8
    steps: int = 100
    zeta: float = 1.0
    lam: float = 0.25
    particles: int | None = None
    update: str = "state"
    covariance: str = "diagonal"
    probes: int = 1
    tweedie_steps: int | None = None
    stand_in: float = 0.01
    seed: int = 0

    def __post_init__(self):
        for name, allowed in (("tasks", TASKS), ("methods", METHODS)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty choice from {', '.join(allowed)}; got {bad or 'none'}")
        if not self.noise or not all(isinstance(s, (int, float)) and math.isfinite(s) and s >= 0 for s in self.noise):
            raise ValueError(f"noise levels must be finite numbers >= 0; got {self.noise}")
        if self.particles is None and isinstance(self.samples, int) and isinstance(self.steps, int):
            # DPS's and ΠGDM's evaluations, 2 * samples * steps, over the ensemble's steps + its start weights'
            # data predictions (else the checks below say why)
            self.particles = max(2, 2 * self.samples * self.steps // (self.steps + START_NODES))
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)} (images are too large for the full "
                             f"Jacobian); got {self.covariance!r}")  # fmt: skip
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(UPDATES)}; got {self.update!r}")
        if self.tweedie_steps is None and isinstance(self.steps, int) and isinstance(self.probes, int):
            # per step: a forward pass, the guidance's backward pass and one more per probe (or CG iteration),
            # against DPS's two: the steps that fit DPS's evaluations
            per_step = 2 + (self.probes if self.covariance == "diagonal" else CG_ITERATIONS)
            self.tweedie_steps = max(2, 2 * self.steps // per_step)
        for name, minimum in (("images", 1), ("samples", 2), ("steps", 2), ("particles", 2), ("probes", 1),
                              ("tweedie_steps", 2)):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= minimum):
                raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
        if not (self.stand_in > 0 and self.zeta > 0 and self.lam >= 0):
            raise ValueError("stand_in and zeta must be positive and lam >= 0")


def operator(task: str, shape: tuple[int, int, int], generator: torch.Generator):
    """The measurement operator of ``task`` on images of ``shape``."""
    height = shape[-1]
    if task == "box":
        return box_mask(shape, max(2, height // 2))
    if task == "random":
        return random_mask(shape, 0.3, generator)
    if task in ("sr2", "sr4"):
        factor = int(task[2])
        if height % factor:
            raise ValueError(f"super-resolution x{factor} needs an image side divisible by {factor}; got {height}")
        return Downsample(shape, factor)
    if task == "deblur":
        return gaussian_blur(shape, 1.0 if height <= 8 else 2.0)
    return Identity(shape)


def _prior(model: ImageModel) -> Prior:
    if model.interpolant_name != "vp" or model.net.num_classes:
        raise ValueError("the inverse task needs an unconditional VP model (--interpolant vp, no --conditional)")
    return Prior.from_field(model.field())


def _scores(truth: Tensor, samples: Tensor) -> tuple[float, float, float]:
    """Mean PSNR and SSIM of each image's mean reconstruction, and the pixel coverage of the central 90 % interval.
    ``samples``: ``(images, samples, C, H, W)``."""
    mean = samples.mean(1).clamp(-1, 1).cpu().double().numpy()
    truth_np = truth.cpu().double().numpy()
    psnr, ssim = [], []
    for estimate, true in zip(mean, truth_np, strict=True):
        psnr.append(peak_signal_noise_ratio(true, estimate, data_range=2.0))
        ssim.append(structural_similarity(true, estimate, data_range=2.0, channel_axis=0,
                                          win_size=min(7, true.shape[-1] - 1 + true.shape[-1] % 2)))  # fmt: skip
    lo = torch.quantile(samples.double(), 0.05, dim=1)
    hi = torch.quantile(samples.double(), 0.95, dim=1)
    inside = (truth.double() >= lo) & (truth.double() <= hi)
    return float(np.mean(psnr)), float(np.mean(ssim)), float(inside.double().mean())


def _run_method(method, prior, measurement, times, config, generator, count: int) -> tuple[Tensor, float]:
    """``(images * samples, C, H, W)`` reconstructions (rows image-major) and network evaluations per image."""
    s = config.samples
    rows = Measurement(measurement.operator, measurement.y.repeat_interleave(s, 0), measurement.noise_std)
    if method in ("dps", "pigdm", "tweedie2"):
        if method == "tweedie2":
            times = time_grids.uniform(config.tweedie_steps, float(times[0]), float(times[-1]))
        out = guided_sample(prior, rows, times, method=method, zeta=config.zeta, covariance=config.covariance,
                            probes=config.probes, iterations=CG_ITERATIONS, update=config.update,
                            generator=generator, progress=False, dtype=torch.float32)  # fmt: skip
        return out.final, (out.nfe + out.attrs["backward"]) * s
    if method == "red-diff":
        stand = Measurement(rows.operator, rows.y, measurement.noise_std or config.stand_in)
        out = red_diff(prior, stand, times, lam=config.lam, generator=generator, progress=False, dtype=torch.float32)
        return out.final, out.nfe * s
    finals = []
    for i in range(count):  # the ensemble: one population per measurement
        one = Measurement(measurement.operator, measurement.y[i], measurement.noise_std or config.stand_in)
        out = ensemble_sample(prior, one, times, config.particles, generator=generator, progress=False,
                              dtype=torch.float32)  # fmt: skip
        w = torch.softmax(out.extras["log_weight"][-1].double(), 0)
        pick = torch.multinomial(w.cpu(), s, replacement=True, generator=torch.Generator().manual_seed(i))
        finals.append(out.final[pick.to(out.final.device)])
    return torch.cat(finals), out.nfe * config.particles


def reconstruct(model: ImageModel, judge: FeatureNet, data: Images, config: Reconstruction, progress=None,
                keep: int = 8) -> tuple[xr.Dataset, dict[str, Tensor]]:  # fmt: skip
    """``value (task, noise, method, metric)`` and ``panels (task, noise, panel, image, channel, height, width)``:
    for the first ``keep`` test images the measurement (through :math:`H^+`), each method's first reconstruction
    (NaN where it diverged) and the truth; and, per task at the first noise level, those panels as one grid."""
    prior = _prior(model)
    if config.images > data.test.shape[0]:
        raise ValueError(f"images {config.images} is more than the test split ({data.test.shape[0]})")
    truth = data.test[: config.images].to(model.device)
    labels = data.test_labels[: config.images] if data.test_labels is not None else None
    reference = judge.features(data.train)
    times = time_grids.uniform(config.steps, *model.interpolant.time_range)
    values = np.full((len(config.tasks), len(config.noise), len(config.methods), len(METRICS)), np.nan)
    kept: dict[str, Tensor] = {}
    shown = min(keep, config.images)
    columns = ["measurement", *config.methods, "truth"]
    panel_values = np.full((len(config.tasks), len(config.noise), len(columns), shown, *data.shape), np.nan, np.float32)
    diverged: list[str] = []
    for a, task in enumerate(config.tasks):
        op = operator(task, data.shape, torch.Generator().manual_seed(config.seed * 1000 + a))
        for b, sigma in enumerate(config.noise):
            g = torch.Generator(device=model.device).manual_seed(config.seed * 1000 + 100 * a + b)
            measurement = Measurement.simulate(op, truth, float(sigma), g)
            panels = [op.pinv(measurement.y).clamp(-1, 1)[:keep].cpu()]
            panel_values[a, b, 0] = panels[0].float().numpy()
            for c, method in enumerate(config.methods):
                started = time.perf_counter()
                try:
                    x, nfe = _run_method(method, prior, measurement, times, config, g, config.images)
                except FloatingPointError as error:  # a diverged method is a row of NaN and a blank panel, said
                    diverged.append(f"{task}/{sigma:g}/{method}")
                    panels.append(torch.zeros_like(truth[:keep]).cpu())
                    if progress is not None:
                        progress(f"{task} sigma {sigma:g} {method}: diverged ({error})")
                    continue
                seconds = (time.perf_counter() - started) / config.images
                x = x.detach().float().reshape(config.images, config.samples, *data.shape)
                psnr, ssim, coverage = _scores(truth, x)
                flat = x.reshape(-1, *data.shape).clamp(-1, 1)
                fd = frechet_distance(reference, judge.features(flat))
                accuracy = math.nan
                if labels is not None:
                    predicted = judge.probabilities(flat).argmax(1).reshape(config.images, config.samples)
                    accuracy = float((predicted == labels[:, None].to(predicted.device)).double().mean())
                values[a, b, c] = [psnr, ssim, fd, accuracy, coverage, nfe, seconds]
                panels.append(x[:keep, 0].clamp(-1, 1).cpu())
                panel_values[a, b, c + 1] = panels[-1].numpy()  # a diverged method's stays NaN
                if progress is not None:
                    progress(f"{task} sigma {sigma:g} {method}: PSNR {psnr:.2f}, SSIM {ssim:.3f}, "
                             f"FD-CNN {fd:.2f}, accuracy {accuracy:.3f}, coverage {coverage:.3f}, NFE {nfe:.0f}, "
                             f"{seconds:.2f} s/image")  # fmt: skip
            panels.append(truth[:keep].cpu())
            panel_values[a, b, -1] = panels[-1].float().numpy()
            if b == 0:
                kept[task] = torch.cat(panels)
    table = xr.Dataset(
        {"value": (("task", "noise", "method", "metric"), values),
         "panels": (("task", "noise", "panel", "image", "channel", "height", "width"), panel_values)},
        coords={"task": list(config.tasks), "noise": list(config.noise), "method": list(config.methods),
                "metric": list(METRICS), "panel": columns},
        attrs={"dataset": data.name, "images": config.images, "samples": config.samples, "steps": config.steps,
               "zeta": config.zeta, "lam": config.lam, "particles": config.particles, "update": config.update,
               "covariance": config.covariance, "probes": config.probes, "tweedie_steps": config.tweedie_steps,
               "stand_in": config.stand_in, "seed": config.seed, "judge_accuracy": judge.accuracy,
               "diverged": ", ".join(diverged) or "none"},
    )  # fmt: skip
    return table, kept


def measure(seed: int = 0, dataset: str = "digits", device: str = "cpu") -> xr.Dataset:
    """The inverse table of ``dataset`` with :data:`MODEL` and 16 test images, 50 steps, :class:`Reconstruction`'s
    other defaults: ``python -m problems images --task inverse --interpolant vp --images 16 --sde-steps 50``."""
    data = load_dataset(dataset, seed=seed)
    judge = train_classifier(data, epochs=10, seed=seed, device=device, progress=False)
    model = train_image_model(data, ImageModelConfig(**{**MODEL.__dict__, "device": device}), seed=seed)
    return reconstruct(model, judge, data, Reconstruction(images=16, steps=50, seed=seed))[0]
