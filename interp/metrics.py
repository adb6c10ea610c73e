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
