"""Reports of a validate run: ``report.nc`` (records and 2D samples) and a PNG of samples over exact contours."""

from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np
import torch
import xarray as xr

from interp import __version__
from interp.cli import StagedOutputs
from interp.records import Record
from interp.results import write_netcdf


def records_dataset(records: list[Record], samples: dict) -> xr.Dataset:
    """Records along dim ``check``; final 2D samples along ``run``/``particle``/``dim``."""
    columns = {k: [asdict(r)[k] for r in records] for k in asdict(records[0])}
    data = {
        k: ("check", np.asarray(v, dtype=float if k in ("value", "tolerance") else None)) for k, v in columns.items()
    }
    data["passed"] = ("check", np.asarray(columns["passed"], dtype=np.int8))
    if samples:
        names = [f"{preset}/{method}" for preset, method in samples]
        stacked = np.stack([s[0].detach().cpu().double().numpy() for s in samples.values()])
        data["samples"] = (("run", "particle", "dim"), stacked)
        coords = {"run": names}
    else:
        coords = {}
    return xr.Dataset(data, coords=coords, attrs={"interp_version": __version__, "suite": "validate"})


def write_report(records: list[Record], samples: dict, out_dir: str, staging: StagedOutputs | None = None) -> list[str]:
    """``report.nc`` (and ``samples_2d.png`` when there are 2D samples) in ``out_dir``; with ``staging``, into its
    temporary folder, moved into place when the caller's ``with`` block ends without error."""
    if staging is None:
        with StagedOutputs() as staging:
            return write_report(records, samples, out_dir, staging)
    nc_path = os.path.join(out_dir, "report.nc")
    write_netcdf(records_dataset(records, samples), staging.stage(nc_path))
    if not samples:
        return [nc_path]
    png_path = os.path.join(out_dir, "samples_2d.png")
    plot_samples(samples, staging.stage(png_path))
    return [nc_path, png_path]


def plot_samples(samples: dict, path: str, max_points: int = 1500) -> None:
    """One panel per (preset, method): generated samples over contours of the exact final log-density."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = sorted({p for p, _ in samples})
    methods = sorted({m for _, m in samples})
    fig, axes = plt.subplots(
        len(methods), len(presets), figsize=(2.6 * len(presets), 2.6 * len(methods)), squeeze=False
    )
    grid = torch.linspace(-5, 5, 120, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    for i, method in enumerate(methods):
        for j, preset in enumerate(presets):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if (preset, method) not in samples:
                ax.set_visible(False)
                continue
            final, marginal = samples[(preset, method)]
            log_density = marginal.log_density(points).reshape(xx.shape)
            ax.contour(xx.numpy(), yy.numpy(), log_density.clamp(min=-12).numpy(), levels=8, linewidths=0.6)
            x = final[:max_points].detach().cpu().numpy()
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4, color="k")
            ax.set_title(f"{preset}\n{method}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
