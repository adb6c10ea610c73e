"""Check and comparison records: the machine-readable output of ``python -m validate``, the benches and the
problem adapters (docs/design.md, "Records").

The schema lives in the library so that every layer above it — ``problems/``, ``validate/``, ``paper_figs/`` —
imports it downward. Two kinds:

* :class:`Record` — one check against a closed form or a budget (or, with op ``"report"``, a measured value that
  is stated, not checked):
  ``{"suite", "case", "method", "metric", "value", "tolerance", "op", "passed", "tier"}``;
* :class:`BenchRecord` — one measurement beside a peer on the same work in the same run:
  ``{"bench", "case", "metric", "ours", "peer", "peer_value", "ratio", "better"}``.

Example:
    >>> check("demo", "2d", "rk4", "error", 1e-7, 1e-6).passed
    True
    >>> compare("demo", "2d", "seconds", 2.0, "peer", 4.0, "lower").ratio
    0.5
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ._files import write_atomically

__all__ = ["TIERS", "BenchRecord", "Record", "check", "compare", "read_records", "report", "write_records"]

TIERS = ("quick", "full")


@dataclass(frozen=True)
class Record:
    """One check: ``passed`` is ``value op tolerance``; ``tier`` is the validate tier that ran it."""

    suite: str
    case: str
    method: str
    metric: str
    value: float
    tolerance: float
    op: str
    passed: bool
    tier: str = "full"


def report(suite: str, case: str, method: str, metric: str, value: float, tier: str = "full") -> Record:
    """A measured value that is not a check (op ``"report"``, tolerance NaN, never failing): the bias of an
    approximate method, stated rather than bounded by a loosened budget."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}; got {tier!r}")
    return Record(suite, case, method, metric, float(value), math.nan, "report", True, tier)


def check(
    suite: str,
    case: str,
    method: str,
    metric: str,
    value: float,
    tolerance: float,
    op: str = "<=",
    tier: str = "full",
) -> Record:
    """A record whose ``passed`` is ``value op tolerance`` (a NaN value never passes)."""
    if op not in ("<=", ">="):
        raise ValueError(f"op must be '<=' or '>='; got {op!r}")
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}; got {tier!r}")
    value, tolerance = float(value), float(tolerance)
    passed = (not math.isnan(value)) and (value <= tolerance if op == "<=" else value >= tolerance)
    return Record(suite, case, method, metric, value, tolerance, op, bool(passed), tier)


@dataclass(frozen=True)
class BenchRecord:
    """One measurement of this package (``ours``) beside a peer's (``peer_value``); ``ratio = ours / peer_value``,
    ``better`` says which direction wins (``"lower"`` or ``"higher"``)."""

    bench: str
    case: str
    metric: str
    ours: float
    peer: str
    peer_value: float
    ratio: float
    better: str


def compare(bench: str, case: str, metric: str, ours: float, peer: str, peer_value: float, better: str) -> BenchRecord:
    """A record with ``ratio = ours / peer_value`` (``inf`` when the peer's value is 0)."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher'; got {better!r}")
    ratio = float(ours) / float(peer_value) if peer_value else float("inf")
    return BenchRecord(bench, case, metric, float(ours), peer, float(peer_value), ratio, better)


def write_records(records: list[Record] | list[BenchRecord], path: str | os.PathLike) -> None:
    """Write ``records`` as a JSON list, atomically (temp file + rename)."""
    text = json.dumps([asdict(r) for r in records], indent=1)
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def read_records(path: str | os.PathLike) -> list[Record] | list[BenchRecord]:
    """Read a JSON list written by :func:`write_records` (check records without ``tier`` read as ``"full"``)."""
    with open(path) as f:
        rows = json.load(f)
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    out = []
    for row in rows:
        if "suite" in row:
            out.append(Record(**{"tier": "full", **row}))
        elif "bench" in row:
            out.append(BenchRecord(**row))
        else:
            raise ValueError(f"{path}: not a check or bench record: {sorted(row)}")
    return out
