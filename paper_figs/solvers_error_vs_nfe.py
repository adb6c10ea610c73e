"""Error against NFE of fast samplers, interp's and its peers', on an exact field.

The analogue, on a closed form, of the sample-quality-vs-NFE figures of DPM-Solver (Lu et al. 2022, Fig. 3),
DPM-Solver++ (Lu et al. 2022b, Fig. 4) and UniPC (Zhao et al. 2023, Fig. 3): those plot FID of trained image models,
where discretisation error and model error mix; here the field is the exact VP field of a Gaussian mixture, so the
error is the solver's alone. Left column: the 2D 8-mode ring, right: the 64D mixture. Top: mean distance of the
final samples to a tight ODE solution from the same noise; bottom: sliced W2 to exact target samples, with its
Monte-Carlo floor (grey). interp's solvers solid (searched grids thick), peers (diffusers, k-diffusion,
torchdiffeq) dashed; each line at its best standard grid (see ``validate/bench/solvers.py``).

    python -m paper_figs solvers_error_vs_nfe --out figs/                      # runs the bench (~25 min on CPU)
    python -m paper_figs solvers_error_vs_nfe --out figs/ --table solvers.nc    # from a saved bench table

Writes ``solvers_error_vs_nfe.png`` and ``solvers_error_vs_nfe.nc`` (the numbers plotted) into ``--out``.
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

from .figure import read_table, run, save_png

NAME = "solvers_error_vs_nfe"


def measure(seed: int) -> xr.Dataset:
    from validate.bench import solvers

    return solvers.to_dataset(*solvers.measure_cases(seed))


def plot(ds: xr.Dataset, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cases = list(ds.case.values)
    fig, axes = plt.subplots(2, len(cases), figsize=(6.5 * len(cases), 9), squeeze=False)
    ours = [str(s) for s in ds.solver.values if not bool(ds.peer.sel(solver=s))]
    peers = [str(s) for s in ds.solver.values if bool(ds.peer.sel(solver=s))]
    colours = dict(zip(ours, plt.cm.tab20(np.linspace(0, 1, max(len(ours), 2))), strict=False))
    colours |= dict(zip(peers, plt.cm.Dark2(np.linspace(0, 1, max(len(peers), 2))), strict=False))
    for j, case in enumerate(cases):
        for i, metric in enumerate(("pathwise_error", "sliced_w2")):
            ax = axes[i, j]
            for solver in ours + peers:
                y = ds[metric].sel(case=case, solver=solver).values
                keep = np.isfinite(y)
                if not keep.any():
                    continue
                peer = solver in peers
                searched = solver.endswith("/searched")
                ax.plot(
                    ds.nfe.values[keep],
                    y[keep],
                    linestyle="--" if peer else "-",
                    linewidth=2.8 if searched else 1.4,
                    marker="s" if peer else "o",
                    markersize=3.5,
                    color=colours[solver],
                    label=solver,
                )
            if metric == "sliced_w2":
                ax.axhline(float(ds["sliced_w2_floor"].sel(case=case)), color="grey", linewidth=3, alpha=0.5)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(ds.nfe.values, [str(v) for v in ds.nfe.values])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("NFE")
            ax.set_ylabel("mean |x - x_ref|" if metric == "pathwise_error" else "sliced W2 to target (floor grey)")
            ax.set_title(f"{case}: {metric.replace('_', ' ')}")
            ax.grid(True, which="both", alpha=0.3)
    save_png(fig, path, legend_from=axes[0, 0])


def add_arguments(parser) -> None:
    parser.add_argument("--table", help="a table written by `python -m validate.bench solvers --table PATH`")


def load(args, parser) -> xr.Dataset:
    """The bench table from ``--table``, or measured here (the whole solvers bench)."""
    if not args.table:
        return measure(args.seed)
    return read_table(args.table, parser, lambda ds: "solver" in ds.dims and "pathwise_error" in ds,
                      "a solvers bench table")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Draw the figure (``python -m paper_figs solvers_error_vs_nfe --out DIR [--table PATH]``)."""
    return run(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
