"""Closed-form cases shared by the suites: Gaussian-mixture endpoints in 2D and higher dimensions.

Cases are fixed (their parameters come from a fixed seed, not from the run's seed), so every run checks
the same problems; the run's seed only drives the sampling noise.
"""

from __future__ import annotations

import torch

from interp.analytic import ExactMarginals, GaussianMixture, ring_mixture
from interp.interpolants import Interpolant


def _random_spd(k: int, dim: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(k, dim, dim, generator=generator, dtype=torch.float64))
    eigenvalues = low + (high - low) * torch.rand(k, dim, generator=generator, dtype=torch.float64)
    return q @ torch.diag_embed(eigenvalues) @ q.transpose(-1, -2)


def source_mixture(dim: int) -> GaussianMixture:
    """A two- or four-component mixture with full covariances, the source of two-sided interpolants."""
    g = torch.Generator().manual_seed(1000 + dim)
    if dim == 2:
        means = torch.tensor([[-1.5, -1.0], [1.0, 1.5]], dtype=torch.float64)
        covs = torch.tensor([[[0.6, 0.25], [0.25, 0.4]], [[0.3, -0.1], [-0.1, 0.5]]], dtype=torch.float64)
        return GaussianMixture(torch.tensor([0.4, 0.6]), means, covs)
    return GaussianMixture(
        torch.ones(4), 1.5 * torch.randn(4, dim, generator=g, dtype=torch.float64), _random_spd(4, dim, 0.3, 1.0, g)
    )


def target_mixture(dim: int) -> GaussianMixture:
    """The target: an 8-mode ring in 2D; a four-component mixture with full covariances otherwise."""
    if dim == 2:
        return ring_mixture(n_modes=8, radius=3.0, std=0.35)
    g = torch.Generator().manual_seed(2000 + dim)
    return GaussianMixture(
        torch.tensor([1.0, 2.0, 3.0, 2.0]),
        2.0 * torch.randn(4, dim, generator=g, dtype=torch.float64),
        _random_spd(4, dim, 0.2, 0.8, g),
    )


def exact_marginals(interpolant: Interpolant, dim: int) -> ExactMarginals:
    """Exact fields of ``interpolant`` from the source (or N(0, I) for a Gaussian base) to the target."""
    if interpolant.gaussian_base:
        source = GaussianMixture(torch.ones(1), torch.zeros(1, dim, dtype=torch.float64), 1.0)
    else:
        source = source_mixture(dim)
    return ExactMarginals(interpolant, source, target_mixture(dim))
