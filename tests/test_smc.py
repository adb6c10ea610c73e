"""Weighted particles: ESS and normalisation in log space, unbiased resampling schemes with their known count
bounds, policies, the log normalising-constant estimate against a closed form, ancestry; degenerate weights."""

from __future__ import annotations

import math

import pytest
import torch

from interp.smc import (
    SCHEMES,
    DegenerateWeightsError,
    Particles,
    ResamplePolicy,
    effective_sample_size,
    log_mean_exp,
    normalised_log_weights,
    resample_indices,
)


def test_ess_limits_shift_invariance_and_underflow():
    n = 50
    assert effective_sample_size(torch.zeros(n)) == pytest.approx(n)
    one_hot = torch.full((n,), -math.inf)
    one_hot[3] = 0.0
    assert effective_sample_size(one_hot) == pytest.approx(1.0)
    lw = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = torch.exp(lw)
    assert effective_sample_size(lw) == pytest.approx(float(w.sum() ** 2 / (w**2).sum()), rel=1e-12)
    # weights of e^-10000 underflow in linear space; in log space they are two particles of ratio e
    tiny = torch.tensor([-10000.0, -10001.0], dtype=torch.float64)
    expected = (1 + math.exp(-1)) ** 2 / (1 + math.exp(-2))
    assert effective_sample_size(tiny) == pytest.approx(expected, rel=1e-9)  # logsumexp at -1e4 keeps ~12 digits
    assert torch.allclose(normalised_log_weights(tiny).exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_degenerate_weights_raise_instead_of_nan():
    for bad, message in (
        (torch.full((4,), -math.inf), "every log-weight is -inf"),
        (torch.tensor([0.0, math.nan]), "NaN"),
        (torch.tensor([0.0, math.inf]), r"\+inf"),
    ):
        with pytest.raises(DegenerateWeightsError, match=message):
            effective_sample_size(bad)
        with pytest.raises(DegenerateWeightsError):
            resample_indices(bad)
    particles = Particles.uniform(torch.zeros(3, 2))
    with pytest.raises(DegenerateWeightsError, match="NaN"):
        particles.reweight(torch.tensor([0.0, math.nan, 0.0], dtype=torch.float64))
    with pytest.raises(DegenerateWeightsError, match="-inf"):
        particles.reweight(torch.full((3,), -math.inf, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown resampling scheme"):
        resample_indices(torch.zeros(3), "magic")
    with pytest.raises(ValueError, match="threshold"):
        ResamplePolicy("ess", threshold=0.0)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_is_unbiased(scheme):
    g = torch.Generator().manual_seed(1)
    lw = 2 * torch.randn(8, generator=g, dtype=torch.float64)
    weights = torch.exp(normalised_log_weights(lw))
    reps, n = 4000, 8
    counts = torch.stack([torch.bincount(resample_indices(lw, scheme, generator=g), minlength=n) for _ in range(reps)])
    mean = counts.double().mean(0)
    se = counts.double().std(0) / math.sqrt(reps)
    exact = n * weights
    # budget: 4.5 standard errors per particle (deterministic counts have se 0: then they must match to 1e-9)
    assert torch.all((mean - exact).abs() <= 4.5 * se + 1e-9)


def test_known_count_bounds_and_variance_order():
    g = torch.Generator().manual_seed(2)
    lw = torch.randn(10, generator=g, dtype=torch.float64)
    n_w = 10 * torch.exp(normalised_log_weights(lw))
    variances = {}
    for scheme in SCHEMES:
        counts = torch.stack(
            [torch.bincount(resample_indices(lw, scheme, generator=g), minlength=10) for _ in range(2000)]
        )
        variances[scheme] = float(counts.double().var(0).sum())
        if scheme == "systematic":  # each count is the floor or the ceiling of n W_i
            assert torch.all((counts >= torch.floor(n_w)) & (counts <= torch.ceil(n_w)))
        if scheme == "residual":  # at least the integer part
            assert torch.all(counts >= torch.floor(n_w))
    assert max(variances["systematic"], variances["stratified"], variances["residual"]) < variances["multinomial"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_normaliser_of_a_tempered_gaussian_path(seed):
    """pi_b ∝ exp(-(1 - b) x^2 / 2 - b (x - m)^2 / (2 s^2)): each is Gaussian, so Z_1 / Z_0 is known. Reweighting
    with resampling but no moves still estimates it without bias; 4000 particles, 10 steps."""
    m, s = 1.5, 0.5
    betas = torch.linspace(0, 1, 11, dtype=torch.float64)

    def log_unnormalised(x, b):
        return -0.5 * (1 - b) * x**2 - 0.5 * b * (x - m) ** 2 / s**2

    def log_z(b):  # completing the square: precision P, linear coefficient b m / s^2
        precision, linear = (1 - b) + b / s**2, b * m / s**2
        return 0.5 * math.log(2 * math.pi / precision) + linear**2 / (2 * precision) - 0.5 * b * m**2 / s**2

    estimates = []
    for rep in range(5):
        g = torch.Generator().manual_seed(100 * seed + rep)
        p = Particles.uniform(torch.randn(4000, generator=g, dtype=torch.float64))
        for k in range(1, betas.numel()):
            p.reweight(log_unnormalised(p.x, betas[k]) - log_unnormalised(p.x, betas[k - 1]))
            p.maybe_resample(ResamplePolicy("ess", threshold=0.5), k, "systematic", g)
        estimates.append(p.log_normaliser)
    exact = log_z(1.0) - log_z(0.0)
    spread = torch.tensor(estimates).std().item()
    assert abs(log_mean_exp(estimates) - exact) < 4 * spread / math.sqrt(5) + 0.01
    assert abs(exact) > 0.5  # the check is not trivially at 0


def test_policies_and_ancestry():
    g = torch.Generator().manual_seed(3)
    lw = torch.tensor([0.0, -50.0, -50.0, -50.0], dtype=torch.float64)  # ESS ≈ 1
    assert ResamplePolicy("ess", 0.5).due(0, lw) and not ResamplePolicy("ess", 0.5).due(0, torch.zeros(4))
    assert ResamplePolicy("schedule", steps=(2, 5)).due(5, torch.zeros(4))
    assert not ResamplePolicy("always", window=(3, 6)).due(2, lw) and ResamplePolicy("always", window=(3, 6)).due(3, lw)
    assert not ResamplePolicy("never").due(0, lw)
    p = Particles(torch.arange(4.0), lw.clone())
    p.resample("multinomial", g, step=0)
    assert torch.equal(p.x, torch.zeros(4)) and p.resampled_at == [0]  # all copies of particle 0
    p.reweight(torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    p.resample("systematic", g, step=1)
    assert torch.equal(p.lineage(), torch.zeros(4, dtype=torch.long))
    assert p.ess == pytest.approx(4.0)
