"""Training bench against TorchCFM: 8 Gaussians -> two moons with exact minibatch OT, side by side.

Both sides train an MLP of the same width and depth (3 hidden layers; TorchCFM's ``MLP`` uses SELU and feeds t
raw, ours SiLU and a sinusoidal embedding) with Adam at the same learning rate, batch and number of steps, on
the same data samplers, no EMA, clipping or schedule. Each side trains in its own fresh process, so the peak
resident memory it adds by training (``ru_maxrss`` after, minus resident memory before, warm-up included) is
its own; a discarded 50-step warm-up run precedes the timed one on both sides.

Recorded: training steps per second (higher is better), that added peak memory (lower is better), and the
exact W2 (POT ``emd2``) between 2000 samples of each model (RK4, 100 steps, from the same initial points) and
2000 held-out target points (lower is better). 2000 rather than 10k points: the exact W2 of 10k points takes
minutes per model here.

TorchCFM is installed with ``pip install --no-deps torchcfm`` (its matchers need only torch, POT, numpy).
"""

from __future__ import annotations

import multiprocessing
import resource
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

WIDTH, BATCH, LEARNING_RATE = 64, 256, 1e-3


def sample_source(n: int, generator: torch.Generator) -> torch.Tensor:
    return ring_mixture(n_modes=8, radius=4.0, std=0.5, dtype=torch.float32).sample(n, generator)


def sample_moons(n: int, generator: torch.Generator) -> torch.Tensor:
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    x, _ = make_moons(n, noise=0.2, random_state=seed)
    return torch.as_tensor(3.0 * (x - np.array([0.5, 0.25])), dtype=torch.float32)


def train_ours(steps: int, seed: int):
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
        device="cpu",
        progress=False,
    )
    trainer = Trainer(
        MLP((2,), hidden=WIDTH, depth=3), loss, sample_source, sample_moons, coupling=ExactOTCoupling(), config=config
    )
    start = time.perf_counter()
    trainer.fit()
    return trainer.model.eval(), steps / (time.perf_counter() - start)


def train_torchcfm(steps: int, seed: int):
    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
    from torchcfm.models import MLP as PeerMLP

    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the peer's OT sampler draws from numpy's global generator
    generator = torch.Generator().manual_seed(seed)
    model = PeerMLP(dim=2, w=WIDTH, time_varying=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    start = time.perf_counter()
    for _ in range(steps):
        x0, x1 = sample_source(BATCH, generator), sample_moons(BATCH, generator)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        loss = (model(torch.cat([xt, t[:, None]], dim=-1)) - ut).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    rate = steps / (time.perf_counter() - start)

    field = _peer_field(model.state_dict())
    field.module = model
    return field, rate


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _isolated(side: str, steps: int, seed: int):
    """Train one side in this (fresh) process; return its weights, rate and added peak memory in MiB."""
    train = train_ours if side == "ours" else train_torchcfm
    before = _resident_mib()
    train(50, seed + 1)  # warm-up run, discarded: one-time library and allocator start-up is not throughput
    model, rate = train(steps, seed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    module = model if isinstance(model, torch.nn.Module) else model.module
    return {k: v.clone() for k, v in module.state_dict().items()}, rate, peak - before


def _peer_field(state: dict):
    from torchcfm.models import MLP as PeerMLP

    model = PeerMLP(dim=2, w=WIDTH, time_varying=True)
    model.load_state_dict(state)

    def field(t, x):
        return model(torch.cat([x, torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0], 1)], dim=-1))

    return field


def run(steps: int = 2000, seed: int = 0, n_eval: int = 2000) -> list[BenchRecord]:
    context = multiprocessing.get_context("spawn")
    results = {}
    for side in ("ours", "peer"):
        with context.Pool(1) as pool:
            results[side] = pool.apply(_isolated, (side, steps, seed))
    ours = MLP((2,), hidden=WIDTH, depth=3)
    ours.load_state_dict(results["ours"][0])
    peer = _peer_field(results["peer"][0])
    (_, ours_rate, ours_memory), (_, peer_rate, peer_memory) = results["ours"], results["peer"]
    generator = torch.Generator().manual_seed(seed + 1)
    x0 = sample_source(n_eval, generator)
    target = sample_moons(n_eval, generator)
    with torch.no_grad():
        w2 = {
            name: wasserstein(integrate(model, x0, grids.uniform(100), RK4(), progress=False).final, target)
            for name, model in (("ours", ours), ("peer", peer))
        }
    case = f"8gaussians-moons/exact-ot/{steps}-steps"
    return [
        compare("training", case, "steps_per_second", ours_rate, "torchcfm", peer_rate, "higher"),
        compare("training", case, "peak_added_memory_mib", ours_memory, "torchcfm", peer_memory, "lower"),
        compare("training", case, f"w2_{n_eval}_samples", w2["ours"], "torchcfm", w2["peer"], "lower"),
    ]
