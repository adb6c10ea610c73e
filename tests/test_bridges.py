"""Schrödinger bridges: closed forms (algebraic identities and Monte Carlo), the mixture benchmark, [SF]²M/DSBM
plumbing, reference fits, snapshot checks and the multi-marginal bridge."""

from __future__ import annotations

import math

import pytest
import torch

from interp import grids, integrate
from interp.bridges import (
    DSBM,
    SF2M,
    Brownian,
    DoubleWell,
    GaussianBridge,
    GradientField,
    Linear,
    LotkaVolterra,
    MultiMarginalBridge,
    Repressilator,
    check_snapshots,
    fit_reference,
    mixture_benchmark,
    simulate_snapshots,
)
from interp.bridges.matching import FlowScoreLoss
from interp.couplings import EntropicOTCoupling
from interp.losses import InterpolantLoss, Parameterisation
from interp.metrics import bures_wasserstein2, bw2_uvp
from interp.nets import MLP
from interp.results import Trajectory
from interp.solvers import EulerMaruyama
from interp.train import TrainConfig, Trainer

GOLDEN = (math.sqrt(5) - 1) / 2


def _spd(d, g, floor=0.5):
    q = torch.randn(d, d, generator=g)
    return q @ q.T / d + floor * torch.eye(d)


def _case(d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, generator=g), _spd(d, g), torch.randn(d, generator=g), _spd(d, g)


# ---------------------------------------------------------------------- closed form
def test_one_dimensional_sanity_value():
    sb = GaussianBridge(torch.zeros(1), torch.eye(1), torch.zeros(1), torch.eye(1), 1.0)
    assert abs(float(sb.cross_covariance) - GOLDEN) < 1e-12


def test_brownian_plan_cross_covariance_closed_forms():
    from interp.bridges.gaussian import brownian_plan_cross_covariance

    # 1D: C = (sqrt(4 A B + eps^2) - eps) / 2, here A = 2, B = 3, eps = 0.5
    one = brownian_plan_cross_covariance(torch.tensor([[2.0]], dtype=torch.float64),
                                         torch.tensor([[3.0]], dtype=torch.float64), 0.5)  # fmt: skip
    assert abs(float(one) - (math.sqrt(24.25) - 0.5) / 2) < 1e-12
    # 3D: the same plan as the bridge's (whose product form is checked below), for non-commuting A and B
    a, A, b, B = _case()
    sb = GaussianBridge(a, A, b, B, 0.3)
    assert torch.allclose(brownian_plan_cross_covariance(A, B, 0.3), sb.cross_covariance, atol=1e-5)


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 10.0])
def test_plan_has_the_schrodinger_product_form(epsilon):
    """pi = phi(x0) psi(x1) exp(-|x0-x1|^2 / 2 eps): the joint precision's off-diagonal block is -I/eps."""
    a, A, b, B = _case()
    sb = GaussianBridge(a, A, b, B, epsilon)
    precision = torch.linalg.inv(sb.plan_covariance)
    assert torch.allclose(precision[:3, 3:], -torch.eye(3) / epsilon, atol=1e-9 / epsilon)


def test_linear_reference_plan_has_the_reference_transition_in_its_precision():
    a, A, b, B = _case()
    m = torch.tensor([[-0.5, 0.3, 0.0], [0.1, -1.0, 0.2], [0.0, 0.4, -0.2]])
    sb = GaussianBridge(a, A, b, B, 0.7, drift_matrix=m, drift_offset=torch.tensor([1.0, 0.0, -1.0]))
    precision = torch.linalg.inv(sb.plan_covariance)
    expected = -sb.phi1.T @ torch.linalg.inv(sb.v1)
    assert torch.allclose(precision[:3, 3:], expected, atol=1e-9)
    for t, (mean, cov) in ((0.0, (a, A)), (1.0, (b, B))):
        mu, sigma = sb.marginal(t)
        assert torch.allclose(mu, mean, atol=1e-10) and torch.allclose(sigma, cov, atol=1e-10)
    # The reference's transition over [0, 1] from its definition dX = (m X + c) dt + sqrt(eps) dW, m not symmetric:
    # Phi_1 = e^m, r_1 = m^-1 (e^m - I) c, V_1 = eps int_0^1 e^{ms} e^{m^T s} ds (Simpson, 2001 points)
    m64, c64 = m.double(), torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    sb64 = GaussianBridge(a.double(), A.double(), b.double(), B.double(), 0.7, drift_matrix=m64, drift_offset=c64)
    e = torch.linalg.matrix_exp(m64)
    assert torch.allclose(sb64.phi1, e, atol=1e-12)
    assert torch.allclose(sb64.r1, torch.linalg.solve(m64, (e - torch.eye(3, dtype=torch.float64)) @ c64), atol=1e-12)
    s = torch.linspace(0, 1, 2001, dtype=torch.float64)
    flows = torch.linalg.matrix_exp(s[:, None, None] * m64)
    integrand = flows @ flows.transpose(-1, -2)
    simpson = torch.ones(2001, dtype=torch.float64)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    v1 = 0.7 * (simpson[:, None, None] * integrand).sum(0) / (3 * 2000)
    assert torch.allclose(sb64.v1, v1, atol=1e-10)
    # OU reference by a float: M = -lambda I
    ou = GaussianBridge(a, A, b, B, 0.7, drift_matrix=-1.5)
    assert torch.allclose(ou.phi1, math.exp(-1.5) * torch.eye(3), atol=1e-12)
    v = 0.7 * (1 - math.exp(-3.0)) / 3.0
    assert torch.allclose(ou.v1, v * torch.eye(3), atol=1e-12)


def test_zero_drift_matrix_is_the_brownian_bridge():
    a, A, b, B = _case()
    brownian = GaussianBridge(a, A, b, B, 0.4)
    linear = GaussianBridge(a, A, b, B, 0.4, drift_matrix=torch.zeros(3, 3))
    assert torch.allclose(brownian.cross_covariance, linear.cross_covariance, atol=1e-12)


@pytest.mark.parametrize("epsilon", [0.1, 1.0])
def test_marginals_and_drift_match_the_algorithms_formulas(epsilon):
    """Sigma_t and f(t, x) = (b - a) + S_t^T Sigma_t^-1 (x - mu_t) of docs/algorithms.md §4 (independent derivation)."""
    a, A, b, B = _case(seed=1)
    sb = GaussianBridge(a, A, b, B, epsilon)
    c, eye = sb.cross_covariance, torch.eye(3)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(2))
    for t in (0.0, 0.25, 0.6, 0.95):
        sigma = (1 - t) ** 2 * A + t**2 * B + t * (1 - t) * (c + c.T + epsilon * eye)
        s_t = t * B + (1 - t) * c - (1 - t) * A - t * c.T - epsilon * t * eye
        mu = (1 - t) * a + t * b
        assert torch.allclose(sb.marginal(t)[1], sigma, atol=1e-10)
        expected = (b - a) + (x - mu) @ torch.linalg.solve(sigma, s_t)
        assert torch.allclose(sb.drift(t, x), expected, atol=1e-8)


@pytest.mark.parametrize("drift_matrix", ["ou", "non-symmetric"])
def test_moment_equations_hold_for_a_linear_reference(drift_matrix):
    """d mu/dt = f(t, mu) and d Sigma/dt = F Sigma + Sigma F^T + eps I (Fokker-Planck for a Gaussian process)."""
    a, A, b, B = _case(seed=3)
    m = -0.8 if drift_matrix == "ou" else torch.tensor([[-0.5, 0.3, 0.0], [0.1, -1.0, 0.2], [0.0, 0.4, -0.2]])
    sb = GaussianBridge(a, A, b, B, 0.5, drift_matrix=m, drift_offset=torch.ones(3))
    t, h = 0.4, 1e-5
    jac = torch.func.jacrev(lambda z: sb.drift(t, z[None])[0])(torch.zeros(3))
    d_sigma = (sb.marginal(t + h)[1] - sb.marginal(t - h)[1]) / (2 * h)
    sigma = sb.marginal(t)[1]
    assert torch.allclose(d_sigma, jac @ sigma + sigma @ jac.T + 0.5 * torch.eye(3), atol=1e-7)
    d_mu = (sb.marginal(t + h)[0] - sb.marginal(t - h)[0]) / (2 * h)
    assert torch.allclose(d_mu, sb.drift(t, sb.marginal(t)[0][None])[0], atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bridge_sde_reproduces_the_target_and_the_plan(seed):
    """Euler-Maruyama (200 steps) of the closed-form SDE: terminal mean/cov and C within 4 standard errors."""
    a, A, b, B = _case(d=2, seed=4)
    sb = GaussianBridge(a, A, b, B, 1.0)
    g = torch.Generator().manual_seed(seed)
    n = 4000
    x0 = sb.sample_marginal(0.0, n, g)
    x1 = integrate(sb.sde(), x0, grids.uniform(200), EulerMaruyama(), generator=g, progress=False).final
    se = 4 * float(torch.diagonal(B).max().sqrt()) / math.sqrt(n)
    assert (x1.mean(0) - b).abs().max() < se
    joint = torch.cov(torch.cat([x0, x1], 1).T)
    scale = float(torch.diagonal(joint).max())
    assert (joint[2:, 2:] - B).abs().max() < 4 * scale * math.sqrt(2 / n)
    assert (joint[:2, 2:] - sb.cross_covariance).abs().max() < 4 * scale * math.sqrt(2 / n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropic_ot_with_reg_two_epsilon_recovers_the_closed_form_plan(seed):
    g = torch.Generator().manual_seed(seed)
    n = 1500
    x, y = torch.randn(n, 1, generator=g), torch.randn(n, 1, generator=g)
    plan = EntropicOTCoupling(1.0, tolerance=1e-6).plan(x, y)  # sums to 1
    cross = float((x - x.mean()).T @ plan @ (y - y.mean()))
    assert abs(cross - GOLDEN) < 0.08  # sample noise ~ 1/sqrt(n) ~ 0.03 plus the empirical-plan bias


def test_gaussian_bridge_rejects_bad_input():
    a, A, b, B = _case()
    with pytest.raises(ValueError, match="epsilon"):
        GaussianBridge(a, A, b, B, 0.0)
    with pytest.raises(ValueError, match="cov1"):
        GaussianBridge(a, A, b, -B, 1.0)
    with pytest.raises(ValueError, match="mean1"):
        GaussianBridge(a, A, b[:2], B, 1.0)
    with pytest.raises(ValueError, match="finite"):
        GaussianBridge(a * float("nan"), A, b, B, 1.0)
    with pytest.raises(ValueError, match="t < 1"):
        GaussianBridge(a, A, b, B, 1.0).drift(1.0, torch.zeros(2, 3))


# ---------------------------------------------------------------------- mixture benchmark and metrics
def test_bures_wasserstein_closed_forms():
    m, c = torch.tensor([1.0, 2.0]), torch.diag(torch.tensor([4.0, 1.0]))
    assert bures_wasserstein2(m, c, m, c) < 1e-12
    m2, c2 = torch.tensor([0.0, 2.0]), torch.diag(torch.tensor([1.0, 9.0]))
    assert abs(bures_wasserstein2(m, c, m2, c2) - (1.0 + (2 - 1) ** 2 + (1 - 3) ** 2)) < 1e-10


def test_mixture_conditional_is_the_product_form_plan():
    """1D: the conditional law of y given x is N(y; x, eps) f(y) normalised (quadrature of its mean and variance)."""
    bench = mixture_benchmark(1, 0.5, n_components=3, seed=4)
    x = torch.full((200_000, 1), 0.7)
    y = bench.conditional_sample(x, torch.Generator().manual_seed(0))
    grid = torch.linspace(-12, 12, 20001)[:, None]
    log_w = -0.5 * (grid - 0.7) ** 2 / 0.5 + bench.potential.log_density(grid)[:, None]
    w = torch.softmax(log_w[:, 0], 0)
    mean = float((w * grid[:, 0]).sum())
    var = float((w * (grid[:, 0] - mean) ** 2).sum())
    assert abs(float(y.mean()) - mean) < 4 * math.sqrt(var / x.shape[0])
    assert abs(float(y.var()) / var - 1) < 0.02


def test_mixture_bridge_sde_reaches_the_target():
    bench = mixture_benchmark(2, 1.0, seed=0)
    mean, cov = bench.target_moments(n=100_000)
    g = torch.Generator().manual_seed(1)
    x1 = integrate(bench.sde(), bench.source.sample(4000, g), grids.uniform(200), EulerMaruyama(), generator=g).final
    floor = bw2_uvp(bench.sample_target(4000, g), mean, cov)
    assert bw2_uvp(x1, mean, cov) < max(4 * floor, 0.3)
    assert bw2_uvp(bench.source.sample(4000, g), mean, cov) > 5.0  # the metric does see a wrong distribution


# ---------------------------------------------------------------------- matching methods
def test_flow_score_loss_is_minimised_by_the_exact_fields_among_perturbations():
    """On the Gaussian bridge plan the [SF]^2M targets' minimisers are the closed-form fields; perturbing them
    raises the loss (same draws)."""
    sb = GaussianBridge(torch.zeros(2), torch.eye(2), torch.ones(2), torch.eye(2), 1.0)
    loss = FlowScoreLoss(1.0)
    g = torch.Generator().manual_seed(0)
    x0, x1 = sb.sample_plan(20000, g)
    levels = torch.linspace(0.02, 0.98, 25)  # few distinct times keep the closed-form evaluations cheap
    t = levels[torch.randint(25, (20000,), generator=g)]
    z = torch.randn(x0.shape, generator=g)

    def exact(shift):
        def model(tt, x):
            drift = sb.drift(tt, x)
            score = _bridge_score(sb, tt, x)
            return torch.stack([drift - 0.5 * score + shift, score])

        return model

    base = float(loss(exact(0.0), x0, x1, t=t, z=z))
    assert base < float(loss(exact(0.1), x0, x1, t=t, z=z))
    assert base < float(loss(exact(-0.1), x0, x1, t=t, z=z))

    def scaled_score(factor):  # the score term: its minimiser is the exact score, not a multiple of it
        def model(tt, x):
            flow, score = exact(0.0)(tt, x)
            return torch.stack([flow, factor * score])

        return model

    assert base < float(loss(scaled_score(1.1), x0, x1, t=t, z=z))
    assert base < float(loss(scaled_score(0.9), x0, x1, t=t, z=z))


def test_flow_score_loss_is_the_written_out_objective():
    # Brownian bridge with noise sigma: x_t = (1-t) x0 + t x1 + gamma z, gamma = sigma sqrt(t(1-t)); the flow
    # target is x1 - x0 + gamma' z, gamma' = sigma (1 - 2t) / (2 sqrt(t(1-t))); the score target -z / gamma.
    sigma, weight = 0.7, 0.3
    g = torch.Generator().manual_seed(1)
    x0, x1, z = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    flow_out, score_out = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    loss = FlowScoreLoss(sigma, score_weight=weight)
    value = loss(lambda tt, x: torch.stack([flow_out, score_out]), x0, x1, t=t, z=z)
    root = torch.sqrt(t * (1 - t))[:, None]
    gamma, gamma_dot = sigma * root, sigma * (1 - 2 * t[:, None]) / (2 * root)
    flow_target = x1 - x0 + gamma_dot * z
    expected = ((flow_out - flow_target) ** 2).mean(1) + weight * ((gamma * score_out + z) ** 2).mean(1)
    assert torch.allclose(value, expected.mean(), atol=1e-12, rtol=0)


def _bridge_score(sb, t, x):
    out = torch.empty_like(x)
    for value in torch.unique(t):
        rows = t == value
        mu, sigma = sb.marginal(float(value))
        out[rows] = -torch.linalg.solve(sigma, (x[rows] - mu).T).T
    return out


def test_sf2m_and_dsbm_train_and_sample():
    g = torch.Generator().manual_seed(0)
    config = TrainConfig(steps=30, batch_size=64, device="cpu", progress=False)
    sf2m = SF2M(MLP((2,), hidden=16, depth=1), MLP((2,), hidden=16, depth=1), sigma=0.5, config=config)
    result = sf2m.fit(lambda n, gen: torch.randn(n, 2, generator=gen), lambda n, gen: torch.randn(n, 2, generator=gen))
    assert len(result.losses) == 30 and all(math.isfinite(v) for v in result.losses)
    traj = sf2m.sample(torch.randn(50, 2, generator=g), steps=10, generator=g)
    assert isinstance(traj, Trajectory) and torch.isfinite(traj.final).all()
    assert torch.isfinite(sf2m.sample(torch.randn(50, 2, generator=g), steps=10, ode=True).final).all()
    dsbm = DSBM(
        MLP((2,), hidden=16, depth=1),
        MLP((2,), hidden=16, depth=1),
        1.0,
        iterations=3,
        n_pairs=128,
        steps=10,
        config=config,
    )
    history = dsbm.fit(torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g) + 1, generator=g)
    assert [h["direction"] for h in history] == ["forward", "backward", "forward"]
    assert torch.isfinite(dsbm.simulate(torch.randn(20, 2, generator=g), generator=g)).all()
    with pytest.raises(RuntimeError, match="fit"):
        SF2M(MLP((2,)), MLP((2,)), sigma=1.0).drift(0.5, torch.zeros(3, 2))


def test_paired_training_keeps_the_pairs():
    x0 = torch.arange(10.0)[:, None].repeat(1, 2)
    seen = []

    class Spy(InterpolantLoss):
        def __call__(self, model, a, b, generator=None, *, t=None, z=None):
            seen.append((a.clone(), b.clone()))
            return super().__call__(model, a, b, generator, t=t, z=z)

    loss = Spy(__import__("interp").preset("linear"), Parameterisation.VELOCITY)
    config = TrainConfig(steps=2, batch_size=8, device="cpu", progress=False)
    Trainer(MLP((2,), hidden=8, depth=1), loss, x0, 100 + x0, config=config, paired=True).fit()
    for a, b in seen:
        assert torch.equal(b, a + 100)
    with pytest.raises(ValueError, match="paired"):
        Trainer(MLP((2,)), loss, x0, x0[:5], config=config, paired=True)


# ---------------------------------------------------------------------- references and snapshots
def test_linear_in_parameter_references_are_fitted_exactly():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 2, generator=g) + 0.5
    truth = LotkaVolterra(1.1, 0.4, 0.3, 0.9)
    fit = LotkaVolterra()
    residual = fit_reference(fit, x, truth(x).detach())
    assert residual < 1e-20
    assert all(abs(fit.parameter_values()[k] - v) < 1e-10 for k, v in truth.parameter_values().items())
    m = torch.tensor([[-1.0, 0.5], [0.2, -0.3]])
    linear = Linear(2)
    fit_reference(linear, x, x @ m.T + torch.tensor([0.1, -0.2]))
    assert torch.allclose(linear.matrix, m, atol=1e-10)


def test_nonlinear_references_are_fitted_by_lbfgs():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.rand(2000, 3, generator=g)
    truth = Repressilator(beta=8.0, k=1.5, n=2.5, gamma=0.8)
    fit = Repressilator(beta=5.0, k=1.0, n=2.0, gamma=1.0)
    fit_reference(fit, x, truth(x).detach(), steps=200)
    for key, value in truth.parameter_values().items():
        assert abs(fit.parameter_values()[key] / value - 1) < 1e-3
    field = GradientField(2, hidden=8)
    assert field(torch.zeros(4, 2)).shape == (4, 2)
    assert math.isfinite(fit_reference(field, x[:, :2], -x[:, :2], steps=5))


def test_simulated_snapshots_follow_the_drift():
    g = torch.Generator().manual_seed(0)
    times = [0.0, 0.5, 1.5]
    snaps = simulate_snapshots(DoubleWell(a=1.0, c=2.0), torch.zeros(300, 2), times, 0.01, 100, generator=g)
    assert [s.shape for s in snaps] == [(100, 2)] * 3
    assert abs(float(snaps[2][:, 1].mean()) - 3.0) < 0.01  # x2 moves at speed c
    with pytest.raises(ValueError, match="initial"):
        simulate_snapshots(DoubleWell(), torch.zeros(10, 2), times, 0.1, 100)


def test_snapshot_checks_name_the_problem():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="at least"):
        check_snapshots([x], [0.0])
    with pytest.raises(ValueError, match="increasing"):
        check_snapshots([x, x], [1.0, 0.0])
    with pytest.raises(ValueError, match="dimension"):
        check_snapshots([x, torch.randn(5, 3)], [0.0, 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        check_snapshots([x, x * float("nan")], [0.0, 1.0])
    with pytest.raises(ValueError, match="entries"):
        check_snapshots([x, x], [0.0, 1.0, 2.0])


def test_multimarginal_bridge_stitches_paths_and_keeps_every_iteration(tmp_path):
    g = torch.Generator().manual_seed(0)
    times = torch.arange(5) * 0.5
    init = lambda n, gen: torch.tensor([1.6, 1.0]) + 0.1 * torch.randn(n, 2, generator=gen)  # noqa: E731
    snaps = simulate_snapshots(LotkaVolterra(), init, times, 0.05, 40, generator=g)
    train, held = snaps[::2], [float(t) for t in times[1::2]]
    mm = MultiMarginalBridge(LotkaVolterra(0.5, 0.5, 0.5, 0.5), sigma=0.05, iterations=3, progress=False)
    result = mm.fit(train, times[::2], record_times=held, generator=g)
    assert result.iterates.shape == (3, 5, 40, 2)
    for k, t in enumerate(times[::2]):
        # each particle sits on a data point of the snapshot at its time
        d = torch.cdist(result.at(float(t)), train[k]).min(dim=1).values
        assert d.max() < 1e-6  # cdist round-off; a data point of another snapshot is >= 1e-3 away
    assert len(result.parameters) == 3 and set(result.parameters[0]) == {"alpha", "beta", "delta", "gamma"}
    ds = result.to_xarray()
    assert ds["parameters"].dims == ("iteration", "parameter") and ds.sizes["particle"] == 40
    result.to_netcdf(tmp_path / "mm.nc")
    assert (tmp_path / "mm.nc").exists()
    with pytest.raises(ValueError, match="record_times"):
        mm.fit(train, times[::2], record_times=[5.0])
    with pytest.raises(ValueError, match="dimension"):
        MultiMarginalBridge(Brownian(3), progress=False).fit(train, times[::2])


def test_vanilla_iteration_uses_brownian_bridges_between_entropic_pairs():
    """With a zero reference the first iteration's midpoints lie between paired points (no drift)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.zeros(50, 1), torch.ones(50, 1)
    result = MultiMarginalBridge(None, sigma=0.01, iterations=1, progress=False).fit(
        [a, b], [0.0, 1.0], record_times=[0.5], generator=g
    )
    mid = result.at(0.5, iteration=0)
    assert abs(float(mid.mean()) - 0.5) < 0.01 and float(mid.std()) < 0.02


def test_multimarginal_bridge_takes_uneven_times_and_different_counts():
    g = torch.Generator().manual_seed(1)
    snaps = [torch.randn(30, 2, generator=g), torch.randn(45, 2, generator=g) + 1, torch.randn(20, 2, generator=g) + 2]
    times = [0.0, 0.3, 1.7]
    result = MultiMarginalBridge(Linear(2), sigma=0.2, iterations=2, n_particles=50, progress=False).fit(
        snaps, times, record_times=[1.0], generator=g
    )
    assert result.iterates.shape == (2, 4, 50, 2)
    assert torch.isfinite(result.trajectories).all()
    for k, t in enumerate(times):
        assert torch.cdist(result.at(t), snaps[k]).min(dim=1).values.max() < 1e-6
    assert {"matrix[0]", "offset[1]"} <= set(result.parameters[-1])


def test_sf2m_drift_adds_half_sigma_squared_times_the_score():
    """An independent oracle for ``SF2M.drift``: given the exact probability-flow velocity and score of a 1-D Gaussian
    Schrödinger bridge (from its marginal moments alone), it must return the bridge's closed-form SDE drift.
    A sign or factor error in the score term is off by a multiple of sigma**2 * score."""
    import types

    from interp.bridges import SF2M, GaussianBridge

    sigma = 0.7
    bridge = GaussianBridge(
        torch.zeros(1, dtype=torch.float64),
        torch.eye(1, dtype=torch.float64),
        torch.full((1,), 2.0, dtype=torch.float64),
        0.5 * torch.eye(1, dtype=torch.float64),
        sigma**2,
    )

    def moments(t):
        mean, cov = bridge.marginal(float(t))
        return mean[0], cov[0, 0]

    def velocity_and_score(t, x):
        h = 1e-5
        (m_lo, v_lo), (m_hi, v_hi), (m, v) = moments(t - h), moments(t + h), moments(t)
        m_dot, v_dot = (m_hi - m_lo) / (2 * h), (v_hi - v_lo) / (2 * h)
        return m_dot + v_dot / (2 * v) * (x - m), -(x - m) / v

    class Part(torch.nn.Module):
        def __init__(self, index):
            super().__init__()
            self.index = index

        def forward(self, t, x):
            return velocity_and_score(float(t), x)[self.index]

    sf2m = SF2M(Part(0), Part(1), sigma=sigma)
    sf2m.trainer = types.SimpleNamespace(ema=sf2m.model)  # the exact fields stand in for trained ones
    x = torch.linspace(-2.0, 4.0, 13, dtype=torch.float64)[:, None]
    for t in (0.2, 0.5, 0.8):
        expected = bridge.drift(t, x)
        assert torch.allclose(sf2m.drift(t, x), expected, atol=1e-6), t
        assert not torch.allclose(sf2m.velocity(t, x), expected, atol=1e-2)  # the score term matters here


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multimarginal_bridge_recovers_a_linear_reference(seed):
    """The fitted reference is checked by value: snapshots of a known linear SDE dX = (AX + b)dt + 0.1 dW, five
    times, 200 cells each; after four iterations from A = 0, b = 0 every parameter is within 0.35 of the truth.
    Calibrated on seeds 0-11: the largest error per seed has median 0.16, 11 of 12 below 0.24, one at 0.57."""
    g = torch.Generator().manual_seed(seed)
    matrix, offset = torch.tensor([[-1.0, 0.5], [-0.5, -1.0]]), torch.tensor([1.0, 0.0])
    truth = torch.cat([matrix.reshape(-1), offset])
    times = torch.arange(5) * 0.5
    init = lambda n, gen: torch.tensor([2.0, 2.0]) + 0.3 * torch.randn(n, 2, generator=gen)  # noqa: E731
    snaps = simulate_snapshots(Linear(2, matrix=matrix, offset=offset), init, times, 0.1, 200, generator=g)
    result = MultiMarginalBridge(Linear(2), sigma=0.1, iterations=4, progress=False).fit(snaps, times, generator=g)
    names = ["matrix[0]", "matrix[1]", "matrix[2]", "matrix[3]", "offset[0]", "offset[1]"]
    fitted = torch.tensor([result.parameters[-1][name] for name in names])
    assert float((fitted - truth).abs().max()) < 0.35, fitted


def test_bridge_draws_are_reproducible_and_sf2m_defaults_to_its_entropic_coupling():
    """Draws come from the caller's generator (same seed, same numbers; another seed, others), and [SF]²M pairs
    by entropic OT with epsilon = sigma^2 unless told otherwise."""
    from interp.bridges import SF2M, GaussianBridge
    from interp.nets import MLP

    eye = torch.eye(2, dtype=torch.float64)
    bridge = GaussianBridge(torch.zeros(2, dtype=torch.float64), eye, torch.ones(2, dtype=torch.float64), 2 * eye, 0.5)
    a = bridge.sample_plan(16, torch.Generator().manual_seed(3))
    b = bridge.sample_plan(16, torch.Generator().manual_seed(3))
    c = bridge.sample_plan(16, torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    loss = FlowScoreLoss(0.7)
    t1 = loss.sample_times(32, torch.Generator().manual_seed(5), dtype=torch.float64, device="cpu")
    t2 = loss.sample_times(32, torch.Generator().manual_seed(5), dtype=torch.float64, device="cpu")
    assert torch.equal(t1, t2) and t1.dtype == torch.float64
    from interp.train import TrainConfig

    config = TrainConfig(steps=1, batch_size=8, device="cpu", progress=False)
    sf2m = SF2M(MLP((2,), 8, 1), MLP((2,), 8, 1), sigma=0.7, config=config)
    assert isinstance(sf2m.coupling, EntropicOTCoupling) and sf2m.coupling.epsilon == pytest.approx(0.49)
    sf2m.fit(torch.randn(32, 2), torch.randn(32, 2) + 1)
    assert sf2m.trainer.coupling is sf2m.coupling  # the trainer pairs with it


# ---------------------------------------------------------------------- DSBM by value
class _Predict(torch.nn.Module):
    """A fixed end-point predictor ``(t, x) -> fn(t, x)`` standing in for a trained network."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, t, x):
        t = torch.as_tensor(t, dtype=x.dtype)
        return self.fn(t.reshape(t.shape + (1,) * (x.ndim - t.ndim)) if t.ndim else t, x)


def _dsbm(forward, backward, sigma=0.7, **kwargs):
    kwargs.setdefault("config", TrainConfig(steps=1, batch_size=8, device="cpu", progress=False))
    return DSBM(_Predict(forward), _Predict(backward), sigma, **kwargs)


def test_dsbm_drifts_are_the_bridge_drifts_to_the_predicted_end_points():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    dsbm = _dsbm(lambda t, x: 2 * x + 1 + t, lambda t, x: -x + 3 * t)
    for t in (0.3, torch.full((6,), 0.3, dtype=torch.float64)):  # 0.3: not a float32 number, float64 is kept
        # forward: (x1_hat - x) / (1 - t) = (x + 1.3) / 0.7; backward: (x0_hat - x) / t = (-2x + 0.9) / 0.3
        assert torch.allclose(dsbm.forward_drift(t, x), (x + 1.3) / 0.7, atol=1e-12, rtol=0)
        assert torch.allclose(dsbm.backward_drift(t, x), (-2 * x + 0.9) / 0.3, atol=1e-12, rtol=0)
    rows = torch.tensor([0.2, 0.2, 0.5, 0.5, 0.8, 0.8], dtype=torch.float64)
    assert torch.allclose(dsbm.forward_drift(rows, x), (x + 1 + rows[:, None]) / (1 - rows[:, None]), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dsbm_simulation_has_the_reference_noise_and_pins_the_predicted_end(seed):
    # Identity predictors give zero drift: the end is x + sigma W_1, exactly N(x, sigma^2). A constant prediction c
    # pins the path: the last Euler-Maruyama step lands on c + sigma sqrt(h) xi (h = 1/steps), exactly. Budgets:
    # 4 standard errors for the means, 6 % for the standard deviations (n = 4000: one standard error is 1.1 %).
    g = torch.Generator().manual_seed(seed)
    n, sigma, steps = 4000, 0.7, 8
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) * 3
    free = _dsbm(lambda t, x: x, lambda t, x: x, sigma=sigma, steps=steps)
    pinned = _dsbm(lambda t, x: torch.full_like(x, 5.0), lambda t, x: torch.full_like(x, -5.0), sigma, steps=steps)
    for model, backward, centre, scale in (
        (free, False, x, sigma),
        (free, True, x, sigma),
        (pinned, False, 5.0, sigma / steps**0.5),
        (pinned, True, -5.0, sigma / steps**0.5),
    ):
        residual = model.simulate(x, backward=backward, generator=g) - centre
        assert residual.mean(0).abs().max() < 4 * scale / n**0.5
        assert (residual.std(0) / scale - 1).abs().max() < 0.06


def test_dsbm_fit_alternates_directions_and_recouples_through_the_other_model():
    # The half-steps are recorded instead of trained; the predictors pin forward paths at 10 and backward paths at
    # -10, so every re-coupled side is recognisable, and every drawn side must be rows of the data.
    calls = []

    class Recording(DSBM):
        def _fit(self, net, target, x0, x1, seed):
            calls.append((net, target, x0.clone(), x1.clone(), seed))
            return net

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(50, 2, generator=g), torch.randn(60, 2, generator=g) + 3
    config = TrainConfig(steps=1, batch_size=8, device="cpu", progress=False, seed=7)
    model = Recording(
        _Predict(lambda t, x: torch.full_like(x, 10.0)),
        _Predict(lambda t, x: torch.full_like(x, -10.0)),
        0.5,
        iterations=4,
        n_pairs=300,
        steps=25,
        config=config,
    )
    history = model.fit(x0, x1, generator=torch.Generator().manual_seed(5))
    assert [h["direction"] for h in history] == ["backward", "forward", "backward", "forward"]
    assert [h["half_step"] for h in history] == [0, 1, 2, 3]
    first_run = [(a, b) for _, _, a, b, _ in calls]
    calls.clear()
    model.fit(x0, x1, generator=torch.Generator().manual_seed(5))  # every draw from the generator: replayed, equal
    again = [(a, b) for _, _, a, b, _ in calls]
    assert all(torch.equal(a, a2) and torch.equal(b, b2) for (a, b), (a2, b2) in zip(first_run, again, strict=True))

    def rows_of(a, data):  # every row is a data row, and the draws reach across the data (300 draws of 50-60)
        return bool((a[:, None, :] == data[None]).all(-1).any(-1).all()) and len(torch.unique(a, dim=0)) > 30

    def pinned_at(a, value):  # within 8 standard deviations of the last step's noise, 0.5 / 5
        return bool(((a - value).abs() < 0.8).all())

    expected = [
        (model.backward_net, Parameterisation.X0, lambda a: rows_of(a, x0), lambda b: rows_of(b, x1)),
        (model.forward_net, Parameterisation.X1, lambda a: pinned_at(a, -10.0), lambda b: rows_of(b, x1)),
        (model.backward_net, Parameterisation.X0, lambda a: rows_of(a, x0), lambda b: pinned_at(b, 10.0)),
        (model.forward_net, Parameterisation.X1, lambda a: pinned_at(a, -10.0), lambda b: rows_of(b, x1)),
    ]
    assert len(calls) == 4
    for step, ((net, target, a, b, seed), (net_e, target_e, check_a, check_b)) in enumerate(
        zip(calls, expected, strict=True)
    ):
        assert net is net_e and target == target_e and seed == 7 + step
        assert a.shape == b.shape == (300, 2)
        assert check_a(a) and check_b(b), step


def test_dsbm_half_step_trains_on_the_given_pairs():
    # One forward half-step on pairs b = a + 5: the fitted end-point predictor at t = 0 is a + 5 (an unpaired fit
    # would predict the mean of b, 5, for every a: an error of 1 at a = +-1). Budget 0.5 on [-1, 1]; over seeds 0-7
    # the largest error was 0.23.
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(512, 1, generator=g)
        config = TrainConfig(
            steps=300, batch_size=64, learning_rate=1e-2, ema_decay=0.9, device="cpu", progress=False, seed=seed
        )
        dsbm = DSBM(MLP((1,), hidden=16, depth=1), MLP((1,), hidden=16, depth=1), 0.1, iterations=1, config=config)
        dsbm._fit(dsbm.forward_net, Parameterisation.X1, a, a + 5, seed)
        grid = torch.linspace(-1, 1, 5)[:, None]
        with torch.no_grad():
            predicted = dsbm.forward_net(torch.zeros(5), grid)
        assert (predicted - (grid + 5)).abs().max() < 0.5, seed
