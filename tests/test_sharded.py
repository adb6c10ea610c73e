"""Sampling split across processes: two gloo processes give the one-process result for the same seed and shard
count (integrate with an SDE, MALA chains, a plain tensor, and weighted Feynman–Kac runs whose resampling is global
across the shards), uneven shards, a sharded weighted run against a closed form, and the refusals."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from interp import grids, integrate
from interp.analytic import ExactMarginals, GaussianMixture
from interp.dynamics import SDE
from interp.feynman_kac import BaseSampler, final_weights, fk_steer, posterior_sample
from interp.interpolants import preset
from interp.langevin import MALA, run_chains
from interp.sharded import shard_generator, shard_slice, sharded
from interp.smc import ResamplePolicy
from interp.solvers import EulerMaruyama

N, SEED = 7, 11  # 7 rows over 2 shards: 4 and 3


def _x0():
    return torch.linspace(-1, 1, N * 2, dtype=torch.float64).reshape(N, 2)


def _sde():
    return SDE(lambda t, x: -x, lambda t, x: torch.full_like(x, 0.5))


VP = preset("vp")
STANDARD = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
PRIOR = GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]), 0.3)


def _fk_grid(steps):
    return torch.linspace(0.0, VP.time_range[1], steps + 1, dtype=torch.float64)


def _reward(x):
    return x @ torch.tensor([1.0, 0.5], dtype=x.dtype)


def _steer(x, g, steps=20, every=2):
    base = BaseSampler(VP, ExactMarginals(VP, STANDARD, PRIOR).score)
    return fk_steer(base, _reward, _fk_grid(steps), lam=1.0, every=every, start=x, generator=g, record=True,
                    progress=False)  # fmt: skip


def _posterior(x, g):
    A, y, sigma = torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64), 0.5

    def log_likelihood(z):
        return -0.5 * ((z @ A.T - y) ** 2).sum(1) / sigma**2

    return posterior_sample(VP, ExactMarginals(VP, STANDARD, PRIOR).score, log_likelihood, _fk_grid(15), start=x,
                            policy=ResamplePolicy("always"), generator=g, record=True, progress=False)  # fmt: skip


def _samplers():
    return {
        "trajectory": lambda x, g: integrate(
            _sde(), x, grids.uniform(20), EulerMaruyama(), generator=g, record=True, progress=False
        ),  # fmt: skip
        "chains": lambda x, g: run_chains(
            MALA(0.2), lambda y: -0.5 * (y**2).sum(1), x, 30, generator=g, progress=False, block=8
        ),  # fmt: skip
        "tensor": lambda x, g: x + torch.randn(x.shape, generator=g, dtype=x.dtype),
        "steer": _steer,
        "posterior": _posterior,
    }


def _weighted(traj):
    return {"states": traj.states, "log_weight": traj.extras["log_weight"], "origin": traj.extras["origin"],
            **{f"series:{k}": v for k, v in traj.series.items()},
            "log_normaliser": torch.tensor(traj.attrs["log_normaliser"], dtype=torch.float64)}  # fmt: skip


def _run_all():
    return {name: sharded(fn, _x0(), seed=SEED, shards=None if dist.is_initialized() else 2)
            for name, fn in _samplers().items()}  # fmt: skip


def _worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results = _run_all()
        if rank == 1:  # the other rank holds every shard too
            traj, chains = results["trajectory"], results["chains"]
            torch.save({"states": traj.states, "nfe": traj.nfe, "draws": chains.draws,
                        "acceptance": chains.acceptance, "tensor": results["tensor"],
                        "steer": _weighted(results["steer"]), "posterior": _weighted(results["posterior"])},
                       out)  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_give_the_one_process_result(tmp_path):
    out = str(tmp_path / "shards.pt")
    mp.spawn(_worker, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    one = _run_all()
    assert torch.equal(two["states"], one["trajectory"].states) and two["nfe"] == one["trajectory"].nfe == 20
    assert torch.equal(two["draws"], one["chains"].draws) and torch.equal(two["acceptance"], one["chains"].acceptance)
    assert torch.equal(two["tensor"], one["tensor"])
    for name in ("steer", "posterior"):  # global resampling: threads in one process == two processes
        mine = _weighted(one[name])
        assert set(two[name]) == set(mine) and all(torch.equal(two[name][k], mine[k]) for k in mine), name
        assert one[name].attrs["coupled_shards"] == 2 and int(one[name].series["resampled"].sum()) >= 7
    assert one["trajectory"].states.shape == (21, N, 2) and one["chains"].draws.shape == (N, 30, 2)
    assert one["trajectory"].seed == SEED and one["trajectory"].attrs["shards"] == 2
    assert one["chains"].to_xarray().attrs["shards"] == 2


def test_shards_are_the_plain_runs_with_their_generators():
    # the join is a concatenation of ordinary runs, each driven by its shard's generator
    fn = _samplers()["trajectory"]
    joined = sharded(fn, _x0(), seed=SEED, shards=2)
    for i in range(2):
        rows = shard_slice(N, i, 2)
        alone = fn(_x0()[rows], shard_generator(SEED, i))
        assert torch.equal(joined.states[:, rows], alone.states)
    assert [shard_slice(N, i, 2) for i in range(2)] == [slice(0, 4), slice(4, 7)]
    assert [shard_slice(10, i, 3) for i in range(3)] == [slice(0, 4), slice(4, 7), slice(7, 10)]
    # different shards draw different streams; the same shard the same one
    a, b = shard_generator(SEED, 0), shard_generator(SEED, 1)
    assert not torch.equal(torch.randn(5, generator=a), torch.randn(5, generator=b))
    assert torch.equal(torch.randn(5, generator=shard_generator(3, 1)), torch.randn(5, generator=shard_generator(3, 1)))


def test_sharded_refuses_what_it_cannot_split():
    fn = _samplers()["tensor"]
    with pytest.raises(ValueError, match="every shard needs a row"):
        sharded(fn, _x0(), seed=0, shards=N + 1)
    with pytest.raises(ValueError, match="seed"):
        sharded(fn, _x0(), seed=-1)
    with pytest.raises(ValueError, match="shards"):
        sharded(fn, _x0(), seed=0, shards=0)
    with pytest.raises(ValueError, match="cannot join"):
        sharded(lambda x, g: float(x.sum()), _x0(), seed=0)
    from interp.solvers import RK4

    def solve(x, g=None):
        return integrate(lambda t, y: -y, x, grids.uniform(4), RK4(), progress=False)

    ode = sharded(solve, _x0(), seed=3, shards=2)  # deterministic rows: the same as one solve of all of them
    assert ode.seed is None and torch.allclose(ode.states, solve(_x0()).states, atol=1e-15)
    weighted = _samplers()["trajectory"](_x0(), torch.Generator().manual_seed(0))
    weighted.series["ess"] = torch.ones(21)
    with pytest.raises(ValueError, match="not computed across the shards"):
        sharded(lambda x, g: weighted, _x0(), seed=0)

    def second_shard_fails(x, g):
        if x.shape[0] == 3:
            raise ZeroDivisionError("shard 1 fails")
        return _steer(x, g)  # waits at its first exchange until the failure breaks the barrier

    with pytest.raises(ZeroDivisionError, match="shard 1 fails"):  # the caller sees the real error, nothing hangs
        sharded(second_shard_fails, _x0(), seed=0, shards=2)


def test_sharded_weighted_run_is_one_algorithm_and_hits_the_closed_form():
    """FK steering split over 2 shards (threads of this process): the resampling is global — when the weights
    collapse onto one particle, the other shard's rows descend from it too — and the tilted mixture's mode
    masses and log Z come out as in one process, with the unsharded test's budgets (TV < 0.05,
    |log Z - exact| < 0.1, n = 2000) on three seeds."""
    base = BaseSampler(VP, ExactMarginals(VP, STANDARD, PRIOR).score)
    apart = torch.cat([torch.full((4, 2), 2.0), torch.full((3, 2), -2.0)]).double()  # shard 0: 4 rows, shard 1: 3
    tr = sharded(lambda x, g: fk_steer(base, _reward, _fk_grid(4), lam=30.0, start=x, generator=g, record=True,
                                       progress=False), apart, seed=0, shards=2)  # fmt: skip
    origin = tr.extras["origin"][-1]  # lam = 30: the weights collapse onto one particle, so all descend from it;
    assert bool((origin < 4).all()) or bool((origin >= 4).all())  # shards resampled alone would each keep their own
    target, log_z = PRIOR.tilt(shift=torch.tensor([1.0, 0.5], dtype=torch.float64))
    n = 2000
    for seed in (0, 1, 2):
        start = torch.randn(n, 2, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
        tr = sharded(lambda x, g: _steer(x, g, steps=100, every=1), start, seed=seed, shards=2)
        w, label = final_weights(tr), target.component_of(tr.final)
        masses = torch.stack([w[label == k].sum() for k in range(target.n_components)])
        assert 0.5 * float((masses - target.weights).abs().sum()) < 0.05
        assert abs(tr.attrs["log_normaliser"] - log_z) < 0.1 and math.isfinite(tr.attrs["log_normaliser"])
        assert tr.states.shape == (101, n, 2) and tr.series["ess"].shape == (101,)
