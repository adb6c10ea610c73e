"""Hostile and careless input against every public entry point, as a table (docs/design.md, "Reliability").

Each row is one input a user could plausibly give. It either raises the exception type the policy names, with a
phrase of its message that tells the user what to change, or returns the correct value (checked against an
answer computed another way). A row that starts to pass silently, or fails with torch's or a library's raw
error instead, fails here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import interp
from interp import GradientError, grids, integrate
from interp.analytic import Banana, ExactMarginals, Funnel, GaussianMixture
from interp.bridges import GaussianBridge, MultiMarginalBridge, check_snapshots
from interp.brownian import BrownianPath
from interp.couplings import EntropicOTCoupling, ExactOTCoupling
from interp.density import field_divergence, ito_log_density, log_likelihood, ode_log_density
from interp.dynamics import SDE
from interp.feynman_kac import BaseSampler, best_of_n, fk_steer, posterior_sample, svdd, weighted_resample
from interp.fields import Parameterisation
from interp.interpolants import Interpolant, preset
from interp.inverse import (
    Downsample,
    Mask,
    Matrix,
    Measurement,
    Nonlinear,
    Prior,
    box_mask,
    ensemble_sample,
    guided_sample,
    red_diff,
)
from interp.langevin import BAOAB, MALA, ULA, AnnealedLangevin, LangevinTarget, run_chains
from interp.losses import InterpolantLoss
from interp.metrics import energy_distance, mmd, sliced_wasserstein2, wasserstein
from interp.nets import MLP
from interp.results import Trajectory
from interp.schedules import CustomSchedule, LinearSchedule, VPSchedule
from interp.smc import DegenerateWeightsError, ResamplePolicy, effective_sample_size, resample_indices
from interp.solvers import (
    DEIS,
    RK4,
    DPMSolverPP,
    Euler,
    EulerMaruyama,
    Heun,
    Torchdiffeq,
    Torchsde,
    UniPC,
)
from interp.stepping import ConvergenceError, NonFiniteStateError
from interp.superposition import superpose
from interp.train import CheckpointError, TrainConfig, Trainer, resolve_device
from interp.wgf import svgd, wgf

F64 = torch.float64


@dataclass
class Case:
    """``call(tmp)`` must raise ``error`` with ``phrase`` in its message, or (``error=None``) return a value
    for which ``check(value)`` is true."""

    area: str
    name: str
    call: object
    error: type | None = None
    phrase: str = ""
    check: object = None
    changed: bool = False  # this row needed a code change in the reliability work (counted in the closing note)


def _x(n=8, d=2, seed=0, dtype=F64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _gm():
    return GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[2.0, 0.0], [-1.0, 1.0]]), 0.5)


def _standard():
    return GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)


def _exact(name="linear"):
    return ExactMarginals(preset(name), _standard(), _gm())


def _gaussian_log_density(x):
    return -0.5 * (x**2).sum(1) - x.shape[1] * 0.5 * math.log(2 * math.pi)


def _trainer(tmp, **config):
    exact = _exact()
    options = dict(steps=3, batch_size=16, device="cpu", progress=False)
    options.update(config)
    return Trainer(
        MLP((2,), hidden=8, depth=1),
        InterpolantLoss(preset("linear"), Parameterisation.VELOCITY),
        exact.rho0.sample,
        exact.rho1.sample,
        config=TrainConfig(**options),
    )


def _checkpoint(tmp):
    trainer = _trainer(tmp)
    trainer.fit()
    path = Path(tmp) / "ck.pt"
    trainer.save(path)
    return path


def _bytes_file(tmp, name, data: bytes):
    path = Path(tmp) / name
    path.write_bytes(data)
    return path


def _truncated(tmp):
    path = _checkpoint(tmp)
    data = path.read_bytes()
    return _bytes_file(tmp, "cut.pt", data[: len(data) // 2])


def _state_dict_only(tmp):
    path = Path(tmp) / "sd.pt"
    torch.save(MLP((2,), hidden=8, depth=1).state_dict(), path)
    return path


def _load(tmp, path, **config):
    trainer = _trainer(tmp, **config)
    trainer.load(path)
    return trainer


def _resume_other_lr(tmp):
    path = _checkpoint(tmp)
    _load(tmp, path, learning_rate=0.5)


def _resume_override(tmp):
    path = _checkpoint(tmp)
    trainer = _trainer(tmp, learning_rate=0.5)
    trainer.load(path, override=("learning_rate",))
    return trainer


def _ode_loglik_error(field, **options):
    """|log-likelihood error| of N(0, I) data pushed by ``field`` against the exact answer, nats."""
    x = _x(16)
    exact_flow = log_likelihood(lambda t, z: -z, x, _gaussian_log_density, grids.uniform(20), RK4(), **options)
    out = log_likelihood(field, x, _gaussian_log_density, grids.uniform(20), RK4(), **options)
    return float((out.extras["log_density"][-1] - exact_flow.extras["log_density"][-1]).abs().max())


def _no_grad_field(t, z):
    with torch.no_grad():
        return -z


def _numpy_field(t, z):
    return torch.from_numpy(-z.detach().numpy())


def _inference_mode_loglik():
    with torch.inference_mode():
        return _ode_loglik_error(lambda t, z: -z)


def _ito_no_grad_score():
    vp = preset("vp")
    exact = ExactMarginals(vp, _standard(), _gm())
    x = _x(8)
    return ito_log_density(
        lambda t, z: exact.score(t, z).detach(),
        x,
        grids.uniform(10, 0.0, vp.time_range[1]),
        velocity=exact.velocity,
        interpolant=vp,
        scheme="trapezoid",
    )


def _float64_time_error():
    """A Python-float time and a float64 tensor time give the same float64 field, under a float32 default."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        exact, x = _exact("vp"), _x(5)
        return float((exact.velocity(0.3, x) - exact.velocity(torch.tensor(0.3, dtype=F64), x)).abs().max())
    finally:
        torch.set_default_dtype(previous)


def _bridge_time_error():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        eye = torch.eye(2, dtype=F64)
        bridge = GaussianBridge(torch.zeros(2, dtype=F64), eye, torch.ones(2, dtype=F64), 2 * eye, 0.5)
        x = _x(5)
        drift = (bridge.drift(0.3, x) - bridge.drift(torch.tensor(0.3, dtype=F64), x)).abs().max()
        mean = (bridge.marginal(0.3)[0] - bridge.marginal(torch.tensor(0.3, dtype=F64))[0]).abs().max()
        return float(max(drift, mean))
    finally:
        torch.set_default_dtype(previous)


def _ot_scale_10():
    g = torch.Generator().manual_seed(0)
    x0 = 10 * torch.randn(128, 5, generator=g, dtype=F64)
    x1 = 10 * torch.randn(128, 5, generator=g, dtype=F64) + 3
    coupling = EntropicOTCoupling(0.01)
    with pytest.warns(UserWarning, match="epsilon_scaling"):
        plan = coupling.plan(x0, x1)
    return plan


def _marginals_ok(plan):
    n = plan.shape[0]
    return bool(((plan.sum(0) * n - 1).abs().max() < 1e-2) and ((plan.sum(1) * n - 1).abs().max() < 1e-2))


def _sinkhorn_capped():
    g = torch.Generator().manual_seed(0)
    x0, x1 = 10 * torch.randn(64, 3, generator=g, dtype=F64), torch.randn(64, 3, generator=g, dtype=F64)
    coupling = EntropicOTCoupling(1e-3, max_iterations=1, tolerance=1e-300, method="sinkhorn_epsilon_scaling")
    return coupling.plan(x0, x1)


def _base():
    vp = preset("vp")
    return BaseSampler(vp, ExactMarginals(vp, _standard(), _gm()).score)


def _vp_grid(n=10):
    return torch.linspace(0.0, preset("vp").time_range[1], n + 1, dtype=F64)


def _reward(x):
    return -x.pow(2).sum(1)


def _traj(states):
    grid = torch.linspace(0, 1, states.shape[0], dtype=F64)
    return Trajectory(grid, states, grid, "euler", states.shape[0] - 1)


def _netcdf_roundtrip(tmp, dtype):
    path = Path(tmp) / "t.nc"
    _traj(torch.randn(3, 4, 2).to(dtype)).to_netcdf(path)
    return Trajectory.load_dataset(path)


def _nan_after(t_bad):
    def field(t, x):
        return x * math.nan if float(t) > t_bad else -x

    return field



def _inverse_prior():
    return Prior.from_field(_exact("vp"))


def _inverse_measurement(noise_std=0.1, operator=None):
    return Measurement(operator or Matrix(torch.ones(1, 2, dtype=F64)), torch.tensor([0.5], dtype=F64), noise_std)


def _nonlinear_measurement():
    op = Nonlinear(lambda x: (x**2).sum(1, keepdim=True), (2,), (1,))
    return Measurement(op, torch.tensor([1.0], dtype=F64), 0.1)


def _cli(argv_module, argv):
    import importlib

    module = importlib.import_module(argv_module)
    try:
        return module.main(argv)
    except SystemExit as stop:
        return stop.code


def _cli_line(capsys, module, argv):
    status = _cli(module, argv)
    err = capsys.readouterr().err.strip().splitlines()
    return status, (err[-1] if err else "")


def _mala_nan_target():
    def log_density(x):
        value = -0.5 * x.pow(2).sum(1)
        return torch.where(x[:, 0] > 1.5, torch.full_like(value, math.nan), value)

    return run_chains(MALA(0.5), log_density, _x(16), 200, generator=torch.Generator().manual_seed(0), progress=False)


def _ula_detached():
    return run_chains(ULA(0.1), lambda x: -x.detach().pow(2).sum(1), _x(4), 5, progress=False)


def _constant_log_density_score():
    chains = run_chains(ULA(0.01), lambda x: torch.zeros(x.shape[0], dtype=x.dtype), _x(4), 3, progress=False)
    return chains


def _constant_field_divergence():
    return field_divergence(lambda t, z: torch.ones_like(z), 0.5, _x(4))[1]


# fmt: off
CASES = [
    # ------------------------------------------------------------------ gradients (policy a)
    Case("density", "detached field: no silent divergence 0", lambda tmp: _ode_loglik_error(lambda t, z: -z.detach()),
         GradientError, "carries no gradient", changed=True),
    Case("density", "field under torch.no_grad", lambda tmp: _ode_loglik_error(_no_grad_field), GradientError,
         "no gradient", changed=True),
    Case("density", "field through numpy", lambda tmp: _ode_loglik_error(_numpy_field), GradientError,
         "outside torch", changed=True),
    Case("density", "caller under inference_mode gets the right likelihood", lambda tmp: _inference_mode_loglik(),
         check=lambda v: v < 1e-12, changed=True),
    Case("density", "constant field: divergence truly 0", lambda tmp: _constant_field_divergence(),
         check=lambda v: bool((v == 0).all())),
    Case("density", "Itô trapezoid with a detached score", lambda tmp: _ito_no_grad_score(), GradientError,
         "no gradient", changed=True),
    Case("density", "field_divergence of a field returning the wrong shape",
         lambda tmp: field_divergence(lambda t, z: z[:, :1], 0.5, _x(4)), ValueError, "returned (4, 1)"),
    Case("density", "unknown divergence option",
         lambda tmp: ode_log_density(lambda t, z: -z, _x(4), grids.uniform(4), divergence="magic"), ValueError,
         "divergence"),
    Case("density", "n_probes zero",
         lambda tmp: ode_log_density(lambda t, z: -z, _x(4), grids.uniform(4), divergence="hutchinson", n_probes=0),
         ValueError, "n_probes"),
    Case("density", "NaN data", lambda tmp: log_likelihood(lambda t, z: -z, torch.full((3, 2), math.nan, dtype=F64),
         _gaussian_log_density, grids.uniform(4)), ValueError, "finite"),
    Case("langevin", "detached log-density is not a zero score", lambda tmp: _ula_detached(), GradientError,
         "no gradient", changed=True),
    Case("langevin", "constant log-density: zero score, chains stay", lambda tmp: _constant_log_density_score(),
         check=lambda c: bool(torch.isfinite(c.draws).all()), changed=True),
    Case("feynman-kac", "detached likelihood in posterior sampling", lambda tmp: posterior_sample(
         preset("vp"), ExactMarginals(preset("vp"), _standard(), _gm()).score, lambda x: -x.detach().pow(2).sum(1),
         _vp_grid(), start=_x(8)), GradientError, "no gradient", changed=True),
    Case("diagnostics", "jacobian of a detached field", lambda tmp: interp.diagnostics.jacobian(
         lambda z: -z.detach(), _x(4)), GradientError, "no gradient", changed=True),
    Case("diagnostics", "jacobian of a constant field is 0", lambda tmp: interp.diagnostics.jacobian(
         lambda z: torch.ones_like(z), _x(4)), check=lambda j: bool((j == 0).all())),
    Case("diagnostics", "Jacobian of an autograd score is the Hessian, not a detached 0",
         lambda tmp: _banana_hessian_error(), check=lambda v: v < 1e-8, changed=True),
    Case("analytic", "score under inference_mode", lambda tmp: _inference_score(), check=lambda v: v < 1e-12,
         changed=True),
    # ------------------------------------------------------------------ dtypes (policy b)
    Case("analytic", "Python-float t keeps float64 (ExactMarginals)", lambda tmp: _float64_time_error(),
         check=lambda v: v == 0, changed=True),
    Case("bridges", "Python-float t keeps float64 (GaussianBridge)", lambda tmp: _bridge_time_error(),
         check=lambda v: v == 0, changed=True),
    Case("analytic", "float16 log-density computed, returned in float16",
         lambda tmp: _gm().log_density(_x(6).half()), check=lambda v: v.dtype == torch.float16 and bool(
             ((v.double() - _gm().log_density(_x(6).half().double())).abs() < 0.05).all()), changed=True),
    Case("analytic", "bfloat16 velocity computed, returned in bfloat16",
         lambda tmp: _exact("vp").velocity(0.5, _x(6).bfloat16()), check=lambda v: v.dtype == torch.bfloat16
         and bool(((v.double() - _exact("vp").velocity(0.5, _x(6).bfloat16().double())).abs() < 0.1).all()),
         changed=True),
    Case("analytic", "float16 score of a mixture", lambda tmp: _gm().score(_x(6).half()),
         check=lambda v: v.dtype == torch.float16 and bool(torch.isfinite(v).all()), changed=True),
    Case("results", "bfloat16 trajectory to netCDF (as float32)", lambda tmp: _netcdf_roundtrip(tmp, torch.bfloat16),
         check=lambda ds: str(ds["x"].dtype) == "float32", changed=True),
    Case("results", "float16 trajectory written to netCDF", lambda tmp: _netcdf_roundtrip(tmp, torch.float16),
         check=lambda ds: str(ds["x"].dtype) == "float16"),
    Case("nets", "MLP with float16 input", lambda tmp: MLP((2,), hidden=8, depth=1)(0.5, _x(3, dtype=torch.float16)),
         TypeError, "net.to(", changed=True),
    Case("nets", "MLP with float64 input, float32 weights", lambda tmp: MLP((2,), 8, 1).float()(0.5, _x(3)),
         TypeError, "parameters are torch.float32", changed=True),
    Case("nets", "MLP with the wrong state shape", lambda tmp: MLP((2,), hidden=8, depth=1)(0.5, _x(3, 3).float()),
         ValueError, "x must have shape"),
    Case("nets", "MLP with an integer input", lambda tmp: MLP((2,), hidden=8, depth=1)(0.5, torch.ones(3, 2,
         dtype=torch.long)), TypeError, "net.to("),
    Case("nets", "MLP with zero depth", lambda tmp: MLP((2,), hidden=8, depth=0), ValueError, "positive"),
    Case("nets", "MLP with an empty state shape", lambda tmp: MLP(()), ValueError, "state_shape"),
    # ------------------------------------------------------------------ training and checkpoints (policy d)
    Case("train", "negative grad_clip_norm (gradient ascent)", lambda tmp: TrainConfig(grad_clip_norm=-1),
         ValueError, "grad_clip_norm", changed=True),
    Case("train", "zero grad_clip_norm (frozen)", lambda tmp: TrainConfig(grad_clip_norm=0), ValueError,
         "None for no clipping", changed=True),
    Case("train", "NaN grad_clip_norm", lambda tmp: TrainConfig(grad_clip_norm=math.nan), ValueError,
         "grad_clip_norm", changed=True),
    Case("train", "infinite learning rate", lambda tmp: TrainConfig(learning_rate=math.inf), ValueError,
         "learning_rate", changed=True),
    Case("train", "zero learning rate", lambda tmp: TrainConfig(learning_rate=0.0), ValueError, "learning_rate"),
    Case("train", "negative weight decay", lambda tmp: TrainConfig(weight_decay=-0.1), ValueError, "weight_decay",
         changed=True),
    Case("train", "fractional steps", lambda tmp: TrainConfig(steps=2.5), ValueError, "steps", changed=True),
    Case("train", "zero batch size", lambda tmp: TrainConfig(batch_size=0), ValueError, "batch_size"),
    Case("train", "negative warmup", lambda tmp: TrainConfig(warmup_steps=-1), ValueError, "warmup_steps",
         changed=True),
    Case("train", "ema_decay 1", lambda tmp: TrainConfig(ema_decay=1.0), ValueError, "ema_decay"),
    Case("train", "negative seed", lambda tmp: TrainConfig(seed=-3), ValueError, "seed", changed=True),
    Case("train", "checkpoint_every without a path", lambda tmp: TrainConfig(checkpoint_every=5), ValueError,
         "checkpoint_path"),
    Case("train", "device 'tpu'", lambda tmp: resolve_device("tpu"), ValueError, "device", changed=True),
    Case("train", "device cuda without CUDA", lambda tmp: _no_cuda(lambda: resolve_device("cuda")), ValueError,
         "no CUDA", changed=True),
    Case("train", "a model that is not a Module", lambda tmp: Trainer(lambda t, x: x, InterpolantLoss(
         preset("linear"), Parameterisation.VELOCITY), _x(), _x()), TypeError, "torch.nn.Module"),
    Case("train", "NaN training data", lambda tmp: Trainer(MLP((2,), 8, 1), InterpolantLoss(
         preset("linear"), Parameterisation.VELOCITY), torch.full((4, 2), math.nan), _x().float()), ValueError,
         "finite"),
    Case("train", "batch size not divisible (single process: fine)", lambda tmp: _trainer(tmp, batch_size=7),
         check=lambda t: t.config.batch_size == 7),
    Case("checkpoint", "missing file", lambda tmp: _load(tmp, Path(tmp) / "absent.pt"), CheckpointError,
         "does not exist", changed=True),
    Case("checkpoint", "empty file", lambda tmp: _load(tmp, _bytes_file(tmp, "e.pt", b"")), CheckpointError,
         "is empty", changed=True),
    Case("checkpoint", "truncated file", lambda tmp: _load(tmp, _truncated(tmp)), CheckpointError,
         "truncated or corrupt", changed=True),
    Case("checkpoint", "random bytes", lambda tmp: _load(tmp, _bytes_file(tmp, "r.pt", bytes(range(256)) * 16)),
         CheckpointError, "loads safely", changed=True),
    Case("checkpoint", "a damaged zip archive", lambda tmp: _load(tmp, _bytes_file(tmp, "z.pt", b"PK\x03\x04" +
         bytes(100))), CheckpointError, "truncated or corrupt", changed=True),
    Case("checkpoint", "a bare state_dict", lambda tmp: _load(tmp, _state_dict_only(tmp)), CheckpointError,
         "bare model state_dict", changed=True),
    Case("checkpoint", "a folder", lambda tmp: _load(tmp, Path(tmp)), CheckpointError, "not a file", changed=True),
    Case("checkpoint", "resume with another learning rate", lambda tmp: _resume_other_lr(tmp), CheckpointError,
         "learning_rate: checkpoint 0.001, now 0.5", changed=True),
    Case("checkpoint", "resume with a named override", lambda tmp: _resume_override(tmp),
         check=lambda t: abs(t.scheduler.base_lrs[0] - 0.5) < 1e-15 and t.step == 3, changed=True),
    Case("checkpoint", "override of a field TrainConfig lacks", lambda tmp: _trainer(tmp).load(
         _checkpoint(tmp), override=("lr",)), ValueError, "does not have", changed=True),
    Case("checkpoint", "another architecture", lambda tmp: _other_architecture(tmp), CheckpointError,
         "different architecture", changed=True),
    # ------------------------------------------------------------------ iterative solvers (policy e)
    Case("couplings", "entropic OT, epsilon 0.01 on data of scale 10: marginals met", lambda tmp: _ot_scale_10(),
         check=_marginals_ok, changed=True),
    Case("couplings", "entropic OT that cannot converge", lambda tmp: _sinkhorn_capped(), ConvergenceError,
         "missed the marginals", changed=True),
    Case("couplings", "entropic OT epsilon 0", lambda tmp: EntropicOTCoupling(0.0), ValueError, "epsilon"),
    Case("couplings", "entropic OT epsilon NaN", lambda tmp: EntropicOTCoupling(math.nan), ValueError, "epsilon",
         changed=True),
    Case("couplings", "entropic OT unknown method", lambda tmp: EntropicOTCoupling(0.1, method="fast"), ValueError,
         "method", changed=True),
    Case("couplings", "entropic OT zero iterations", lambda tmp: EntropicOTCoupling(0.1, max_iterations=0),
         ValueError, "max_iterations", changed=True),
    Case("couplings", "exact OT with too few iterations", lambda tmp: ExactOTCoupling(max_iterations=3).plan(
         _x(40), _x(40, seed=1)), ConvergenceError, "before optimality", changed=True),
    Case("couplings", "exact OT zero iterations", lambda tmp: ExactOTCoupling(0), ValueError, "max_iterations",
         changed=True),
    Case("couplings", "coupling of batches of different widths", lambda tmp: ExactOTCoupling().plan(
         _x(4), _x(4, 3)), (ValueError, RuntimeError), ""),
    Case("solvers", "dopri5 on a field that turns NaN", lambda tmp: integrate(_nan_after(0.3), _x(4),
         grids.uniform(2), Torchdiffeq("dopri5")), NonFiniteStateError, "non-finite", changed=True),
    Case("solvers", "dopri5 on a stiff field hits its cap", lambda tmp: integrate(lambda t, x: -1e8 * x, _x(4),
         grids.uniform(2), Torchdiffeq("dopri5", rtol=1e-12, atol=1e-12, max_evaluations=2000)), ConvergenceError,
         "more than 2000 field evaluations", changed=True),
    Case("solvers", "torchsde on a drift that turns NaN", lambda tmp: integrate(SDE(_nan_after(0.3),
         lambda t, x: torch.ones_like(x)), _x(4), grids.uniform(4), Torchsde("euler", dt=0.05)),
         NonFiniteStateError, "non-finite", changed=True),
    Case("solvers", "torchdiffeq unknown method", lambda tmp: Torchdiffeq("dopri6"), ValueError, "dopri6"),
    Case("solvers", "torchdiffeq NaN tolerance", lambda tmp: Torchdiffeq(rtol=math.nan), ValueError, "rtol",
         changed=True),
    Case("solvers", "torchdiffeq zero evaluation cap", lambda tmp: Torchdiffeq(max_evaluations=0), ValueError,
         "max_evaluations", changed=True),
    Case("solvers", "torchsde infinite dt", lambda tmp: Torchsde(dt=math.inf), ValueError, "dt", changed=True),
    Case("solvers", "torchsde unknown method", lambda tmp: Torchsde("rk45"), ValueError, "rk45"),
    Case("solvers", "torchsde Stratonovich method on multiplicative noise", lambda tmp: integrate(
         SDE(lambda t, x: -x, lambda t, x: x), _x(4), grids.uniform(4), Torchsde("midpoint")), ValueError,
         "additive"),
    # ------------------------------------------------------------------ driver and fixed-step solvers
    Case("driver", "SDE diffusion of shape (3,) for a (4, 2) state", lambda tmp: integrate(SDE(lambda t, x: -x,
         lambda t, x: torch.ones(3, dtype=x.dtype)), _x(4), grids.uniform(4), EulerMaruyama()), ValueError,
         "diffusion returned (3,)", changed=True),
    Case("driver", "SDE diffusion of shape (batch, 1) is fine", lambda tmp: integrate(SDE(lambda t, x: -x,
         lambda t, x: torch.ones(x.shape[0], 1, dtype=x.dtype)), _x(4), grids.uniform(4), EulerMaruyama()),
         check=lambda tr: tr.final.shape == (4, 2)),
    Case("driver", "Brownian path of another shape", lambda tmp: integrate(SDE(lambda t, x: -x,
         lambda t, x: torch.ones_like(x)), _x(4), grids.uniform(4), EulerMaruyama(),
         brownian=BrownianPath(0.0, 1.0, (3, 2), n_steps=4)), ValueError, "brownian has shape (3, 2)",
         changed=True),
    Case("driver", "Brownian path that is not one", lambda tmp: integrate(SDE(lambda t, x: -x,
         lambda t, x: torch.ones_like(x)), _x(4), grids.uniform(4), EulerMaruyama(), brownian=torch.zeros(4, 2)),
         TypeError, "BrownianPath", changed=True),
    Case("driver", "record='all'", lambda tmp: integrate(lambda t, x: -x, _x(4), grids.uniform(4), Euler(),
         record="all"), TypeError, "record must be True", changed=True),
    Case("driver", "record a time off the grid", lambda tmp: integrate(lambda t, x: -x, _x(4), grids.uniform(4),
         Euler(), record=[0.3]), ValueError, "not a point of the grid"),
    Case("driver", "field returning the wrong shape", lambda tmp: integrate(lambda t, x: x[:, :1], _x(4),
         grids.uniform(4), Euler()), ValueError, "returned (4, 1)"),
    Case("driver", "field returning a number", lambda tmp: integrate(lambda t, x: 1.0, _x(4), grids.uniform(4),
         Euler()), ValueError, "returned float"),
    Case("driver", "field that explodes", lambda tmp: integrate(lambda t, x: 1e200 * x * x, _x(4),
         grids.uniform(8), Euler()), NonFiniteStateError, "step"),
    Case("driver", "NaN initial state", lambda tmp: integrate(lambda t, x: -x, torch.full((4, 2), math.nan,
         dtype=F64), grids.uniform(4), Euler()), ValueError, "finite"),
    Case("driver", "integer initial state", lambda tmp: integrate(lambda t, x: -x, torch.ones(4, 2,
         dtype=torch.long), grids.uniform(4), Euler()), TypeError, "floating-point"),
    Case("driver", "scalar initial state", lambda tmp: integrate(lambda t, x: -x, torch.tensor(1.0),
         grids.uniform(4), Euler()), ValueError, "batch dimension"),
    Case("driver", "numpy initial state", lambda tmp: integrate(lambda t, x: -x, np.ones((4, 2)),
         grids.uniform(4), Euler()), TypeError, "torch.Tensor"),
    Case("driver", "a solver that is not one", lambda tmp: integrate(lambda t, x: -x, _x(4), grids.uniform(4),
         "rk4"), TypeError, "interp solver"),
    Case("driver", "ODE solver given an SDE", lambda tmp: integrate(SDE(lambda t, x: -x, lambda t, x: 1.0 + 0 * x),
         _x(4), grids.uniform(4), Heun()), (TypeError, ValueError), "SDE"),
    Case("driver", "SDE solver given a plain field", lambda tmp: integrate(lambda t, x: -x, _x(4),
         grids.uniform(4), EulerMaruyama()), (TypeError, ValueError), "SDE"),
    Case("driver", "non-monotone grid", lambda tmp: integrate(lambda t, x: -x, _x(4), torch.tensor(
         [0.0, 0.5, 0.3, 1.0], dtype=F64), Euler()), ValueError, "strictly increasing"),
    Case("driver", "grid with a repeated time", lambda tmp: integrate(lambda t, x: -x, _x(4), torch.tensor(
         [0.0, 0.5, 0.5, 1.0], dtype=F64), Euler()), ValueError, "strictly increasing"),
    Case("driver", "grid of one point", lambda tmp: integrate(lambda t, x: -x, _x(4), torch.tensor([0.0]),
         Euler()), ValueError, "at least two"),
    Case("driver", "grid with NaN", lambda tmp: integrate(lambda t, x: -x, _x(4), torch.tensor([0.0, math.nan]),
         Euler()), ValueError, "finite"),
    Case("driver", "2-D grid", lambda tmp: integrate(lambda t, x: -x, _x(4), torch.zeros(2, 2), Euler()),
         ValueError, "1-D"),
    Case("grids", "uniform with zero steps", lambda tmp: grids.uniform(0), ValueError, "n_steps"),
    Case("grids", "uniform with fractional steps", lambda tmp: grids.uniform(2.5), ValueError, "n_steps"),
    Case("grids", "quadratic with negative steps", lambda tmp: grids.quadratic(-1), ValueError, "n_steps"),
    Case("grids", "inverting a schedule at a value it never takes", lambda tmp: grids.invert_monotone(
         lambda t: t**2, torch.tensor([2.0], dtype=F64), 0.0, 1.0), ValueError, "range", changed=True),
    Case("grids", "inverting inside the range", lambda tmp: grids.invert_monotone(lambda t: t**2,
         torch.tensor([0.25], dtype=F64), 0.0, 1.0), check=lambda v: abs(float(v) - 0.5) < 1e-12),
    Case("grids", "inverting a schedule at its own ends in float32", lambda tmp: _invert_ends_float32(),
         check=lambda v: bool(torch.isfinite(v).all()) and abs(float(v[0]) - 0.3) < 1e-5),
    Case("grids", "check_grid of a string", lambda tmp: grids.check_grid("0,1"), TypeError, "grid"),
    Case("solvers", "DPM-Solver++ of order 5", lambda tmp: DPMSolverPP(preset("vp"), order=5), ValueError, "order"),
    Case("solvers", "UniPC with an unknown variant", lambda tmp: UniPC(preset("vp"), variant="bh9"), ValueError,
         "variant"),
    Case("solvers", "DEIS with an unknown prediction", lambda tmp: DEIS(preset("vp"), prediction="noise!"),
         ValueError, "prediction"),
    Case("solvers", "prediction solver on an interpolant without a Gaussian base", lambda tmp: DPMSolverPP(
         Interpolant(LinearSchedule())), ValueError, "Gaussian"),
    # ------------------------------------------------------------------ schedules and interpolants
    Case("interpolants", "unknown preset", lambda tmp: preset("vpsde"), ValueError, "unknown interpolant preset"),
    Case("interpolants", "a schedule that is not one", lambda tmp: Interpolant("linear"), TypeError, "schedule"),
    Case("interpolants", "sample with mismatched endpoints", lambda tmp: preset("linear").sample(_x(4), _x(5), 0.5),
         ValueError, "same shape"),
    Case("interpolants", "time outside [0, 1]", lambda tmp: preset("linear").coefficients(torch.tensor([1.5],
         dtype=F64), _x(1)), ValueError, "[0, 1]"),
    Case("interpolants", "time of the wrong length", lambda tmp: preset("linear").sample(
         _x(4), _x(4), torch.full((3,), 0.5, dtype=F64)), ValueError, "shape (batch,)"),
    Case("schedules", "VP with beta_min > beta_max", lambda tmp: VPSchedule(beta_min=30.0, beta_max=1.0),
         ValueError, "beta"),
    Case("schedules", "VP with negative beta", lambda tmp: VPSchedule(beta_min=-1.0), ValueError, "beta"),
    Case("schedules", "custom schedule with wrong endpoints", lambda tmp: CustomSchedule(lambda t: 0.5 + 0 * t,
         lambda t: t), ValueError, "alpha"),
    Case("schedules", "custom schedule of a non-callable", lambda tmp: CustomSchedule(1.0, 2.0), TypeError,
         "callable"),
    # ------------------------------------------------------------------ analytic
    Case("analytic", "mixture with negative weights", lambda tmp: GaussianMixture(torch.tensor([1.0, -1.0]),
         torch.zeros(2, 2), 1.0), ValueError, "weights"),
    Case("analytic", "mixture with a non-SPD covariance", lambda tmp: GaussianMixture(torch.ones(1),
         torch.zeros(1, 2), torch.tensor([[[1.0, 2.0], [2.0, 1.0]]])), ValueError, "positive definite"),
    Case("analytic", "mixture with NaN means", lambda tmp: GaussianMixture(torch.ones(1), torch.full((1, 2),
         math.nan), 1.0), ValueError, "finite"),
    Case("analytic", "mixture with mismatched weights and means", lambda tmp: GaussianMixture(torch.ones(3),
         torch.zeros(2, 2), 1.0), ValueError, "weights"),
    Case("analytic", "mixture with zero variance", lambda tmp: GaussianMixture(torch.ones(1), torch.zeros(1, 2),
         0.0), ValueError, "positive"),
    Case("analytic", "log-density of points of the wrong dimension", lambda tmp: _gm().log_density(_x(4, 3)),
         ValueError, "(batch, 2)"),
    Case("analytic", "sample of a negative count", lambda tmp: _gm().sample(-1), ValueError, "n"),
    Case("analytic", "mixtures of different dimensions", lambda tmp: ExactMarginals(preset("linear"), _standard(),
         GaussianMixture(torch.ones(1), torch.zeros(1, 3), 1.0)), ValueError, "dim"),
    Case("analytic", "funnel of dimension 1", lambda tmp: Funnel(dim=1), ValueError, "dim"),
    Case("analytic", "banana with a negative scale", lambda tmp: Banana(sigma1=-1.0), ValueError, "sigma"),
    Case("analytic", "marginal at a time outside [0, 1]", lambda tmp: _exact().marginal(2.0), ValueError, "[0, 1]"),
    # ------------------------------------------------------------------ bridges
    Case("bridges", "Gaussian bridge with epsilon 0", lambda tmp: GaussianBridge(torch.zeros(2), torch.eye(2),
         torch.zeros(2), torch.eye(2), 0.0), ValueError, "epsilon"),
    Case("bridges", "Gaussian bridge with a non-SPD covariance", lambda tmp: GaussianBridge(torch.zeros(2),
         -torch.eye(2), torch.zeros(2), torch.eye(2), 0.5), ValueError, "positive definite"),
    Case("bridges", "Gaussian bridge means of other sizes", lambda tmp: GaussianBridge(torch.zeros(2),
         torch.eye(2), torch.zeros(3), torch.eye(2), 0.5), ValueError, "mean1"),
    Case("bridges", "Gaussian bridge time outside [0, 1]", lambda tmp: GaussianBridge(torch.zeros(2), torch.eye(2),
         torch.zeros(2), torch.eye(2), 0.5).marginal(1.5), ValueError, "[0, 1]"),
    Case("bridges", "snapshots with decreasing times", lambda tmp: check_snapshots([_x(), _x(), _x()],
         [0.0, 2.0, 1.0]), ValueError, "increasing"),
    Case("bridges", "snapshots of different widths", lambda tmp: check_snapshots([_x(), _x(8, 3)], [0.0, 1.0]),
         ValueError, "dimension"),
    Case("bridges", "one snapshot", lambda tmp: check_snapshots([_x()], [0.0]), ValueError, "at least 2"),
    Case("bridges", "snapshot count and times disagree", lambda tmp: check_snapshots([_x(), _x()], [0.0, 1.0, 2.0]),
         ValueError, "times"),
    Case("bridges", "multi-marginal with sigma 0", lambda tmp: MultiMarginalBridge(sigma=0.0), ValueError, "sigma"),
    # ------------------------------------------------------------------ superposition
    Case("superposition", "unknown mode", lambda tmp: superpose([_exact("vp").score] * 2, preset("vp"), _x(4),
         _vp_grid(4), mode="xor"), ValueError, "mode"),
    Case("superposition", "no scores", lambda tmp: superpose([], preset("vp"), _x(4), _vp_grid(4)), ValueError,
         "score"),
    Case("superposition", "weights of another length", lambda tmp: superpose([_exact("vp").score] * 2,
         preset("vp"), _x(4), _vp_grid(4), weights=[1.0]), ValueError, "weights"),
    Case("superposition", "negative weights", lambda tmp: superpose([_exact("vp").score] * 2, preset("vp"), _x(4),
         _vp_grid(4), weights=[1.0, -1.0]), ValueError, "weights"),
    # ------------------------------------------------------------------ Langevin and gradient flows
    Case("langevin", "MALA on a target that turns NaN", lambda tmp: _mala_nan_target(), ValueError,
         "never NaN", changed=True),
    Case("langevin", "step size 0", lambda tmp: MALA(0.0), ValueError, "step_size"),
    Case("langevin", "step size NaN", lambda tmp: ULA(math.nan), ValueError, "step_size"),
    Case("langevin", "friction negative", lambda tmp: BAOAB(0.1, friction=-1.0), ValueError, "friction"),
    Case("langevin", "chains as a vector", lambda tmp: run_chains(ULA(0.1), _gaussian_log_density, torch.zeros(5),
         3, progress=False), ValueError, "(chains, dim)"),
    Case("langevin", "burn-in beyond the run", lambda tmp: run_chains(ULA(0.1), _gaussian_log_density, _x(4), 5,
         burn_in=5, progress=False), ValueError, "burn_in"),
    Case("langevin", "thin 0", lambda tmp: run_chains(ULA(0.1), _gaussian_log_density, _x(4), 5, thin=0,
         progress=False), ValueError, "thin"),
    Case("langevin", "n_steps fractional", lambda tmp: run_chains(ULA(0.1), _gaussian_log_density, _x(4), 2.5,
         progress=False), ValueError, "n_steps"),
    Case("langevin", "target without log-density or score", lambda tmp: LangevinTarget(), (TypeError, ValueError),
         "log_density"),
    Case("langevin", "MALA with only a score", lambda tmp: run_chains(MALA(0.1), LangevinTarget(score=lambda x: -x),
         _x(4), 3, progress=False), ValueError, "log-density"),
    Case("langevin", "ULA that diverges", lambda tmp: run_chains(ULA(10.0), lambda x: -(x**4).sum(1), _x(4) * 3,
         50, progress=False), NonFiniteStateError, "step_size"),
    Case("langevin", "annealed Langevin with increasing levels", lambda tmp: AnnealedLangevin([0.1, 1.0]),
         ValueError, "levels"),
    Case("langevin", "annealed Langevin with a zero level", lambda tmp: AnnealedLangevin([1.0, 0.0]), ValueError,
         "levels"),
    Case("wgf", "SVGD step 0", lambda tmp: svgd(_gaussian_log_density, _x(8), step_size=0.0, n_steps=3,
         progress=False), ValueError, "step_size"),
    Case("wgf", "WGF with negative bandwidth", lambda tmp: wgf(_gaussian_log_density, _x(8), step_size=0.1,
         n_steps=3, bandwidth=-1.0, progress=False), ValueError, "bandwidth", changed=True),
    Case("wgf", "WGF record_every 0", lambda tmp: wgf(_gaussian_log_density, _x(8), step_size=0.1, n_steps=3,
         record_every=0, progress=False), ValueError, "record_every"),
    Case("wgf", "SVGD with one particle", lambda tmp: svgd(_gaussian_log_density, _x(1), step_size=0.1, n_steps=3,
         progress=False), ValueError, "particle"),
    # ------------------------------------------------------------------ SMC and Feynman–Kac
    Case("smc", "all weights -inf", lambda tmp: effective_sample_size(torch.full((4,), -math.inf)),
         DegenerateWeightsError, "weight"),
    Case("smc", "a NaN weight", lambda tmp: resample_indices(torch.tensor([0.0, math.nan])), ValueError, "NaN"),
    Case("smc", "unknown resampling scheme", lambda tmp: resample_indices(torch.zeros(4), "greedy"), ValueError,
         "scheme"),
    Case("smc", "resample to zero particles", lambda tmp: resample_indices(torch.zeros(4), n=0), ValueError, "n"),
    Case("smc", "policy kind unknown", lambda tmp: ResamplePolicy(kind="sometimes"), ValueError, "kind"),
    Case("smc", "ESS threshold above 1", lambda tmp: ResamplePolicy(threshold=1.5), ValueError, "threshold"),
    Case("smc", "weights as a matrix", lambda tmp: effective_sample_size(torch.zeros(2, 2)), ValueError, "1-D"),
    Case("feynman-kac", "weighted_resample of an unweighted trajectory", lambda tmp: weighted_resample(
         _traj(torch.randn(3, 4, 2, dtype=F64))), ValueError, "records log_weight", changed=True),
    Case("feynman-kac", "fk_steer with NaN lambda", lambda tmp: fk_steer(_base(), _reward, _vp_grid(),
         lam=math.nan, n=4, dim=2), ValueError, "lam must be finite"),
    Case("feynman-kac", "fk_steer with an unknown potential", lambda tmp: fk_steer(_base(), _reward, _vp_grid(),
         lam=1.0, potential="best", n=4, dim=2), ValueError, "potential"),
    Case("feynman-kac", "fk_steer with a reward of the wrong shape", lambda tmp: fk_steer(_base(), lambda x: x,
         _vp_grid(), lam=1.0, n=4, dim=2), ValueError, "reward"),
    Case("feynman-kac", "fk_steer with neither n nor start", lambda tmp: fk_steer(_base(), _reward, _vp_grid(),
         lam=1.0), ValueError, "n"),
    Case("feynman-kac", "SVDD with zero proposals", lambda tmp: svdd(_base(), _reward, _vp_grid(), proposals=0,
         n=4, dim=2), ValueError, "proposals"),
    Case("feynman-kac", "best-of-n with zero candidates", lambda tmp: best_of_n(_base(), _reward, _vp_grid(),
         n_candidates=0, n=4, dim=2), ValueError, "n_candidates"),
    Case("feynman-kac", "posterior sampling with a likelihood of the wrong shape", lambda tmp: posterior_sample(
         preset("vp"), _exact("vp").score, lambda x: x, _vp_grid(), start=_x(8)), ValueError, "log_likelihood"),
    Case("feynman-kac", "base sampler with an unknown noise", lambda tmp: BaseSampler(preset("vp"),
         _exact("vp").score, noise="loud"), ValueError, "noise"),
    # ------------------------------------------------------------------ metrics
    Case("metrics", "mmd of identical constant samples is 0", lambda tmp: mmd(torch.ones(10, 2), torch.ones(10, 2)),
         check=lambda v: v == 0.0, changed=True),
    Case("metrics", "mmd with a bandwidth of 0", lambda tmp: mmd(_x(), _x(seed=1), bandwidth=0.0), ValueError,
         "bandwidth"),
    Case("metrics", "mmd with an infinite bandwidth", lambda tmp: mmd(_x(), _x(seed=1), bandwidth=math.inf),
         ValueError, "bandwidth", changed=True),
    Case("metrics", "mmd with a degenerate median", lambda tmp: mmd(torch.cat([torch.ones(10, 2), _x(2)]),
         torch.ones(10, 2)), ValueError, "pass bandwidth", changed=True),
    Case("metrics", "wasserstein p=3", lambda tmp: wasserstein(_x(), _x(seed=1), p=3), ValueError, "p"),
    Case("metrics", "wasserstein of samples of different widths", lambda tmp: wasserstein(_x(), _x(8, 3)),
         ValueError, "(m, dim)"),
    Case("metrics", "wasserstein with NaN", lambda tmp: wasserstein(torch.full((4, 2), math.nan), _x(4)),
         ValueError, "finite"),
    Case("metrics", "energy distance of a vector", lambda tmp: energy_distance(torch.zeros(4), _x(4)), ValueError,
         "(n, dim)"),
    Case("metrics", "sliced W2 with no projections", lambda tmp: sliced_wasserstein2(_x(), _x(), n_projections=0),
         ValueError, "n_projections"),
    Case("metrics", "wasserstein of a sample with itself is 0", lambda tmp: wasserstein(_x(), _x()),
         check=lambda v: abs(v) < 1e-12),
    # ------------------------------------------------------------------ results and netCDF
    Case("problems", "a header-only CSV", lambda tmp: _read_csv(tmp, "day,g1,g2\n"), ValueError, "no rows",
         changed=True),
    Case("problems", "a CSV without the time column", lambda tmp: _read_csv(tmp, "hour,g1\n0,1\n"), ValueError,
         "time column 'day'"),
    # ------------------------------------------------------------------ inverse problems
    Case("inverse", "negative measurement noise", lambda tmp: _inverse_measurement(-0.1), ValueError,
         "noise_std must be a finite number >= 0"),
    Case("inverse", "NaN in the measurement", lambda tmp: Measurement(Matrix(torch.ones(1, 2)),
         torch.tensor([math.nan]), 0.1), ValueError, "NaN"),
    Case("inverse", "a measurement of the wrong shape", lambda tmp: Measurement(Matrix(torch.ones(1, 2)),
         torch.zeros(3, 2), 0.1), ValueError, "y must have shape (batch, 1)"),
    Case("inverse", "a mask that is not 0/1", lambda tmp: Mask(torch.tensor([0.0, 0.5, 1.0])), ValueError,
         "only 0 and 1"),
    Case("inverse", "a mask that observes nothing", lambda tmp: Mask(torch.zeros(4)), ValueError, "observes nothing"),
    Case("inverse", "a box larger than the image", lambda tmp: box_mask((1, 4, 4), 5), ValueError, "fit inside"),
    Case("inverse", "downsampling by a factor that does not divide", lambda tmp: Downsample((1, 6, 6), 4),
         ValueError, "divisible"),
    Case("inverse", "an operator whose shape does not match the prior", lambda tmp: guided_sample(
         _inverse_prior(), _inverse_measurement(operator=Matrix(torch.ones(1, 3, dtype=F64))), _vp_grid(), 4,
         progress=False), ValueError, "shape"),
    Case("inverse", "ΠGDM with a nonlinear operator", lambda tmp: guided_sample(_inverse_prior(),
         _nonlinear_measurement(), _vp_grid(), 4, method="pigdm"), ValueError, "needs a linear operator"),
    Case("inverse", "an unknown guidance method", lambda tmp: guided_sample(_inverse_prior(), _inverse_measurement(),
         _vp_grid(), 4, method="mcg"), ValueError, "unknown guidance method"),
    Case("inverse", "an unknown guidance update", lambda tmp: guided_sample(_inverse_prior(), _inverse_measurement(),
         _vp_grid(), 4, update="step"), ValueError, "update must be one of"),
    Case("inverse", "an unknown Tweedie covariance", lambda tmp: guided_sample(_inverse_prior(),
         _inverse_measurement(), _vp_grid(), 4, method="tweedie2", covariance="lowrank"), ValueError,
         "covariance must be one of"),
    Case("inverse", "zero conjugate-gradient iterations", lambda tmp: guided_sample(_inverse_prior(),
         _inverse_measurement(), _vp_grid(), 4, method="tweedie2", covariance="cg", iterations=0), ValueError,
         "iterations"),
    Case("inverse", "the ensemble with a noiseless measurement", lambda tmp: ensemble_sample(_inverse_prior(),
         _inverse_measurement(0.0), _vp_grid(), 4), ValueError, "needs noise_std > 0"),
    Case("inverse", "the ensemble with a mixing rate of zero", lambda tmp: ensemble_sample(_inverse_prior(),
         _inverse_measurement(), _vp_grid(), 4, mixing=0.0), ValueError, "mixing must be a positive number"),
    Case("inverse", "RED-Diff with a negative regulariser", lambda tmp: red_diff(_inverse_prior(),
         _inverse_measurement(), _vp_grid(), 4, lam=-1.0), ValueError, "lam"),
    Case("inverse", "a two-sided interpolant as the prior", lambda tmp: Prior(preset("linear"),
         lambda t, x: x), ValueError, "Gaussian-base"),
    Case("inverse", "a nonlinear operator without gradient (DPS)", lambda tmp: guided_sample(_inverse_prior(),
         Measurement(Nonlinear(lambda x: x.detach()[:, :1] ** 2, (2,), (1,)), torch.tensor([1.0], dtype=F64), 0.1),
         _vp_grid(), 4, method="dps", progress=False), GradientError, "carries no gradient", changed=True),
    Case("inverse", "a nonlinear operator without gradient (RED-Diff)", lambda tmp: red_diff(_inverse_prior(),
         Measurement(Nonlinear(lambda x: x.detach()[:, :1] ** 2, (2,), (1,)), torch.tensor([1.0], dtype=F64), 0.1),
         _vp_grid(), 4, progress=False), GradientError, "carries no gradient", changed=True),
    Case("inverse", "the closed-form posterior of a noiseless measurement", lambda tmp: _gm().condition(
         torch.ones(1, 2), torch.ones(1), 0.0), ValueError, "singular"),
    Case("results", "netCDF into a missing folder (made)", lambda tmp: _written(tmp, Path(tmp) / "no" / "x.nc"),
         check=lambda path: path.is_file()),
    Case("results", "trajectory with times and states disagreeing", lambda tmp: Trajectory(torch.zeros(3),
         torch.zeros(2, 4, 2), torch.zeros(3), "euler", 2).to_xarray(), ValueError, ""),
]
# fmt: on


def _invert_ends_float32():
    """Ends taken in float32 along another path than the inversion's (validate's log-SNR grids do this): a few
    ulps outside the range are the same end, not an error."""
    lam = lambda t: -torch.log(t)  # noqa: E731
    ends = lam(torch.tensor([0.3, 0.9], dtype=F64)).float()
    values = torch.linspace(float(ends[0]), float(ends[1]), 5)
    return grids.invert_monotone(lam, values, 0.3, 0.9)


def _read_csv(tmp, text):
    from problems.single_cell.data import read_dataset

    path = Path(tmp) / "course.csv"
    path.write_text(text)
    return read_dataset(path, "day")


def _written(tmp, path):
    _traj(torch.randn(2, 3, 2, dtype=F64)).to_netcdf(path)
    return path


def _banana_hessian_error():
    banana, x, h = Banana(), _x(4), 1e-6
    jac = interp.diagnostics.jacobian(banana.score, x)
    eye = torch.eye(2, dtype=F64)
    fd = torch.stack([(banana.score(x + h * eye[j]) - banana.score(x - h * eye[j])) / (2 * h) for j in range(2)], 2)
    assert float(jac.abs().max()) > 0.1
    return float((jac - fd).abs().max())


def _inference_score():
    gm, x = _gm(), _x(5)
    with torch.inference_mode():
        inside = gm.score(x)
    return float((inside - gm.score(x)).abs().max())


def _no_cuda(fn):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    return fn()


def _other_architecture(tmp):
    path = _checkpoint(tmp)
    exact = _exact()
    other = Trainer(
        MLP((2,), hidden=16, depth=2),
        InterpolantLoss(preset("linear"), Parameterisation.VELOCITY),
        exact.rho0.sample,
        exact.rho1.sample,
        config=TrainConfig(steps=3, batch_size=16, device="cpu", progress=False),
    )
    before = [p.detach().clone() for p in other.model.parameters()]
    try:
        other.load(path)
    finally:  # a refused resume changes nothing
        assert all(torch.equal(a, b) for a, b in zip(before, other.model.parameters(), strict=True))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}: {c.name}" for c in CASES])
def test_bad_input(case, tmp_path):
    if case.error is None:
        value = case.call(tmp_path)
        assert case.check(value), f"{case.area}: {case.name}: wrong value {value!r}"
        return
    with pytest.raises(case.error) as caught:
        case.call(tmp_path)
    assert case.phrase.lower() in str(caught.value).lower(), f"{case.area}: {case.name}: {caught.value}"


# ---------------------------------------------------------------------- command lines (policy c)
CLI_CASES = [
    ("problems.single_cell.cli", ["--learning-rate", "inf"], "--learning-rate: expected a finite number > 0"),
    ("problems.single_cell.cli", ["--learning-rate", "nan"], "finite"),
    ("problems.single_cell.cli", ["--steps", "0"], "positive integer"),
    ("problems.single_cell.cli", ["--steps", "ten"], "positive integer"),
    ("problems.single_cell.cli", ["--seeds", "-1"], "integer >= 0"),
    ("problems.single_cell.cli", ["--sigma", "0"], "> 0"),
    ("problems.single_cell.cli", ["--sigma-min", "-0.1"], ">= 0"),
    ("problems.single_cell.cli", ["--device", "tpu"], "expected auto, cpu, cuda"),
    ("problems.single_cell.cli", ["--methods", "ot-cfm,magic"], "unknown ['magic']"),
    ("problems.single_cell.cli", ["--dataset", "/no/such.h5ad"], "no such dataset file"),
    ("problems.single_cell.cli", ["--dataset", "double-well", "--json", "/proc/sys/x.json"], "cannot write"),
    ("problems.single_cell.cli", ["--dataset", "double-well", "--json", "{tmp}"], "is a folder"),
    ("problems.single_cell.cli", ["--dataset", "double-well", "--out", "{tmp}/file.txt"], "is not a folder"),
    ("problems.single_cell.cli", ["--dataset", "double-well", "--out", "/proc/sys/out"], "cannot write"),
    ("problems.single_cell.cli", ["--unknown-flag"], "unrecognized arguments"),
    ("validate.__main__", ["--seed", "-2"], "integer >= 0"),
    ("validate.__main__", ["--suite", "everything"], "invalid choice"),
    ("validate.__main__", ["--json", "{tmp}"], "is a folder"),
    ("validate.__main__", ["--out", "{tmp}/file.txt"], "is not a folder"),
    ("validate.__main__", ["--json", "/proc/sys/r.json"], "cannot write"),
    ("validate.bench.__main__", ["solvers", "--json", "{tmp}"], "--json"),
    ("validate.bench.__main__", ["training", "--table", "{tmp}/t.nc"], "writes no table"),
    ("validate.bench.__main__", ["quantum"], "invalid choice"),
    ("validate.bench.__main__", ["solvers", "--seed", "x"], "integer"),
    ("validate.bench.__main__", ["driver", "--device", "tpu"], "expected auto, cpu, cuda"),
    *(  # without a GPU the GPU commands stop at once; with one they would run, so they are not cases there
        []
        if torch.cuda.is_available()
        else [
            ("validate.bench.__main__", ["gpu"], "the gpu bench needs a GPU"),
            ("validate.bench.__main__", ["driver", "--device", "cuda"], "torch sees no CUDA device"),
        ]
    ),
    ("paper_figs.__main__", ["solvers_error_vs_nfe", "--out", "{tmp}/file.txt"], "is not a folder"),
    ("paper_figs.__main__", ["solvers_error_vs_nfe", "--out", "{tmp}", "--seed", "-1"], "integer >= 0"),
    ("paper_figs.__main__", ["no_such_figure"], "unknown figure"),
    ("problems.__main__", ["time-travel"], "unknown adapter 'time-travel'"),
    ("problems.images.cli", ["--dataset", "cifar-10"], "unknown dataset 'cifar-10'"),
    ("problems.images.cli", ["--samplers", "Euler,magic"], "unknown samplers ['magic']"),
    ("problems.images.cli", ["--nfe", "0"], "positive integer"),
    ("problems.images.cli", ["--grids", "cosine"], "unknown grids ['cosine']"),
    ("problems.images.cli", ["--guidance", "-1"], ">= 0"),
    ("problems.images.cli", ["--guidance", "2"], "needs --conditional"),
    ("problems.images.cli", ["--multipliers", "1,2", "--attention", "5"], "--attention levels must be below 2"),
    ("problems.images.cli", ["--interpolant", "linear"], "invalid choice"),
    ("problems.images.cli", ["--out", "{tmp}/file.txt"], "is not a folder"),
    ("problems.images.cli", ["--json", "{tmp}"], "is a folder"),
    ("problems.images.cli", ["--dataset", "{tmp}/file.txt"], "need a folder of images or an .npy file"),
    ("problems.images.cli", ["--task", "steering"], "needs --conditional"),
    ("problems.images.cli", ["--task", "steering", "--conditional", "--interpolant", "flow"], "--interpolant vp"),
    ("problems.images.cli", ["--task", "steering", "--conditional", "--label", "10"], "not a class of digits"),
    ("problems.images.cli", ["--task", "steering", "--conditional", "--scales", ","], "comma list of numbers"),
    ("problems.images.cli", ["--task", "steering", "--conditional", "--compute", "0"], "positive integer"),
    ("problems.images.cli", ["--task", "steering", "--conditional", "--lam", "0"], "> 0"),
    ("problems.images.cli", ["--task", "inverse", "--conditional"], "unconditional VP model"),
    ("problems.images.cli", ["--task", "inverse", "--inverse-tasks", "colorize"], "tasks must be"),
    ("problems.images.cli", ["--task", "inverse", "--methods", "ddrm"], "methods must be"),
    ("problems.images.cli", ["--task", "inverse", "--noise", "-0.1"], "noise"),
    ("problems.images.cli", ["--task", "inverse", "--images", "100000"], "more than the test split"),
    ("problems.images.cli", ["--task", "inverse", "--reconstructions", "1"], "samples must be"),
    ("problems.images.cli", ["--task", "inverse", "--update", "exact"], "invalid choice"),
    ("problems.images.cli", ["--task", "inverse", "--covariance", "full"], "invalid choice"),
    ("validate.mutation", ["everything"], "unknown group"),
    ("validate.mutation", ["losses", "--max-children", "0"], "positive integer"),
    ("validate.mutation", ["losses", "--json", "{tmp}"], "is a folder"),
]


@pytest.mark.parametrize("module, argv, phrase", CLI_CASES, ids=[f"{m} {' '.join(a)}" for m, a, _ in CLI_CASES])
def test_command_line_refuses_before_work(module, argv, phrase, tmp_path, capsys):
    """One line ``NAME: error: ...``, exit status 2, nothing written, and no computation started."""
    (tmp_path / "file.txt").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    status, line = _cli_line(capsys, module, argv)
    assert status == 2, (argv, status, line)
    assert phrase in line, line
    assert ": error: " in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_table_size():
    """The table the reliability policy promises: at least 150 rows over every area."""
    assert len(CASES) + len(CLI_CASES) >= 150, len(CASES) + len(CLI_CASES)
    areas = {c.area for c in CASES}
    expected = {"density", "langevin", "feynman-kac", "analytic", "bridges", "results", "nets", "train",
                "checkpoint", "couplings", "solvers", "driver", "grids", "interpolants", "schedules",
                "superposition", "wgf", "smc", "metrics", "diagnostics", "inverse"}  # fmt: skip
    assert expected <= areas, expected - areas
