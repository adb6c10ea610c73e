"""Bench records in the format DESIGN.md promises for ``python -m validate.bench NAME --json PATH``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchRecord:
    bench: str
    case: str
    metric: str
    ours: float
    peer: str
    peer_value: float
    ratio: float
    better: str


def compare(bench: str, case: str, metric: str, ours: float, peer: str, peer_value: float, better: str) -> BenchRecord:
    """A record with ``ratio = ours / peer_value``; ``better`` says which direction wins ("lower"/"higher")."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher'; got {better!r}")
    ratio = float(ours) / float(peer_value) if peer_value else float("inf")
    return BenchRecord(bench, case, metric, float(ours), peer, float(peer_value), ratio, better)
