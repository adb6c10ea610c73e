"""The protocol: every method on a task's official split, scored side by side.

For each task the statistical baselines forecast from the histories, the window models are trained on the histories
(never on the held-out values) and every interp method samples paths for each series; the scores are WQL (over the
nine levels 0.1…0.9), MASE (of the median) and CRPS (of the samples; the baselines give quantiles, not samples,
so their CRPS is left out: NaN, said in the table's attributes). Across tasks each method's score is divided by the
seasonal naive's and the ratios' geometric mean taken, as the Chronos paper aggregates.

A constant series has no MASE scale: it is left out of MASE (``constant="skip"``) and counted in the table's
attributes (``constant_series``); WQL and CRPS keep it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from interp.metrics import FORECAST_QUANTILES, crps_from_samples, mase, seasonal_error, weighted_quantile_loss

from .baselines import BASELINES, forecast
from .data import Task
from .forecast import Contexts, SamplingConfig, conditional, fk_guided, refined, self_guided, summarise
from .model import ModelConfig, train_model

INTERP_METHODS = ("self-guidance", "quantile-guidance", "fk-guidance", "refine-naive", "refine-ets", "conditional")
METHODS = BASELINES + INTERP_METHODS
METRICS = ("WQL", "MASE", "CRPS")
UNCONDITIONAL = ("self-guidance", "quantile-guidance", "fk-guidance", "refine-naive", "refine-ets")


@dataclass
class TaskResult:
    """One task's forecasts: per method the median ``(series, horizon)``, the quantiles ``(series, levels,
    horizon)``, the sample paths ``(series, samples, horizon)`` (interp methods) and the seconds it took (training
    included, shared by the methods of one model and charged to the first)."""

    task: Task
    context: int
    medians: dict[str, np.ndarray] = field(default_factory=dict)
    quantiles: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    training_loss: dict[str, float] = field(default_factory=dict)


def check_methods(task: Task, methods) -> None:
    """Refuse unknown methods, and methods that need whole histories (the baselines and the refinements built on
    them) on a task whose histories have missing values."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    gapped = next((name for name, h in zip(task.ids, task.histories, strict=True) if not np.isfinite(h).all()), None)
    whole = [m for m in methods if m in BASELINES or m.startswith("refine-")]
    if gapped is not None and whole:
        raise ValueError(
            f"series {gapped!r} has missing values: {', '.join(whole)} need whole histories; "
            f"choose from {', '.join(m for m in INTERP_METHODS if not m.startswith('refine-'))}"
        )


def run_task(
    task: Task, methods, model_config: ModelConfig, sampling: SamplingConfig, *, context_multiple: int = 2,
    seed: int = 0, progress: bool = False,
) -> TaskResult:  # fmt: skip
    """Every method in ``methods`` on ``task``; the window's context is ``context_multiple`` horizons."""
    check_methods(task, methods)
    context = context_multiple * task.horizon
    result = TaskResult(task, context)
    bases = {"refine-naive": "seasonal-naive", "refine-ets": "auto-ets"}  # a refinement's base forecast
    for method in [m for m in methods if m in BASELINES] + [bases[m] for m in methods if m in bases]:
        if method in result.medians:
            continue
        began = time.time()
        result.medians[method], result.quantiles[method] = forecast(task, method)
        result.seconds[method] = time.time() - began
    generator = torch.Generator(model_config.device).manual_seed(seed)
    wanted = [m for m in methods if m in UNCONDITIONAL]
    if wanted:
        began = time.time()
        model = train_model(task.histories, context, task.horizon, model_config, seed=seed, progress=progress)
        result.training_loss["unconditional"] = float(np.mean(model.losses[-100:]))
        trained = time.time() - began
        ctx = Contexts.of(task.histories, context, model.spread)
        for method in wanted:
            began = time.time()
            if method in ("self-guidance", "quantile-guidance"):
                guidance = "mean" if method == "self-guidance" else "quantile"
                paths = self_guided(model, ctx, sampling, guidance, generator)
            elif method == "fk-guidance":
                with tqdm(total=len(task), desc=f"{task.name} fk-guidance", disable=None if progress else True) as bar:
                    paths = fk_guided(model, ctx, sampling, generator, progress=bar.update)
            else:
                base = result.medians["seasonal-naive" if method == "refine-naive" else "auto-ets"]
                paths = refined(model, ctx, base, sampling, generator)
            _store(result, method, ctx.unscaled(paths), time.time() - began + trained)
            trained = 0.0
    if "conditional" in methods:
        began = time.time()
        model = train_model(
            task.histories, context, task.horizon, model_config, conditional=True, seed=seed, progress=progress
        )
        result.training_loss["conditional"] = float(np.mean(model.losses[-100:]))
        ctx = Contexts.of(task.histories, context, model.spread)
        _store(result, "conditional", ctx.unscaled(conditional(model, ctx, sampling, generator)), time.time() - began)
    for method in list(result.medians):
        if method not in methods:  # a base forecast computed for refinement only
            del result.medians[method], result.quantiles[method], result.seconds[method]
    return result


def _store(result: TaskResult, method: str, paths: np.ndarray, seconds: float) -> None:
    if not np.isfinite(paths).all():
        bad = int((~np.isfinite(paths)).any(axis=(1, 2)).sum())
        raise FloatingPointError(f"{result.task.name}: {method} gave non-finite forecasts for {bad} series")
    result.samples[method] = paths
    result.medians[method], result.quantiles[method] = summarise(paths)
    result.seconds[method] = seconds


def scores(result: TaskResult) -> dict[str, dict[str, float]]:
    """``{method: {metric: value}}`` of one task."""
    task = result.task
    out = {}
    for method, median in result.medians.items():
        crps = np.nan
        if method in result.samples:
            crps = crps_from_samples(np.moveaxis(result.samples[method], 1, 0), task.targets)
        out[method] = {
            "WQL": weighted_quantile_loss(task.targets, result.quantiles[method]),
            "MASE": mase(task.targets, median, task.histories, task.season, constant="skip"),
            "CRPS": crps,
        }
    return out


def metrics_table(results: list[TaskResult], methods) -> xr.Dataset:
    """The table ``value (method, task, metric)``, the seconds ``(method, task)`` and ``relative (method,
    metric)``: the geometric mean over tasks of each score divided by the seasonal naive's (NaN without it)."""
    tasks = [r.task.name for r in results]
    value = np.full((len(methods), len(tasks), len(METRICS)), np.nan)
    seconds = np.full((len(methods), len(tasks)), np.nan)
    constant = []
    for j, result in enumerate(results):
        table = scores(result)
        for i, method in enumerate(methods):
            value[i, j] = [table[method][m] for m in METRICS]
            seconds[i, j] = result.seconds[method]
        constant.append(sum(seasonal_error(h[np.isfinite(h)], result.task.season) == 0 for h in result.task.histories))
    data = xr.Dataset(
        {
            "value": (("method", "task", "metric"), value),
            "seconds": (("method", "task"), seconds),
        },
        coords={"method": list(methods), "task": tasks, "metric": list(METRICS)},
    )
    data["relative"] = relative(data["value"])
    data.attrs.update(
        quantiles=np.asarray(FORECAST_QUANTILES),
        constant_series=np.asarray(constant),
        note="CRPS is of sample paths: NaN for the baselines, which give quantiles. MASE leaves out constant series "
        "(scale 0), counted per task in constant_series. relative: geometric mean over tasks of score / "
        "seasonal-naive's.",
    )
    return data


def relative(value: xr.DataArray) -> xr.DataArray:
    """Geometric mean over tasks of ``value / value[seasonal-naive]`` per method and metric."""
    if "seasonal-naive" not in value["method"].values:
        return xr.full_like(value.isel(task=0, drop=True), np.nan)
    ratio = value / value.sel({"method": "seasonal-naive"})
    return np.exp(np.log(ratio).mean("task"))
