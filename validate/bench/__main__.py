"""``python -m validate.bench NAME [--json PATH]``: this package against a peer on the same work, same run."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from . import density, training

BENCHES = {"training": training.run, "density": density.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validate.bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHES))
    parser.add_argument("--json", metavar="PATH", help="write the bench records as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    records = BENCHES[args.name](seed=args.seed)
    for r in records:
        print(
            f"{r.bench:<9} {r.case:<36} {r.metric:<18} ours {r.ours:<10.4g} {r.peer} {r.peer_value:<10.4g} "
            f"ratio {r.ratio:.3g} ({r.better} is better)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in records], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
