"""What the image adapter writes, all or none: the comparison table (netCDF), sample grids (PNG) of the best
sampler at each NFE and of the training images, the model's EMA weights, and the bench-format records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from PIL import Image

from interp.cli import StagedOutputs
from interp.records import BenchRecord, compare

from .data import to_pixels


def image_grid(images: torch.Tensor, columns: int = 8, pad: int = 1) -> Image.Image:
    """A PIL image of ``images`` (``(n, channels, height, width)`` in ``[-1, 1]``) in rows of ``columns``."""
    pixels = to_pixels(images)
    n, height, width, channels = pixels.shape
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), 255, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        canvas[top : top + height, left : left + width] = pixels[k]
    image = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    scale = max(1, 256 // canvas.shape[1])  # small images are enlarged (nearest) to be visible
    return image.resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)


def best_by_fd(table: xr.Dataset, nfe: int) -> str | None:
    """The sampler with the lowest FD-CNN at ``nfe`` (``None`` if none ran)."""
    fd = table["value"].sel({"nfe": nfe, "metric": "fd"}).to_series().dropna()
    return str(fd.idxmin()) if len(fd) else None


def records(table: xr.Dataset) -> list[BenchRecord]:
    """Per NFE, each sampler's FD-CNN against the floor (as many training images; ratio >= 1, lower is better)."""
    name = f"{table.attrs['dataset']}/{table.attrs['interpolant']}"
    out = []
    for nfe in table["nfe"].values:
        for sampler in table["sampler"].values:
            fd = float(table["value"].sel({"sampler": sampler, "nfe": nfe, "metric": "fd"}))
            if np.isfinite(fd):
                case = f"{name}:NFE {int(nfe)}:{sampler}"
                out.append(compare("images", case, "fd_cnn", fd, "training images (floor)", table.attrs["floor_fd"],
                                   "lower"))  # fmt: skip
    return out


def steering_records(table: xr.Dataset) -> list[BenchRecord]:
    """Per multiplier, each steering method's judge accuracy (higher is better) and FD-CNN to the class's training
    images (lower) against best-of-N's at the same multiplier (the search every steering paper compares to)."""
    name = f"{table.attrs['dataset']}/class {table.attrs['label']}"
    value = table["value"]
    out = []
    for k in table["k"].values:
        peer = value.sel({"method": "best-of-N", "k": k})
        for method in table["method"].values:
            row = value.sel({"method": method, "k": k})
            if method == "best-of-N" or not np.isfinite(float(row.sel({"metric": "nfe"}))):
                continue
            case = f"{name}:x{int(k)}:{method}"
            for metric, label, better in (("accuracy", "judge_accuracy", "higher"), ("fd", "fd_cnn", "lower")):
                out.append(compare("images-steering", case, label, float(row.sel({"metric": metric})),
                                   f"best-of-N x{int(k)}", float(peer.sel({"metric": metric})), better))  # fmt: skip
    return out


def inverse_records(table: xr.Dataset) -> list[BenchRecord]:
    """Per task and noise level, the best PSNR of the posterior-approximating methods (ΠGDM, second-order Tweedie,
    the ensemble) against the best of DPS and RED-Diff (ratio >= 1: they win; the full table is in metrics.nc), at
    equal NFE: a method of ours that spent more network evaluations per image than the costlier peer is left out.
    The case names the winner and its NFE."""
    value = table["value"]
    psnr = value.sel({"metric": "psnr"})
    has_nfe = "nfe" in [str(m) for m in table["metric"].values]
    methods = [str(m) for m in table["method"].values]
    ours = [m for m in methods if m in ("pigdm", "tweedie2", "ensemble")]
    peers = [m for m in methods if m in ("dps", "red-diff")]
    out = []
    if not (ours and peers):
        return out
    for task in table["task"].values:
        for sigma in table["noise"].values:
            where = {"task": task, "noise": sigma}
            cell = psnr.sel(where)
            ran_ours = [m for m in ours if np.isfinite(float(cell.sel({"method": m})))]  # a diverged method is NaN
            ran_peers = [m for m in peers if np.isfinite(float(cell.sel({"method": m})))]
            nfe = {m: float(value.sel({**where, "method": m, "metric": "nfe"})) if has_nfe else 0.0 for m in methods}
            budget = max((nfe[m] for m in ran_peers), default=0.0)
            ran_ours = [m for m in ran_ours if nfe[m] <= budget]
            if not (ran_ours and ran_peers):
                continue
            best_ours = max(ran_ours, key=lambda m: float(cell.sel({"method": m})))
            best_peer = max(ran_peers, key=lambda m: float(cell.sel({"method": m})))
            case = f"{table.attrs['dataset']}:{task}:sigma {float(sigma):g}:{best_ours}"
            if has_nfe:
                case += f" (NFE {nfe[best_ours]:g} vs {nfe[best_peer]:g})"
            out.append(compare("images-inverse", case, "psnr", float(cell.sel({"method": best_ours})),
                               best_peer, float(cell.sel({"method": best_peer})), "higher"))  # fmt: skip
    return out


def write_outputs(out_dir, table: xr.Dataset, grids: dict[str, Image.Image], weights: dict | None,
                  recs: list[BenchRecord], json_path=None) -> list[Path]:  # fmt: skip
    """Write ``metrics.nc``, each grid as ``NAME.png``, ``model.pt`` and the JSON records, all or none."""
    out_dir = Path(out_dir)
    with StagedOutputs() as out:
        table.to_netcdf(out.stage(out_dir / "metrics.nc"), engine="h5netcdf")
        for name, image in grids.items():
            image.save(out.stage(out_dir / f"{name}.png"), format="png")
        if weights is not None:
            torch.save(weights, out.stage(out_dir / "model.pt"))
        if json_path:
            out.stage(json_path).write_text(json.dumps([r.__dict__ for r in recs], indent=1))
    return out.destinations
