r"""The methods compared on a held-out time point, each predicting the held-out population from the others.

A :class:`Fold` holds the training snapshots in the method space (the embedding divided by one scalar so that
coordinates have unit mean variance; time normalised to :math:`[0, 1]` over the training horizon). Every method
returns as many points as the snapshot just before the held-out time holds, so all predictions have one size.

* ``ot-cfm`` — interp's :class:`~interp.bridges.SnapshotMatching` (exact OT per interval, constant noise
  ``sigma_min``), the previous snapshot carried by the ODE (RK4).
* ``sf2m`` — the same with a score network ([SF]²M, reference noise ``sigma``), carried by the bridge SDE.
* ``mmsb`` — :class:`~interp.bridges.MultiMarginalBridge` with a :class:`~interp.bridges.GradientField` reference
  refined from the data; its particles at the held-out time.
* ``torchcfm`` (peer) — TorchCFM's ``ExactOptimalTransportConditionalFlowMatcher`` and ``MLP`` with the same width,
  depth, steps, batch and learning rate, trained as in TorchCFM's trajectory examples (per interval minibatch OT,
  Adam); integrated with the same RK4 grid as ours.
* ``nearest`` (baseline) — the observed snapshot nearest in time (ties: the earlier one).
* ``mccann`` (baseline) — OT displacement interpolation between the neighbouring snapshots (POT ``emd``):
  pairs :math:`(x, y)` drawn from the plan, :math:`(1-\lambda)x + \lambda y`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ot
import torch
from torch import Tensor

from interp import integrate
from interp.bridges import GradientField, MultiMarginalBridge, SnapshotMatching
from interp.nets import MLP
from interp.solvers import RK4
from interp.train import TrainConfig

INTERP_METHODS = ("ot-cfm", "sf2m", "mmsb")
PEERS = ("torchcfm",)
BASELINES = ("nearest", "mccann")
ALL_METHODS = INTERP_METHODS + PEERS + BASELINES


@dataclass
class MethodConfig:
    """Shared budget: every network has ``depth`` hidden layers of ``width``; every trained method takes ``steps``
    optimiser steps of ``batch`` rows at ``learning_rate``."""

    width: int = 64
    depth: int = 3
    steps: int = 2000
    batch: int = 256
    learning_rate: float = 1e-3
    ema_decay: float = 0.99
    sigma_min: float = 0.1
    sigma: float = 0.5
    mmsb_iterations: int = 10
    steps_per_unit: int = 100
    device: str = "cpu"

    def __post_init__(self):
        for name in ("width", "depth", "steps", "batch", "mmsb_iterations", "steps_per_unit"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        for name in ("learning_rate", "sigma"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a finite positive number; got {getattr(self, name)!r}")
        if not (math.isfinite(self.sigma_min) and self.sigma_min >= 0 and 0 <= self.ema_decay < 1):
            raise ValueError(f"need sigma_min >= 0 and 0 <= ema_decay < 1; got {self.sigma_min}, {self.ema_decay}")


@dataclass
class Fold:
    snapshots: list[Tensor]  # training snapshots in method space, float32
    times: Tensor  # their normalised times, float64, increasing from 0 to 1
    target: float  # the held-out normalised time
    previous: int  # index of the training snapshot just before the target

    @property
    def n_out(self) -> int:
        return self.snapshots[self.previous].shape[0]


def train_config(config: MethodConfig, seed: int) -> TrainConfig:
    """The :class:`~interp.train.TrainConfig` every interp method of the adapter trains with."""
    return TrainConfig(
        steps=config.steps,
        batch_size=config.batch,
        learning_rate=config.learning_rate,
        ema_decay=config.ema_decay,
        seed=seed,
        device=config.device,
        progress=False,
    )


def _mlp(dim: int, config: MethodConfig) -> MLP:
    return MLP((dim,), hidden=config.width, depth=config.depth).float()  # the folds are float32


def predict_matching(fold: Fold, config: MethodConfig, seed: int, *, bridge: bool) -> Tensor:
    dim = fold.snapshots[0].shape[1]
    torch.manual_seed(seed)
    flow = _mlp(dim, config)
    score = _mlp(dim, config) if bridge else None
    sigma = config.sigma if bridge else config.sigma_min
    model = SnapshotMatching(flow, score, sigma=sigma, config=train_config(config, seed))
    generator = torch.Generator().manual_seed(seed)
    model.fit(fold.snapshots, fold.times, generator=generator)
    start, t0 = fold.snapshots[fold.previous], float(fold.times[fold.previous])
    noise = torch.Generator(device=config.device).manual_seed(seed)
    out = model.transport(start, t0, fold.target, steps_per_unit=config.steps_per_unit, sde=bridge, generator=noise)
    return out.final.detach().cpu()


def predict_mmsb(fold: Fold, config: MethodConfig, seed: int) -> Tensor:
    dim = fold.snapshots[0].shape[1]
    torch.manual_seed(seed)
    device = torch.device(config.device)
    reference = GradientField(dim, hidden=config.width, depth=max(1, config.depth - 1)).to(device)
    bridge = MultiMarginalBridge(
        reference, config.sigma, iterations=config.mmsb_iterations, n_particles=fold.n_out, progress=False
    )
    snapshots = [x.to(device, torch.float64) for x in fold.snapshots]
    reference.double()
    generator = torch.Generator(device=device).manual_seed(seed)
    result = bridge.fit(snapshots, fold.times, record_times=[fold.target], generator=generator)
    return result.at(fold.target).detach().float().cpu()


def predict_torchcfm(fold: Fold, config: MethodConfig, seed: int) -> Tensor:
    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
    from torchcfm.models import MLP as PeerMLP

    dim, device = fold.snapshots[0].shape[1], torch.device(config.device)
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the peer's OT sampler draws from numpy's global generator
    net = PeerMLP(dim, w=config.width, time_varying=True).to(device, torch.float32)
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=config.sigma_min)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    snapshots = [x.to(device) for x in fold.snapshots]
    times = fold.times.to(device, torch.float32)
    intervals = len(snapshots) - 1
    per = max(1, config.batch // intervals)
    generator = torch.Generator(device=device).manual_seed(seed)
    for _ in range(config.steps):
        ts, xs, us = [], [], []
        for k in range(intervals):
            a, b = snapshots[k], snapshots[k + 1]
            x0 = a[torch.randint(a.shape[0], (per,), generator=generator, device=device)]
            x1 = b[torch.randint(b.shape[0], (per,), generator=generator, device=device)]
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            length = times[k + 1] - times[k]
            ts.append(times[k] + t * length)
            xs.append(xt)
            us.append(ut / length)
        t, xt, ut = torch.cat(ts), torch.cat(xs), torch.cat(us)
        loss = ((net(torch.cat([xt, t[:, None]], dim=1)) - ut) ** 2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    net.eval()

    def velocity(s, x):
        s = torch.as_tensor(s, dtype=x.dtype, device=x.device).expand(x.shape[0])
        return net(torch.cat([x, s[:, None]], dim=1))

    t0 = float(fold.times[fold.previous])
    n = max(1, int(np.ceil((fold.target - t0) * config.steps_per_unit)))
    grid = torch.linspace(t0, fold.target, n + 1, dtype=torch.float64)
    with torch.no_grad():
        out = integrate(velocity, snapshots[fold.previous], grid, RK4(), progress=False)
    return out.final.detach().cpu()


def predict_nearest(fold: Fold, config: MethodConfig, seed: int) -> Tensor:
    gaps = (fold.times - fold.target).abs()
    nearest = int(torch.argmin(gaps))  # argmin returns the first of equal gaps: the earlier snapshot
    return fold.snapshots[nearest].clone()


def predict_mccann(fold: Fold, config: MethodConfig, seed: int) -> Tensor:
    a, b = fold.snapshots[fold.previous].double(), fold.snapshots[fold.previous + 1].double()
    t0, t1 = float(fold.times[fold.previous]), float(fold.times[fold.previous + 1])
    lam = (fold.target - t0) / (t1 - t0)
    wa = torch.full((a.shape[0],), 1.0 / a.shape[0], dtype=torch.float64)
    wb = torch.full((b.shape[0],), 1.0 / b.shape[0], dtype=torch.float64)
    plan = ot.emd(wa, wb, torch.cdist(a, b) ** 2)
    generator = torch.Generator().manual_seed(seed)
    index = torch.multinomial(plan.reshape(-1).clamp(min=0), fold.n_out, replacement=True, generator=generator)
    i, j = index // b.shape[0], index % b.shape[0]
    return ((1 - lam) * a[i] + lam * b[j]).float()


PREDICT = {
    "ot-cfm": lambda fold, config, seed: predict_matching(fold, config, seed, bridge=False),
    "sf2m": lambda fold, config, seed: predict_matching(fold, config, seed, bridge=True),
    "mmsb": predict_mmsb,
    "torchcfm": predict_torchcfm,
    "nearest": predict_nearest,
    "mccann": predict_mccann,
}
