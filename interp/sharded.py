"""Sampling split across processes: particles or chains in contiguous shards, one generator per shard, every rank
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

Supported results: a tensor (particles first), a :class:`~interp.results.Trajectory` without per-step series and
:class:`~interp.langevin.Chains`. Weighted Feynman–Kac runs are not split this way: their resampling couples every
particle, so shards run independently would give a different algorithm (per-shard normalised weights); they are
refused here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

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
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


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
    if size == 1:
        parts = [fn(x[shard_slice(n, i, shards)], shard_generator(seed, i, x.device)) for i in range(shards)]
    else:
        mine = fn(x[shard_slice(n, rank, shards)], shard_generator(seed, rank, x.device))
        parts = _all_gather(mine, sizes)
    return _join(parts, seed, shards)


# ---------------------------------------------------------------------- joining
def _rows(result) -> dict[str, tuple[Tensor, int]]:
    """The row-carrying tensors of a result, each with the axis its rows are on."""
    if isinstance(result, Tensor):
        return {"tensor": (result, 0)}
    if isinstance(result, Trajectory):
        if result.series:
            raise ValueError(
                "a trajectory with per-step series (a weighted Feynman-Kac run) cannot be split into independent "
                "shards: its resampling couples every particle"
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
