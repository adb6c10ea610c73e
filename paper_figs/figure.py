"""The plumbing every figure shares: its command line, and writing the PNG and the netCDF of the numbers plotted
into ``--out`` atomically."""

from __future__ import annotations

import argparse
import importlib
import os
from types import ModuleType

from interp.cli import Parser, StagedOutputs, non_negative_int, output_dir
from interp.results import write_atomically, write_netcdf

from . import FIGURES


def figure_module(name: str) -> ModuleType:
    """The module of the figure ``name`` (one of :data:`paper_figs.FIGURES`)."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose from {list(FIGURES)}")
    return importlib.import_module(f"paper_figs.{name}")


def save_png(fig, path: str, *, legend_from=None) -> None:
    """Lay out, write as PNG (atomically) and close a matplotlib figure; with ``legend_from`` (an axes) one legend
    of its lines goes to the right of the whole figure."""
    import matplotlib.pyplot as plt

    if legend_from is not None:
        handles, labels = legend_from.get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png", bbox_inches="tight"))
    plt.close(fig)


def read_table(path: str, parser, fits, what: str):
    """The netCDF table at ``path`` (given as ``--table``) if ``fits(ds)``; else the parser's error."""
    import xarray as xr

    if not os.path.exists(path):
        parser.error(f"--table: no such file {path!r}")
    ds = xr.load_dataset(path, engine="h5netcdf")
    if not fits(ds):
        parser.error(f"--table: {path!r} is not {what}")
    return ds


def run(module: ModuleType, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``--out``, ``--seed`` and the figure's own options, check ``--out`` before any work, load or measure
    its numbers, then write both files or neither (docs/design.md, "Command lines")."""
    parser = Parser(
        prog=prog or f"python -m paper_figs {module.NAME}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the bench when it is run here")
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        output_dir(args.out)
    except ValueError as error:
        parser.error(f"--out: {error}")
    ds = module.load(args, parser)
    table = os.path.join(args.out, f"{module.NAME}.nc")
    png = os.path.join(args.out, f"{module.NAME}.png")
    with StagedOutputs() as staging:
        write_netcdf(ds, staging.stage(table))
        module.plot(ds, str(staging.stage(png)))
    print(f"wrote {table} and {png}")
    return 0
