r"""Steering a trained class-conditional VP image model toward one class, side by side: reward-guided search and
SMC on the unconditional model against classifier-free guidance on the conditional one.

The reward is a classifier's log-probability of the chosen class, :math:`r(x) = \log p_\phi(c \mid x)`, evaluated
on the data prediction :math:`\hat x_1(t, X_t)` (:mod:`interp.feynman_kac.steering`). The *reward* classifier is
trained with another seed than the *feature* classifier that scores the samples, so a method that fools its reward
network (adversarial pixels) does not also fool the judge: ``reward`` is what the method optimised, ``accuracy`` and
``confidence`` are the judge's.

Methods (all on the reverse SDE of the VP path with ``steps`` Euler–Maruyama steps on one grid, each from its own
seeded noise; ``k`` is the compute multiplier):

* ``best-of-N``: ``k`` samples of the unconditional model (the null label) per output, keep the highest reward
  (at ``k = 1`` the unconditional model itself: the base every method starts from);
* ``fk-steering``: ``k`` particles per output in one population (every output has the same target, so the
  ``k * outputs`` particles are resampled together), potential ``"diff"`` at every step with the final
  correction, so the outputs (drawn by the final weights) target :math:`p(x)\,p_\phi(c\mid x)^\lambda` — with
  :math:`\lambda = 1` and a perfect classifier that is the class-conditional law :math:`p(x \mid c)` itself;
* ``svdd``: ``k`` proposals per step, the argmax of the reward;
* ``budget-forcing``: a budget of ``k`` candidates per step, rolled over;
* ``cfg-w``: the conditional model with classifier-free guidance scale ``w`` (prediction
  :math:`p_c + w(p_c - p_\varnothing)`; ``w = 0`` is the conditional model as trained), ``k = 1``;
* ``geometric-w``: the law classifier-free guidance *aims at*, :math:`p_\varnothing^{-w}p_c^{1+w}` (RLG's
  geometric mixing), sampled exactly by the Feynman–Kac corrector (:func:`interp.feynman_kac.fk_correct`, form
  ``"diffusion"``, weights :math:`\eta\,w'(w'-1)|s_c - s_\varnothing|^2` with :math:`w' = 1 + w`) with a population
  of ``k`` particles per output.

NFE counts network evaluations per output image: a guided step evaluates two images (conditional and null label),
so it counts 2; the final data prediction of the SDE's end state counts 1.

The reference of ``fd`` / ``kd`` (FD-CNN, KD-CNN ×1000) is the class's training images; ``floor_fd`` /
``floor_kd`` score the class's test images against them (few on digits: about 30, so the Fréchet floor is biased
upward by the small sample; the kernel distance is unbiased).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from interp.feynman_kac import (
    BaseSampler,
    best_of_n,
    budget_forcing,
    fk_correct,
    fk_steer,
    geometric,
    svdd,
    weighted_resample,
)
from interp.metrics import frechet_distance, kernel_distance

from .classifier import FeatureNet, train_classifier
from .data import Images, load_dataset
from .model import ImageModel, ImageModelConfig, train_image_model
from .sampling import grid, guided_field, initial_noise

SEARCH = ("best-of-N", "fk-steering", "svdd", "budget-forcing")
MODEL = ImageModelConfig(interpolant="vp", conditional=True, width=32, multipliers=(1, 2), steps=4000,
                         learning_rate=1e-3)  # fmt: skip
"""The default model steered: the digits model of the images bench, class-conditional."""
METRICS = ("reward", "accuracy", "confidence", "fd", "kd", "nfe", "seconds")


@dataclass
class Steering:
    """What is steered and how hard: the class, the SDE's steps and grid, the compute multipliers of the search
    methods, the images per method, FK steering's :math:`\\lambda` and the guidance scales."""

    label: int = 0
    steps: int = 50
    grid: str = "uniform"
    multipliers: tuple[int, ...] = (1, 2, 4, 8)
    outputs: int = 256
    lam: float = 1.0
    guidance: tuple[float, ...] = (0.0, 1.0, 3.0)
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.steps, int) and self.steps >= 2):
            raise ValueError(f"steps must be an integer >= 2; got {self.steps!r}")
        if not self.multipliers or not all(isinstance(k, int) and k >= 1 for k in self.multipliers):
            raise ValueError(f"multipliers must be positive integers; got {self.multipliers}")
        if not (isinstance(self.outputs, int) and self.outputs >= 10):
            raise ValueError(f"outputs must be an integer >= 10; got {self.outputs!r}")
        if not (np.isfinite(self.lam) and self.lam > 0):
            raise ValueError(f"lam must be a positive number; got {self.lam}")
        if not all(np.isfinite(w) and w >= 0 for w in self.guidance):
            raise ValueError(f"guidance scales must be finite and >= 0; got {self.guidance}")


def class_reward(judge: FeatureNet, label: int):
    """:math:`\\log p(\\text{label} \\mid x)` ``(n,)`` float64 of a classifier, on images clipped to ``[-1, 1]``."""
    net = judge.net
    classes = net.logits.out_features
    if not (isinstance(label, int) and 0 <= label < classes):
        raise ValueError(f"label must be an integer in [0, {classes}); got {label!r}")
    device = next(net.parameters()).device

    @torch.no_grad()
    def reward(x: Tensor) -> Tensor:
        logits = net(x.to(device, torch.float32).clamp(-1, 1))
        return logits.log_softmax(1)[:, label].double().to(x.device)

    return reward


def _labels(model: ImageModel, label: int | None, x: Tensor) -> Tensor:
    """``label`` (``None``: the null label) for every row of ``x``."""
    value = model.net.null_label if label is None else label
    return torch.full((x.shape[0],), value, dtype=torch.long, device=x.device)


def _score(model: ImageModel, label: int | None, guidance: float = 0.0):
    """The score field of the model for one label at any batch size, with classifier-free guidance
    ``guidance``."""
    return lambda t, x: guided_field(model, _labels(model, label, x), guidance).score(t, x)


def _denoise(model: ImageModel, label: int | None, t_end: Tensor, x: Tensor) -> Tensor:
    """The data prediction at the last grid time (the outputs of the search methods are data predictions too)."""
    return model.field(_labels(model, label, x)).posterior(t_end, x).x1


def _zero(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)


def steer(model: ImageModel, reward_net: FeatureNet, judge: FeatureNet, data: Images, config: Steering,
          progress=None, keep: int = 64) -> tuple[xr.Dataset, dict[str, Tensor]]:  # fmt: skip
    """``value (method, k, metric)`` (NaN where a method has no such multiplier) with the floor scores and the
    classifiers' accuracies as attributes; and the first ``keep`` images of each method at its largest
    multiplier."""
    if not model.net.num_classes:
        raise ValueError("steering compares against classifier-free guidance: it needs a class-conditional model")
    if model.interpolant_name != "vp":
        raise ValueError("steering runs the reverse SDE of the VP model; train with interpolant 'vp'")
    if data.train_labels is None:
        raise ValueError(f"{data.name} has no labels: steering toward a class needs them")
    label, n, ks = config.label, config.outputs, config.multipliers
    reward = class_reward(reward_net, label)
    class_reward(judge, label)  # the label must be a class of the judge too
    times = grid(model, config.grid, config.steps)
    t_end = times[-1].to(model.device, torch.float32)
    interpolant = model.interpolant
    base = BaseSampler(interpolant, _score(model, None))
    reference = judge.features(data.train[data.train_labels == label])
    floor = data.test[data.test_labels == label]
    methods = [*SEARCH, *(f"cfg-{w:g}" for w in config.guidance),
               *(f"geometric-{w:g}" for w in config.guidance if w > 0)]  # fmt: skip
    values = np.full((len(methods), len(ks), len(METRICS)), np.nan)
    kept: dict[str, Tensor] = {}

    def noise(count: int, offset: int) -> Tensor:
        return initial_noise(model, count, config.seed * 1000 + offset, model.device)

    def generator(offset: int) -> torch.Generator:
        return torch.Generator(device=model.device).manual_seed(config.seed * 1000 + offset)

    def record(method: str, j: int, images: Tensor, nfe: float, started: float):
        seconds = time.perf_counter() - started
        probabilities = judge.probabilities(images).double()
        features = judge.features(images)
        row = [float(reward(images).mean()), float((probabilities.argmax(1) == label).double().mean()),
               float(probabilities[:, label].mean()), frechet_distance(reference, features),
               1000 * kernel_distance(reference, features, generator=generator(7)), float(nfe), seconds]  # fmt: skip
        values[methods.index(method), j] = row
        kept[method] = images[:keep].detach().cpu()
        if progress is not None:
            progress(f"{method} x{ks[j]}: reward {row[0]:.3f}, judge accuracy {row[1]:.3f}, FD-CNN {row[3]:.2f}, "
                     f"NFE {nfe:.0f}, {seconds:.1f} s")  # fmt: skip

    for j, k in enumerate(ks):
        started = time.perf_counter()
        out = best_of_n(
            base, reward, times, n_candidates=k, n=n, start=noise(n * k, 10 + k), generator=generator(10 + k)
        )
        record("best-of-N", j, out.final, out.attrs["nfe_per_output"], started)
        started = time.perf_counter()
        run = fk_steer(base, reward, times, lam=config.lam, potential="diff", start=noise(n * k, 20 + k),
                       generator=generator(20 + k), progress=False)  # fmt: skip
        images = _denoise(model, None, t_end, weighted_resample(run, n, generator=generator(30 + k)))
        record("fk-steering", j, images, run.nfe * k + 1, started)
        started = time.perf_counter()
        run = svdd(
            base, reward, times, proposals=k, start=noise(n, 40 + k), generator=generator(40 + k), progress=False
        )
        record("svdd", j, _denoise(model, None, t_end, run.final), run.nfe + 1, started)
        started = time.perf_counter()
        out = budget_forcing(base, reward, times, budget=k, start=noise(n, 50 + k), generator=generator(50 + k))
        record("budget-forcing", j, out.final, out.attrs["nfe_per_output"], started)
        for w in config.guidance:
            calls = 2 if w > 0 else 1  # a guided evaluation runs the network on two images
            if k == 1:
                started = time.perf_counter()
                guided = BaseSampler(interpolant, _score(model, label, w))
                out = best_of_n(guided, _zero, times, n_candidates=1, n=n, start=noise(n, 60), generator=generator(60))
                record(f"cfg-{w:g}", j, out.final, calls * out.attrs["nfe_per_output"], started)
            if w > 0:
                started = time.perf_counter()
                target = geometric(_score(model, None), _score(model, label), 1 + w)
                run = fk_correct(target, interpolant, times, start=noise(n * k, 70 + k), start_log_normaliser=0.0,
                                 form="diffusion", generator=generator(70 + k), progress=False)  # fmt: skip
                images = _denoise(model, label, t_end, weighted_resample(run, n, generator=generator(80 + k)))
                record(f"geometric-{w:g}", j, images, run.nfe * k + 1, started)
    floor_features = judge.features(floor)
    table = xr.Dataset(
        {"value": (("method", "k", "metric"), values)},
        coords={"method": methods, "k": list(ks), "metric": list(METRICS)},
        attrs={"dataset": data.name, "label": label, "steps": config.steps, "grid": config.grid, "lam": config.lam,
               "outputs": n, "seed": config.seed, "reward_accuracy": reward_net.accuracy,
               "judge_accuracy": judge.accuracy, "reference_images": int(reference.shape[0]),
               "floor_images": int(floor.shape[0]),
               "floor_fd": frechet_distance(reference, floor_features),
               "floor_kd": 1000 * kernel_distance(reference, floor_features, generator=generator(7)),
               "floor_reward": float(reward(floor).mean()),
               "floor_accuracy": float((judge.probabilities(floor).argmax(1) == label).double().mean())},
    )  # fmt: skip
    return table, kept


def train_and_steer(data: Images, model_config: ImageModelConfig = MODEL, config: Steering | None = None, *,
                    classifier_epochs: int = 10, device: str = "cpu", cache=None, progress: bool = True,
                    model: ImageModel | None = None):  # fmt: skip
    """The whole steering run: the judge (seed ``config.seed``) and reward (seed + 1) classifiers (cached), the
    conditional model (``model`` when given: trained already, e.g. under ``torchrun``), then :func:`steer`.
    Returns the table, the kept images and the model."""
    config = config if config is not None else Steering()
    judge, reward = (
        train_classifier(data, epochs=classifier_epochs, seed=s, device=device, cache=cache, progress=progress)
        for s in (config.seed, config.seed + 1)
    )
    say = print if progress else (lambda *_: None)
    say(f"judge classifier: test accuracy {judge.accuracy:.4f}; reward classifier: {reward.accuracy:.4f}")
    if model is None:
        started = time.time()
        model = train_image_model(data, model_config, seed=config.seed, progress=progress)
        say(f"model: {model_config.steps} steps in {time.time() - started:.0f} s, final loss {model.losses[-1]:.4f}")
    table, kept = steer(model, reward, judge, data, config, progress=say if progress else None)
    table.attrs.update(device=device, training_steps=model_config.steps, final_loss=model.losses[-1])
    return table, kept, model


def measure(seed: int = 0, dataset: str = "digits", device: str = "cpu") -> xr.Dataset:
    """The default steering table of ``dataset`` (:data:`MODEL`, :class:`Steering`'s defaults)."""
    data = load_dataset(dataset, seed=seed)
    config = ImageModelConfig(**{**MODEL.__dict__, "device": device})
    return train_and_steer(data, config, Steering(seed=seed), device=device)[0]
