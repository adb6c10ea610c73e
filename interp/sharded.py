r"""Sampling split across processes: particles or chains in contiguous shards, one generator per shard, every rank
gets the whole result (docs/design.md, "Scale").

:func:`sharded` runs a sampler ``fn(x_shard, generator)`` on this rank's shard of ``x`` under ``torch.distributed``
(launched by ``torchrun``) and gathers the shards' results; without a process group it runs the shards one after the
other in this process. Shard ``i`` always draws from :func:`shard_generator` ``(seed, i)``, so for the same seed and
the same number of shards one process and many give the same numbers (tested with two gloo processes). The number of
shards is part of the seed, as a generator's device is: 2 shards and 4 shards are different, equally valid, draws.

Example (``torchrun --nproc-per-node 2 sample.py``)::

    import torch.distributed as dist
    from interp import grids, integrate
    from interp.sharded import sharded
    from interp.solvers import EulerMaruyama

    dist.init_process_group("gloo")  # "nccl" for one GPU per rank
    traj = sharded(lambda x, g: integrate(sde, x, grids.uniform(100), EulerMaruyama(), generator=g, progress=False),
                   x0, seed=7)  # every rank holds the (time, particle, dim) trajectory of all particles

Supported results: a tensor (particles first), a :class:`~interp.results.Trajectory` and
:class:`~interp.langevin.Chains`. Weighted Feynman–Kac runs (``fk_correct``, ``fk_steer``, ``posterior_sample``)
stay one algorithm across the shards: their loop all-gathers the log-weights at every step, so the ESS,
:math:`\log\hat Z` and the resampling decision are global; one systematic (or other) resampling draw from a
generator seeded alike on every shard picks the ancestors of all particles; and each shard takes its new particles'
states (and drifts, running rewards) from the gathered ones. Without a process group the shards run as threads of
this process meeting at each step, so one process and k processes give the same numbers for the same seed and k
(tested). What stays per shard is the noise: shard ``i``'s particles draw from shard ``i``'s generator, so a
sharded run equals the plain one-generator run in distribution, not number for number. The exchange is an
all-gather of every per-particle tensor a resampling moves (``O(n_total)`` memory per rank at those steps), and
an error raised on one rank alone (a field's) leaves the others waiting until the process group's timeout.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from ._shards import ShardGroup, ThreadExchange, distributed_exchange, joined, seed_state
from .langevin import Chains
from .results import Trajectory
from .train import world

__all__ = ["shard_generator", "shard_slice", "sharded", "world"]


def shard_slice(n: int, index: int, shards: int) -> slice:
    """Rows of shard ``index`` of ``shards`` over ``n`` rows: contiguous, sizes differing by at most one."""
    base, extra = divmod(n, shards)
    start = index * base + min(index, extra)
    return slice(start, start + base + (1 if index < extra else 0))


def shard_generator(seed: int, index: int, device="cpu") -> torch.Generator:
    """The generator of shard ``index`` for the run seeded ``seed``: seeded from numpy's ``SeedSequence([seed,
    index])``, so shards draw independent streams and the same shard always draws the same one."""
    return torch.Generator(device=device).manual_seed(seed_state(seed, index))


def sharded(fn: Callable[[Tensor, torch.Generator], object], x: Tensor, *, seed: int, shards: int | None = None):
    """``fn`` on every shard of ``x`` (rows: particles or chains), the shards' results joined along the rows.

    Under an initialised process group, this rank runs its own shard and the results are all-gathered (``shards``,
    if given, must equal the world size); without one, the ``shards`` (default 1) run here in turn.

    Raises:
        ValueError: a bad seed or shard count, more shards than rows, or a result that cannot be joined.
    """
    if not isinstance(x, Tensor) or x.ndim < 1:
        raise ValueError(f"x must be a tensor with rows (particles or chains); got {type(x).__name__}")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    rank, size = world()
    if shards is not None and not (isinstance(shards, int) and not isinstance(shards, bool) and shards >= 1):
        raise ValueError(f"shards must be a positive integer; got {shards!r}")
    if size > 1 and shards not in (None, size):
        raise ValueError(f"shards ({shards}) must equal the world size ({size}) under a process group")
    shards = size if size > 1 else (shards or 1)
    n = x.shape[0]
    if shards > n:
        raise ValueError(f"{shards} shards for {n} rows: every shard needs a row")
    sizes = [shard_slice(n, i, shards).stop - shard_slice(n, i, shards).start for i in range(shards)]

    def run(index: int, exchange):
        shard = x[shard_slice(n, index, shards)], shard_generator(seed, index, x.device)
        if shards == 1:
            return fn(*shard)
        with joined(ShardGroup(index, sizes, seed, exchange)):
            return fn(*shard)

    if size == 1:
        parts = _in_threads(run, shards)
    else:
        parts = _all_gather(run(rank, distributed_exchange(sizes)), sizes)
    return _join(parts, seed, shards)


def _in_threads(run, shards: int) -> list:
    """The shards of a one-process run, each in a thread, so that a loop coupling them (the weighted Feynman–Kac
    loop) can meet the others at every step; uncoupled samplers simply run side by side. The first shard's error
    is raised (the others stop at the broken barrier)."""
    if shards == 1:
        return [run(0, None)]
    exchange = ThreadExchange(shards)
    results: list = [None] * shards
    errors: list[BaseException | None] = [None] * shards

    def work(index: int) -> None:
        try:
            results[index] = run(index, exchange)
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            errors[index] = error
            exchange.barrier.abort()

    threads = [threading.Thread(target=work, args=(i,), name=f"interp-shard-{i}") for i in range(shards)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    raised = [e for e in errors if e is not None]
    if raised:
        first = next((e for e in raised if not isinstance(e, threading.BrokenBarrierError)), raised[0])
        raise first
    return results


# ---------------------------------------------------------------------- joining
def _rows(result) -> dict[str, tuple[Tensor, int]]:
    """The row-carrying tensors of a result, each with the axis its rows are on."""
    if isinstance(result, Tensor):
        return {"tensor": (result, 0)}
    if isinstance(result, Trajectory):
        if result.series and "coupled_shards" not in result.attrs:
            raise ValueError(
                "a trajectory with per-step series that were not computed across the shards cannot be joined: "
                "its series would describe one shard only"
            )
        out = {"states": (result.states, 1)}
        out.update({f"extra:{k}": (v, 1) for k, v in result.extras.items()})
        return out
    if isinstance(result, Chains):
        out = {"draws": (result.draws, 0)}
        if result.acceptance is not None:
            out["acceptance"] = (result.acceptance, 0)
        return out
    raise ValueError(f"cannot join results of type {type(result).__name__}: return a tensor, Trajectory or Chains")


def _join(parts: list, seed: int, shards: int):
    rows = [_rows(p) for p in parts]
    joined = {key: torch.cat([r[key][0] for r in rows], dim=axis) for key, (_, axis) in rows[0].items()}
    first = parts[0]
    if isinstance(first, Tensor):
        return joined["tensor"]
    if isinstance(first, Trajectory):
        extras = {k[len("extra:") :]: v for k, v in joined.items() if k.startswith("extra:")}
        attrs = dict(first.attrs, shards=shards)
        seed = None if first.seed is None else seed  # a deterministic solve records no seed (docs/design.md)
        return dataclasses.replace(first, states=joined["states"], extras=extras, seed=seed, attrs=attrs,
                                   nfe=max(p.nfe for p in parts))  # fmt: skip
    settings = dict(first.settings, shards=shards)
    return dataclasses.replace(first, draws=joined["draws"], acceptance=joined.get("acceptance"), seed=seed,
                               settings=settings)  # fmt: skip


def _all_gather(mine, sizes: list[int]) -> list:
    """Every rank's result (tensors padded to the largest shard for the collective, then trimmed)."""
    rows = _rows(mine)
    gathered: dict[str, list[Tensor]] = {}
    longest = max(sizes)
    for key, (tensor, axis) in rows.items():
        moved = tensor.movedim(axis, 0).contiguous()
        padded = torch.zeros((longest,) + moved.shape[1:], dtype=moved.dtype, device=moved.device)
        padded[: moved.shape[0]] = moved
        buffers = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(buffers, padded)
        gathered[key] = [b[:s].movedim(0, axis) for b, s in zip(buffers, sizes, strict=True)]
    nfes = torch.tensor([getattr(mine, "nfe", 0)], device=next(iter(rows.values()))[0].device)
    dist.all_reduce(nfes, op=dist.ReduceOp.MAX)
    parts = []
    for i in range(len(sizes)):
        if isinstance(mine, Tensor):
            parts.append(gathered["tensor"][i])
        elif isinstance(mine, Trajectory):
            extras = {k[len("extra:") :]: v[i] for k, v in gathered.items() if k.startswith("extra:")}
            parts.append(dataclasses.replace(mine, states=gathered["states"][i], extras=extras, nfe=int(nfes)))
        else:
            acceptance = gathered["acceptance"][i] if "acceptance" in gathered else None
            parts.append(dataclasses.replace(mine, draws=gathered["draws"][i], acceptance=acceptance))
    return parts
