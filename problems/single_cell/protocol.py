"""Leave-one-time-point-out: every interior time point held out in turn, every method on several seeds.

For each held-out time the embedding is fitted on the other time points' cells only; the held-out cells (or, for
simulated data, a large sample of the true marginal) are embedded with it. Metrics are computed in that embedding
(W1, W2 by POT's exact ``emd2``; MMD with an RBF kernel whose bandwidth is the median pairwise distance of the
held-out population, one kernel for every method of a fold).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

import interp
from interp.metrics import median_bandwidth, mmd, wasserstein

from .data import check_time_course
from .embedding import Embedding
from .methods import ALL_METHODS, BASELINES, PEERS, PREDICT, Fold, MethodConfig

METRICS = ("W1", "W2", "MMD")


@dataclass
class ProtocolResult:
    table: xr.Dataset  # value(method, held_out, seed, metric), seconds(method, held_out, seed)
    predictions: dict = field(default_factory=dict)  # (method, held_out time, seed) -> points in the fold's embedding
    embedded: dict = field(default_factory=dict)  # held_out time -> (train embedding per cell, times per cell)


def method_space(train: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of and one scale for the training cells: coordinates divided by it have unit mean variance."""
    centre = train.mean(axis=0)
    scale = float(np.sqrt(((train - centre) ** 2).mean()))
    if not scale > 0:
        raise ValueError("the training cells do not vary in the embedding")
    return centre, scale


def metrics(prediction: Tensor, target: Tensor, bandwidth: float) -> dict[str, float]:
    return {
        "W1": wasserstein(prediction, target, p=1),
        "W2": wasserstein(prediction, target, p=2),
        "MMD": mmd(prediction, target, bandwidth=bandwidth),
    }


def run_protocol(
    adata,
    time_key: str,
    *,
    embedding: Embedding,
    methods=ALL_METHODS,
    seeds=(0, 1, 2),
    config: MethodConfig | None = None,
    truth: dict[float, np.ndarray] | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """Run the protocol; ``truth`` maps a held-out time to a sample of its true population (feature space), used
    in place of the held-out cells when given (simulated data)."""
    config = config or MethodConfig()
    unknown = [m for m in methods if m not in PREDICT]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(ALL_METHODS)}")
    if not seeds:
        raise ValueError("need at least one seed")
    features = embedding.features(adata)
    dim = embedding.dimension(features.shape[1])
    times, distinct = check_time_course(adata, time_key, min_cells=dim + 1)
    held_out = distinct[1:-1]
    values = np.full((len(methods), held_out.size, len(seeds), len(METRICS)), np.nan)
    seconds = np.full((len(methods), held_out.size, len(seeds)), np.nan)
    result = ProtocolResult(table=xr.Dataset())
    bar = tqdm(total=values[..., 0].size, desc="leave-one-out", disable=None if progress else True)
    for h, t_out in enumerate(held_out):
        train = times != t_out
        fitted = embedding.unfitted()
        fitted.fit(features[train])
        space = fitted.transform(features)
        centre, scale = method_space(space[train])
        kept = [t for t in distinct if t != t_out]
        span = kept[-1] - kept[0]
        snapshots = [torch.as_tensor((space[times == t] - centre) / scale, dtype=torch.float32) for t in kept]
        fold = Fold(
            snapshots=snapshots,
            times=torch.tensor([(t - kept[0]) / span for t in kept], dtype=torch.float64),
            target=float((t_out - kept[0]) / span),
            previous=int(np.searchsorted(kept, t_out) - 1),
        )
        population = space[times == t_out] if truth is None else fitted.transform(np.asarray(truth[float(t_out)]))
        target = torch.as_tensor(population, dtype=torch.float64)
        bandwidth = median_bandwidth(target, target)
        result.embedded[float(t_out)] = (space, times)
        for m, method in enumerate(methods):
            for s, seed in enumerate(seeds):
                started = time.perf_counter()
                predicted = PREDICT[method](fold, config, int(seed))
                seconds[m, h, s] = time.perf_counter() - started
                points = predicted.double().numpy() * scale + centre
                if not np.isfinite(points).all():
                    raise FloatingPointError(f"{method} predicted non-finite cells for held-out time {t_out}")
                result.predictions[(method, float(t_out), int(seed))] = points
                scores = metrics(torch.as_tensor(points), target, bandwidth)
                values[m, h, s] = [scores[k] for k in METRICS]
                bar.update(1)
                bar.set_postfix(method=method, held_out=float(t_out), W1=f"{scores['W1']:.3g}")
    bar.close()
    role = ["peer" if m in PEERS else "baseline" if m in BASELINES else "interp" for m in methods]
    result.table = xr.Dataset(
        {
            "value": (("method", "held_out", "seed", "metric"), values),
            "seconds": (("method", "held_out", "seed"), seconds),
        },
        coords={
            "method": list(methods),
            "held_out": held_out.astype(np.float64),
            "seed": np.asarray(seeds, dtype=np.int64),
            "metric": list(METRICS),
            "role": ("method", role),
        },
        attrs={
            "time_key": time_key,
            "embedding": embedding.kind,
            "dimension": dim,
            "time_points": distinct.tolist(),
            "target": "true marginal sample" if truth is not None else "held-out cells",
            "interp_version": interp.__version__,
            **{f"config_{k}": v for k, v in vars(config).items()},
        },
    )
    return result


def summary(table: xr.Dataset) -> xr.Dataset:
    """Mean and standard deviation over seeds, and the average over held-out times."""
    value = table["value"]
    return xr.Dataset(
        {
            "mean": value.mean("seed"),
            "std": value.std("seed", ddof=1) if value.sizes["seed"] > 1 else value.std("seed"),
            "overall": value.mean(("seed", "held_out")),
        }
    )
