"""Steering a trained image model toward a class: reward, judged accuracy and FD-CNN against NFE per image, for
reward search and SMC on the unconditional model against classifier-free guidance on the conditional one.

The image counterpart of FK steering's particles-vs-reward comparison with best-of-N (Singhal et al. 2025, Fig. 3)
and of the reward-vs-NFE curves of rollover budget forcing (Kim et al. 2025), with classifier-free guidance (Ho &
Salimans 2022) and its exact geometric target (RLG's mixing, sampled by the Feynman–Kac corrector) beside them:
one class-conditional VP U-Net (``python -m problems images --task steering``), the reward the log-probability of
the class under one classifier, the accuracy that of a second classifier (the judge), FD-CNN against the class's
training images (diversity kept or lost; grey: the class's test images). Search methods and the geometric target
are lines over their compute multiplier, classifier-free guidance single points.

    python -m paper_figs images_steering_reward_vs_nfe --out figs/                  # trains and steers (digits, CPU)
    python -m paper_figs images_steering_reward_vs_nfe --out figs/ --table out/metrics.nc   # from a steering run

Writes ``images_steering_reward_vs_nfe.png`` and ``.nc`` into ``--out``.
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

from .figure import read_table, run, save_png

NAME = "images_steering_reward_vs_nfe"
PANELS = (("reward", "reward log p(c | x) (reward classifier)"), ("accuracy", "accuracy (judge classifier)"),
          ("fd", "FD-CNN to the class's training images"))  # fmt: skip


def plot(ds: xr.Dataset, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    value = ds["value"]
    methods = [str(m) for m in ds.method.values]
    colours = dict(zip(methods, plt.cm.tab10(np.linspace(0, 1, 10)), strict=False))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, (metric, label) in zip(axes, PANELS, strict=True):
        for method in methods:
            nfe = value.sel({"method": method, "metric": "nfe"}).values
            y = value.sel({"method": method, "metric": metric}).values
            keep = np.isfinite(nfe) & np.isfinite(y)
            if keep.any():
                single = keep.sum() == 1
                ax.plot(nfe[keep], y[keep], marker="*" if single else "o", markersize=9 if single else 4,
                        linestyle="none" if single else "-", color=colours[method], label=method)  # fmt: skip
        floor = {"reward": "floor_reward", "accuracy": "floor_accuracy", "fd": "floor_fd"}[metric]
        ax.axhline(ds.attrs[floor], color="grey", linewidth=3, alpha=0.5)
        ax.set_xscale("log")
        if metric == "fd":
            ax.set_yscale("log")
        ax.set_xlabel("NFE per image")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title(f"{ds.attrs['dataset']}, class {ds.attrs['label']}, {ds.attrs['steps']} SDE steps")
    save_png(fig, path, legend_from=axes[0])


def add_arguments(parser) -> None:
    parser.add_argument("--table", help="metrics.nc of `python -m problems images --task steering --out DIR`")


def load(args, parser) -> xr.Dataset:
    """The steering table from ``--table``, or measured here (the default digits run)."""
    if not args.table:
        from problems.images.steering import measure

        return measure(args.seed)
    return read_table(args.table, parser, lambda ds: "value" in ds and {"method", "k"} <= set(ds.dims)
                      and "floor_reward" in ds.attrs, "a steering table")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Draw the figure (``python -m paper_figs images_steering_reward_vs_nfe --out DIR [--table PATH]``)."""
    return run(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
