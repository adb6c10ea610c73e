"""What the adapter writes: the forecasts of every task (series x horizon x quantile, per method), the metrics table
(method x task x metric), a fan chart of a few series and the bench-format records, all or none (every file is
staged beside its destination and moved into place only when all were written)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from interp.cli import StagedOutputs  # noqa: E402
from interp.metrics import FORECAST_QUANTILES, weighted_quantile_loss  # noqa: E402
from interp.records import BenchRecord, compare  # noqa: E402

from .baselines import BASELINES  # noqa: E402
from .protocol import INTERP_METHODS, TaskResult  # noqa: E402


def forecasts_dataset(result: TaskResult) -> xr.Dataset:
    """``quantile_forecast (method, series, quantile, horizon)``, ``median (method, series, horizon)`` and the held-out
    ``target (series, horizon)`` of one task, with the window models' final training losses as attributes."""
    methods = list(result.medians)
    task = result.task
    return xr.Dataset(
        {
            "quantile_forecast": (
                ("method", "series", "quantile", "horizon"),
                np.stack([result.quantiles[m] for m in methods]),
            ),
            "median": (("method", "series", "horizon"), np.stack([result.medians[m] for m in methods])),
            "target": (("series", "horizon"), task.targets),
        },
        coords={
            "method": methods,
            "series": list(task.ids),
            "quantile": np.asarray(FORECAST_QUANTILES),
            "horizon": np.arange(1, task.horizon + 1),
        },
        attrs={
            "task": task.name,
            "season": task.season,
            "context": result.context,
            **{f"training_loss_{name}": loss for name, loss in result.training_loss.items()},
        },
    )


def records(table: xr.Dataset) -> list[BenchRecord]:
    """Each interp method against each baseline, per task and for the relative geometric mean (lower is better)."""
    methods = [str(m) for m in table["method"].values]
    ours = [m for m in methods if m in INTERP_METHODS]
    others = [m for m in methods if m in BASELINES]
    out = []
    cases = [(str(t), table["value"].sel(task=t)) for t in table["task"].values]
    if "seasonal-naive" in methods and table.sizes["task"] > 1:
        cases.append(("relative geometric mean", table["relative"]))
    for case, values in cases:
        for metric in ("WQL", "MASE"):
            for mine in ours:
                for other in others:
                    ours_value = float(values.sel({"method": mine, "metric": metric}))
                    other_value = float(values.sel({"method": other, "metric": metric}))
                    out.append(
                        compare("time-series", f"{case}:{mine}", metric, ours_value, other, other_value, "lower")
                    )
    return out


def figure(result: TaskResult, methods, *, n_series: int = 4):
    """Fan charts (10-90 % and median) of the first ``n_series`` series: the best interp method by WQL against the
    seasonal naive, with the history's tail and the held-out values."""
    task = result.task
    ours = [m for m in methods if m in result.samples]
    shown = [min(ours, key=lambda m: weighted_quantile_loss(task.targets, result.quantiles[m]))] if ours else []
    shown += [m for m in methods if m in BASELINES][:1]
    n = min(n_series, len(task))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False)
    for i, ax in enumerate(axes[0]):
        history = task.histories[i][-result.context :]
        past = np.arange(-history.shape[0], 0)
        future = np.arange(task.horizon)
        ax.plot(past, history, color="0.2", lw=1)
        ax.plot(future, task.targets[i], color="0.2", lw=1, ls="--", label="held out")
        for colour, method in zip(("C0", "C1"), shown, strict=False):
            q = result.quantiles[method][i]
            ax.fill_between(future, q[0], q[-1], color=colour, alpha=0.25)
            ax.plot(future, result.medians[method][i], color=colour, lw=1.2, label=method)
        ax.set(title=f"{task.name} {task.ids[i]}", xlabel="step")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_outputs(out_dir, table: xr.Dataset, forecasts: list[xr.Dataset], fig, recs, json_path=None) -> list[Path]:
    """Write the metrics table, each task's forecasts, the PNG and the JSON records, all or none."""
    out_dir = Path(out_dir)
    try:
        with StagedOutputs() as out:
            table.to_netcdf(out.stage(out_dir / "metrics.nc"), engine="h5netcdf")
            for data in forecasts:
                data.to_netcdf(out.stage(out_dir / f"{data.attrs['task']}_forecasts.nc"), engine="h5netcdf")
            fig.savefig(out.stage(out_dir / "fan_chart.png"), dpi=110, format="png")
            if json_path:
                out.stage(json_path).write_text(json.dumps([r.__dict__ for r in recs], indent=1))
    finally:
        plt.close(fig)
    return out.destinations
