"""The sampler comparison on a trained image model: every sampler at every NFE from the same noise, scored by the
feature network (:mod:`.classifier`) against the test split, with the pathwise error to a tight solve.

Each sampler runs on its best standard grid, chosen per NFE by the pathwise error on ``pilot`` separate noise
draws (not the scored ones): an ODE Runge–Kutta method on the VP path's log-SNR grid, for instance, takes its
last step across the stiff end and lands far off, while the exponential integrators are at home there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from .classifier import FeatureNet, reference_scores, scores
from .data import Images
from .model import ImageModel
from .sampling import GRIDS, SAMPLERS, initial_noise, pathwise_error, sample, tight_solve

METRICS = ("fd", "kd", "precision", "recall", "pathwise_error", "accuracy", "confidence", "out_of_range", "nfe",
           "seconds")  # fmt: skip


@dataclass
class Comparison:
    """What is compared: samplers, NFE budgets, images scored and pilot images, and classifier-free guidance."""

    samplers: tuple[str, ...] = ("DPM-Solver++2M", "UniPC-2", "iPNDM-3", "DEIS-3", "Heun", "Euler")
    nfes: tuple[int, ...] = (5, 10, 20)
    samples: int = 1000
    pilot: int = 64
    grids: tuple[str, ...] = GRIDS
    guidance: float = 0.0
    seed: int = 0

    def __post_init__(self):
        unknown = [s for s in self.samplers if s not in SAMPLERS]
        if unknown or not self.samplers:
            raise ValueError(f"unknown samplers {unknown}; choose from {', '.join(SAMPLERS)}")
        bad_grids = [g for g in self.grids if g not in GRIDS]
        if bad_grids or not self.grids:
            raise ValueError(f"unknown grids {bad_grids}; choose from {', '.join(GRIDS)}")
        if not self.nfes or not all(isinstance(n, int) and n >= 1 for n in self.nfes):
            raise ValueError(f"NFE budgets must be positive integers; got {self.nfes}")
        if self.samples < 10 or self.pilot < 1:
            raise ValueError(f"need at least 10 samples and 1 pilot image; got {self.samples}, {self.pilot}")
        if not (np.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"guidance must be finite and >= 0; got {self.guidance}")


def _labels(model: ImageModel, n: int) -> torch.Tensor | None:
    classes = model.net.num_classes
    return torch.arange(n, device=model.device) % classes if classes else None


def compare_samplers(model: ImageModel, features: FeatureNet, data: Images, config: Comparison,
                     progress=None) -> xr.Dataset:  # fmt: skip
    """``value (sampler, nfe, metric)`` and the chosen ``grid (sampler, nfe)``; the reference scores (as many
    training images, and draws of a pixel Gaussian, against the test split) as attributes."""
    n = config.samples
    noise = initial_noise(model, n, config.seed, model.device)
    pilot = initial_noise(model, config.pilot, config.seed + 1, model.device)
    labels, pilot_labels = _labels(model, n), _labels(model, config.pilot)
    guide = dict(guidance=config.guidance)
    pilot_reference = tight_solve(model, pilot, labels=pilot_labels, **guide)
    scored_reference = tight_solve(model, noise[: config.pilot], labels=None if labels is None else
                                   labels[: config.pilot], **guide)  # fmt: skip
    values = np.full((len(config.samplers), len(config.nfes), len(METRICS)), np.nan)
    chosen = np.full((len(config.samplers), len(config.nfes)), "", dtype=object)
    for i, name in enumerate(config.samplers):
        for j, nfe in enumerate(config.nfes):
            errors = {}
            for kind in config.grids:
                try:
                    images, _ = sample(model, name, nfe, pilot, grid_kind=kind, labels=pilot_labels, **guide)
                except ValueError:  # too few evaluations for one step of this sampler
                    break
                error = pathwise_error(images, pilot_reference)
                errors[kind] = error if np.isfinite(error) else np.inf
            if not errors:
                continue
            kind = min(errors, key=errors.get)
            started = time.perf_counter()
            images, used = sample(model, name, nfe, noise, grid_kind=kind, labels=labels, **guide)
            seconds = time.perf_counter() - started
            row = scores(features, data.test, images, seed=config.seed)
            row["pathwise_error"] = pathwise_error(images[: config.pilot], scored_reference)
            # pixels pushed outside the data range [-1, 1] (by guidance, or by a few-step sampler diverging)
            row["out_of_range"] = float((images.abs() > 1).double().mean())
            if labels is not None:
                probabilities, labels_cpu = features.probabilities(images), labels.cpu()
                row["accuracy"] = float((probabilities.argmax(1) == labels_cpu).double().mean())
                row["confidence"] = float(probabilities[torch.arange(n), labels_cpu].double().mean())
            row.update(nfe=used, seconds=seconds)
            values[i, j] = [row.get(m, np.nan) for m in METRICS]
            chosen[i, j] = kind
            if progress is not None:
                progress(f"{name} NFE {nfe} ({kind}): FD-CNN {row['fd']:.3f}, pathwise {row['pathwise_error']:.4f}")
    refs = reference_scores(features, data, n, seed=config.seed)
    attrs = {f"{which}_{metric}": value for which, row in refs.items() for metric, value in row.items()}
    attrs.update(classifier_accuracy=features.accuracy, samples=n, pilot=config.pilot, guidance=config.guidance,
                 interpolant=model.interpolant_name, dataset=data.name)  # fmt: skip
    return xr.Dataset(
        {"value": (("sampler", "nfe", "metric"), values), "grid": (("sampler", "nfe"), chosen.astype(str))},
        coords={"sampler": list(config.samplers), "nfe": list(config.nfes), "metric": list(METRICS)},
        attrs=attrs,
    )
