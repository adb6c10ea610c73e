"""What the adapter writes: trajectories of every cell through time (into the AnnData), the figure, the records.

Everything is computed before anything is written, and every file is written atomically (temporary file, then
rename), so a failed run leaves no half-written output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

from interp import integrate  # noqa: E402
from interp.bridges import SnapshotMatching  # noqa: E402
from interp.cli import StagedOutputs  # noqa: E402
from interp.nets import MLP  # noqa: E402
from interp.records import BenchRecord, compare  # noqa: E402
from interp.solvers import RK4  # noqa: E402

from .embedding import Embedding  # noqa: E402
from .methods import BASELINES, INTERP_METHODS, PEERS, MethodConfig, train_config  # noqa: E402
from .protocol import method_space, summary  # noqa: E402


def trajectories(adata, times: np.ndarray, embedding: Embedding, config: MethodConfig, *, n_grid: int = 25, seed=0):
    """OT-CFM fitted on every time point; each cell carried by the ODE from its own time forwards and backwards
    through ``n_grid`` times spanning the course. Returns (embedding of every cell, trajectories
    ``(cells, n_grid, dim)``, the grid's real times)."""
    features = embedding.features(adata)
    fitted = embedding.unfitted().fit(features)
    space = fitted.transform(features)
    centre, scale = method_space(space)
    distinct = np.unique(times)
    span = float(distinct[-1] - distinct[0])
    s_cells = (times - distinct[0]) / span
    snapshots = [torch.as_tensor((space[times == t] - centre) / scale, dtype=torch.float32) for t in distinct]
    torch.manual_seed(seed)
    flow = MLP((space.shape[1],), hidden=config.width, depth=config.depth).float()
    model = SnapshotMatching(flow, sigma=config.sigma_min, config=train_config(config, seed))
    model.fit(snapshots, (distinct - distinct[0]) / span, generator=torch.Generator().manual_seed(seed))
    grid = np.linspace(0.0, 1.0, n_grid)
    out = np.empty((space.shape[0], n_grid, space.shape[1]))
    fine_steps = max(1, config.steps_per_unit)
    for s_k in np.unique(s_cells):
        rows = np.flatnonzero(s_cells == s_k)
        start = torch.as_tensor((space[rows] - centre) / scale, dtype=torch.float32)
        for side in (grid[grid >= s_k], grid[grid <= s_k][::-1]):
            knots = np.unique(np.concatenate([[s_k], side]))
            if side.size == 0 or knots.size < 2:
                continue
            knots = knots if side[0] >= s_k else knots[::-1]
            pieces = [
                np.linspace(a, b, max(1, math.ceil(abs(b - a) * fine_steps)) + 1)
                for a, b in zip(knots[:-1], knots[1:], strict=True)
            ]
            path_grid = np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])
            with torch.no_grad():
                states = integrate(
                    model.velocity, start, torch.as_tensor(path_grid), RK4(), record=True, progress=False
                ).states
            for g, s in enumerate(grid):
                if s in side:
                    at = int(np.argmin(np.abs(path_grid - s)))
                    out[rows, g] = states[at].double().cpu().numpy() * scale + centre
    return space, out, distinct[0] + grid * span


def records(table: xr.Dataset, dataset: str) -> list[BenchRecord]:
    """Bench-format records: each interp method against each peer and baseline, per held-out time and averaged,
    per metric (mean over seeds; lower is better)."""
    stats = summary(table)
    methods = [str(m) for m in table["method"].values]
    ours = [m for m in methods if m in INTERP_METHODS]
    others = [m for m in methods if m in PEERS + BASELINES]
    out = []
    cases = [(f"held_out={float(t):g}", stats["mean"].sel(held_out=t)) for t in table["held_out"].values]
    cases.append(("mean", stats["overall"]))
    for case, values in cases:
        for metric in table["metric"].values:
            for mine in ours:
                for other in others:
                    out.append(
                        compare(
                            "single-cell",
                            f"{dataset}:{mine}:{case}",
                            str(metric),
                            float(values.sel({"method": mine, "metric": metric})),
                            other,
                            float(values.sel({"method": other, "metric": metric})),
                            "lower",
                        )
                    )
    return out


def figure(space, times, trajectory, table: xr.Dataset, title: str, *, n_paths: int = 40, seed: int = 0):
    """PC1–PC2 of every cell coloured by time with sampled trajectories, and held-out W1 per method."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    order = np.argsort(times, kind="stable")
    points = left.scatter(space[order, 0], space[order, 1], c=times[order], cmap="viridis", s=12, zorder=2)
    fig.colorbar(points, ax=left, label="time")
    first = np.flatnonzero(times == times.min())
    chosen = np.random.default_rng(seed).choice(first, size=min(n_paths, first.size), replace=False)
    for i in chosen:
        left.plot(trajectory[i, :, 0], trajectory[i, :, 1], color="0.3", lw=0.7, alpha=0.6, zorder=1)
    left.set(xlabel="dim 1", ylabel="dim 2", title=f"{title}: cells and OT-CFM trajectories")
    stats = summary(table)
    methods = [str(m) for m in table["method"].values]
    held = table["held_out"].values
    width = 0.8 / len(held)
    for h, t in enumerate(held):
        mean = stats["mean"].sel(held_out=t, metric="W1").values
        std = stats["std"].sel(held_out=t, metric="W1").values
        right.bar(np.arange(len(methods)) + h * width, mean, width, yerr=std, label=f"held out {t:g}")
    right.set_xticks(np.arange(len(methods)) + 0.4 - width / 2, methods, rotation=30)
    right.set(ylabel="W1 to the held-out population", title="leave-one-time-point-out (mean ± sd over seeds)")
    right.legend()
    fig.tight_layout()
    return fig


def write_outputs(out_dir, name, adata, table, trajectory_bundle, recs, fig, json_path=None) -> list[Path]:
    """Write the netCDF table, the annotated ``.h5ad``, the PNG and the JSON records, all or none: each is written
    into a staging folder beside its destination and the four are moved into place only when all were written
    (docs/design.md, "Command lines")."""
    out_dir = Path(out_dir)
    space, paths, grid_times = trajectory_bundle
    annotated = adata.copy()
    annotated.obsm["X_interp"] = space
    annotated.obsm["X_interp_trajectory"] = paths
    stats = summary(table)
    annotated.uns["interp"] = {
        "trajectory_times": np.asarray(grid_times),
        "trajectory_method": "ot-cfm",
        "methods": np.asarray([str(m) for m in table["method"].values]),
        "metrics": np.asarray([str(m) for m in table["metric"].values]),
        "held_out": np.asarray(table["held_out"].values),
        "mean": np.asarray(stats["mean"].values),
        "std": np.asarray(stats["std"].values),
    }
    try:
        with StagedOutputs() as out:
            table.to_netcdf(out.stage(out_dir / f"{name}_results.nc"), engine="h5netcdf")
            annotated.write_h5ad(out.stage(out_dir / f"{name}_interp.h5ad"))
            fig.savefig(out.stage(out_dir / f"{name}.png"), dpi=120, format="png")
            if json_path:
                out.stage(json_path).write_text(json.dumps([r.__dict__ for r in recs], indent=1))
    finally:
        plt.close(fig)
    return out.destinations
