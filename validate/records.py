"""Check records: one per check, in the format DESIGN.md promises for ``python -m validate --json``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Record:
    suite: str
    case: str
    method: str
    metric: str
    value: float
    tolerance: float
    op: str
    passed: bool


def check(suite: str, case: str, method: str, metric: str, value: float, tolerance: float, op: str = "<=") -> Record:
    """A record whose ``passed`` is ``value op tolerance`` (a NaN value never passes)."""
    if op not in ("<=", ">="):
        raise ValueError(f"op must be '<=' or '>='; got {op!r}")
    value, tolerance = float(value), float(tolerance)
    passed = (not math.isnan(value)) and (value <= tolerance if op == "<=" else value >= tolerance)
    return Record(suite, case, method, metric, value, tolerance, op, bool(passed))


def write_json(records: list[Record], path: str) -> None:
    with open(path, "w") as f:
        json.dump([asdict(r) for r in records], f, indent=1)


def format_table(records: list[Record]) -> str:
    header = f"{'suite':<13} {'case':<26} {'method':<22} {'metric':<24} {'value':>10}    {'tolerance':>9}  ok"
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(
            f"{r.suite:<13} {r.case:<26} {r.method:<22} {r.metric:<24} {r.value:>10.4g} {r.op:>2} {r.tolerance:<9.4g}"
            f"  {'yes' if r.passed else 'NO'}"
        )
    failed = sum(not r.passed for r in records)
    lines.append(f"{len(records) - failed} passed, {failed} failed")
    return "\n".join(lines)
