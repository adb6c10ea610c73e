import math

import pytest
import torch

from interp.analytic import GaussianMixture
from interp.metrics import (
    energy_distance,
    log_density_error,
    median_bandwidth,
    mmd,
    monte_carlo_floor,
    sliced_wasserstein2,
    wasserstein,
)


def _sample(n=300, seed=0, dim=2):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_identical_samples_have_zero_distance():
    x = _sample()
    assert wasserstein(x, x) == pytest.approx(0, abs=1e-7)  # sqrt of a ~1e-17 transport cost
    assert sliced_wasserstein2(x, x) == pytest.approx(0, abs=1e-12)
    assert mmd(x, x) == pytest.approx(0, abs=1e-6)
    assert energy_distance(x, x) == pytest.approx(0, abs=1e-12)


def test_wasserstein_of_a_translation_is_its_length():
    x = _sample()
    shift = torch.tensor([3.0, 4.0])
    assert wasserstein(x, x + shift, p=2) == pytest.approx(5.0, rel=1e-9)
    assert wasserstein(x, x + shift, p=1) == pytest.approx(5.0, rel=1e-9)
    # sliced W2 of a translation: |c| * sqrt(E[(theta . u)^2]) = |c| / sqrt(dim), up to the projections' noise
    value = sliced_wasserstein2(x, x + shift, n_projections=4000, generator=torch.Generator().manual_seed(0))
    assert value == pytest.approx(5.0 / math.sqrt(2), rel=0.05)


def test_mmd_and_energy_grow_with_separation():
    x = _sample(seed=1)
    near, far = x + 0.1, x + 2.0
    h = median_bandwidth(x, x)
    assert mmd(x, near, bandwidth=h) < mmd(x, far, bandwidth=h)
    assert energy_distance(x, near) < energy_distance(x, far)


def test_monte_carlo_floor_is_positive_and_reproducible():
    gm = GaussianMixture(torch.ones(2), torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.3)
    a = monte_carlo_floor(wasserstein, gm.sample, 200, torch.Generator().manual_seed(0), repeats=2)
    b = monte_carlo_floor(wasserstein, gm.sample, 200, torch.Generator().manual_seed(0), repeats=2)
    assert a > 0 and a == b


def test_log_density_error():
    assert log_density_error(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.0])) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="finite"):
        log_density_error(torch.tensor([float("-inf")]), torch.tensor([0.0]))


def test_bad_input():
    with pytest.raises(ValueError, match="shapes"):
        wasserstein(_sample(dim=2), _sample(dim=3))
    with pytest.raises(ValueError, match="p must be"):
        wasserstein(_sample(), _sample(), p=3)
    with pytest.raises(ValueError, match="finite"):
        mmd(_sample(), torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="two points"):
        energy_distance(_sample(n=1), _sample())
