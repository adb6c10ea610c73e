"""Field diagnostics against hand-derived values: exact scores are conservative, a rotated score has the known
asymmetry, curl and circulation; the Fokker–Planck residual vanishes for exact marginals; the ODE–SDE gap."""

from __future__ import annotations

import math

import pytest
import torch

from interp import grids
from interp.analytic import ExactMarginals, GaussianMixture
from interp.diagnostics import (
    circulation,
    curl_2d,
    fokker_planck_residual,
    jacobian,
    jacobian_asymmetry,
    ode_sde_gap,
    path_dependence,
)
from interp.interpolants import preset
from interp.metrics import wasserstein


def _mixture(dim, g):
    return GaussianMixture(torch.tensor([0.4, 0.6]), torch.randn(2, dim, generator=g), torch.tensor([0.7, 1.2]))


@pytest.mark.parametrize("dim", [2, 5])
def test_exact_scores_are_conservative(dim):
    g = torch.Generator().manual_seed(dim)
    mixture = _mixture(dim, g)
    x = 2 * torch.randn(64, dim, generator=g)
    assert jacobian_asymmetry(mixture.score, x).max() < 1e-12
    centres = torch.randn(4, dim, generator=g)
    assert circulation(mixture.score, centres, 1.0, plane=(0, dim - 1)).abs().max() < 1e-10
    assert path_dependence(mixture.score, centres, centres + 1.5).abs().max() < 1e-10
    if dim == 2:
        assert curl_2d(mixture.score, x).abs().max() < 1e-12


@pytest.mark.parametrize("theta", [0.3, 1.0, -2.0])
def test_a_rotated_score_has_the_known_asymmetry_curl_and_circulation(theta):
    # f = R(theta) grad log N(0, I) = -R x: J = -R, |J - J^T|_F / |J|_F = 2|sin theta|, curl = -2 sin theta
    c, s = math.cos(theta), math.sin(theta)
    rotation = torch.tensor([[c, -s], [s, c]])

    def rotated(x):
        return -x @ rotation.T

    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(jacobian(rotated, x), -rotation.expand(16, 2, 2), atol=1e-14)
    assert torch.allclose(jacobian_asymmetry(rotated, x), torch.full((16,), 2 * abs(s)), atol=1e-12)
    assert torch.allclose(curl_2d(rotated, x), torch.full((16,), -2 * s), atol=1e-12)
    # Stokes: the circulation is the (constant) curl times the disc's area
    loops = circulation(rotated, torch.zeros(3, 2) + x[:3], 0.7)
    assert torch.allclose(loops, torch.full((3,), -2 * s * math.pi * 0.49), rtol=1e-10)
    # the loop (straight there, half-sine back) encloses 2/pi * detour * |b - a|^2
    a, b = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    gap = path_dependence(rotated, a, b, detour=0.5)
    assert gap.abs().item() == pytest.approx(2 * abs(s) * (2 / math.pi) * 0.5 * 2.0, rel=1e-10)


def _exact(seed):
    g = torch.Generator().manual_seed(seed)
    source = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
    return ExactMarginals(preset("linear"), source, _mixture(2, g)), g


@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_fokker_planck_residual_vanishes_for_exact_marginals(t):
    exact, g = _exact(0)
    x = exact.sample(t, 128, g)
    ode = fokker_planck_residual(exact.log_density, exact.velocity, t, x)
    eps = 0.7

    def sde_drift(time, y):
        return exact.velocity(time, y) + eps * exact.score(time, y)

    sde = fokker_planck_residual(exact.log_density, sde_drift, t, x, noise_scale=eps)
    assert ode.abs().max() < 1e-6 and sde.abs().max() < 1e-6  # central difference in t, dt = 1e-4

    def wrong(time, y):  # a log-density model off by a quadratic
        return exact.log_density(time, y) - 0.1 * y.pow(2).sum(dim=1)

    assert fokker_planck_residual(wrong, exact.velocity, t, x).abs().mean() > 0.05


def test_ode_sde_gap_is_at_the_sampling_floor_for_consistent_fields_only():
    for seed in (0, 1, 2):
        exact, g = _exact(seed)
        x0 = exact.sample(0.0, 1000, g)
        grid = grids.uniform(200)
        floor = wasserstein(exact.sample(1.0, 1000, g), exact.sample(1.0, 1000, g))  # two exact samples of rho_1
        consistent = ode_sde_gap(exact.velocity, exact.score, x0, grid, 1.0, generator=g)
        inconsistent = ode_sde_gap(
            exact.velocity, lambda t, x, e=exact: 0.5 * e.score(t, x), x0, grid, 1.0, generator=g
        )
        assert consistent < 1.5 * floor < inconsistent


def test_diagnostics_reject_bad_input():
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        jacobian(lambda x: x, torch.zeros(3))
    with pytest.raises(ValueError, match="returned"):
        jacobian(lambda x: x[:, :1], torch.zeros(3, 2))
    with pytest.raises(ValueError, match="2-D points"):
        curl_2d(lambda x: x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="plane"):
        circulation(lambda x: x, torch.zeros(2, 2), 1.0, plane=(0, 0))
    with pytest.raises(ValueError, match="radius"):
        circulation(lambda x: x, torch.zeros(2, 2), 0.0)
    with pytest.raises(ValueError, match="must differ"):
        path_dependence(lambda x: x, torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="finite"):
        jacobian_asymmetry(lambda x: x, torch.full((2, 2), math.nan))
    with pytest.raises(ValueError, match="noise_scale"):
        fokker_planck_residual(lambda t, x: -x.pow(2).sum(1), lambda t, x: x, 0.5, torch.zeros(2, 2), noise_scale=-1)
