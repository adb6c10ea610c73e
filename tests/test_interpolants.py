import pytest
import torch

from interp.analytic import ExactMarginals, GaussianMixture
from interp.interpolants import PRESETS, Interpolant, preset
from interp.schedules import BrownianGamma, LinearSchedule, SinSquaredGamma, TrigonometricSchedule


def _exact(interpolant: Interpolant) -> ExactMarginals:
    if interpolant.gaussian_base:
        rho0 = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
    else:
        rho0 = GaussianMixture(
            torch.tensor([1.0, 2.0]),
            torch.tensor([[0.0, 1.0], [1.0, -1.0]]),
            torch.tensor([[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 0.8]]]),
        )
    rho1 = GaussianMixture(
        torch.ones(3), torch.tensor([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]]), torch.tensor([0.2, 0.3, 0.5])
    )
    return ExactMarginals(interpolant, rho0, rho1)


ALL = list(PRESETS) + ["trig-sin2"]


def _get(name):
    if name == "trig-sin2":
        return Interpolant(TrigonometricSchedule(), SinSquaredGamma(0.6))
    return preset(name)


@pytest.mark.parametrize("name", ALL)
def test_conversions_recover_exact_fields(name):
    """From the exact (velocity[, score]) recover the exact E[x0|x], E[x1|x], score, denoiser and v."""
    interpolant = _get(name)
    exact = _exact(interpolant)
    g = torch.Generator().manual_seed(0)
    for t in (0.2, 0.5, 0.9):
        x = exact.sample(t, 64, g)
        given = {"velocity": exact.velocity(t, x)}
        if not interpolant.gaussian_base:
            given["score"] = exact.score(t, x)
        post = interpolant.posterior(t, x, **given)
        assert torch.allclose(post.x0, exact.x0_mean(t, x), atol=1e-9)
        assert torch.allclose(post.x1, exact.x1_mean(t, x), atol=1e-9)
        assert torch.allclose(post.score, exact.score(t, x), atol=1e-9)
        assert torch.allclose(post.mean_velocity, exact.mean_velocity(t, x), atol=1e-9)
        if not interpolant.gaussian_base:
            assert torch.allclose(post.denoiser, exact.denoiser(t, x), atol=1e-9)


@pytest.mark.parametrize("name", ["flow", "gvp", "vp"])
@pytest.mark.parametrize("kind", ["x0", "x1", "score", "velocity"])
def test_gaussian_base_round_trips(name, kind):
    interpolant = preset(name)
    exact = _exact(interpolant)
    t = 0.4
    x = exact.sample(t, 32, torch.Generator().manual_seed(1))
    truth = interpolant.posterior(t, x, velocity=exact.velocity(t, x))
    value = {"x0": truth.x0, "x1": truth.x1, "score": truth.score, "velocity": truth.velocity}[kind]
    again = interpolant.posterior(t, x, **{kind: value})
    for field in ("x0", "x1", "score", "velocity"):
        assert torch.allclose(getattr(again, field), getattr(truth, field), atol=1e-9), field


def test_two_sided_conversions_from_other_pairs():
    interpolant = preset("linear-brownian")
    exact = _exact(interpolant)
    t = torch.full((16,), 0.3)
    x = exact.sample(0.3, 16, torch.Generator().manual_seed(2))
    truth = interpolant.posterior(t, x, velocity=exact.velocity(t, x), score=exact.score(t, x))
    for given in (
        {"x0": truth.x0, "denoiser": truth.denoiser},
        {"x1": truth.x1, "score": truth.score},
        {"mean_velocity": truth.mean_velocity, "score": truth.score},
        {"x0": truth.x0, "x1": truth.x1},
    ):
        again = interpolant.posterior(t, x, **given)
        assert torch.allclose(again.velocity, truth.velocity, atol=1e-9)
        assert torch.allclose(again.score, truth.score, atol=1e-8)


@pytest.mark.parametrize("name", ["linear", "trig"])
def test_deterministic_two_sided_conversions_need_no_score(name):
    """gamma = 0 and two-sided: x_t = alpha x0 + beta x1 and v = alpha_dot x0 + beta_dot x1 for one pair, so the
    pair is recovered from v (or from either end) by the 2x2 solve, written out here by hand."""
    interpolant = preset(name)
    g = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64)
    t = torch.rand(8, generator=g, dtype=torch.float64) * 0.8 + 0.1
    c = interpolant.coefficients(t, x0)
    x = c.alpha * x0 + c.beta * x1
    v = c.alpha_dot * x0 + c.beta_dot * x1
    for given in ({"velocity": v}, {"x0": x0}, {"x1": x1}, {"mean_velocity": v}):
        post = interpolant.posterior(t, x, **given)
        assert torch.equal(post.t.reshape(-1), t) and post.x is x
        assert torch.allclose(post.x0, x0, atol=1e-10) and torch.allclose(post.x1, x1, atol=1e-10), given.keys()
        assert torch.allclose(post.velocity, v, atol=1e-10)
        assert torch.equal(post.denoiser, torch.zeros_like(x))


def test_velocity_conversion_finite_at_the_ends():
    """b = v - gamma*gamma_dot*s stays finite at t = 0 and 1 although gamma_dot diverges there."""
    interpolant = preset("linear-brownian")
    exact = _exact(interpolant)
    g = torch.Generator().manual_seed(3)
    for t in (0.0, 1.0):
        x = exact.sample(t, 16, g)
        post = interpolant.posterior(t, x, mean_velocity=exact.mean_velocity(t, x), score=exact.score(t, x))
        assert torch.isfinite(post.velocity).all()
        assert torch.allclose(post.velocity, exact.velocity(t, x), atol=1e-9)


def test_sample_and_targets():
    interpolant = Interpolant(LinearSchedule(), BrownianGamma(0.5))
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
    t = torch.rand(10, generator=g)
    s = interpolant.sample(x0, x1, t, generator=g)
    gamma = 0.5 * torch.sqrt(t * (1 - t))[:, None]
    assert torch.allclose(s.xt, (1 - t)[:, None] * x0 + t[:, None] * x1 + gamma * s.z)
    gamma_dot = 0.5 * (1 - 2 * t)[:, None] / (2 * torch.sqrt(t * (1 - t)))[:, None]
    assert torch.allclose(s.velocity, x1 - x0 + gamma_dot * s.z)
    assert torch.equal(s.denoiser, s.z)
    with pytest.raises(ValueError, match="gamma_dot diverges"):
        _ = interpolant.sample(x0, x1, torch.zeros(10), generator=g).velocity


def test_same_seed_same_sample():
    interpolant = preset("linear-brownian")
    x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
    a = interpolant.sample(x0, x1, 0.5, generator=torch.Generator().manual_seed(5)).xt
    b = interpolant.sample(x0, x1, 0.5, generator=torch.Generator().manual_seed(5)).xt
    assert torch.equal(a, b)


def test_bad_input():
    interpolant = preset("linear-brownian")
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="same shape"):
        interpolant.sample(x, torch.zeros(4, 3), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolant.sample(x, x, 1.5)
    with pytest.raises(ValueError, match="finite"):
        interpolant.sample(x, torch.full((4, 2), float("nan")), 0.5)
    with pytest.raises(ValueError, match="shape"):
        interpolant.sample(x, x, torch.rand(3))
    with pytest.raises(ValueError, match="score or denoiser"):
        interpolant.posterior(0.5, x, velocity=x)
    with pytest.raises(ValueError, match="exactly one"):
        preset("flow").posterior(0.5, x, velocity=x, score=x)
    with pytest.raises(ValueError, match="NoGamma"):
        Interpolant(LinearSchedule(gaussian_base=True), BrownianGamma())
    with pytest.raises(ValueError, match="denominator vanishes at t = 0.0"):
        preset("flow").posterior(0.0, x, x0=x)  # a shared time: the coefficients are computed once
    with pytest.raises(ValueError, match="denominator vanishes at t = 0.0"):
        preset("flow").posterior(torch.tensor([0.5, 0.0, 0.5, 0.5]), x, x0=x)  # a time per sample
    with pytest.raises(ValueError, match="unknown interpolant preset"):
        preset("nope")
    with pytest.raises(TypeError):
        Interpolant("linear")
