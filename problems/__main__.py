"""``python -m problems NAME [options]``: run a problem adapter (``python -m problems NAME --help`` for its options)."""

from __future__ import annotations

import importlib
import sys

ADAPTERS = {
    "single-cell": "problems.single_cell.cli",
    "time-series": "problems.time_series.cli",
    "images": "problems.images.cli",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ADAPTERS:
        got = f"unknown adapter {argv[0]!r}" if argv else "no adapter named"
        print(f"problems: error: {got}; usage: python -m problems {{{','.join(ADAPTERS)}}} [options]", file=sys.stderr)
        return 2
    return importlib.import_module(ADAPTERS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
