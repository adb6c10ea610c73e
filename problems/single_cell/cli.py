"""``python -m problems single-cell``: leave-one-time-point-out trajectory inference on a single-cell time course.

Examples:
    python -m problems single-cell --dataset hsmm --json out.json
    python -m problems single-cell --dataset double-well --json sim.json       # known dynamics, true marginals
    python -m problems single-cell --dataset my.h5ad --time-key day --embedding obsm:X_pca --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from interp.cli import (
    Parser,
    device_name,
    fail,
    non_negative_float,
    non_negative_int,
    output_dir,
    output_file,
    positive_float,
    positive_int,
)

from ..debian import FetchError
from .data import load_hsmm, numeric_times, read_dataset
from .embedding import Embedding
from .methods import ALL_METHODS, INTERP_METHODS, MethodConfig
from .outputs import figure, records, trajectories, write_outputs
from .protocol import run_protocol, summary
from .simulated import TIME_KEY, double_well

PROG = "single-cell"


def parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="hsmm", help="'hsmm', 'double-well', or a .h5ad/.csv/.nc file")
    p.add_argument("--time-key", help="obs column of the time points (default: Hours for hsmm, else 'time')")
    p.add_argument("--embedding", help="'pca' (normalise, log1p, top genes, PCA), 'raw', or 'obsm:KEY'")
    p.add_argument("--dims", type=positive_int, default=5, help="PCA dimension (default 5)")
    p.add_argument("--top-genes", type=positive_int, default=2000, help="highest-variance genes kept before PCA")
    p.add_argument(
        "--methods", help=f"comma list from {','.join(ALL_METHODS)} (default: all; torchcfm where it is installed)"
    )
    p.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=positive_int, default=2000, help="optimiser steps of every trained method")
    p.add_argument("--batch", type=positive_int, default=256)
    p.add_argument("--width", type=positive_int, default=64)
    p.add_argument("--depth", type=positive_int, default=3)
    p.add_argument("--learning-rate", type=positive_float, default=1e-3)
    p.add_argument("--sigma", type=positive_float, default=0.5, help="[SF]²M and multi-marginal SB reference noise")
    p.add_argument(
        "--sigma-min", type=non_negative_float, default=0.1, help="OT-CFM constant noise (ours and TorchCFM's)"
    )
    p.add_argument("--mmsb-iterations", type=positive_int, default=10)
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--cache", help="folder for fetched data (default $INTERP_CACHE or ~/.cache/interp)")
    p.add_argument("--out", default="single_cell_out", help="folder for the .nc, .h5ad and .png outputs")
    p.add_argument("--json", metavar="PATH", help="write the bench-format records here")
    p.add_argument("--no-progress", action="store_true")
    return p


INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError, FetchError, ImportError)


def main(argv: list[str] | None = None) -> int:
    """Parse and check every argument and output path, run, then write all outputs or none. A bad input or option
    ends with one line ``single-cell: error: ...`` and exit status 2, before any computation and with nothing
    written (docs/design.md, "Command lines")."""
    args = parser().parse_args(argv)
    try:
        methods = _methods(args.methods)
        if args.dataset not in ("hsmm", "double-well") and not Path(args.dataset).is_file():
            choices = "or give 'hsmm' or 'double-well'"
            raise FileNotFoundError(f"--dataset: no such dataset file {args.dataset!r} ({choices})")
        output_dir(args.out)
        if args.json:
            output_file(args.json)
    except INPUT_ERRORS as error:
        return fail(PROG, str(error))
    try:
        return _run(args, methods)
    except INPUT_ERRORS as error:
        return fail(PROG, str(error))


def _methods(text: str | None) -> list[str]:
    if text is None:
        methods = list(ALL_METHODS)
        if find_spec("torchcfm") is None:
            methods.remove("torchcfm")
            print("torchcfm is not installed (pip install --no-deps torchcfm): the peer is left out", file=sys.stderr)
        return methods
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown}; choose from {','.join(ALL_METHODS)}")
    if "torchcfm" in methods and find_spec("torchcfm") is None:
        raise ImportError("--methods torchcfm: the peer is not installed (pip install --no-deps torchcfm)")
    return methods


def _run(args: argparse.Namespace, methods: list[str]) -> int:
    config = MethodConfig(
        width=args.width,
        depth=args.depth,
        steps=args.steps,
        batch=args.batch,
        learning_rate=args.learning_rate,
        sigma=args.sigma,
        sigma_min=args.sigma_min,
        mmsb_iterations=args.mmsb_iterations,
        device=args.device,
    )
    started = time.time()
    truth = None
    if args.dataset == "hsmm":
        adata, name, time_key, kind = load_hsmm(args.cache), "hsmm", args.time_key or "Hours", "pca"
    elif args.dataset == "double-well":
        adata, truth = double_well(seed=args.seeds[0])
        name, time_key, kind = "double_well", args.time_key or TIME_KEY, "raw"
    else:
        time_key = args.time_key or "time"
        adata, name, kind = read_dataset(args.dataset, time_key), Path(args.dataset).stem, "pca"
    embedding = Embedding(args.embedding or kind, n_components=args.dims, n_top_genes=args.top_genes)
    result = run_protocol(
        adata,
        time_key,
        embedding=embedding,
        methods=methods,
        seeds=args.seeds,
        config=config,
        truth=truth,
        progress=not args.no_progress,
    )
    table = result.table
    table.attrs["dataset"] = name
    times = numeric_times(adata, time_key)
    bundle = trajectories(adata, times, embedding, config, seed=args.seeds[0])
    fig = figure(bundle[0], times, bundle[1], table, name)
    recs = records(table, name)
    stats = summary(table)
    print(
        f"{name}: {adata.n_obs} cells, time points {np.unique(times).tolist()}, {table.attrs['dimension']}-dim "
        f"{embedding.kind} embedding, seeds {list(args.seeds)}, device {config.device}"
    )
    per_seed = table["value"].mean("held_out")  # (method, seed, metric): W1 etc. averaged over held-out times
    spread = per_seed.std("seed", ddof=1) if per_seed.sizes["seed"] > 1 else 0 * per_seed.mean("seed")
    print(f"{'method':<10} " + " ".join(f"{f'{m} (mean ± sd)':>22}" for m in table["metric"].values))
    for method in table["method"].values:
        cells = [
            f"{float(stats['overall'].sel({'method': method, 'metric': m})):>10.4g} ± "
            f"{float(spread.sel({'method': method, 'metric': m})):<9.3g}"
            for m in table["metric"].values
        ]
        print(f"{str(method):<10} " + " ".join(cells))
    ours = [m for m in methods if m in INTERP_METHODS]
    if ours:
        w1 = stats["overall"].sel(metric="W1")
        best = min(ours, key=lambda m: float(w1.sel({"method": m})))
        others = {m: float(w1.sel({"method": m})) for m in methods if m not in INTERP_METHODS}
        beaten = all(float(w1.sel({"method": best})) < v for v in others.values())
        print(
            f"best interp method by mean W1: {best} ({float(w1.sel({'method': best})):.4g}); "
            f"{'beats' if beaten else 'does NOT beat'} every baseline and peer {others}"
        )
    for path in write_outputs(args.out, name, adata, table, bundle, recs, fig, args.json):
        print(f"wrote {path}")
    print(f"single-cell: {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
