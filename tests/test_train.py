import pytest
import torch

from interp import grids, integrate
from interp.analytic import ExactMarginals, GaussianMixture
from interp.couplings import ExactOTCoupling
from interp.fields import LearnedField
from interp.interpolants import preset
from interp.losses import InterpolantLoss, Parameterisation
from interp.nets import MLP
from interp.solvers import RK4
from interp.train import TrainConfig, Trainer, TrainingError


def _problem(name="flow"):
    interpolant = preset(name)
    rho0 = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
    rho1 = GaussianMixture(torch.ones(2), torch.tensor([[0.0, 2.0], [0.0, -2.0]]), 0.2)
    return ExactMarginals(interpolant, rho0, rho1)


def _trainer(exact, steps, *, hidden=32, seed=0, **config):
    torch.manual_seed(seed)
    net = MLP((2,), hidden=hidden, depth=2)
    loss = InterpolantLoss(exact.interpolant, Parameterisation.VELOCITY)
    config.setdefault("batch_size", 64)
    cfg = TrainConfig(steps=steps, device="cpu", progress=False, seed=seed, **config)
    return Trainer(net, loss, exact.rho0.sample, exact.rho1.sample, config=cfg)



@pytest.mark.parametrize("warmup", [True, False])
def test_ema_warmup_forgets_the_initialisation(warmup):
    """The EMA's n-th update uses decay min(ema_decay, (1 + n) / (10 + n)) with the warm-up, the plain decay
    without: after k steps the initial weights keep the product of the decays (≈ 0 vs 0.999**k)."""
    exact = _problem()
    trainer = _trainer(exact, 40, ema_decay=0.999, ema_warmup=warmup)
    init = [p.detach().clone() for p in trainer.ema.parameters()]
    trainer.train_step()
    decay = 0.1 if warmup else 0.999
    for e, p, p0 in zip(trainer.ema.parameters(), trainer.model.parameters(), init, strict=True):
        assert torch.allclose(e, decay * p0 + (1 - decay) * p, atol=1e-12)
    for _ in range(29):
        trainer.train_step()
    kept = torch.tensor([(1 + n) / (10 + n) if warmup else 0.999 for n in range(30)]).prod()
    assert (kept < 1e-8) if warmup else (kept > 0.97)
    moved = sum((e - p0).norm() for e, p0 in zip(trainer.ema.parameters(), init, strict=True))
    trained = sum((p - p0).norm() for p, p0 in zip(trainer.model.parameters(), init, strict=True))
    assert (moved > 0.5 * trained) if warmup else (moved < 0.1 * trained)

def test_resume_is_bit_for_bit(tmp_path):
    exact = _problem()
    straight = _trainer(exact, 40)
    straight.fit()
    first = _trainer(exact, 40)
    for _ in range(20):  # stop half way (same schedule), as an interrupted run would
        first.result.losses.append(first.train_step())
    first.save(tmp_path / "ck.pt")
    resumed = _trainer(exact, 40)
    torch.manual_seed(123)  # the global RNG is not used: resuming must not depend on it
    resumed.load(tmp_path / "ck.pt")
    resumed.fit()
    assert resumed.result.losses == straight.result.losses
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(resumed.ema.parameters(), straight.ema.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("seed", [0, 1])
def test_learned_field_samples_the_target(seed):
    """After 1500 steps (~5 s): mean exact log-density of the samples within 0.5 nats of the target's (measured
    gaps -0.22 and -0.18), the two modes' masses within 4 standard errors of 1/2, score direction right."""
    exact = _problem()
    trainer = _trainer(exact, 1500, hidden=64, seed=seed, batch_size=256, learning_rate=3e-3, ema_decay=0.99)
    trainer.fit()
    field = LearnedField(exact.interpolant, {Parameterisation.VELOCITY: trainer.ema})
    with torch.no_grad():
        x0 = exact.rho0.sample(2000, torch.Generator().manual_seed(1))
        final = integrate(field.velocity, x0, grids.uniform(40), RK4(), progress=False).final
        reference = exact.rho1.sample(100000, torch.Generator().manual_seed(2))
        gap = float(exact.rho1.log_density(final).mean() - exact.rho1.log_density(reference).mean())
        # the trained score agrees in sign and scale with the exact one
        x = exact.sample(0.5, 500, torch.Generator().manual_seed(3))
        cosine = torch.nn.functional.cosine_similarity(field.score(0.5, x), exact.score(0.5, x)).mean()
    upper_mass = float((final[:, 1] > 0).double().mean())
    assert abs(gap) < 0.5
    assert abs(upper_mass - 0.5) < 4 * (0.25 / final.shape[0]) ** 0.5
    assert float(cosine) > 0.9


def test_learned_field_with_two_models_and_ot_coupling():
    exact = _problem("linear-brownian")
    models = {Parameterisation.MEAN_VELOCITY: exact.mean_velocity, Parameterisation.DENOISER: exact.denoiser}
    field = LearnedField(exact.interpolant, models)
    x = exact.sample(0.4, 50, torch.Generator().manual_seed(0))
    assert torch.allclose(field.velocity(0.4, x), exact.velocity(0.4, x), atol=1e-9)
    trainer = Trainer(
        MLP((2,), hidden=16, depth=1),
        InterpolantLoss(exact.interpolant, Parameterisation.VELOCITY),
        exact.rho0.sample(500, torch.Generator().manual_seed(0)),
        exact.rho1.sample,
        coupling=ExactOTCoupling(),
        config=TrainConfig(steps=5, batch_size=32, device="cpu", progress=False),
    )
    assert len(trainer.fit().losses) == 5


def test_non_finite_loss_names_the_step_and_keeps_the_checkpoint(tmp_path):
    exact = _problem()
    path = tmp_path / "ck.pt"
    trainer = _trainer(exact, 10, checkpoint_every=2, checkpoint_path=str(path))
    trainer.config.steps = 4
    trainer.fit()
    saved = torch.load(path, weights_only=True)["step"]
    trainer.config.steps = 10
    trainer.sample_x1 = lambda n, g: torch.full((n, 2), float("inf"))
    with pytest.raises((TrainingError, ValueError), match="finite"):
        trainer.fit()
    assert torch.load(path, weights_only=True)["step"] == saved == 4


def test_checkpoint_from_another_architecture_is_refused(tmp_path):
    exact = _problem()
    trainer = _trainer(exact, 2)
    trainer.fit()
    trainer.save(tmp_path / "ck.pt")
    other = Trainer(
        MLP((2,), hidden=8, depth=1),
        trainer.loss,
        exact.rho0.sample,
        exact.rho1.sample,
        config=TrainConfig(steps=2, device="cpu", progress=False),
    )
    with pytest.raises(ValueError, match="different architecture"):
        other.load(tmp_path / "ck.pt")


def test_bad_config_and_sources():
    with pytest.raises(ValueError, match="positive"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="checkpoint_path"):
        TrainConfig(checkpoint_every=5)
    exact = _problem()
    loss = InterpolantLoss(exact.interpolant, Parameterisation.VELOCITY)
    with pytest.raises(ValueError, match="non-empty"):
        Trainer(MLP((2,)), loss, torch.zeros(0, 2), exact.rho1.sample, config=TrainConfig(device="cpu"))
    with pytest.raises(TypeError, match="sampler"):
        Trainer(MLP((2,)), loss, "data.csv", exact.rho1.sample, config=TrainConfig(device="cpu"))
    with pytest.raises(ValueError, match="at least one model"):
        LearnedField(exact.interpolant, {})


def test_evaluation_hook_runs_on_schedule():
    exact = _problem()
    trainer = _trainer(exact, 6, eval_every=2)
    result = trainer.fit(evaluate=lambda t: {"step": t.step, "lr": t.optimiser.param_groups[0]["lr"]})
    assert [step for step, _ in result.evaluations] == [2, 4, 6]
    assert all(info["step"] == step for step, info in result.evaluations)
