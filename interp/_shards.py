"""The shard group a sampler runs in: how a loop that couples particles (the weighted Feynman–Kac loop) sees the
other shards of a :func:`interp.sharded.sharded` run (docs/design.md, "Scale").

``sharded`` sets the group for the duration of ``fn``; outside it :func:`current` is ``None`` and the loops run
on their own particles. Two exchanges: under ``torch.distributed`` an all-gather (padded to the largest shard),
and, for the one-process run of the same shards, threads meeting at a barrier. Both hand every shard the same
list of per-shard tensors, so a coupled run gives the same numbers in one process and in many.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

Exchange = Callable[[int, Tensor], list[Tensor]]

_CURRENT: ContextVar[ShardGroup | None] = ContextVar("interp_shard_group", default=None)


def seed_state(seed: int, *key: int) -> int:
    """A 64-bit seed from numpy's ``SeedSequence([seed, *key])``: independent streams for different keys."""
    return int(np.random.SeedSequence([int(seed), *map(int, key)]).generate_state(1, dtype=np.uint64)[0])


class ShardGroup:
    """Shard ``index`` of ``len(sizes)`` shards holding ``sizes[i]`` rows each, with the seed of the run.

    ``resampling`` is a generator every shard seeds alike (``SeedSequence([seed, shards, 2**32])``, a key no shard
    index reaches), so the one global resampling draw is the same on every shard without a message."""

    def __init__(self, index: int, sizes: list[int], seed: int, exchange: Exchange):
        self.index, self.sizes, self.seed, self._exchange = index, list(sizes), int(seed), exchange
        self.shards = len(self.sizes)
        self.start = sum(self.sizes[:index])
        self.mine = slice(self.start, self.start + self.sizes[index])

    def resampling(self, device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(seed_state(self.seed, self.shards, 2**32))

    def rows(self, tensor: Tensor) -> Tensor:
        """Every shard's rows of a per-particle tensor, joined in shard order ``(n_total, ...)``."""
        return torch.cat(self._exchange(self.index, tensor.contiguous()), dim=0)

    def any(self, flag: bool, device) -> bool:
        """Whether ``flag`` holds on any shard (every shard must call it)."""
        return bool(self.rows(torch.tensor([bool(flag)], device=device)).any())


def current() -> ShardGroup | None:
    return _CURRENT.get()


@contextlib.contextmanager
def joined(group: ShardGroup) -> Iterator[None]:
    token = _CURRENT.set(group)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def distributed_exchange(sizes: list[int]) -> Exchange:
    """All-gather under the default process group; tensors are padded to the largest shard for the collective."""
    longest = max(sizes)

    def exchange(index: int, tensor: Tensor) -> list[Tensor]:
        padded = torch.zeros((longest,) + tuple(tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.shape[0]] = tensor
        buffers = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(buffers, padded)
        return [b[:n] for b, n in zip(buffers, sizes, strict=True)]

    return exchange


class ThreadExchange:
    """The exchange of shards run as threads of one process: each puts its tensor in its slot, all meet at a
    barrier, read every slot, and meet again before the slots are reused. A shard that fails aborts the barrier,
    so the others stop (``threading.BrokenBarrierError``) instead of waiting for ever."""

    def __init__(self, shards: int):
        self.barrier = threading.Barrier(shards)
        self.slots: list[Tensor | None] = [None] * shards

    def __call__(self, index: int, tensor: Tensor) -> list[Tensor]:
        self.slots[index] = tensor
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()
        return out  # type: ignore[return-value]
