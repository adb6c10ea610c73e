import math

import pytest
import torch

from interp.schedules import (
    BrownianGamma,
    CustomGamma,
    CustomSchedule,
    LinearSchedule,
    NoGamma,
    QuadraticGamma,
    SinSquaredGamma,
    TrigonometricSchedule,
    VPSchedule,
    time_derivative,
)

SCHEDULES = [
    LinearSchedule(),
    TrigonometricSchedule(),
    VPSchedule(),
    CustomSchedule(lambda t: (1 - t) ** 2, lambda t: 1 - (1 - t) ** 2),
]
GAMMAS = [
    BrownianGamma(0.7),
    QuadraticGamma(2.0),
    SinSquaredGamma(0.5),
    CustomGamma(lambda t: t * (1 - t)),
    CustomGamma(gamma_squared=lambda t: t * (1 - t)),
]
T_INNER = torch.linspace(0.01, 0.99, 23, dtype=torch.float64)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
def test_schedule_derivatives_match_autograd(schedule):
    t = T_INNER[T_INNER <= schedule.time_range[1]]
    assert torch.allclose(schedule.alpha_dot(t), time_derivative(schedule.alpha, t), atol=1e-10)
    assert torch.allclose(schedule.beta_dot(t), time_derivative(schedule.beta, t), atol=1e-10)
    assert torch.allclose(
        schedule.alpha_alpha_dot(t), schedule.alpha(t) * time_derivative(schedule.alpha, t), atol=1e-10
    )


@pytest.mark.parametrize("schedule", SCHEDULES[:2] + SCHEDULES[3:], ids=lambda s: s.name)
def test_two_sided_end_conditions(schedule):
    ends = torch.tensor([0.0, 1.0])
    assert torch.allclose(schedule.alpha(ends), torch.tensor([1.0, 0.0]), atol=1e-12)
    assert torch.allclose(schedule.beta(ends), torch.tensor([0.0, 1.0]), atol=1e-12)


def test_vp_is_variance_preserving_and_finite_where_declared():
    vp = VPSchedule()
    t = torch.linspace(0, vp.time_range[1], 50)
    assert torch.allclose(vp.alpha(t) ** 2 + vp.beta(t) ** 2, torch.ones_like(t), atol=1e-12)
    assert torch.isfinite(vp.alpha_dot(t)).all()
    # alpha_dot diverges at t = 1, alpha * alpha_dot does not
    assert torch.isfinite(vp.alpha_alpha_dot(torch.tensor([1.0]))).all()
    assert math.isclose(float(vp.beta(torch.tensor(0.0))), math.exp(-(0.1 + 20.0) / 4), rel_tol=1e-12)


@pytest.mark.parametrize("gamma", GAMMAS, ids=lambda g: g.name)
def test_gamma_derivatives_and_product(gamma):
    t = T_INNER
    assert torch.allclose(gamma.gamma_dot(t), time_derivative(gamma.gamma, t), atol=1e-8)
    assert torch.allclose(gamma.gamma_gamma_dot(t), 0.5 * time_derivative(lambda s: gamma.gamma(s) ** 2, t), atol=1e-8)
    assert torch.allclose(gamma.gamma(torch.tensor([0.0, 1.0])), torch.zeros(2), atol=1e-12)


def test_brownian_gamma_product_finite_at_ends_where_derivative_is_not():
    g = BrownianGamma(1.3)
    ends = torch.tensor([0.0, 1.0])
    assert not torch.isfinite(g.gamma_dot(ends)).any()
    assert torch.allclose(g.gamma_gamma_dot(ends), torch.tensor([0.5 * 1.3**2, -0.5 * 1.3**2]))


def test_no_gamma_is_zero():
    assert NoGamma().is_zero and not BrownianGamma().is_zero
    assert torch.equal(NoGamma().gamma_gamma_dot(T_INNER), torch.zeros_like(T_INNER))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: CustomSchedule(lambda t: 1 - t, lambda t: t + 0.1), "beta"),
        (lambda: CustomSchedule(lambda t: 1 - t, "t"), "callable"),
        (lambda: CustomGamma(lambda t: t), "gamma"),
        (lambda: CustomGamma(), "exactly one"),
        (lambda: BrownianGamma(0.0), "positive"),
        (lambda: VPSchedule(beta_min=5, beta_max=1), "beta_min"),
    ],
)
def test_bad_schedules_raise(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()
