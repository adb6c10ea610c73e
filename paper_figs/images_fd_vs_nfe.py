"""FD-CNN and pathwise error against NFE of interp's samplers and diffusers' schedulers on a trained image model.

The trained-model counterpart of DPM-Solver (Lu et al. 2022, Fig. 3), DPM-Solver++ (Lu et al. 2022b, Fig. 4) and
UniPC (Zhao et al. 2023, Fig. 3): one noise-prediction U-Net (``python -m validate.bench images``: digits on a
CPU, Fashion-MNIST on a GPU), every sampler from the same noise at NFE 5-20, each at its best grid or spacing.
Left: FD-CNN of 1000 samples against the test split (a Fréchet distance in a classifier's features, with the
floor — as many training images — and the pixel-Gaussian ceiling as grey lines); right: root mean square per
pixel to dopri5 at rtol 1e-5 from the same noise. interp solid, diffusers dashed.

    python -m paper_figs images_fd_vs_nfe --out figs/                     # runs the bench (digits, CPU)
    python -m paper_figs images_fd_vs_nfe --out figs/ --table images.nc   # from `validate.bench images --table`

Writes ``images_fd_vs_nfe.png`` and ``images_fd_vs_nfe.nc`` into ``--out``.
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

from .figure import read_table, run, save_png

NAME = "images_fd_vs_nfe"


def plot(ds: xr.Dataset, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [str(m) for m in ds.method.values]
    colours = dict(zip(methods, plt.cm.tab20(np.linspace(0, 1, max(len(methods), 2))), strict=False))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, metric in zip(axes, ("fd", "pathwise_error"), strict=True):
        for method in methods:
            y = ds[metric].sel({"method": method}).values
            keep = np.isfinite(y)
            if keep.any():
                peer = bool(ds["peer"].sel({"method": method}))
                ax.plot(ds.nfe.values[keep], y[keep], linestyle="--" if peer else "-", marker="s" if peer else "o",
                        markersize=3.5, linewidth=1.4, color=colours[method], label=method)  # fmt: skip
        if metric == "fd":
            for key in ("floor_fd", "gaussian_fd"):
                ax.axhline(ds.attrs[key], color="grey", linewidth=3, alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ds.nfe.values, [str(v) for v in ds.nfe.values])
        ax.set_xlabel("NFE")
        ax.set_ylabel("FD-CNN (floor and pixel Gaussian grey)" if metric == "fd" else "RMS per pixel to dopri5")
        ax.set_title(f"{ds.attrs['dataset']} ({ds.attrs['device']}): {'FD-CNN' if metric == 'fd' else 'pathwise'}")
        ax.grid(True, which="both", alpha=0.3)
    save_png(fig, path, legend_from=axes[0])


def add_arguments(parser) -> None:
    parser.add_argument("--table", help="a table written by `python -m validate.bench images --table PATH`")


def load(args, parser) -> xr.Dataset:
    """The bench table from ``--table``, or measured here (the images bench on the digits)."""
    if not args.table:
        from validate.bench import images

        return images.measure(args.seed)
    return read_table(args.table, parser, lambda ds: "method" in ds.dims and "fd" in ds and "peer" in ds,
                      "an images bench table")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Draw the figure (``python -m paper_figs images_fd_vs_nfe --out DIR [--table PATH]``)."""
    return run(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
