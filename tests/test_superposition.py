import pytest
import torch

from interp.fields import LearnedField
from interp.interpolants import preset
from interp.losses import Parameterisation
from interp.superposition import and_weights, superpose
from validate.density import four_gaussians

SEEDS = (0, 1, 2)


def _setup(n=400, n_steps=60, seed=0):
    vp, up, down = four_gaussians()
    lo, hi = vp.time_range
    g = torch.Generator().manual_seed(seed)
    x0 = up.sample(lo, n, g)
    starts = [lambda y: up.log_density(lo, y), lambda y: down.log_density(lo, y)]
    return vp, up, down, torch.linspace(lo, hi, n_steps + 1), x0, starts


def _run(seed, **options):
    """The two-model superposition from ``_setup(seed)`` with the same seed for its noise."""
    vp, up, down, grid, x0, starts = _setup(seed=seed)
    return superpose(
        [up.score, down.score],
        vp,
        x0,
        grid,
        log_density_start=starts,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
        **options,
    )


def test_bad_inputs():
    vp, up, down, grid, x0, _ = _setup(n=4, n_steps=3)
    with pytest.raises(ValueError, match="two or more"):
        superpose([up.score], vp, x0, grid)
    with pytest.raises(ValueError, match="mode"):
        superpose([up.score, down.score], vp, x0, grid, mode="xor")
    with pytest.raises(ValueError, match="Gaussian-base"):
        superpose([up.score, down.score], preset("linear"), x0, grid)
    with pytest.raises(ValueError, match="increase"):
        superpose([up.score, down.score], vp, x0, grid.flip(0))
    with pytest.raises(ValueError, match="weights"):
        superpose([up.score, down.score], vp, x0, grid, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="temperature"):
        superpose([up.score, down.score], vp, x0, grid, temperature=0.0)
    with pytest.raises(ValueError, match="one entry per model"):
        superpose([up.score, down.score], vp, x0, grid, log_density_start=[up.rho0.log_density])


def test_and_weights_solve_the_constraint_and_guard_equal_scores():
    g = torch.Generator().manual_seed(0)
    scores, noise = torch.randn(3, 5, 4, generator=g), torch.randn(5, 4, generator=g)
    d_h = torch.full((5,), -0.01)
    kappa = and_weights(scores, noise, d_h)
    assert torch.allclose(kappa.sum(-1), torch.ones(5))
    s_kappa = torch.einsum("bk,kbn->bn", kappa, scores)
    for i in range(2):  # every difference l_i - l_M unchanged by the step
        delta = scores[i] - scores[-1]
        lhs = (delta * s_kappa).sum(-1)
        rhs = ((delta * noise).sum(-1) + d_h * ((scores[i] ** 2).sum(-1) - (scores[-1] ** 2).sum(-1))) / (2 * d_h)
        assert torch.allclose(lhs, rhs, atol=1e-8)
    same = scores[:1].expand(2, -1, -1)
    assert torch.allclose(and_weights(same, noise, d_h), torch.full((5, 2), 0.5))


@pytest.mark.parametrize("seed", SEEDS)
def test_and_keeps_the_tracked_log_densities_together(seed):
    traj = _run(seed, mode="and", record=True)
    gap = traj.log_density[..., 0] - traj.log_density[..., 1]
    assert torch.allclose(gap, gap[:1].expand_as(gap), atol=1e-8)
    assert traj.extras["kappa"].shape == (len(traj.grid), 400, 2)
    assert traj.to_xarray()["kappa"].dims == ("time", "particle", "model")
    assert traj.final[:, 1].abs().mean() < 0.1  # the equal-density line y = 0, between the modes at y = +-1.5


@pytest.mark.parametrize("seed", SEEDS)
def test_or_with_all_weight_on_one_model_is_that_model(seed):
    traj = _run(seed, mode="or", weights=[1.0, 1e-12])
    assert (traj.final[:, 1] > 0).float().mean() > 0.99  # all mass in the top pair


def test_trained_fields_plug_in():
    """A model trained for the noise (x0) parameterisation, read through LearnedField, gives the same run."""
    vp, up, down, grid, x0, starts = _setup(n=50, n_steps=20)
    fields = [LearnedField(vp, {Parameterisation.X0: e.x0_mean}) for e in (up, down)]
    options = dict(mode="or", log_density_start=starts, progress=False)
    learned = superpose([f.score for f in fields], vp, x0, grid, generator=torch.Generator().manual_seed(0), **options)
    exact = superpose([up.score, down.score], vp, x0, grid, generator=torch.Generator().manual_seed(0), **options)
    assert torch.allclose(learned.final, exact.final, atol=1e-8)
    assert torch.allclose(learned.log_density, exact.log_density, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_or_with_weights_samples_the_weighted_mixture(seed):
    """OR with weights (0.3, 0.7) samples 0.3 up + 0.7 down: the top pair's share is 0.3 within four binomial
    standard errors (n = 400, se 0.023) plus 0.03 for the 60-step discretisation."""
    traj = _run(seed, mode="or", weights=[0.3, 0.7])
    share = float((traj.final[:, 1] > 0).double().mean())
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / 400) ** 0.5 + 0.03, share
