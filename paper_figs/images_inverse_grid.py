"""Reconstructions of test images from masked, downsampled, blurred and noisy measurements: measurement, each
method's reconstruction and the truth, side by side, with each method's PSNR.

The qualitative comparison figures of DPS (Chung et al. 2023, Fig. 1), ΠGDM (Song et al. 2023, Fig. 1) and
RED-Diff (Mardani et al. 2023, Fig. 3), on one unconditional VP U-Net (``python -m problems images --task
inverse``): one row per task and noise level, one column per panel — the measurement mapped back through the
operator's pseudo-inverse, every method's first reconstruction (blank where it diverged), the truth — each
a tile of the first ``--images`` test images; a method's column title carries its PSNR on that row (the mean over all
the run's images, of each image's mean reconstruction) and its network evaluations per image.

    python -m paper_figs images_inverse_grid --out figs/                          # trains and runs (digits, CPU)
    python -m paper_figs images_inverse_grid --out figs/ --table out/metrics.nc   # from an inverse run

Writes ``images_inverse_grid.png`` and ``.nc`` into ``--out``.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import xarray as xr

from interp.cli import positive_int

from .figure import read_table, run, save_png

NAME = "images_inverse_grid"


def _tile(images: np.ndarray) -> np.ndarray:
    """``(n, C, H, W)`` in [-1, 1] → one image in [0, 1], ``ceil(sqrt(n))`` per row with a white gap between."""
    n, c, h, w = images.shape
    across = math.ceil(math.sqrt(n))
    down = math.ceil(n / across)
    out = np.ones((down * (h + 1) - 1, across * (w + 1) - 1, c))
    for i, image in enumerate(images):
        top, left = (i // across) * (h + 1), (i % across) * (w + 1)
        out[top : top + h, left : left + w] = (np.clip(image, -1, 1).transpose(1, 2, 0) + 1) / 2
    return out[..., 0] if c == 1 else out


def plot(ds: xr.Dataset, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels, value = ds["panels"], ds["value"]
    columns = [str(p) for p in ds.panel.values]
    rows = [(task, noise) for task in ds.task.values for noise in ds.noise.values]
    tile = _tile(panels.isel({"task": 0, "noise": 0, "panel": 0}).fillna(0.0).values)
    aspect = tile.shape[1] / tile.shape[0]
    fig, axes = plt.subplots(len(rows), len(columns), squeeze=False,
                             figsize=(0.5 + 1.3 * aspect * len(columns), 1.6 * len(rows)))  # fmt: skip
    for r, (task, noise) in enumerate(rows):
        where = {"task": task, "noise": noise}
        for c, column in enumerate(columns):
            ax = axes[r, c]
            images = panels.sel({**where, "panel": column}).values
            if np.isfinite(images).all():
                ax.imshow(_tile(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "diverged", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if column in value["method"].values:
                cell = value.sel({**where, "method": column})
                psnr, nfe = (float(cell.sel({"metric": m})) for m in ("psnr", "nfe"))
                label = f"{column}\n{psnr:.1f} dB, NFE {nfe:.0f}" if np.isfinite(psnr) else f"{column}\ndiverged"
                ax.set_title(label, fontsize=7)
            elif r == 0:
                ax.set_title(column, fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{task}\nσ_y {float(noise):g}", fontsize=8)
    fig.suptitle(f"{ds.attrs['dataset']}: {ds.attrs['steps']} steps, {ds.attrs['samples']} reconstructions per image",
                 fontsize=9, y=1.0 + 0.06 / len(rows))  # fmt: skip
    save_png(fig, path)


def add_arguments(parser) -> None:
    parser.add_argument("--table", help="metrics.nc of `python -m problems images --task inverse --out DIR`")
    parser.add_argument("--images", type=positive_int, default=4, help="test images per panel (default 4)")


def load(args, parser) -> xr.Dataset:
    """The inverse table from ``--table``, or measured here (the default digits run), cut to ``--images``."""
    if not args.table:
        from problems.images.inverse import measure

        ds = measure(args.seed)
    else:
        ds = read_table(args.table, parser, lambda ds: "panels" in ds and "value" in ds and "task" in ds.dims,
                        "an inverse-problem table")  # fmt: skip
    return ds.isel({"image": slice(0, args.images)})


def main(argv: list[str] | None = None) -> int:
    """Draw the figure (``python -m paper_figs images_inverse_grid --out DIR [--table PATH]``)."""
    return run(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
