"""``python -m validate``: every method against closed forms. Exits non-zero if any check fails.

Options: ``--full`` (more dimensions and particles), ``--json PATH`` (records, DESIGN.md format),
``--out DIR`` (report.nc and a PNG), ``--seed N``, ``--suite NAME`` (run one suite).
"""

from __future__ import annotations

import argparse
import sys
import time

from . import bridges, convergence, density, distributions, fast_solvers, feynman_kac, langevin, learned, trajectories
from .records import format_table, write_records
from .report import write_report

RUNNERS = {  # "distribution" (first) also returns the 2D samples of the report
    "distribution": distributions.run,
    "convergence": convergence.run,
    "learned": learned.run,
    "density": density.run,
    "solvers": fast_solvers.run,
    "bridges": bridges.run,
    "trajectories": trajectories.run,
    "langevin": langevin.run,
    "feynman-kac": feynman_kac.run,
}
SUITES = tuple(RUNNERS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validate", description=__doc__)
    parser.add_argument("--full", action="store_true", help="2D, 8D and 16D, more particles (slower)")
    parser.add_argument("--json", metavar="PATH", help="write the check records as JSON")
    parser.add_argument("--out", metavar="DIR", help="write report.nc and samples_2d.png here")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (cases are fixed)")
    parser.add_argument("--suite", choices=SUITES, action="append", help="run only this suite (repeatable)")
    args = parser.parse_args(argv)
    suites = args.suite or list(SUITES)

    started = time.time()
    records, samples = [], {}
    for name in (name for name in SUITES if name in suites):
        if name == "distribution":
            options = dict(dims=(2, 8, 16), n=2000) if args.full else {}
            records += distributions.run(seed=args.seed, outputs=samples, **options)
        else:
            records += RUNNERS[name](seed=args.seed)
    print(format_table(records))
    print(f"validate: {len(records)} checks in {time.time() - started:.0f} s")
    if args.json:
        write_records(records, args.json)
    if args.out:
        for path in write_report(records, samples, args.out):
            print(f"wrote {path}")
    return 0 if all(r.passed for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
