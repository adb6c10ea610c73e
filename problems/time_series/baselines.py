"""Statistical baselines beside the models, from a maintained library: statsforecast's ``AutoETS`` and ``AutoTheta``
(the rows of the published benchmark tables), fitted per series on each task's histories, with their prediction
intervals read as quantiles; and the seasonal naive of :mod:`.data`, scored as a point forecast at every level as the
published seasonal-naive rows are.

statsforecast installs beside the pinned torch (``pip install statsforecast``; the ``peers`` and ``time-series``
extras carry it).
"""

from __future__ import annotations

import numpy as np

from interp.metrics import FORECAST_QUANTILES

from .data import Task, seasonal_naive

BASELINES = ("seasonal-naive", "auto-ets", "auto-theta")


def _interval_column(name: str, q: float) -> str:
    """statsforecast's column for level ``q``: the median is the point forecast, and ``q`` < 0.5 is the lower end
    of the central ``1 - 2q`` interval (``name-lo-80`` for 0.1), ``q`` > 0.5 the upper end of the ``2q - 1`` one."""
    if abs(q - 0.5) < 1e-12:
        return name
    width = round(abs(2 * q - 1) * 100)
    return f"{name}-{'lo' if q < 0.5 else 'hi'}-{width}"


def forecast(task: Task, method: str, quantiles=FORECAST_QUANTILES) -> tuple[np.ndarray, np.ndarray]:
    """``(point (series, horizon), quantiles (series, levels, horizon))`` of ``method`` on ``task``.

    The levels are returned as the library gives them, not re-sorted: AutoTheta's point forecast, used as its
    median, can lie outside its simulated 20 % interval (36 of the 181 M1 yearly series; sorting would move its WQL
    by 2e-6), as in the published rows."""
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; choose from {', '.join(BASELINES)}")
    n, h = len(task), task.horizon
    if method == "seasonal-naive":
        point = np.stack([seasonal_naive(x, h, task.season) for x in task.histories])
        return point, np.repeat(point[:, None, :], len(quantiles), axis=1)
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta

    model = (AutoETS if method == "auto-ets" else AutoTheta)(season_length=task.season)
    name = repr(model)
    ids = [f"s{i}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(ids, [len(x) for x in task.histories]),
            "ds": np.concatenate([np.arange(len(x)) for x in task.histories]),
            "y": np.concatenate(task.histories),
        }
    )
    levels = sorted({round(abs(2 * q - 1) * 100) for q in quantiles if abs(q - 0.5) > 1e-12})
    out = StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=frame, h=h, level=levels)
    out = out.set_index("unique_id").loc[ids]
    point = out[name].to_numpy().reshape(n, h)
    stacked = np.stack([out[_interval_column(name, q)].to_numpy().reshape(n, h) for q in quantiles], axis=1)
    return point, stacked
