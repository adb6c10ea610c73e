"""The solvers bench's adapters: the peers see the same schedule, and on the same grid the same algorithm gives the
same samples (so the bench's differences come from grids and rules, not from a mismatched conversion)."""

import importlib.util
import math

import pytest
import torch

from interp import integrate
from interp.solvers import DPMSolverPP, UniPC
from validate.bench import solvers as bench


@pytest.fixture(scope="module")
def problem():
    return bench.make_problem("gmm-2d", 2, 64, 16, seed=0)


def test_trained_betas_reproduce_the_continuous_schedule(problem):
    betas = torch.tensor(bench.trained_betas(problem), dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    t = 1 - torch.arange(1, bench.TRAIN_STEPS + 1, dtype=torch.float64) / bench.TRAIN_STEPS
    assert torch.allclose(alphas_cumprod, problem.beta(t) ** 2, rtol=1e-10)
    assert float(t[-1]) == bench.T_START and math.isclose(float(t[0]), bench.T_END)


def test_time_of_sigma_inverts_sigma_of_time(problem):
    for t in (0.0, 0.2, 0.5, 0.9, bench.T_END):
        sigma = torch.tensor(problem.sigma_of_time(t), dtype=torch.float64)
        assert abs(float(problem.time_of_sigma(sigma)) - t) < 1e-9


def _scheduler_grid(problem, scheduler):
    grid = problem.time_of_sigma(scheduler.sigmas.double()).clone()
    grid[0], grid[-1] = bench.T_START, bench.T_END  # float32 sigma tables: the ends to rounding
    return grid


@pytest.mark.parametrize(
    "peer, ours",
    [
        # diffusers' UniPC lowers the order at the last step always, its DPM-Solver++ below 15 steps only.
        ("diffusers-UniPC-2", lambda ip: UniPC(ip, 2, lower_order_final=10**6)),
        ("diffusers-DPMSolver++-2", lambda ip: DPMSolverPP(ip, 2, lower_order_final=15)),
    ],
)
@pytest.mark.parametrize("nfe", [8, 20])
def test_diffusers_matches_interp_on_its_grid(problem, peer, ours, nfe):
    diffusers = pytest.importorskip("diffusers")
    class_name, options = bench.DIFFUSERS[peer]
    scheduler = getattr(diffusers, class_name)(
        num_train_timesteps=bench.TRAIN_STEPS,
        trained_betas=bench.trained_betas(problem),
        final_sigmas_type="sigma_min",
        **options,
    )
    scheduler.set_timesteps(nfe)
    theirs, used = bench.run_diffusers(problem, peer, "linspace", nfe)
    grid = _scheduler_grid(problem, scheduler)
    mine = integrate(problem.exact.velocity, problem.x0, grid, ours(problem.interpolant), progress=False).final
    assert used == nfe
    # diffusers steps in float32; the samples move by O(1) and differ from the tight reference by ~0.1
    assert float((mine - theirs).norm(dim=-1).max()) < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("k_diffusion") is None, reason="k-diffusion is not installed")
def test_k_diffusion_dpmpp_2m_matches_interp_on_its_sigmas(problem):
    sampling = bench.k_diffusion_sampling()
    steps = 10
    sigmas = sampling.get_sigmas_exponential(
        steps + 1, problem.sigma_of_time(bench.T_END), problem.sigma_of_time(bench.T_START)
    )[:-1].double()
    grid = problem.time_of_sigma(sigmas).clone()
    grid[0], grid[-1] = bench.T_START, bench.T_END
    theirs, used = bench.run_k_diffusion(problem, "k-diffusion-dpmpp_2m", "exponential", steps)
    solver = DPMSolverPP(problem.interpolant, 2, lower_order_final=0)
    mine = integrate(problem.exact.velocity, problem.x0, grid, solver, progress=False).final
    assert used == steps
    assert float((mine - theirs).norm(dim=-1).max()) < 1e-8  # both float64


def _row(method, nfe, error, peer, config="log_snr"):
    return bench.Row("case", method, nfe, config, nfe, peer, error, 10 * error, 100 * error)


def test_records_compare_best_with_best_peer(tmp_path):
    rows = [
        _row("a", 10, 0.3, False),
        _row("b", 10, 0.1, False),
        _row("b/searched", 10, 0.05, False, "searched"),
        _row("p", 10, 0.2, True),
        _row("q", 10, 0.4, True),
        _row("q", 20, math.inf, True),
        _row("a", 20, 0.01, False),
    ]
    records = bench.accuracy_records(rows)
    assert {(r.case, r.metric) for r in records} == {
        ("case/nfe10/standard-grids/b@log_snr", "pathwise_error"),
        ("case/nfe10/standard-grids/b@log_snr", "sliced_w2"),
        ("case/nfe10/standard-grids/b@log_snr", "mmd"),
        ("case/nfe10/searched-grid/b/searched@searched", "pathwise_error"),
        ("case/nfe20/standard-grids/a@log_snr", "pathwise_error"),
        ("case/nfe20/standard-grids/a@log_snr", "sliced_w2"),
        ("case/nfe20/standard-grids/a@log_snr", "mmd"),
    }
    by_key = {(r.case, r.metric): r for r in records}
    assert by_key[("case/nfe10/standard-grids/b@log_snr", "pathwise_error")].ratio == pytest.approx(0.5)
    assert by_key[("case/nfe10/searched-grid/b/searched@searched", "pathwise_error")].ratio == pytest.approx(0.25)
    assert by_key[("case/nfe20/standard-grids/a@log_snr", "pathwise_error")].ratio == 0.0  # peer failed: inf

    xr = pytest.importorskip("xarray")
    ds = bench.to_dataset(rows, {"case": {"sliced_w2": 1.0, "mmd": 2.0}})
    path = tmp_path / "table.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.open_dataset(path, engine="h5netcdf")
    assert float(back.pathwise_error.sel(case="case", solver="b", nfe=10)) == pytest.approx(0.1)
    assert math.isnan(float(back.pathwise_error.sel(case="case", solver="p", nfe=20)))  # never run
    assert bool(back.peer.sel(solver="q")) and not bool(back.peer.sel(solver="a"))
    assert str(back.config.sel(case="case", solver="b/searched", nfe=10).values) == "searched"
