"""Two CPU processes (gloo) train with the same global batch and seed as one process: same loss curve."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from interp.analytic import GaussianMixture
from interp.couplings import ExactOTCoupling
from interp.interpolants import preset
from interp.losses import InterpolantLoss, Parameterisation
from interp.nets import MLP
from interp.train import TrainConfig, Trainer

STEPS = 15


def _run(rank: int = 0) -> list[float]:
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    rho0 = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
    rho1 = GaussianMixture(torch.ones(2), torch.tensor([[0.0, 2.0], [0.0, -2.0]]), 0.2)
    loss = InterpolantLoss(preset("linear-brownian"), Parameterisation.VELOCITY)
    config = TrainConfig(steps=STEPS, batch_size=64, device="cpu", progress=False, seed=3)
    trainer = Trainer(
        MLP((2,), hidden=32, depth=2), loss, rho0.sample, rho1.sample, coupling=ExactOTCoupling(), config=config
    )
    return trainer.fit().losses


def _worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        losses = _run(rank)
        if rank == 0:
            torch.save(torch.tensor(losses), out)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one(tmp_path):
    out = str(tmp_path / "losses.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    one = torch.tensor(_run())
    # Same draws, same gradients up to the order of the sum over the batch: float64 rounding only.
    assert two.shape == one.shape == (STEPS,)
    assert torch.allclose(two, one, rtol=1e-9, atol=1e-12)
