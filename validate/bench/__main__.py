"""``python -m validate.bench NAME [--json PATH]``: this package against a peer on the same work, same run."""

from __future__ import annotations

import sys

from interp.cli import Parser, StagedOutputs, non_negative_int, output_file
from interp.records import write_records

from . import density, driver, langevin, solvers, steering, training

BENCHES = {
    "training": training.run,
    "density": density.run,
    "solvers": solvers.run,
    "langevin": langevin.run,
    "steering": steering.run,
    "driver": driver.run,
}
TABLES = {"solvers"}  # benches that can also write their full table as netCDF (--table)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m validate.bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHES))
    parser.add_argument("--json", metavar="PATH", help="write the bench records as JSON")
    parser.add_argument("--table", metavar="PATH", help="also write the full table as netCDF (solvers)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    args = parser.parse_args(argv)
    if args.table and args.name not in TABLES:
        parser.error(f"--table: the {args.name} bench writes no table (only {sorted(TABLES)})")
    for flag, path in (("--json", args.json), ("--table", args.table)):  # checked before the bench runs
        try:
            if path:
                output_file(path)
        except ValueError as error:
            parser.error(f"{flag}: {error}")
    options = {"table": args.table} if args.table else {}
    records = BENCHES[args.name](seed=args.seed, **options)
    for r in records:
        print(
            f"{r.bench:<9} {r.case:<36} {r.metric:<18} ours {r.ours:<10.4g} {r.peer} {r.peer_value:<10.4g} "
            f"ratio {r.ratio:.3g} ({r.better} is better)"
        )
    if args.json:
        with StagedOutputs() as staging:
            write_records(records, staging.stage(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
