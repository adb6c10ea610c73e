"""Training bench against TorchCFM: 8 Gaussians -> two moons with exact minibatch OT, side by side.

Both sides train an MLP of the same width and depth (3 hidden layers; TorchCFM's ``MLP`` uses SELU and feeds t
raw, ours SiLU and a sinusoidal embedding) with Adam at the same learning rate, batch and number of steps, on
the same data samplers, no EMA, clipping or schedule. Each side trains in its own fresh process; a discarded
50-step warm-up run precedes the timed one on both sides, and the memory recorded is the peak resident memory of
the timed run above the resident memory just before it (the kernel's peak counter is reset there), so one-time
imports and allocator growth are not counted as training memory.

Each side trains ``ROUNDS`` times, the sides alternating (ours, TorchCFM, ours, ...): on a shared 2-core machine one
run's speed moves by ±15 % from one run to the next, so the best round's steps/s is recorded; memory is the median
over rounds. The memory a 64-wide MLP adds by training after its warm-up is a few MiB on either side, at the
resolution of the allocator's arenas, so the process's whole peak resident memory (imports included: what a
user's process needs) is recorded beside it.

Recorded: training steps per second (higher is better), the added and the whole peak memory (lower is better), and
the exact W2 (POT ``emd2``) between 2000 samples of each model (RK4, 100 steps, from the same initial points) and
2000 held-out target points (lower is better). 2000 rather than 10k points: the exact W2 of 10k points takes
minutes per model here.

TorchCFM is installed with ``pip install --no-deps torchcfm`` (its matchers need only torch, POT, numpy).
"""

from __future__ import annotations

import gc
import multiprocessing
import resource
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import make_moons

from interp import grids, integrate
from interp.analytic import ring_mixture
from interp.couplings import ExactOTCoupling
from interp.interpolants import preset
from interp.losses import InterpolantLoss, Parameterisation
from interp.metrics import wasserstein
from interp.nets import MLP
from interp.records import BenchRecord, compare
from interp.solvers import RK4
from interp.train import TrainConfig, Trainer

from . import synchronise

WIDTH, BATCH, LEARNING_RATE = 64, 256, 1e-3
ROUNDS = 3  # fresh processes per side, alternating; steps/s is the best round, memory the median


def sample_source(n: int, generator: torch.Generator) -> torch.Tensor:
    return ring_mixture(n_modes=8, radius=4.0, std=0.5, dtype=torch.float32).sample(n, generator)


def sample_moons(n: int, generator: torch.Generator) -> torch.Tensor:
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    x, _ = make_moons(n, noise=0.2, random_state=seed)
    return torch.as_tensor(3.0 * (x - np.array([0.5, 0.25])), dtype=torch.float32)


def train_ours(steps: int, seed: int, device: str = "cpu"):
    torch.manual_seed(seed)
    loss = InterpolantLoss(preset("linear"), Parameterisation.VELOCITY)
    config = TrainConfig(
        steps=steps,
        batch_size=BATCH,
        learning_rate=LEARNING_RATE,
        cosine_decay=False,
        grad_clip_norm=None,
        ema_decay=0.0,
        seed=seed,
        device=device,
        progress=False,
    )
    trainer = Trainer(
        MLP((2,), hidden=WIDTH, depth=3), loss, sample_source, sample_moons, coupling=ExactOTCoupling(), config=config
    )
    start = time.perf_counter()
    trainer.fit()
    synchronise(device)
    return trainer.model.eval(), steps / (time.perf_counter() - start)


def train_torchcfm(steps: int, seed: int, device: str = "cpu"):
    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
    from torchcfm.models import MLP as PeerMLP

    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the peer's OT sampler draws from numpy's global generator
    generator = torch.Generator().manual_seed(seed)
    model = PeerMLP(dim=2, w=WIDTH, time_varying=True).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    start = time.perf_counter()
    for _ in range(steps):
        x0, x1 = sample_source(BATCH, generator).to(device), sample_moons(BATCH, generator).to(device)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        loss = (model(torch.cat([xt, t[:, None]], dim=-1)) - ut).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    synchronise(device)
    rate = steps / (time.perf_counter() - start)

    field = _peer_field(model.state_dict())
    field.module = model
    return field, rate


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current resident memory (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _isolated(side: str, steps: int, seed: int, device: str = "cpu"):
    """Train one side in this (fresh) process; return its weights, rate and added peak memory in MiB.

    The memory is the peak resident memory of the timed run above the resident memory just before it, after the
    warm-up run: the warm-up has imported everything either side imports lazily (POT and its SciPy for the OT
    couplings, the peer's package) and grown the allocator's arenas, one-time costs that made the former
    measurement (peak since process start minus resident before the warm-up) read 88.9 MiB on one run and
    134.8 MiB on another for the same code."""
    train = train_ours if side == "ours" else train_torchcfm
    train(50, seed + 1, device)  # warm-up run, discarded: one-time library and allocator start-up is not throughput
    gc.collect()
    if device.startswith("cuda"):  # on a GPU: the allocator's own peak of device memory
        synchronise(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        before = _resident_mib()
        if not _reset_peak():  # pragma: no cover - kernels before 4.0, or no /proc
            raise OSError("cannot reset the peak resident memory (/proc/self/clear_refs): the bench needs Linux >= 4.0")
    model, rate = train(steps, seed, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.startswith("cuda") else _status_mib("VmHWM")
    module = model if isinstance(model, torch.nn.Module) else model.module
    weights = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return weights, rate, peak - before, peak


def _peer_field(state: dict):
    from torchcfm.models import MLP as PeerMLP

    model = PeerMLP(dim=2, w=WIDTH, time_varying=True)
    model.load_state_dict(state)

    def field(t, x):
        return model(torch.cat([x, torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0], 1)], dim=-1))

    return field


def run(steps: int = 2000, seed: int = 0, n_eval: int = 2000, device: str = "cpu") -> list[BenchRecord]:
    """On a GPU the memory recorded is the peak of torch's device allocator above what it held before the timed run
    (the host's resident memory on the CPU)."""
    context = multiprocessing.get_context("spawn")
    runs: dict[str, list] = {"ours": [], "peer": []}
    for _ in range(ROUNDS):  # the sides alternate, so a drift of the machine's speed hits both alike
        for side in ("ours", "peer"):
            with context.Pool(1) as pool:
                runs[side].append(pool.apply(_isolated, (side, steps, seed, device)))
    ours = MLP((2,), hidden=WIDTH, depth=3)
    ours.load_state_dict(runs["ours"][0][0])  # the same seed every round: the same weights
    peer = _peer_field(runs["peer"][0][0])
    ours_rate, peer_rate = (max(r[1] for r in runs[side]) for side in ("ours", "peer"))
    ours_memory, peer_memory = (statistics.median(r[2] for r in runs[side]) for side in ("ours", "peer"))
    ours_total, peer_total = (statistics.median(r[3] for r in runs[side]) for side in ("ours", "peer"))
    generator = torch.Generator().manual_seed(seed + 1)
    x0 = sample_source(n_eval, generator)
    target = sample_moons(n_eval, generator)
    with torch.no_grad():
        w2 = {
            name: wasserstein(integrate(model, x0, grids.uniform(100), RK4(), progress=False).final, target)
            for name, model in (("ours", ours), ("peer", peer))
        }
    case = f"8gaussians-moons/exact-ot/{steps}-steps" + ("" if device == "cpu" else f"/{device}")
    return [
        compare("training", case, "steps_per_second", ours_rate, "torchcfm", peer_rate, "higher"),
        compare(
            "training",
            case,
            "peak_added_memory_mib" if device == "cpu" else "peak_added_device_memory_mib",
            ours_memory,
            "torchcfm",
            peer_memory,
            "lower",
        ),
        compare("training", case, f"w2_{n_eval}_samples", w2["ours"], "torchcfm", w2["peer"], "lower"),
        compare(
            "training",
            case,
            "peak_process_memory_mib" if device == "cpu" else "peak_device_memory_mib",
            ours_total,
            "torchcfm",
            peer_total,
            "lower",
        ),
    ]
