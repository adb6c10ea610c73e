"""Flow and bridge matching through several snapshots (OT-CFM, [SF]²M): pairs, loss, held-out prediction, errors."""

from __future__ import annotations

import pytest
import torch

from interp.bridges import SnapshotMatching
from interp.bridges.snapshot_matching import SnapshotMatchingLoss
from interp.nets import MLP
from interp.train import TrainConfig

SHIFT = torch.tensor([2.0, -1.0])  # the population moves by SHIFT per unit of real time
TIMES = [0.0, 1.0, 3.0]  # uneven; the model never sees t = 2


def _snapshot(t, n, g):
    return torch.randn(n, 2, generator=g) + t * SHIFT


def _fit(seed, *, bridge, steps=800):
    g = torch.Generator().manual_seed(seed)
    snapshots = [_snapshot(t, 400, g) for t in TIMES]
    torch.manual_seed(seed)
    config = TrainConfig(steps=steps, batch_size=256, learning_rate=2e-3, ema_decay=0.99, seed=seed, progress=False)
    score = MLP((2,), hidden=64, depth=2) if bridge else None
    model = SnapshotMatching(MLP((2,), hidden=64, depth=2), score, sigma=0.3 if bridge else 0.05, config=config)
    model.fit(snapshots, TIMES, generator=g)
    return model, snapshots, g


def test_pairs_follow_the_exact_ot_plan_and_carry_their_interval_times():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 1, generator=g)
    b = 3 * torch.randn(50, 1, generator=g) + 1
    c = torch.randn(50, 1, generator=g) - 2
    model = SnapshotMatching(MLP((1,)), pairs_per_interval=300)
    x0, x1 = model.pairs([a, b, c], torch.tensor([0.0, 2.0, 8.0]), generator=g)
    assert x0.shape == x1.shape == (600, 2)
    # in one dimension the squared-distance OT plan is the monotone (quantile) matching
    for rows, start, end in ((slice(0, 300), a, b), (slice(300, 600), b, c)):
        rank0 = (x0[rows, :1] > start.T).sum(dim=1)  # rank of each pair's start in its snapshot
        rank1 = (x1[rows, :1] > end.T).sum(dim=1)
        assert torch.equal(rank0, rank1)
    assert torch.equal(x0[:300, 1], torch.zeros(300)) and torch.equal(x1[:300, 1], torch.full((300,), 0.25))
    assert torch.equal(x0[300:, 1], torch.full((300,), 0.25)) and torch.equal(x1[300:, 1], torch.ones(300))


def test_ot_cfm_loss_vanishes_at_the_exact_velocity_of_a_translation():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(64, 2, generator=g)
    s0, s1 = torch.full((64, 1), 0.25), torch.full((64, 1), 0.75)
    b = a + SHIFT
    loss = SnapshotMatchingLoss(0.1, bridge=False)
    exact = loss(lambda s, x: SHIFT.expand_as(x) / 0.5, torch.cat([a, s0], 1), torch.cat([b, s1], 1), g)
    wrong = loss(lambda s, x: SHIFT.expand_as(x), torch.cat([a, s0], 1), torch.cat([b, s1], 1), g)
    assert float(exact) < 1e-20 and float(wrong) > 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ot_cfm_predicts_an_unseen_time_of_a_moving_population(seed):
    model, _, g = _fit(seed, bridge=False)
    start = _snapshot(1.0, 2000, g)
    out = model.transport(start, 1.0, 2.0).final
    # the truth at t = 2 is N(2 SHIFT, I); the Monte-Carlo floor of the mean is 1/sqrt(2000) ≈ 0.02 per coordinate,
    # the budget 0.25 allows for the learned field's error
    assert torch.linalg.norm(out.mean(0) - 2 * SHIFT) < 0.25
    assert torch.allclose(out.std(0), torch.ones(2), atol=0.2)
    back = model.transport(out, 2.0, 0.0).final  # the ODE runs backwards too
    assert torch.linalg.norm(back.mean(0)) < 0.35


@pytest.mark.parametrize("seed", [0, 1])
def test_sf2m_bridge_sde_predicts_the_mean_of_an_unseen_time(seed):
    model, _, g = _fit(seed, bridge=True)
    start = _snapshot(1.0, 2000, g)
    out = model.transport(start, 1.0, 2.0, sde=True, generator=torch.Generator().manual_seed(seed)).final
    assert torch.isfinite(out).all()
    assert torch.linalg.norm(out.mean(0) - 2 * SHIFT) < 0.3
    # the Schrödinger bridge between N(m, I) and N(m', I) widens in between; with sigma 0.3 it stays near unit
    assert ((out.std(0) > 0.8) & (out.std(0) < 1.4)).all()


def test_snapshot_matching_rejects_bad_input():
    with pytest.raises(ValueError, match="needs the reference noise"):
        SnapshotMatching(MLP((2,)), MLP((2,)))
    with pytest.raises(ValueError, match="sigma must be"):
        SnapshotMatching(MLP((2,)), sigma=-1.0)
    with pytest.raises(ValueError, match="pairs_per_interval"):
        SnapshotMatching(MLP((2,)), pairs_per_interval=0)
    with pytest.raises(ValueError, match="span"):
        SnapshotMatchingLoss(0.1, bridge=False, span=0.0)
    model = SnapshotMatching(MLP((2,)), config=TrainConfig(steps=2, progress=False))
    with pytest.raises(RuntimeError, match="fit"):
        model.transport(torch.zeros(3, 2), 0.0, 1.0)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError):
        model.fit([torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)], [1.0, 0.0])
    model.fit([torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)], [0.0, 4.0], generator=g)
    with pytest.raises(ValueError, match="outside the fitted horizon"):
        model.transport(torch.zeros(3, 2), 0.0, 5.0)
    with pytest.raises(ValueError, match="must differ"):
        model.transport(torch.zeros(3, 2), 1.0, 1.0)
    with pytest.raises(ValueError, match="score network"):
        model.transport(torch.zeros(3, 2), 0.0, 1.0, sde=True)
