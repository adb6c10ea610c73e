"""Exponential integrators, multistep and momentum methods, LML, SDE-DPM-Solver++ and searched grids."""

import numpy as np
import pytest
import torch

from interp import grids, integrate
from interp.analytic import ExactMarginals, GaussianMixture
from interp.dynamics import generative_sde
from interp.grid_search import SearchedGrid, search_grid, solve
from interp.interpolants import Interpolant, preset
from interp.schedules import CustomSchedule
from interp.solvers import (
    ADAMS_BASHFORTH,
    DEIS,
    GHVB,
    IPNDM,
    LML,
    DiffusionView,
    DPMSolver,
    DPMSolverPP,
    HeavyBall,
    SDEDPMSolverPP,
    UniPC,
    dpm_solver_fast_orders,
    dynamic_threshold,
    ghvb_weights,
)
from validate.convergence import fitted_order
from validate.fast_solvers import tight

T0, T1 = 0.0, 1.0 - 1e-3


def _exact(name="vp", dim=2):
    target = GaussianMixture(
        torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.5], [1.5, -1.0]], dtype=torch.float64)[:, :dim], 0.3
    )
    source = GaussianMixture(torch.ones(1), torch.zeros(1, dim, dtype=torch.float64), 1.0)
    return ExactMarginals(preset(name), source, target)


@pytest.fixture(scope="module")
def vp_case():
    exact = _exact()
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return exact, x0, tight(exact, x0, T0, T1)


def _final(exact, x0, grid, solver, field=None):
    return integrate(field or exact.velocity, x0, grid, solver, progress=False).final


@pytest.mark.parametrize("name", ["vp", "gvp", "flow"])
def test_time_of_inverts_log_snr(name):
    view = DiffusionView(preset(name))
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    assert torch.allclose(view.time_of(view.log_snr(t)), t, atol=1e-10)


def test_time_of_bisection_for_custom_schedule():
    schedule = CustomSchedule(lambda t: (1 - t) ** 2, lambda t: 1 - (1 - t) ** 2, gaussian_base=True)
    view = DiffusionView(Interpolant(schedule))
    t = torch.linspace(0.1, 0.9, 9, dtype=torch.float64)
    assert torch.allclose(view.time_of(view.log_snr(t)), t, atol=1e-9)


def test_diffusion_view_refuses_two_sided():
    with pytest.raises(ValueError, match="Gaussian-base"):
        DPMSolverPP(preset("linear-brownian"))


@pytest.mark.parametrize("make", [lambda ip, p: DPMSolverPP(ip, 2, p), lambda ip, p: DPMSolver(ip, 2, p)])
def test_every_prediction_gives_the_same_path(make, vp_case):
    exact, x0, _ = vp_case
    grid = grids.log_snr_uniform(exact.interpolant.schedule, 12, T0, T1)
    fields = {"velocity": exact.velocity, "score": exact.score, "noise": exact.x0_mean, "data": exact.x1_mean}
    finals = {p: _final(exact, x0, grid, make(exact.interpolant, p), f) for p, f in fields.items()}
    for p in ("score", "noise", "data"):
        assert torch.allclose(finals[p], finals["velocity"], atol=1e-9), p


def test_first_order_methods_are_ddim(vp_case):
    exact, x0, _ = vp_case
    ip = exact.interpolant
    grid = grids.log_snr_uniform(ip.schedule, 15, T0, T1)
    ddim = _final(exact, x0, grid, DPMSolverPP(ip, 1))
    for solver in (DPMSolver(ip, 1), DEIS(ip, 1), IPNDM(ip, 1), UniPC(ip, 1, corrector=False), HeavyBall(ip, 1, 1.0)):
        assert torch.allclose(_final(exact, x0, grid, solver), ddim, atol=1e-10), solver.name


def test_momentum_with_beta_one_is_the_base_method(vp_case):
    exact, x0, _ = vp_case
    ip = exact.interpolant
    grid = grids.uniform(20, T0, T1)
    base = _final(exact, x0, grid, IPNDM(ip, 3))
    assert torch.allclose(_final(exact, x0, grid, HeavyBall(ip, 3, 1.0)), base, atol=1e-10)
    assert torch.allclose(_final(exact, x0, grid, GHVB(ip, 3, 1.0)), base, atol=1e-10)
    for k in ADAMS_BASHFORTH:
        assert np.allclose(ghvb_weights(k, 1.0), ADAMS_BASHFORTH[k])
        assert abs(sum(ghvb_weights(k, 0.37)) - 1) < 1e-12  # consistency for every beta


def test_lml_with_kappa_zero_is_the_identity(vp_case):
    exact, x0, reference = vp_case
    ip = exact.interpolant
    grid = grids.log_snr_uniform(ip.schedule, 20, T0, T1)
    base = _final(exact, x0, grid, DPMSolverPP(ip, 2))
    assert torch.allclose(_final(exact, x0, grid, LML(DPMSolverPP(ip, 2), damping=0.5, kappa=0.0)), base, atol=1e-12)
    moved = _final(exact, x0, grid, LML(DPMSolverPP(ip, 2), damping=0.5, kappa=0.7))
    assert not torch.allclose(moved, base, atol=1e-6)
    assert (moved - reference).norm(dim=1).median() < 0.1  # still a consistent solver


def _slope(exact, x0, reference, solver, steps):
    errors = []
    for n in steps:
        grid = grids.log_snr_uniform(exact.interpolant.schedule, n, T0, T1)
        errors.append(float((_final(exact, x0, grid, solver) - reference).norm(dim=1).median()))
    return fitted_order(list(steps), errors)


@pytest.mark.parametrize(
    "make",
    [
        lambda ip: DPMSolver(ip, 3),
        lambda ip: DPMSolver(ip, 2),
        lambda ip: DPMSolverPP(ip, 2, lower_order_final=0),
        lambda ip: UniPC(ip, 2, lower_order_final=0, warmup="singlestep"),
        lambda ip: DEIS(ip, 3, warmup="singlestep"),
    ],
)
def test_declared_order(make, vp_case):
    exact, x0, reference = vp_case
    solver = make(exact.interpolant)
    slope = _slope(exact, x0, reference, solver, (40, 80, 160))
    assert abs(slope - solver.order) < 0.35, (solver.name, slope)


def test_third_order_weight_taylor_vs_reference(vp_case):
    """docs/algorithms.md §3 / Lu et al.'s code weight D2 by 1; Taylor needs 2 for third order."""
    exact, x0, reference = vp_case
    ip = exact.interpolant
    taylor = _slope(exact, x0, reference, DPMSolverPP(ip, 3, lower_order_final=0), (40, 80, 160))
    ref = _slope(exact, x0, reference, DPMSolverPP(ip, 3, lower_order_final=0, third_order="reference"), (40, 80, 160))
    assert taylor > 2.7 and ref < 2.4, (taylor, ref)


def test_dpm_solver_fast_orders_hit_the_budget(vp_case):
    exact, x0, _ = vp_case
    for nfe in (3, 4, 5, 10, 11, 20):
        for order in (1, 2, 3):
            orders = dpm_solver_fast_orders(nfe, order)
            assert sum(orders) == nfe and max(orders) <= order
    orders = dpm_solver_fast_orders(10, 3)
    grid = grids.log_snr_uniform(exact.interpolant.schedule, len(orders), T0, T1)
    traj = integrate(exact.velocity, x0, grid, DPMSolver(exact.interpolant, 3, orders=orders), progress=False)
    assert traj.nfe == 10
    with pytest.raises(ValueError, match="entries"):
        integrate(exact.velocity, x0, grids.uniform(3, T0, T1), DPMSolver(exact.interpolant, 3, orders=orders))


def test_nfe_counts(vp_case):
    exact, x0, _ = vp_case
    ip = exact.interpolant
    grid = grids.log_snr_uniform(ip.schedule, 10, T0, T1)
    for solver, nfe in ((DPMSolverPP(ip, 3), 10), (UniPC(ip, 3), 10), (DEIS(ip, 3), 10), (DPMSolver(ip, 2), 20)):
        assert integrate(exact.velocity, x0, grid, solver, progress=False).nfe == nfe
    # singlestep warm-up: DPM-Solver-3 steps (two extra evaluations each) before the history is full
    assert integrate(exact.velocity, x0, grid, DPMSolverPP(ip, 3, warmup="singlestep"), progress=False).nfe == 14


def test_lower_order_final_rule():
    ip = preset("vp")
    assert DPMSolverPP(ip, 3).step_orders(5) == [1, 2, 3, 2, 1]
    assert DPMSolverPP(ip, 3).step_orders(16)[-3:] == [3, 3, 3]
    assert DPMSolverPP(ip, 3, lower_order_final=0).step_orders(5) == [1, 2, 3, 3, 3]


def test_denoise_to_zero_returns_the_data_prediction():
    exact = _exact("flow")
    ip = exact.interpolant
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grid = torch.tensor([1e-3, 0.3, 0.7, 0.95, 1.0], dtype=torch.float64)
    traj = integrate(exact.velocity, x0, grid, DPMSolverPP(ip, 2), record=True, progress=False)
    assert torch.allclose(traj.final, exact.x1_mean(0.95, traj.states[-2]), atol=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        integrate(exact.velocity, x0, grid, DPMSolver(ip, 2), progress=False)


def test_bad_input():
    ip = preset("flow")
    exact = _exact("flow")
    x0 = torch.randn(8, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="t_start"):
        integrate(exact.velocity, x0, grids.uniform(5), DPMSolverPP(ip, 2))
    with pytest.raises(ValueError, match="increase"):
        integrate(exact.velocity, x0, grids.uniform(5, 0.9, 0.1), DPMSolverPP(ip, 2))
    with pytest.raises(ValueError, match="order"):
        DPMSolverPP(ip, 4)
    with pytest.raises(ValueError, match="prediction"):
        UniPC(ip, prediction="epsilon")
    with pytest.raises(ValueError, match="thresholding"):
        DPMSolverPP(ip, 2, thresholding=(0.995, 0.5))
    with pytest.raises(ValueError, match="variant"):
        UniPC(ip, variant="bh3")
    with pytest.raises(ValueError, match="beta"):
        GHVB(ip, 2, beta=0.0)
    with pytest.raises(ValueError, match="kappa"):
        LML(DPMSolverPP(ip, 2), kappa=1.5)
    with pytest.raises(ValueError, match="warmup"):
        DEIS(ip, warmup="rk4")
    with pytest.raises(TypeError, match="field"):
        integrate(generative_sde(exact.velocity, exact.score, 1.0), x0, grids.uniform(5, 0.1, 0.9), SDEDPMSolverPP(ip))


def test_dynamic_threshold():
    x = torch.tensor([[0.2, -0.5, 0.9], [3.0, -6.0, 1.0]])
    out = dynamic_threshold(x, ratio=1.0, max_value=10.0)
    assert torch.equal(out[0], x[0])  # every |x| < 1: s = 1, unchanged
    assert torch.allclose(out[1], x[1] / 6.0) and out.abs().max() <= 1
    exact = _exact("flow")
    x0 = torch.randn(16, 2, dtype=torch.float64)
    solver = DPMSolverPP(exact.interpolant, 2, thresholding=(0.9, 1.0))
    # ending at t = 1 (denoise to zero) returns the last data prediction, clamped into [-1, 1]
    final = integrate(exact.velocity, x0, grids.uniform(10, 1e-3, 1.0), solver, progress=False).final
    assert final.abs().max() <= 1.0 + 1e-12 and final.abs().max() > 0.9
    # with its own ratio and ceiling, the last step is the thresholded data prediction at the previous state
    solver = DPMSolverPP(exact.interpolant, 2, thresholding=(0.6, 1.5))
    traj = integrate(exact.velocity, 3 * x0, grids.uniform(10, 1e-3, 1.0), solver, record=True, progress=False)
    expected = dynamic_threshold(exact.x1_mean(float(traj.times[-2]), traj.states[-2]), 0.6, 1.5)
    assert torch.allclose(traj.final, expected, atol=1e-12)
    assert not torch.allclose(expected, dynamic_threshold(exact.x1_mean(float(traj.times[-2]), traj.states[-2])))


def test_dpm_solver_pp_declares_its_order_and_name():
    ip = preset("vp")
    default = DPMSolverPP(ip)
    assert (default.order, default.lower_order_final, default.name) == (2, 15, "dpmsolver++2M")
    reference = DPMSolverPP(ip, 3, third_order="reference")
    assert (reference.order, reference.name) == (2, "dpmsolver++3M-ref")  # Lu et al.'s weight: order 2 (see above)
    heavy_ball = DPMSolverPP(ip, 2, momentum=0.8)
    assert (heavy_ball.order, heavy_ball.name) == (1, "dpmsolver++2M-hb0.8")
    assert DPMSolverPP(ip, 3, third_order="reference", momentum=0.5).order == 1


def test_float32_runs(vp_case):
    exact, x0, reference = vp_case
    ip = exact.interpolant
    grid = grids.log_snr_uniform(ip.schedule, 20, T0, T1).float()
    exact32 = ExactMarginals(ip, exact.rho0, exact.rho1)
    final = integrate(exact32.velocity, x0.float(), grid, UniPC(ip, 2), progress=False).final
    assert final.dtype == torch.float32
    assert (final.double() - reference).norm(dim=1).median() < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sde_dpm_solver_mode_masses(seed):
    """Mode masses of the two-component target within 4 binomial standard errors (n = 4000)."""
    exact = _exact("vp")
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(4000, 2, generator=generator, dtype=torch.float64)
    grid = grids.log_snr_uniform(exact.interpolant.schedule, 40, T0, T1)
    state = generator.get_state()  # the noise of the run below starts here
    traj = integrate(
        exact.velocity, x0, grid, SDEDPMSolverPP(exact.interpolant, 2), generator=generator, progress=False
    )
    assert traj.nfe == 40
    share = float((exact.rho1.component_of(traj.final) == 1).double().mean())
    assert abs(share - 0.7) < 4 * (0.7 * 0.3 / 4000) ** 0.5, share
    replay = torch.Generator()
    replay.set_state(state)
    again = integrate(exact.velocity, x0, grid, SDEDPMSolverPP(exact.interpolant, 2), generator=replay, progress=False)
    assert torch.equal(again.final, traj.final)  # the same generator state reproduces the run bit for bit
    other = integrate(
        exact.velocity, x0, grid, SDEDPMSolverPP(exact.interpolant, 2), generator=torch.Generator().manual_seed(99)
    )
    assert not torch.allclose(other.final, traj.final)  # and other noise gives another sample


def test_search_grid_improves_on_fresh_noise(tmp_path, vp_case):
    exact, _, _ = vp_case
    ip = exact.interpolant
    generator = torch.Generator().manual_seed(3)
    pilot = torch.randn(128, 2, generator=generator, dtype=torch.float64)
    fresh = torch.randn(256, 2, generator=generator, dtype=torch.float64)
    solver = DPMSolverPP(ip, 2)
    start = grids.log_snr_uniform(ip.schedule, 6, T0, T1)
    result = search_grid(exact.velocity, solver, pilot, tight(exact, pilot, T0, T1), start, iterations=40)
    grid = result.tensor()
    assert grid.shape == start.shape and grid[0] == start[0] and grid[-1] == start[-1]
    assert bool((grid[1:] > grid[:-1]).all()) and result.pilot_error < result.initial_error
    fresh_ref = tight(exact, fresh, T0, T1)
    with torch.no_grad():
        before = (solve(exact.velocity, fresh, start, solver) - fresh_ref).norm(dim=1).mean()
        after = (solve(exact.velocity, fresh, grid, solver) - fresh_ref).norm(dim=1).mean()
    assert after < 0.7 * before, (float(before), float(after))
    result.save(tmp_path / "grid.json")
    loaded = SearchedGrid.load(tmp_path / "grid.json")
    assert loaded.grid == result.grid and loaded.solver == solver.name and loaded.nfe == 6
    with pytest.raises(ValueError, match="interior"):
        search_grid(exact.velocity, solver, pilot, pilot, grids.uniform(1, T0, T1))
    with pytest.raises(ValueError, match="same shape"):
        search_grid(exact.velocity, solver, pilot, pilot[:5], start)


@pytest.mark.parametrize("name", ["vp", "gvp", "flow"])
def test_view_posterior_matches_interpolant_posterior(name):
    exact = _exact(name)
    view = DiffusionView(exact.interpolant)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        tt = torch.tensor(t, dtype=torch.float64)
        given = {"velocity": exact.velocity(tt, x), "score": exact.score(tt, x), "x0": exact.x0_mean(tt, x)}
        for kind, value in given.items():
            for _ in range(2):  # the second call reads the memoised coefficients
                fast = view.posterior(tt, x, **{kind: value})
                slow = exact.interpolant.posterior(tt, x, **{kind: value})
                assert torch.allclose(fast.x0, slow.x0, atol=1e-12) and torch.allclose(fast.x1, slow.x1, atol=1e-12)


def test_view_memo_keeps_gradients_of_differentiable_times():
    view = DiffusionView(preset("vp"))
    t = torch.tensor(0.4, dtype=torch.float64)
    view.log_snr(t)  # memoised without a graph
    t_grad = t.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(view.log_snr(t_grad), t_grad)
    eps = 1e-6
    finite = (view.log_snr(t + eps) - view.log_snr(t - eps)) / (2 * eps)
    assert torch.isclose(grad, finite, rtol=1e-6)
