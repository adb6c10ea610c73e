"""Langevin kernels against closed forms: ULA's known stationary bias, MALA's exactness, BAOAB's exact configuration
on a Gaussian, OBABO's known configurational variance, annealed Langevin on smoothed Gaussians; bad input."""

from __future__ import annotations

import math

import pytest
import torch

from interp import NonFiniteStateError
from interp.analytic import Banana, GaussianMixture
from interp.langevin import (
    BAOAB,
    MALA,
    OBABO,
    ULA,
    AnnealedLangevin,
    DenoisingMCMC,
    LangevinTarget,
    as_target,
    run_chains,
)

SCALES = torch.tensor([1.0, 2.0])  # target N(0, diag(SCALES^2))


def _gaussian():
    return LangevinTarget(log_density=lambda x: -0.5 * (x / SCALES).pow(2).sum(dim=1))


def _stationary_variance(kernel, seed, chains=4000, steps=300, burn_in=100):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(chains, 2, generator=g) * SCALES
    out = run_chains(kernel, _gaussian(), x0, steps, generator=g, burn_in=burn_in, thin=20, progress=False)
    draws = out.draws  # (chain, draw, dim); draws 20 steps apart are close to independent at these step sizes
    # the standard error of a variance from n independent N(0, v) draws is v sqrt(2/n); the budget is 5 of them
    n = draws.shape[0] * draws.shape[1]
    return draws.pow(2).mean(dim=(0, 1)), 5 * math.sqrt(2 / n), out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ula_has_its_known_first_order_stationary_bias(seed):
    h = 0.4
    variance, budget, _ = _stationary_variance(ULA(h), seed)
    s2 = SCALES**2
    expected = s2 / (1 - h / (2 * s2))  # stationary variance of x <- (1 - h/s^2) x + sqrt(2h) xi
    assert torch.all((variance / expected - 1).abs() < budget)
    assert (variance[0] / s2[0] - 1) > 0.2  # the bias is there (0.25 at h = 0.4, s = 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mala_removes_the_bias_at_the_same_step(seed):
    variance, budget, out = _stationary_variance(MALA(0.4), seed)
    assert torch.all((variance / SCALES**2 - 1).abs() < budget)
    assert 0.5 < float(out.acceptance.mean()) < 1.0
    assert out.to_xarray()["acceptance"].dims == ("chain",)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_baoab_samples_a_gaussian_configuration_exactly(seed):
    # Leimkuhler & Matthews 2013: BAOAB's configurational marginal is exact for harmonic forces at any stable step
    variance, budget, _ = _stationary_variance(BAOAB(0.8, friction=1.0), seed)
    assert torch.all((variance / SCALES**2 - 1).abs() < budget)


@pytest.mark.parametrize("seed", [0, 1])
def test_obabo_has_the_verlet_configurational_bias(seed):
    h = 0.8
    variance, budget, _ = _stationary_variance(OBABO(h, friction=1.0), seed)
    s2 = SCALES**2
    expected = s2 / (1 - h**2 / (4 * s2))  # velocity Verlet preserves v^2 + (1 - h^2 w^2 / 4) w^2 x^2, w = 1/s
    assert torch.all((variance / expected - 1).abs() < budget)


@pytest.mark.parametrize("seed", [0, 1])
def test_mala_reproduces_the_moments_of_a_gaussian_mixture(seed):
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5]])
    mixture = GaussianMixture(torch.tensor([0.3, 0.7]), means, torch.tensor([0.8, 0.6]))
    g = torch.Generator().manual_seed(seed)
    x0 = mixture.sample(2000, g)  # start at the target: the check is that MALA keeps it
    out = run_chains(MALA(0.3), mixture, x0, 200, generator=g, burn_in=50, thin=50, progress=False)
    draws = out.draws.reshape(-1, 2)
    cov = mixture.covariance()
    se = (torch.diagonal(cov) / draws.shape[0]).sqrt()
    assert torch.all((draws.mean(0) - mixture.mean()).abs() < 5 * se)
    assert torch.allclose(torch.cov(draws.T), cov, atol=0.08)


def test_annealed_langevin_ends_near_the_least_smoothed_target():
    m, s2 = torch.tensor([1.0, -2.0]), 0.5

    def score(x, sigma):  # noise-conditional score of N(m, s2 I) smoothed by N(0, sigma^2 I)
        return -(x - m) / (s2 + sigma**2)

    levels = torch.logspace(1, -2, 30).tolist()
    for seed in (0, 1, 2):
        g = torch.Generator().manual_seed(seed)
        x = AnnealedLangevin(levels, steps_per_level=20).sample(score, 10 * torch.randn(4000, 2, generator=g), g)
        assert torch.linalg.norm(x.mean(0) - m) < 0.1
        assert torch.allclose(x.var(0), torch.full((2,), s2 + levels[-1] ** 2), rtol=0.12)


def test_kernels_and_driver_reject_bad_input():
    target = _gaussian()
    x = torch.zeros(5, 2)
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="step_size"):
            ULA(bad)
    with pytest.raises(ValueError, match="friction"):
        BAOAB(0.1, friction=0.0)
    with pytest.raises(ValueError, match=r"\(chains, dim\)"):
        run_chains(ULA(0.1), target, torch.zeros(5), 10, progress=False)
    with pytest.raises(ValueError, match="initial chains must be finite"):
        run_chains(ULA(0.1), target, torch.full((5, 2), math.nan), 10, progress=False)
    outside = LangevinTarget(log_density=lambda x: torch.where(x[:, 0] > 0, -x.pow(2).sum(1), -math.inf))
    with pytest.raises(ValueError, match="log-density is not finite"):
        run_chains(MALA(0.1), outside, -torch.ones(5, 2), 10, progress=False)
    with pytest.raises(ValueError, match="state's shape"):
        run_chains(ULA(0.1), LangevinTarget(score=lambda x: x[:, :1]), x, 10, progress=False)
    with pytest.raises(ValueError, match=r"shape \(chains,\)"):
        run_chains(MALA(0.1), LangevinTarget(log_density=lambda x: x), x, 10, progress=False)
    with pytest.raises(TypeError, match="no gradient"):  # a detached log-density is not read as a zero score
        run_chains(ULA(0.1), lambda x: -x.detach().pow(2).sum(1), x, 10, progress=False)
    with pytest.raises(ValueError, match="needs the target's log-density"):
        run_chains(MALA(0.1), LangevinTarget(score=lambda x: -x), x, 10, progress=False)
    with pytest.raises(ValueError, match="needs a log_density or a score"):
        LangevinTarget()
    with pytest.raises(TypeError, match="target must be"):
        as_target(3.0)
    with pytest.raises(ValueError, match="burn_in"):
        run_chains(ULA(0.1), target, x, 10, burn_in=10, progress=False)
    with pytest.raises(NonFiniteStateError, match="step"):
        run_chains(ULA(10.0), lambda x: -(x**4).sum(1), torch.ones(5, 2), 50, progress=False)
    banana, start = Banana(), torch.full((50, 2), 3.0)
    with pytest.raises(NonFiniteStateError, match="ULA"):  # raised before the target sees a non-finite point
        run_chains(ULA(2.0), banana, start, 50, generator=torch.Generator().manual_seed(0), progress=False)
    out = run_chains(MALA(2.0), banana, start, 50, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.isfinite(out.draws).all() and float(out.acceptance.mean()) < 0.2  # wild proposals are rejected
    with pytest.raises(ValueError, match="decrease"):
        AnnealedLangevin([0.1, 1.0])


def test_chains_record_the_kernel_and_keep_the_requested_draws():
    g = torch.Generator().manual_seed(0)
    out = run_chains(BAOAB(0.1, friction=2.0), _gaussian(), torch.zeros(7, 2), 30, generator=g, burn_in=10, thin=5)
    ds = out.to_xarray()
    assert ds["x"].shape == (7, 4, 2) and ds.attrs["method"] == "BAOAB" and ds.attrs["friction"] == 2.0
    again = run_chains(BAOAB(0.1, friction=2.0), _gaussian(), torch.zeros(7, 2), 30, generator=g.manual_seed(0),
                       burn_in=10, thin=5, progress=False)  # fmt: skip
    assert torch.equal(out.draws, again.draws)  # same seed, same numbers


def _denoising_case():
    from interp.analytic import ExactMarginals
    from interp.interpolants import preset

    source = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
    target = GaussianMixture(
        torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), torch.tensor([0.3, 0.2])
    )
    return ExactMarginals(preset("flow"), source, target), target


@pytest.mark.parametrize("seed", [0, 1])
def test_denoising_mcmc_with_exact_fields_samples_the_data_and_visits_levels_uniformly(seed):
    from interp.metrics import mmd

    exact, target = _denoising_case()
    g = torch.Generator().manual_seed(seed)
    levels = torch.linspace(0.2, 0.8, 9)
    sampler = DenoisingMCMC(levels, step_size=0.05, n_steps=200)
    out = sampler.sample(exact.score, exact.velocity, torch.randn(1000, 2, generator=g), log_density=exact.log_density,
                         generator=g, progress=False)  # fmt: skip
    reference = target.sample(1000, g)
    floor = mmd(target.sample(1000, g), reference)
    assert mmd(out.samples, reference) < 2 * floor
    assert abs(float((out.samples[:, 0] < 0).double().mean()) - 0.3) < 0.05  # 3.5 standard errors
    # the joint law is rho_t(x) with a flat prior on levels: the levels' marginal is uniform (chi-square, 8 dof)
    counts = torch.bincount(out.level_trace[:, -1], minlength=9).double()
    assert float(((counts - 1000 / 9) ** 2 / (1000 / 9)).sum()) < 26.1  # the 0.999 quantile
    assert out.to_xarray()["level_trace"].dims == ("chain", "step")


def test_denoising_mcmc_with_a_level_predictor_and_bad_input():
    from interp.metrics import mmd

    exact, target = _denoising_case()
    g = torch.Generator().manual_seed(0)
    sampler = DenoisingMCMC([0.4, 0.6], step_size=0.05, n_steps=200)

    def predictor(x):
        return torch.full((x.shape[0],), 0.58)  # snapped to the nearest level, 0.6

    x0 = torch.randn(800, 2, generator=g)
    out = sampler.sample(exact.score, exact.velocity, x0, level_predictor=predictor, generator=g, progress=False)
    assert torch.all(out.level == 0.6)
    reference = target.sample(800, g)
    assert mmd(out.samples, reference) < 2 * mmd(target.sample(800, g), reference)
    with pytest.raises(ValueError, match="exactly one"):
        sampler.sample(exact.score, exact.velocity, torch.zeros(3, 2), progress=False)
    with pytest.raises(ValueError, match="before t_end"):
        DenoisingMCMC([0.5, 1.0], 0.1, 5).sample(exact.score, exact.velocity, torch.zeros(3, 2),
                                                 log_density=exact.log_density, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="step_size"):
        DenoisingMCMC([0.5], 0.0, 5)


def test_a_target_with_a_joint_evaluation_uses_it_and_agrees_with_the_separate_ones():
    mixture = GaussianMixture(
        torch.tensor([0.3, 0.7]), torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), torch.tensor([0.8, 0.6])
    )
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    value, score = mixture.log_density_and_score(x)
    assert torch.equal(value, mixture.log_density(x)) and torch.equal(score, mixture.score(x))
    target = as_target(mixture)
    assert target.log_density_and_score is not None
    joint = target.value_and_score(x, need_value=True)
    assert torch.equal(joint[0], value) and torch.equal(joint[1], score)
    assert as_target(mixture, score=lambda y: -y).log_density_and_score is None  # an override wins


# ---------------------------------------------------------------------- blocks, compiled steps
KERNELS = [ULA(0.1), MALA(0.3), BAOAB(0.2, friction=1.5), OBABO(0.2, friction=0.5)]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: type(k).__name__)
def test_blocks_run_the_same_chain_as_single_steps(kernel):
    # blocks draw a block's noise first, in the order single steps draw it: the same numbers, bit for bit, for any
    # block length (7 does not divide 30: the last block is shorter)
    runs = [
        run_chains(kernel, _gaussian(), torch.zeros(6, 2), 30, generator=torch.Generator().manual_seed(3),
                   burn_in=4, thin=3, progress=False, block=block)  # fmt: skip
        for block in (1, 7, 64)
    ]
    for other in runs[1:]:
        assert torch.equal(other.draws, runs[0].draws)
        if runs[0].acceptance is not None:
            assert torch.equal(other.acceptance, runs[0].acceptance)


def test_ula_and_mala_are_the_hand_written_updates():
    # the updates written out from their definitions, with the noise drawn in the documented order
    h, g = 0.3, torch.Generator().manual_seed(0)
    x0 = torch.tensor([[0.5, -1.0], [2.0, 0.3]], dtype=torch.float64)
    scales = SCALES.double()

    def log_density(x):
        return -0.5 * (x / scales).pow(2).sum(dim=1)

    def score(x):
        return -x / scales**2

    ula = run_chains(ULA(h), log_density, x0, 5, generator=g, progress=False, block=2).draws
    mala = run_chains(MALA(h), log_density, x0, 5, generator=g.manual_seed(0), progress=False, block=2).draws
    g.manual_seed(0)
    x = x0.clone()
    for k in range(5):
        x = x + h * score(x) + math.sqrt(2 * h) * torch.randn(x.shape, generator=g, dtype=x.dtype)
        assert torch.allclose(ula[:, k], x, atol=1e-12)
    g.manual_seed(0)
    x = x0.clone()
    for k in range(5):
        y = x + h * score(x) + math.sqrt(2 * h) * torch.randn(x.shape, generator=g, dtype=x.dtype)
        u = torch.rand(2, generator=g, dtype=x.dtype)
        log_q_forward = -((y - x - h * score(x)) ** 2).sum(1) / (4 * h)
        log_q_backward = -((x - y - h * score(y)) ** 2).sum(1) / (4 * h)
        accept = torch.log(u) < log_density(y) - log_density(x) + log_q_backward - log_q_forward
        x = torch.where(accept[:, None], y, x)
        assert torch.allclose(mala[:, k], x, atol=1e-12)


def test_a_failure_inside_a_block_names_the_same_step_as_single_steps():
    def diverging(block):
        with pytest.raises(NonFiniteStateError) as error:
            run_chains(ULA(10.0), lambda x: -(x**4).sum(1), torch.ones(5, 2), 50, progress=False, block=block)
        return error.value.step

    steps = {diverging(block) for block in (1, 3, 16, 50)}
    assert len(steps) == 1 and 1 <= steps.pop() < 50

    def broken(x):  # NaN (not -inf) beyond x_0 = 1.5: a broken target, not a support boundary
        return torch.where(x[:, 0] > 1.5, math.nan, -0.5 * x.pow(2).sum(1))

    messages = set()
    for block in (1, 4, 32):
        with pytest.raises(ValueError, match="MALA step") as error:
            run_chains(MALA(0.5), broken, torch.zeros(20, 2), 200, generator=torch.Generator().manual_seed(1),
                       progress=False, block=block)  # fmt: skip
        messages.add(str(error.value))
    assert len(messages) == 1


def test_compiled_steps_fall_back_to_eager_with_a_warning(monkeypatch):
    import interp.stepping

    def unavailable(fn, **kwargs):
        def fails(*args):
            raise RuntimeError("no C compiler\nmore detail")

        return fails

    monkeypatch.setattr(interp.stepping.torch, "compile", unavailable)
    g = torch.Generator().manual_seed(2)
    eager = run_chains(MALA(0.3), _gaussian(), torch.zeros(4, 2), 20, generator=g, progress=False, block=5)
    with pytest.warns(RuntimeWarning, match="torch.compile is unavailable here .RuntimeError: no C compiler."):
        fallen = run_chains(MALA(0.3), _gaussian(), torch.zeros(4, 2), 20, generator=g.manual_seed(2),
                            progress=False, block=5, compile=True)  # fmt: skip
    assert torch.equal(fallen.draws, eager.draws)
    assert fallen.settings["compiled"] == 0 and "no C compiler" in fallen.settings["compile_fallback"]
    ds = fallen.to_xarray()
    assert ds.attrs["compiled"] == 0 and ds.attrs["compile_seconds"] >= 0


@pytest.mark.parametrize("kernel", [MALA(0.3), BAOAB(0.2, friction=1.5)], ids=lambda k: type(k).__name__)
def test_compiled_blocks_give_the_eager_chain(kernel):
    # the same noise, the same updates; fusion may round differently, so equal to 1e-10 (float64, 12 steps)
    target = _gaussian()
    x0 = torch.tensor([[0.5, -1.0], [2.0, 0.3], [0.0, 0.1]], dtype=torch.float64)
    eager = run_chains(kernel, target, x0, 12, generator=torch.Generator().manual_seed(4), progress=False, block=3)
    fused = run_chains(kernel, target, x0, 12, generator=torch.Generator().manual_seed(4), progress=False, block=3,
                       compile=True)  # fmt: skip
    assert fused.settings["compiled"] == 1 and "compile_fallback" not in fused.settings
    assert torch.allclose(fused.draws, eager.draws, atol=1e-10, rtol=0)
    if eager.acceptance is not None:
        assert torch.equal(fused.acceptance, eager.acceptance)
