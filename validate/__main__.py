"""``python -m validate``: every method against closed forms. Exits non-zero if any check fails.

The default is the quick tier (every suite, smaller cases, a few minutes on 2 CPU cores); ``--full`` runs every
check at full size (docs/validation.md says what each tier checks and how long it takes). Options: ``--json PATH``
(records, docs/design.md format, each with its tier), ``--out DIR`` (report.nc and a PNG), ``--seed N``,
``--suite NAME`` (run one suite; repeatable).
"""

from __future__ import annotations

import dataclasses
import sys
import time

from interp.cli import Parser, StagedOutputs, non_negative_int, output_dir, output_file

from . import (
    bridges,
    convergence,
    density,
    distributions,
    fast_solvers,
    feynman_kac,
    inverse,
    langevin,
    learned,
    time_series,
    trajectories,
)
from .records import format_table, write_records
from .report import write_report

RUNNERS = {  # each takes (seed, tier); "distribution" (first) also returns the 2D samples of the report
    "distribution": distributions.run_tier,
    "convergence": convergence.run,
    "learned": learned.run,
    "density": density.run,
    "solvers": fast_solvers.run,
    "bridges": bridges.run,
    "trajectories": trajectories.run,
    "langevin": langevin.run,
    "feynman-kac": feynman_kac.run,
    "inverse": inverse.run,
    "time-series": time_series.run,
}
SUITES = tuple(RUNNERS)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m validate", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the full tier: every check at full size (slower)")
    parser.add_argument("--json", metavar="PATH", help="write the check records as JSON")
    parser.add_argument("--out", metavar="DIR", help="write report.nc and samples_2d.png here")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the sampling noise (cases are fixed)")
    parser.add_argument("--suite", choices=SUITES, action="append", help="run only this suite (repeatable)")
    args = parser.parse_args(argv)
    try:  # output paths are checked before hours of work, not after (docs/design.md, "Command lines")
        if args.json:
            output_file(args.json)
        if args.out:
            output_dir(args.out)
    except ValueError as error:
        parser.error(str(error))
    suites = args.suite or list(SUITES)

    tier = "full" if args.full else "quick"
    started = time.time()
    records, samples, seconds = [], {}, {}
    for name in (name for name in SUITES if name in suites):
        begun = time.time()
        options = {"outputs": samples} if name == "distribution" else {}
        found = RUNNERS[name](seed=args.seed, tier=tier, **options)
        records += [dataclasses.replace(r, tier=tier) for r in found]
        seconds[name] = time.time() - begun
    print(format_table(records))
    print("validate: " + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()))
    reported = sum(r.op == "report" for r in records)
    print(f"validate: {len(records) - reported} checks, {reported} values reported ({tier} tier) in "
          f"{time.time() - started:.0f} s")  # fmt: skip
    with StagedOutputs() as staging:  # all outputs or none
        if args.json:
            write_records(records, staging.stage(args.json))
        written = write_report(records, samples, args.out, staging) if args.out else []
    for path in written:
        print(f"wrote {path}")
    return 0 if all(r.passed for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
