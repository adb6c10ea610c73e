"""The check table printed by ``python -m validate``; the record schema itself is :mod:`interp.records`."""

from __future__ import annotations

from interp.records import Record, check, report, write_records

__all__ = ["Record", "check", "format_table", "report", "write_records"]


def format_table(records: list[Record]) -> str:
    """One line per check and a closing ``N passed, N failed`` line."""
    header = f"{'suite':<13} {'case':<26} {'method':<22} {'metric':<24} {'value':>10}    {'tolerance':>9}  ok"
    lines = [header, "-" * len(header)]
    for r in records:
        if r.op == "report":  # a measured value, not a check
            lines.append(f"{r.suite:<13} {r.case:<26} {r.method:<22} {r.metric:<24} {r.value:>10.4g}    {'':<9}  -")
            continue
        lines.append(
            f"{r.suite:<13} {r.case:<26} {r.method:<22} {r.metric:<24} {r.value:>10.4g} {r.op:>2} {r.tolerance:<9.4g}"
            f"  {'yes' if r.passed else 'NO'}"
        )
    checks = [r for r in records if r.op != "report"]
    failed = sum(not r.passed for r in checks)
    reported = len(records) - len(checks)
    lines.append(f"{len(checks) - failed} passed, {failed} failed" + (f", {reported} reported" if reported else ""))
    return "\n".join(lines)
