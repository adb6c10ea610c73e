import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from interp.analytic import Banana, Checkerboard, ExactMarginals, Funnel, GaussianMixture, ring_mixture
from interp.interpolants import PRESETS, preset

SEEDS = (0, 1, 2)


def _mixture():
    return GaussianMixture(
        torch.tensor([1.0, 3.0]),
        torch.tensor([[0.0, 1.0, 0.5], [1.0, -1.0, 0.0]]),
        torch.tensor(
            [[[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.7]], [[0.4, 0.0, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 0.3]]]
        ),
    )


def test_log_density_matches_scipy():
    gm = _mixture()
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    expected = np.log(
        sum(
            w * multivariate_normal(m, c).pdf(x.numpy())
            for w, m, c in zip(gm.weights.numpy(), gm.means.numpy(), gm.covariances.numpy(), strict=False)
        )
    )
    assert np.allclose(gm.log_density(x).numpy(), expected, atol=1e-12)


def test_score_and_laplacian_match_autograd():
    gm = _mixture()
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_density(x).sum(), x, create_graph=True)
    laplacian = sum(torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(3))
    assert torch.allclose(gm.score(x.detach()), grad.detach(), atol=1e-10)
    assert torch.allclose(gm.laplacian_log_density(x.detach()), laplacian.detach(), atol=1e-9)


def test_log_space_far_from_modes_is_finite():
    gm = ring_mixture(std=0.1)
    x = torch.tensor([[200.0, 0.0]])
    assert torch.isfinite(gm.log_density(x)).all() and torch.isfinite(gm.score(x)).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_sampling_moments_within_clt_budget(seed):
    """Sample mean within 4 standard errors of the exact mean, in every coordinate, over several seeds."""
    gm = _mixture()
    n = 20000
    x = gm.sample(n, torch.Generator().manual_seed(seed))
    se = torch.sqrt(torch.diagonal(gm.covariance()) / n)
    assert ((x.mean(0) - gm.mean()).abs() <= 4 * se).all()
    assert torch.allclose(torch.cov(x.T), gm.covariance(), atol=0.05)


@pytest.mark.parametrize("name", PRESETS)
def test_exact_fields_satisfy_continuity_equation(name):
    """d/dt log rho + div b + b . s = 0 (finite differences in t, autograd divergence) for every preset."""
    interpolant = preset(name)
    rho0 = (
        GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
        if interpolant.gaussian_base
        else GaussianMixture(
            torch.tensor([1.0, 2.0]), torch.tensor([[0.0, 1.0], [1.0, -1.0]]), torch.tensor([0.5, 0.8])
        )
    )
    exact = ExactMarginals(interpolant, rho0, ring_mixture(4, radius=2.0, std=0.4))
    g = torch.Generator().manual_seed(0)
    for t_value in (0.1, 0.5, 0.9):
        x = exact.sample(t_value, 8, g)
        t, h = torch.tensor(t_value), 1e-5
        dlog = (exact.log_density(t + h, x) - exact.log_density(t - h, x)) / (2 * h)
        xx = x.clone().requires_grad_(True)
        b = exact.velocity(t, xx)
        div = sum(torch.autograd.grad(b[:, i].sum(), xx, retain_graph=True)[0][:, i] for i in range(2))
        residual = dlog + div.detach() + (b.detach() * exact.score(t, x)).sum(-1)
        assert residual.abs().max() < 1e-6


def test_posterior_means_reconstruct_the_state_and_batch_times():
    exact = ExactMarginals(preset("linear-brownian"), _mixture(), GaussianMixture(torch.ones(1), torch.ones(1, 3), 0.5))
    g = torch.Generator().manual_seed(0)
    t = torch.rand(12, generator=g) * 0.9 + 0.05
    x = torch.randn(12, 3, generator=g)
    s, it = exact.interpolant.schedule, exact.interpolant
    a, b, c = s.alpha(t)[:, None], s.beta(t)[:, None], it.noise.gamma(t)[:, None]
    assert torch.allclose(a * exact.x0_mean(t, x) + b * exact.x1_mean(t, x) + c * exact.denoiser(t, x), x, atol=1e-10)
    one_by_one = torch.cat([exact.velocity(t[i], x[i : i + 1]) for i in range(12)])
    assert torch.allclose(exact.velocity(t, x), one_by_one, atol=1e-12)


def test_marginal_at_ends_is_the_endpoints():
    rho0, rho1 = (
        _mixture(),
        GaussianMixture(torch.ones(2), torch.randn(2, 3, generator=torch.Generator().manual_seed(0)), 0.3),
    )
    exact = ExactMarginals(preset("linear"), rho0, rho1)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(exact.log_density(0.0, x), rho0.log_density(x), atol=1e-12)
    assert torch.allclose(exact.log_density(1.0, x), rho1.log_density(x), atol=1e-12)


def test_float32_follows_input():
    gm = _mixture()
    x = torch.randn(4, 3, dtype=torch.float32)
    assert gm.log_density(x).dtype == torch.float32


def _integrate_2d(log_density, low, high, n=801):
    grid = torch.linspace(low, high, n)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    values = torch.exp(log_density(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)))
    step = (high - low) / (n - 1)
    return float(values.sum() * step * step)


@pytest.mark.parametrize("target, box", [(Banana(), (-12, 12)), (Checkerboard(), (-3, 3)), (ring_mixture(), (-8, 8))])
def test_targets_are_normalised(target, box):
    assert abs(_integrate_2d(target.log_density, *box) - 1) < 2e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_target_samplers_match_densities(seed):
    g = torch.Generator().manual_seed(seed)
    n = 20000
    banana = Banana()
    x = banana.sample(n, g)
    assert abs(float(x[:, 0].var()) - banana.sigma1**2) < 4 * banana.sigma1**2 * math.sqrt(2 / n)
    assert abs(float(x[:, 1].mean())) < 4 * float(x[:, 1].std()) / math.sqrt(n)
    board = Checkerboard()
    assert torch.isfinite(board.log_density(board.sample(n, g))).all()
    funnel = Funnel(dim=3)
    v = funnel.sample(n, g)[:, 0]
    assert abs(float(v.std()) - 3.0) < 0.1
    # the funnel's conditional variance: E[x2^2 | v] = exp(v)
    y = funnel.sample(n, g)
    assert abs(float((y[:, 1] ** 2 / torch.exp(y[:, 0])).mean()) - 1) < 4 * math.sqrt(2 / n)


def test_target_scores():
    x = torch.tensor([[0.3, -0.2], [1.0, 2.0]])
    banana = Banana()
    v2 = banana.sigma2**2
    shift = banana.curvature * (x[:, 0] ** 2 - banana.sigma1**2)
    expected_y = -(x[:, 1] - shift) / v2
    assert torch.allclose(banana.score(x)[:, 1], expected_y)
    board = Checkerboard()
    inside = board.sample(10, torch.Generator().manual_seed(0))
    assert torch.equal(board.score(inside), torch.zeros_like(inside))
    with pytest.raises(ValueError, match="dark cells"):
        board.score(torch.tensor([[0.5, -0.5]]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weights=torch.tensor([1.0, -1.0]), means=torch.zeros(2, 2), covariances=1.0), "positive"),
        (
            dict(weights=torch.ones(2), means=torch.zeros(2, 2), covariances=torch.tensor([1.0, -1.0])),
            "positive definite",
        ),
        (dict(weights=torch.ones(3), means=torch.zeros(2, 2), covariances=1.0), "weights must have shape"),
        (dict(weights=torch.ones(2), means=torch.zeros(2), covariances=1.0), "means must have shape"),
        (
            dict(weights=torch.ones(1), means=torch.zeros(1, 2), covariances=torch.tensor([[[1.0, 0.5], [0.0, 1.0]]])),
            "symmetric",
        ),
        (dict(weights=torch.ones(1), means=torch.tensor([[float("nan"), 0.0]]), covariances=1.0), "finite"),
    ],
)
def test_bad_mixtures_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**kwargs)


def test_bad_points_raise():
    gm = _mixture()
    with pytest.raises(ValueError, match="shape"):
        gm.log_density(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="finite"):
        gm.score(torch.full((2, 3), float("inf")))
    exact = ExactMarginals(preset("linear"), gm, gm)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        exact.velocity(1.2, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="share a dimension"):
        ExactMarginals(preset("linear"), gm, ring_mixture())
