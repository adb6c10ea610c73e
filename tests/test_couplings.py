import math

import pytest
import torch

from interp.couplings import EntropicOTCoupling, ExactOTCoupling, IndependentCoupling, squared_distances


def _batches(n=200, dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g) + 2.0


def test_exact_plan_has_uniform_marginals_and_lower_cost():
    x0, x1 = _batches()
    coupling = ExactOTCoupling()
    plan = coupling.plan(x0, x1)
    n = x0.shape[0]
    assert torch.allclose(plan.sum(1), torch.full((n,), 1 / n), atol=1e-12)
    assert torch.allclose(plan.sum(0), torch.full((n,), 1 / n), atol=1e-12)
    a, b = coupling.pair(x0, x1)
    assert (a - b).pow(2).sum(1).mean() <= (x0 - x1).pow(2).sum(1).mean()
    # equal sizes: a permutation, every x1 used once
    assert torch.equal(torch.sort(b, dim=0).values, torch.sort(x1, dim=0).values)


def test_exact_ot_in_one_dimension_is_the_monotone_matching():
    x0, x1 = _batches(n=50, dim=1, seed=3)
    a, b = ExactOTCoupling().pair(x0, x1)
    order = torch.argsort(a[:, 0])
    assert (torch.diff(b[order, 0]) >= 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropic_plan_matches_the_gaussian_schrodinger_bridge(seed):
    """N(0,1) -> N(0,1), epsilon = 1: Cov(x0, x1) = (sqrt(5) - 1) / 2 (docs/algorithms.md §4), within 4 standard
    errors of a sample covariance, (1 + rho^2) / n."""
    g = torch.Generator().manual_seed(seed)
    n = 1000
    x0, x1 = torch.randn(n, 1, generator=g), torch.randn(n, 1, generator=g)
    coupling = EntropicOTCoupling(epsilon=1.0)
    plan = coupling.plan(x0, x1)
    assert torch.allclose(plan.sum(1), torch.full((n,), 1 / n), rtol=1e-6)
    a, b = coupling.pair(x0, x1, generator=g)
    rho = (math.sqrt(5) - 1) / 2
    covariance = float(torch.cov(torch.cat([a, b], dim=1).T)[0, 1])
    assert abs(covariance - rho) < 4 * math.sqrt((1 + rho**2) / n)


def test_entropic_tends_to_exact_for_small_epsilon():
    x0, x1 = _batches(n=100, seed=4)
    exact_cost = float((ExactOTCoupling().plan(x0, x1) * squared_distances(x0, x1)).sum())
    costs = [float((EntropicOTCoupling(eps).plan(x0, x1) * squared_distances(x0, x1)).sum()) for eps in (1.0, 0.05)]
    assert costs[0] > costs[1] >= exact_cost - 1e-9
    assert costs[1] - exact_cost < 0.05 * exact_cost


def test_pairs_are_reproducible_and_shapes_flattened():
    x0, x1 = torch.randn(30, 1, 3, 3), torch.randn(30, 1, 3, 3)
    coupling = EntropicOTCoupling(0.5)
    a = coupling.pair(x0, x1, torch.Generator().manual_seed(1))
    b = coupling.pair(x0, x1, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape == x0.shape


def test_bad_input():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="trailing shape"):
        ExactOTCoupling().pair(x, torch.randn(4, 3))
    with pytest.raises(ValueError, match="empty"):
        ExactOTCoupling().pair(torch.zeros(0, 2), x)
    with pytest.raises(ValueError, match="finite"):
        ExactOTCoupling().pair(x, torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="equal batch sizes"):
        IndependentCoupling().pair(x, torch.randn(5, 2))
    with pytest.raises(ValueError, match="positive"):
        EntropicOTCoupling(0.0)
