"""``python -m problems time-series``: probabilistic forecasts on the M1 / M3 / Tourism tasks or a user's series,
every method side by side with the statistical baselines.

Examples:
    python -m problems time-series --dataset m1-yearly --json out.json
    python -m problems time-series --dataset m1-yearly,m1-quarterly,tourism-yearly,tourism-quarterly
    python -m problems time-series --dataset sales.csv --horizon 12 --season 12 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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

from .data import TASKS, load_task, read_series
from .forecast import SamplingConfig
from .model import INTERPOLANTS, ModelConfig
from .outputs import figure, forecasts_dataset, records, write_outputs
from .protocol import INTERP_METHODS, METHODS, check_methods, metrics_table, run_task

PROG = "time-series"
# fk-guidance and the refinements are left out of the default: on M1 yearly they cost the most (fk-guidance runs
# one weighted sampler per series) and scored worst (docs/tour/time-series.md).
DEFAULT_METHODS = ("seasonal-naive", "auto-ets", "auto-theta", "self-guidance", "conditional")


def parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="m1-yearly", help=f"comma list of tasks ({', '.join(TASKS)}) or one file")
    p.add_argument("--horizon", type=positive_int, help="held-out values per series (a file only)")
    p.add_argument("--season", type=positive_int, default=1, help="seasonal period of a file's series (default 1)")
    p.add_argument("--methods", help=f"comma list from {','.join(METHODS)} (default: {','.join(DEFAULT_METHODS)})")
    p.add_argument("--context-multiple", type=positive_int, default=2, help="context length in horizons (default 2)")
    p.add_argument("--interpolant", choices=tuple(INTERPOLANTS), default="vp")
    p.add_argument("--steps", type=positive_int, default=1500, help="training steps of each window model")
    p.add_argument("--width", type=positive_int, default=32)
    p.add_argument("--depth", type=positive_int, default=4)
    p.add_argument("--batch", type=positive_int, default=256)
    p.add_argument("--learning-rate", type=positive_float, default=2e-3)
    p.add_argument("--samples", type=positive_int, default=50, help="sample paths per series")
    p.add_argument("--sample-steps", type=positive_int, default=50, help="reverse-SDE steps per sample")
    p.add_argument("--guidance-scale", type=non_negative_float, default=4.0)
    p.add_argument("--sigma-y", type=positive_float, default=0.5, help="FK guidance: observation noise (scaled units)")
    p.add_argument("--series", type=positive_int, help="keep the first N series of each task (quick runs)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", default="time_series_out", help="folder for the .nc and .png outputs")
    p.add_argument("--json", metavar="PATH", help="write the bench-format records here")
    p.add_argument("--no-progress", action="store_true")
    return p


INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError)


def main(argv: list[str] | None = None) -> int:
    """Parse and check every argument, the data and the output paths, run, then write all outputs or none. A bad
    input ends with one line ``time-series: error: ...`` and exit status 2, before any training and with nothing
    written (docs/design.md, "Command lines")."""
    args = parser().parse_args(argv)
    try:
        methods = _methods(args.methods)
        tasks = _tasks(args)
        for task in tasks:
            check_methods(task, methods)
        output_dir(args.out)
        if args.json:
            output_file(args.json)
        model_config = ModelConfig(
            interpolant=args.interpolant, width=args.width, depth=args.depth, steps=args.steps, batch=args.batch,
            learning_rate=args.learning_rate, device=args.device,
        )  # fmt: skip
        sampling = SamplingConfig(
            samples=args.samples, steps=args.sample_steps, guidance_scale=args.guidance_scale, sigma_y=args.sigma_y
        )
    except INPUT_ERRORS as error:
        return fail(PROG, str(error))
    try:
        return _run(args, methods, tasks, model_config, sampling)
    except INPUT_ERRORS as error:
        return fail(PROG, str(error))


def _methods(text: str | None) -> list[str]:
    if text is None:
        return list(DEFAULT_METHODS)
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown}; choose from {','.join(METHODS)}")
    return methods


def _tasks(args: argparse.Namespace) -> list:
    names = [n.strip() for n in args.dataset.split(",") if n.strip()]
    if len(names) == 1 and names[0] not in TASKS:
        if not Path(names[0]).is_file():
            raise FileNotFoundError(f"--dataset: {names[0]!r} is neither a task ({', '.join(TASKS)}) nor a file")
        if args.horizon is None:
            raise ValueError("--horizon is needed with a file (the held-out values per series)")
        tasks = [read_series(names[0], args.horizon, args.season)]
    else:
        unknown = [n for n in names if n not in TASKS]
        if unknown or not names:
            raise ValueError(f"--dataset: unknown tasks {unknown}; choose from {', '.join(TASKS)} or give one file")
        if args.horizon is not None:
            raise ValueError("--horizon is for a file; the tasks have their official horizons")
        tasks = [load_task(n) for n in dict.fromkeys(names)]
    if args.series is not None:
        tasks = [t.head(args.series) for t in tasks]
    for task in tasks:
        task.check_context(args.context_multiple * task.horizon, padded=task.name in TASKS)
    return tasks


def _run(args, methods, tasks, model_config, sampling) -> int:
    started = time.time()
    results = []
    for task in tasks:
        print(f"{task.name}: {len(task)} series, horizon {task.horizon}, season {task.season}", flush=True)
        result = run_task(
            task, methods, model_config, sampling, context_multiple=args.context_multiple, seed=args.seed,
            progress=not args.no_progress,
        )  # fmt: skip
        results.append(result)
    table = metrics_table(results, methods)
    table.attrs.update(device=model_config.device, seed=args.seed, interpolant=model_config.interpolant)
    _print_table(table, methods)
    forecasts = [forecasts_dataset(r) for r in results]
    recs = records(table)
    fig = figure(results[0], methods)
    for path in write_outputs(args.out, table, forecasts, fig, recs, args.json):
        print(f"wrote {path}")
    print(f"time-series: {time.time() - started:.0f} s on {model_config.device}")
    return 0


def _print_table(table, methods) -> None:
    """Per task WQL and MASE of every method, the relative geometric means, and whether interp's best beats the
    seasonal naive."""

    def score(method, task, metric) -> float:
        return float(table["value"].sel({"method": method, "task": task, "metric": metric}))

    tasks = [str(t) for t in table["task"].values]
    print(f"{'method':<18} " + " ".join(f"{t:>26}" for t in tasks) + f" {'relative WQL / MASE':>22}")
    for method in methods:
        cells = [f"WQL {score(method, t, 'WQL'):.4f} MASE {score(method, t, 'MASE'):.3f}" for t in tasks]
        rel = [float(table["relative"].sel({"method": method, "metric": k})) for k in ("WQL", "MASE")]
        print(f"{method:<18} " + " ".join(f"{c:>26}" for c in cells) + f" {rel[0]:>12.3f} / {rel[1]:.3f}")
    ours = [m for m in methods if m in INTERP_METHODS]
    if not ours or "seasonal-naive" not in methods:
        return
    for t in tasks:
        best = min(ours, key=lambda m: score(m, t, "WQL"))
        wins = all(score(best, t, k) < score("seasonal-naive", t, k) for k in ("WQL", "MASE"))
        verdict = "beats" if wins else "does NOT beat"
        print(f"{t}: interp's best by WQL, {best}, {verdict} the seasonal naive on WQL and MASE")


if __name__ == "__main__":
    sys.exit(main())
