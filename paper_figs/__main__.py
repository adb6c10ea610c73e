"""``python -m paper_figs list | NAME [--out DIR ...] | all --out DIR``: list, draw one figure, or draw them all
(``all`` runs every bench behind them: about half an hour on 2 CPU cores)."""

from __future__ import annotations

import sys

from . import FIGURES
from .figure import figure_module, run


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "list":
        for name in FIGURES:
            first_line = (figure_module(name).__doc__ or "").strip().splitlines()[0]
            print(f"{name:<26} {first_line}")
        return 0
    if command == "all":
        return max(run(figure_module(name), rest, prog=f"python -m paper_figs {name}") for name in FIGURES)
    if command not in FIGURES:
        print(f"paper_figs: error: unknown figure {command!r}; `python -m paper_figs list` names them", file=sys.stderr)
        return 2
    return run(figure_module(command), rest)


if __name__ == "__main__":
    sys.exit(main())
