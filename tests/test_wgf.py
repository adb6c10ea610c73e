"""Particle gradient flows of KL: the WGF with a kernel score and SVGD reach Gaussian and mixture targets, their KL
estimates fall; kernel estimates against closed forms; bad input."""

from __future__ import annotations

import math

import pytest
import torch

from interp.analytic import GaussianMixture
from interp.metrics import wasserstein
from interp.wgf import kde_log_density, kde_score, local_bandwidth, svgd, wgf

MEAN, STD = torch.tensor([2.0, -1.0]), 0.7


def _gaussian():
    return GaussianMixture(torch.ones(1), MEAN[None], torch.tensor([STD**2]))  # variances


def test_kernel_estimates_are_the_gaussian_mixture_of_the_particles():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g)
    h = 0.6
    blobs = GaussianMixture(torch.full((30,), 1 / 30), x, torch.full((30,), h**2))  # the same estimate, closed form
    assert torch.allclose(kde_log_density(x, h), blobs.log_density(x), atol=1e-12)
    assert torch.allclose(kde_score(x, h), blobs.score(x), atol=1e-12)
    assert 0 < local_bandwidth(x) < torch.cdist(x, x).max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wgf_reaches_a_gaussian_and_its_kl_estimate_falls(seed):
    g = torch.Generator().manual_seed(seed)
    h = 0.3
    out = wgf(_gaussian(), torch.randn(300, 2, generator=g), step_size=0.05, n_steps=300, bandwidth=h,
              record_every=10, progress=False)  # fmt: skip
    final = out.final
    # at rest the kernel estimate equals the target, rho * N(0, h^2) = pi: the particles' variance is STD^2 - h^2;
    # standard errors of the mean and variance of 300 points: 0.04 and 0.03 (the flow's particles are more regular)
    assert torch.linalg.norm(final.mean(0) - MEAN) < 0.05
    assert torch.allclose(final.var(0), torch.full((2,), STD**2 - h**2), atol=0.06)
    assert out.kl[-1] < 0.02 * out.kl[0]
    assert (out.kl[1:] - out.kl[:-1]).max() < 0.01  # falls at every record, up to the estimate's noise
    assert out.to_xarray()["kl"].dims == ("step",)


@pytest.mark.parametrize("seed", [0, 1])
def test_wgf_reaches_a_two_mode_mixture_within_the_sampling_floor(seed):
    mixture = GaussianMixture(
        torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), torch.tensor([0.6, 0.8])
    )
    g = torch.Generator().manual_seed(seed)
    out = wgf(mixture, 2 * torch.randn(400, 2, generator=g), step_size=0.05, n_steps=600, record_every=50,
              progress=False)  # fmt: skip
    reference = mixture.sample(400, g)
    floor = max(wasserstein(mixture.sample(400, g), reference) for _ in range(3))  # two exact samples of 400
    assert wasserstein(out.final, reference) < 1.5 * floor
    # a deterministic flow reweights modes slowly: the left mode holds 0.3 of the mass, within 0.1 here
    assert abs(float((out.final[:, 0] < 0).double().mean()) - 0.3) < 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_svgd_moves_particles_to_a_gaussian(seed):
    g = torch.Generator().manual_seed(seed)
    out = svgd(_gaussian(), torch.randn(200, 2, generator=g), step_size=1.0, n_steps=300, record_every=30,
               progress=False)  # fmt: skip
    assert torch.linalg.norm(out.final.mean(0) - MEAN) < 0.1
    assert torch.allclose(out.final.var(0), torch.full((2,), STD**2), rtol=0.15)
    assert out.energy[-1] < out.energy[0]


def test_flows_reject_bad_input():
    target = _gaussian()
    with pytest.raises(ValueError, match="step_size"):
        wgf(target, torch.zeros(5, 2), step_size=0.0, n_steps=3)
    with pytest.raises(ValueError, match=r"\(n >= 2, dim\)"):
        svgd(target, torch.zeros(1, 2), step_size=0.1, n_steps=3)
    with pytest.raises(ValueError, match="not finite"):
        wgf(target, torch.full((5, 2), math.inf), step_size=0.1, n_steps=3)
    with pytest.raises(ValueError, match="n_steps"):
        svgd(target, torch.randn(5, 2), step_size=0.1, n_steps=0)
    with pytest.raises(ValueError, match="log_density_score"):
        wgf(target, torch.randn(5, 2), step_size=0.1, n_steps=3, log_density_score=lambda x: x[:, :1], progress=False)
