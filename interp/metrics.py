r"""Distances between samples, log-density errors and the Monte-Carlo floor.

Every distance takes two samples ``x`` ``(n, dim)`` and ``y`` ``(m, dim)`` with uniform weights and returns a
Python float.

* :func:`wasserstein` — exact :math:`W_p` (p = 1, 2) by POT's network simplex ``ot.emd2``; :math:`O(n^3)`, keep
  ``n`` in the low thousands.
* :func:`sliced_wasserstein2` — :math:`\big(E_\theta W_2^2(\theta^\top x, \theta^\top y)\big)^{1/2}` over random
  directions on the sphere drawn from an explicit generator (Bonneel et al. 2015; POT's implementation).
* :func:`mmd` — RBF-kernel maximum mean discrepancy (Gretton et al. 2012).
* :func:`energy_distance` — Székely & Rizzo (2013).
* :func:`bures_wasserstein2` / :func:`bw2_uvp` — squared W2 between the Gaussians with the samples' (or given)
  means and covariances, and its "unexplained variance percentage" :math:`100\,BW_2^2/(\tfrac12\operatorname{tr}
  \Sigma_{target})` (Korotin et al. 2021; the metric of the entropic-OT benchmark of Gushchin et al. 2023).
* :func:`frechet_distance`, :func:`kernel_distance`, :func:`precision_recall` — FID's, KID's and improved
  precision/recall's formulas on features (the image adapter uses a classifier trained on the same data).
* :func:`monte_carlo_floor` — the same metric between two independent exact samples of the same size: what
  a perfect sampler scores, the yardstick of every distribution check (docs/design.md, "Testing").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import ot
import torch
from torch import Tensor

from ._checks import check_batch
from ._linalg import symmetric_power
from .couplings import exact_ot


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    check_batch(x, "x")
    check_batch(y, "y")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have shapes (n, dim) and (m, dim); got {tuple(x.shape)}, {tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("each sample needs at least two points")
    return x.detach().double(), y.detach().double().to(x.device)


def wasserstein(x: Tensor, y: Tensor, p: int = 2) -> float:
    r"""Exact :math:`W_p(\hat\mu_x, \hat\mu_y)` with Euclidean ground cost, by ``ot.emd2``."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2; got {p}")
    x, y = _pair(x, y)
    cost = torch.cdist(x, y) ** p
    a = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=x.dtype)
    b = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=y.dtype)
    value = exact_ot(a.cpu().numpy(), b.cpu().numpy(), cost.cpu().numpy(), 10_000_000, "wasserstein", value_only=True)
    return float(value) ** (1.0 / p)


def sliced_wasserstein2(
    x: Tensor, y: Tensor, n_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    r"""Sliced :math:`W_2` over ``n_projections`` uniform directions drawn from ``generator``."""
    if n_projections < 1:
        raise ValueError(f"n_projections must be positive; got {n_projections}")
    x, y = _pair(x, y)
    device = generator.device if generator is not None else "cpu"
    directions = torch.randn((x.shape[1], n_projections), generator=generator, dtype=torch.float64, device=device)
    directions = directions / directions.norm(dim=0, keepdim=True)
    value = ot.sliced_wasserstein_distance(x.cpu().numpy(), y.cpu().numpy(), projections=directions.cpu().numpy(), p=2)
    return float(value)


def median_bandwidth(x: Tensor, y: Tensor) -> float:
    """Median pairwise Euclidean distance of the pooled sample (the median heuristic)."""
    pooled = torch.cat([x, y])
    distances = torch.pdist(pooled)
    return float(distances.median())


def mmd(x: Tensor, y: Tensor, bandwidth: float | None = None) -> float:
    r"""RBF-kernel MMD, :math:`k(a,b)=\exp(-|a-b|^2/(2h^2))`.

    Returns :math:`\sqrt{\mathrm{MMD}_b^2}`, the square root of the biased (V-statistic) estimate of Gretton et al.
    (2012, Eq. 5), which is never negative, so ratios to the Monte-Carlo floor are well defined.
    ``bandwidth`` :math:`h` defaults to the median heuristic on the pooled sample (:func:`median_bandwidth`);
    pass a fixed value to compare several runs on the same kernel.
    """
    x, y = _pair(x, y)
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if bandwidth is None and h == 0:
        pooled = torch.cat([x, y])
        if bool((pooled == pooled[0]).all()):
            return 0.0  # every point is the same point: the two samples are identical under any kernel
        raise ValueError("the median-heuristic bandwidth is 0 (over half the pairs coincide); pass bandwidth=")
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"bandwidth must be a finite positive number; got {h}")

    def kernel_mean(a, b):
        return torch.exp(-(torch.cdist(a, b) ** 2) / (2 * h * h)).mean()

    value = kernel_mean(x, x) + kernel_mean(y, y) - 2 * kernel_mean(x, y)
    return float(torch.sqrt(torch.clamp(value, min=0)))


def energy_distance(x: Tensor, y: Tensor) -> float:
    r"""Energy distance :math:`2E|X-Y| - E|X-X'| - E|Y-Y'|` (V-statistic, never negative)."""
    x, y = _pair(x, y)
    value = 2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()
    return float(torch.clamp(value, min=0))


def log_density_error(estimate: Tensor, exact: Tensor) -> float:
    r"""Mean absolute error :math:`\tfrac1n\sum_i|\widehat{\log\rho}(x_i) - \log\rho(x_i)|` in nats."""
    if estimate.shape != exact.shape:
        raise ValueError(
            f"estimate and exact must have the same shape; got {tuple(estimate.shape)}, {tuple(exact.shape)}"
        )
    for name, value in (("estimate", estimate), ("exact", exact)):
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} log-densities must be finite")
    return float((estimate.double() - exact.double()).abs().mean())


def monte_carlo_floor(
    metric: Callable[[Tensor, Tensor], float],
    sample: Callable[[int, torch.Generator], Tensor],
    n: int,
    generator: torch.Generator,
    repeats: int = 1,
) -> float:
    """Mean of ``metric`` between two independent exact samples of size ``n`` over ``repeats`` draws.

    ``sample(n, generator)`` must return ``n`` exact draws of the target.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be positive; got {repeats}")
    values = [metric(sample(n, generator), sample(n, generator)) for _ in range(repeats)]
    return float(np.mean(values))


def bures_wasserstein2(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    r""":math:`BW_2^2 = |m_1-m_2|^2
    + \operatorname{tr}(\Sigma_1 + \Sigma_2 - 2(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2})`,
    the squared W2 distance between :math:`N(m_1, \Sigma_1)` and :math:`N(m_2, \Sigma_2)`."""
    dim = mean1.shape[-1]
    for name, cov in (("cov1", cov1), ("cov2", cov2)):
        if cov.shape != (dim, dim):
            raise ValueError(f"{name} must have shape ({dim}, {dim}); got {tuple(cov.shape)}")
    if mean2.shape != mean1.shape:
        raise ValueError(f"mean1 and mean2 must have the same shape; got {tuple(mean1.shape)}, {tuple(mean2.shape)}")
    root1 = symmetric_power(cov1.double(), 0.5, "cov1")
    cross = symmetric_power(root1 @ cov2.double() @ root1, 0.5, "cov2")
    value = ((mean1 - mean2).double() ** 2).sum() + torch.trace(cov1.double() + cov2.double() - 2 * cross)
    return float(value.clamp(min=0))


def bw2_uvp(x: Tensor, target_mean: Tensor, target_cov: Tensor) -> float:
    r"""BW²-UVP in percent of a sample ``x`` against a target with the given mean and covariance:
    :math:`100\,BW_2^2(N(\hat m, \hat\Sigma), N(m, \Sigma)) / (\tfrac12 \operatorname{tr}\Sigma)`."""
    check_batch(x, "x", dim=target_mean.shape[-1])
    if x.shape[0] < 2:
        raise ValueError("bw2_uvp needs at least two samples")
    xd = x.double()
    mean = xd.mean(dim=0)
    cov = torch.cov(xd.T).reshape(xd.shape[1], xd.shape[1])
    target_mean, target_cov = target_mean.double().to(xd.device), target_cov.double().to(xd.device)
    return 100.0 * bures_wasserstein2(mean, cov, target_mean, target_cov) / (0.5 * float(torch.trace(target_cov)))


# ---------------------------------------------------------------------- feature-space image scores
def frechet_distance(x: Tensor, y: Tensor) -> float:
    r"""The Fréchet distance of two feature samples ``(n, dim)``, ``(m, dim)``: :func:`bures_wasserstein2` between
    Gaussians with their means and covariances — FID's formula (Heusel et al. 2017) in whatever feature space the
    features come from (an image score is only comparable with one computed by the same feature network)."""
    x, y = _pair(x, y)
    return bures_wasserstein2(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T))


def kernel_distance(x: Tensor, y: Tensor, *, subsets: int = 10, subset_size: int = 1000, generator=None) -> float:
    r"""The kernel distance (KID, Bińkowski et al. 2018): the unbiased squared MMD with the cubic polynomial kernel
    :math:`k(a, b) = (a^\top b/\text{dim} + 1)^3`, averaged over ``subsets`` random subsets of ``subset_size``
    rows of each sample (all rows if fewer), drawn from ``generator``. Unbiased, so it can be slightly negative."""
    x, y = _pair(x, y)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2; got {subsets}, {subset_size}")
    size = min(subset_size, x.shape[0], y.shape[0])
    dim = x.shape[1]
    values = []
    for _ in range(subsets):
        a = x[torch.randperm(x.shape[0], generator=generator)[:size].to(x.device)]
        b = y[torch.randperm(y.shape[0], generator=generator)[:size].to(y.device)]
        kxx, kyy, kxy = ((a @ a.T / dim + 1) ** 3, (b @ b.T / dim + 1) ** 3, (a @ b.T / dim + 1) ** 3)
        off = size * (size - 1)
        values.append(float((kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / off - 2 * kxy.mean()))
    return float(np.mean(values))


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019): the fraction of ``fake`` rows inside the union
    of the balls around each ``real`` row reaching its ``k``-th nearest real neighbour (precision), and the
    fraction of ``real`` rows inside the same manifold built from ``fake`` (recall)."""
    real, fake = _pair(real, fake)
    if not (isinstance(k, int) and 1 <= k < min(real.shape[0], fake.shape[0])):
        raise ValueError(f"k must be an integer in [1, {min(real.shape[0], fake.shape[0])}); got {k!r}")

    def covered(support: Tensor, query: Tensor) -> float:  # in blocks of 1024 rows: 10k x 10k distances are 800 MB
        radii = torch.cat([torch.cdist(support[a : a + 1024], support).kthvalue(k + 1, dim=1).values
                           for a in range(0, support.shape[0], 1024)])  # fmt: skip  (neighbour 0 is the point)
        inside = torch.cat([(torch.cdist(query[a : a + 1024], support) <= radii).any(1)
                            for a in range(0, query.shape[0], 1024)])  # fmt: skip
        return float(inside.double().mean())

    return covered(real, fake), covered(fake, real)


# ---------------------------------------------------------------------- forecast scores
FORECAST_QUANTILES = tuple(q / 10 for q in range(1, 10))
"""The quantile levels 0.1 … 0.9 of the forecasting benchmarks (GluonTS, Chronos, TSDiff)."""


def _forecast_array(value, name: str, ndim: int | None = None) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite; it has {int((~np.isfinite(array)).sum())} non-finite entries")
    return array


def weighted_quantile_loss(targets, quantile_forecasts, quantiles=FORECAST_QUANTILES) -> float:
    r"""Mean weighted quantile loss over ``quantiles`` (GluonTS ``mean_wQuantileLoss``, the "WQL" of Chronos and the
    "CRPS" of TSDiff): for each level :math:`q`,
    :math:`2\sum_{i,h}|(y_{ih} - \hat y^{q}_{ih})(\mathbb 1[y_{ih} \le \hat y^{q}_{ih}] - q)| / \sum_{i,h}|y_{ih}|`,
    summed over every series and step of the task, then averaged over the levels.

    Args:
        targets: ``(series, horizon)``.
        quantile_forecasts: ``(series, quantiles, horizon)``; a point forecast scored as every quantile is
            ``point[:, None, :]`` repeated (how the published seasonal-naive rows are scored).
        quantiles: the levels, in (0, 1).

    Example:
        >>> weighted_quantile_loss([[1.0, 2.0]], [[[1.0, 2.0]]], quantiles=(0.5,))
        0.0
    """
    y = _forecast_array(targets, "targets", 2)
    f = _forecast_array(quantile_forecasts, "quantile_forecasts", 3)
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or not ((q > 0) & (q < 1)).all():
        raise ValueError(f"quantiles must be levels in (0, 1); got {quantiles}")
    if f.shape != (y.shape[0], q.shape[0], y.shape[1]):
        raise ValueError(f"quantile_forecasts must have shape (series, quantiles, horizon) = "
                         f"{(y.shape[0], q.shape[0], y.shape[1])}; got {f.shape}")  # fmt: skip
    scale = np.abs(y).sum()
    if scale == 0:
        raise ValueError("the targets are all zero: the weighted quantile loss is undefined (its scale is 0)")
    below = (y[:, None, :] <= f).astype(np.float64)
    losses = 2 * np.abs((y[:, None, :] - f) * (below - q[None, :, None])).sum(axis=(0, 2)) / scale
    return float(losses.mean())


def seasonal_error(history, season: int) -> float:
    r"""The MASE scale of one series: :math:`\frac1{n-m}\sum_{t>m}|x_t - x_{t-m}|` over its history, with
    :math:`m` = ``season``, or 1 when the history is not longer than one season (as GluonTS)."""
    x = _forecast_array(history, "history", 1)
    m = season if season < x.shape[0] else 1
    if x.shape[0] < 2:
        raise ValueError(f"a history needs at least 2 points for the MASE scale; got {x.shape[0]}")
    return float(np.abs(x[m:] - x[:-m]).mean())


def mase(targets, forecasts, histories, season: int, *, constant: str = "raise") -> float:
    r"""Mean absolute scaled error averaged over series (GluonTS's per-series MASE, then the mean): each series'
    mean absolute error over the horizon divided by :func:`seasonal_error` of its history.

    A history whose seasonal differences are all zero (a constant series) has scale 0 and no finite MASE:
    ``constant="raise"`` (default) refuses it naming the series, ``constant="skip"`` leaves it out of the mean.

    Args:
        targets: ``(series, horizon)``.
        forecasts: ``(series, horizon)`` point forecasts (the median for a probabilistic forecast).
        histories: one 1-D history per series (lengths may differ).
        season: 12 monthly, 4 quarterly, 1 yearly.
    """
    y = _forecast_array(targets, "targets", 2)
    f = _forecast_array(forecasts, "forecasts", 2)
    if f.shape != y.shape:
        raise ValueError(f"forecasts must have the targets' shape {y.shape}; got {f.shape}")
    if len(histories) != y.shape[0]:
        raise ValueError(f"{len(histories)} histories for {y.shape[0]} series")
    if not (isinstance(season, int) and season >= 1):
        raise ValueError(f"season must be a positive integer; got {season!r}")
    if constant not in ("raise", "skip"):
        raise ValueError(f"constant must be 'raise' or 'skip'; got {constant!r}")
    scores = []
    for i, history in enumerate(histories):
        scale = seasonal_error(history, season)
        if scale == 0:
            if constant == "raise":
                raise ValueError(f"series {i} has a constant history (MASE scale 0); pass constant='skip' to leave "
                                 "such series out")  # fmt: skip
            continue
        scores.append(np.abs(y[i] - f[i]).mean() / scale)
    if not scores:
        raise ValueError("every series has a constant history: MASE is undefined")
    return float(np.mean(scores))


def crps_from_samples(samples, targets) -> float:
    r"""Continuous ranked probability score of a sample forecast, averaged over every entry:
    :math:`E|X - y| - \tfrac12 E|X - X'|` with both expectations over the ``m`` samples (the :math:`1/m^2` form,
    from sorted samples in :math:`O(m\log m)`).

    Args:
        samples: ``(m, ...)`` draws of the forecast.
        targets: ``(...)`` the observed values.
    """
    x, y = _forecast_array(samples, "samples"), _forecast_array(targets, "targets")
    if x.ndim < 1 or x.shape[1:] != y.shape or x.shape[0] < 1:
        raise ValueError(f"samples must have shape (m, *targets.shape) = (m, {y.shape}); got {x.shape}")
    m = x.shape[0]
    first = np.abs(x - y[None]).mean(axis=0)
    ordered = np.sort(x, axis=0)
    # sum_{i,j} |x_i - x_j| = 2 sum_k (2k - m + 1) x_(k) for the sorted samples x_(0) <= ... <= x_(m-1)
    weights = (2 * np.arange(m) - m + 1).reshape((m,) + (1,) * y.ndim)
    spread = 2 * (weights * ordered).sum(axis=0) / m**2
    return float((first - 0.5 * spread).mean())
