"""Sampling split across processes: two gloo processes give the one-process result for the same seed and shard
count (integrate with an SDE, MALA chains, a plain tensor), uneven shards, and the refusals."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from interp import grids, integrate
from interp.dynamics import SDE
from interp.langevin import MALA, run_chains
from interp.sharded import shard_generator, shard_slice, sharded
from interp.solvers import EulerMaruyama

N, SEED = 7, 11  # 7 rows over 2 shards: 4 and 3


def _x0():
    return torch.linspace(-1, 1, N * 2, dtype=torch.float64).reshape(N, 2)


def _sde():
    return SDE(lambda t, x: -x, lambda t, x: torch.full_like(x, 0.5))


def _samplers():
    return {
        "trajectory": lambda x, g: integrate(
            _sde(), x, grids.uniform(20), EulerMaruyama(), generator=g, record=True, progress=False
        ),  # fmt: skip
        "chains": lambda x, g: run_chains(
            MALA(0.2), lambda y: -0.5 * (y**2).sum(1), x, 30, generator=g, progress=False, block=8
        ),  # fmt: skip
        "tensor": lambda x, g: x + torch.randn(x.shape, generator=g, dtype=x.dtype),
    }


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
                        "acceptance": chains.acceptance, "tensor": results["tensor"]}, out)  # fmt: skip
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
    with pytest.raises(ValueError, match="Feynman-Kac"):
        sharded(lambda x, g: weighted, _x0(), seed=0)
