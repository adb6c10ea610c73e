"""Density bench: the cost and accuracy of a log-density for 10k samples, and the ODE route against torchdyn.

Field: the exact VP (Gaussian-base) field of the 2D 8-mode ring (:mod:`validate.cases`), float64, one score
evaluation per step (``b = f x - D s``). Grid: 500 uniform steps on ``time_range``.

* Cost (also with the score an untrained 3 x 256 MLP, where the field dominates as it does for trained models),
  relative to plain sampling of the same SDE (Euler–Maruyama, matched noise, same grid and noise) for the
  Itô routes, and to the plain probability-flow ODE (Euler, same grid) for the ODE routes: the Itô estimator
  (divergence-free; goal <= 1.1x), the Itô trapezoid scheme (autograd Laplacian), the ODE route with one
  Hutchinson probe and with the exact trace.
* Accuracy at equal wall time: each route is given the wall time of the divergence-free Itô run at 500 steps
  (its step count scaled by its own measured time per step; RK4 for the ODE routes) and its mean absolute error
  to the closed-form log rho_1 is recorded (lower is better).
* Peer: torchdyn's ``CNF`` (``autograd_trace``) in a ``NeuralODE`` on the same exact field (linear interpolant,
  two-sided mixture -> ring), log rho_1 of 10k flowed base samples, rk4 with 100 steps and dopri5 at rtol 1e-7,
  against :func:`interp.density.ode_log_density` with the same solver settings: wall time and mean absolute
  error to the closed form (both lower is better). The path runs 0 -> 1: torchdyn's adaptive solvers evaluate
  a reversed span at negated times, which a time-dependent field cannot take.

torchdyn is installed without its CUDA-pulling dependencies:
``pip install --no-deps torchdyn torchcde pytorch_lightning lightning_utilities torchmetrics``.
"""

from __future__ import annotations

import time

import torch

from interp import integrate
from interp.density import gaussian_base_coefficients, ito_log_density, ode_log_density
from interp.dynamics import SDE
from interp.interpolants import preset
from interp.nets import MLP
from interp.records import BenchRecord, compare
from interp.solvers import RK4, Euler, EulerMaruyama, Torchdiffeq

from ..cases import exact_marginals
from . import synchronise

N, STEPS = 10_000, 500
REPEATS = 5


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _coefficients(vp, t, x):
    """f and D of the Gaussian-base identity b = f x - D s at a shared time ``t``."""
    return gaussian_base_coefficients(vp, torch.as_tensor(t, dtype=x.dtype).reshape(1))


def _plain_sde(vp, score) -> SDE:
    """The matched-noise SDE dX = (f x - 2 D s) dt + sqrt(-2 D) dW, without any density tracking."""

    def drift(t, x):
        f, d = _coefficients(vp, t, x)
        return f * x - 2 * d * score(t, x)

    def diffusion(t, x):
        return torch.sqrt(-2 * _coefficients(vp, t, x)[1])

    return SDE(drift, diffusion, additive=True)


def _setup(seed: int):
    vp = preset("vp")
    exact = exact_marginals(vp, 2)
    lo, hi = vp.time_range
    x0 = exact.sample(lo, N, torch.Generator().manual_seed(seed))

    def velocity(t, x):
        f, d = _coefficients(vp, t, x)
        return f * x - d * exact.score(t, x)

    return vp, exact, lo, hi, x0, velocity


def _routes(vp, exact, lo, hi, x0, velocity, seed):
    """name -> callable(n_steps) returning the final log-density error (mean absolute)."""

    def start(y):
        return exact.log_density(lo, y)

    def ito(scheme):
        def run(n_steps):
            traj = ito_log_density(
                exact.score,
                x0,
                torch.linspace(lo, hi, n_steps + 1),
                interpolant=vp,
                scheme=scheme,
                log_density_start=start,
                generator=torch.Generator().manual_seed(seed),
                progress=False,
            )
            return (traj.log_density[-1] - exact.log_density(hi, traj.final)).abs().mean()

        return run

    def ode(divergence, solver):
        def run(n_steps):
            traj = ode_log_density(
                velocity,
                x0,
                torch.linspace(lo, hi, n_steps + 1),
                solver,
                log_density_start=start,
                divergence=divergence,
                generator=torch.Generator().manual_seed(seed),
                progress=False,
            )
            return (traj.log_density[-1] - exact.log_density(hi, traj.final)).abs().mean()

        return run

    return ito, ode


def run(seed: int = 0, device: str = "cpu") -> list[BenchRecord]:
    """Every record on the CPU; on another ``device`` the network-field cost only (the closed-form field and the
    peer are CPU code)."""
    records = []
    vp, exact, lo, hi, x0, velocity = _setup(seed)
    if device != "cpu":
        return _network_cost(vp, lo, hi, x0, seed, device)
    grid = torch.linspace(lo, hi, STEPS + 1)
    ito, ode = _routes(vp, exact, lo, hi, x0, velocity, seed)

    sde = _plain_sde(vp, exact.score)

    def plain_sde():
        return integrate(sde, x0, grid, EulerMaruyama(), generator=torch.Generator().manual_seed(seed), progress=False)

    def plain_ode():
        return integrate(velocity, x0, grid, Euler(), progress=False)

    plain_sde()  # warm-up
    t_ode = min(_timed(plain_ode)[1] for _ in range(2))
    case = f"vp-ring2d-{N // 1000}k-{STEPS}steps"
    # timed alternately with plain sampling, best of REPEATS each: single runs on a shared 2-core machine drift by
    # 20 % from one to the next, more than the overhead being measured
    costs = {"ito-divergence-free": ito("ito"), "ito-trapezoid": ito("trapezoid")}
    runs: dict[str, list[float]] = {name: [] for name in ("plain-sde", *costs)}
    for _ in range(REPEATS):
        runs["plain-sde"].append(_timed(plain_sde)[1])
        for name, fn in costs.items():
            runs[name].append(_timed(lambda fn=fn: fn(STEPS))[1])
    t_sde = min(runs["plain-sde"])
    times = {name: min(runs[name]) for name in costs}
    for name in costs:
        records.append(compare("density", case, f"{name}_time_s", times[name], "plain-sde", t_sde, "lower"))
    for name, divergence in (("ode-hutchinson1", "hutchinson"), ("ode-exact-trace", "exact")):
        fn = ode(divergence, Euler())
        _, elapsed = _timed(lambda fn=fn: fn(STEPS))
        records.append(compare("density", case, f"{name}_time_s", elapsed, "plain-ode-euler", t_ode, "lower"))
    records += _network_cost(vp, lo, hi, x0, seed, device)
    # accuracy at equal wall time (the divergence-free Itô run's)
    budget = times["ito-divergence-free"]
    reference = float(ito("ito")(STEPS))
    per_step = {
        "ito-trapezoid": (times["ito-trapezoid"] / STEPS, ito("trapezoid")),
    }
    for name, divergence in (("ode-hutchinson1-rk4", "hutchinson"), ("ode-exact-trace-rk4", "exact")):
        fn = ode(divergence, RK4())
        _, elapsed = _timed(lambda fn=fn: fn(20))
        per_step[name] = (elapsed / 20, fn)
    for name, (cost, fn) in per_step.items():
        n_steps = max(2, int(budget / cost))
        error, elapsed = _timed(lambda fn=fn, n_steps=n_steps: float(fn(n_steps)))
        records.append(
            compare(
                "density",
                f"{case}-equal-time({n_steps}steps,{elapsed:.1f}s)",
                f"{name}_error_nats",
                error,
                "ito-divergence-free",
                reference,
                "lower",
            )
        )
    records += _torchdyn(seed)
    return records


def _network_cost(vp, lo, hi, x0, seed, device="cpu") -> list[BenchRecord]:
    """The same cost ratio when the score is a network (untrained MLP, 3 x 256), as for a trained model."""
    net = MLP((2,), hidden=256, depth=3).double().to(device)
    x0 = x0.to(device)
    for p in net.parameters():
        p.requires_grad_(False)

    def score(t, x):
        return net(torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]), x)

    steps = 100
    grid = torch.linspace(lo, hi, steps + 1)

    sde = _plain_sde(vp, score)

    def plain():
        generator = torch.Generator(x0.device).manual_seed(seed)
        out = integrate(sde, x0, grid, EulerMaruyama(), generator=generator, progress=False)
        synchronise(x0.device)
        return out

    def tracked():
        generator = torch.Generator(x0.device).manual_seed(seed)
        out = ito_log_density(score, x0, grid, interpolant=vp, generator=generator, progress=False)
        synchronise(x0.device)
        return out

    with torch.no_grad():
        plain(), tracked()  # warm-up
        timings = [(_timed(plain)[1], _timed(tracked)[1]) for _ in range(REPEATS)]  # interleaved against drift
    t_plain, t_ito = (min(column) for column in zip(*timings, strict=True))
    case = f"vp-mlp256x3-{N // 1000}k-{steps}steps" + ("" if device == "cpu" else f"-{device}")
    return [compare("density", case, "ito-divergence-free_time_s", t_ito, "plain-sde", t_plain, "lower")]


def _torchdyn(seed: int) -> list[BenchRecord]:
    try:
        from torchdyn.core import NeuralODE
        from torchdyn.models import CNF
    except ImportError as error:  # pragma: no cover - optional peer
        print(f"torchdyn unavailable ({error}); skipping the peer comparison")
        return []
    interpolant = preset("linear")
    exact = exact_marginals(interpolant, 2)
    x0 = exact.rho0.sample(N, torch.Generator().manual_seed(seed))

    class Velocity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.t = None  # torchdyn sets t on every submodule that has one

        def forward(self, x):
            # torchdyn passes t as (1,) and its dopri5 stages may step past t = 1: clamp onto the field's range
            return exact.velocity(torch.as_tensor(self.t).reshape(()).clamp(0.0, 1.0), x)

    records = []
    for solver_name, steps, ours_solver, options in (
        ("rk4", 100, RK4(), {}),
        ("dopri5", 1, Torchdiffeq("dopri5", rtol=1e-7, atol=1e-9), {"atol": 1e-9, "rtol": 1e-7}),
    ):
        t_span = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        node = NeuralODE(CNF(Velocity()), solver=solver_name, sensitivity="autograd", **options)
        y0 = torch.cat([torch.zeros(N, 1, dtype=torch.float64), x0], 1)

        def peer(node=node, y0=y0, t_span=t_span):
            with torch.no_grad():
                _, sol = node(y0, t_span)
            final = sol[-1][:, 1:]
            return exact.rho0.log_density(x0) + sol[-1][:, 0] - exact.rho1.log_density(final)

        def ours(t_span=t_span, solver=ours_solver):
            traj = ode_log_density(
                exact.velocity, x0, t_span, solver, log_density_start=exact.rho0.log_density, progress=False
            )
            return traj.log_density[-1] - exact.rho1.log_density(traj.final)

        ours()  # warm-up
        peer_error, peer_time = _timed(peer)
        our_error, our_time = _timed(ours)
        case = f"linear-ring2d-{N // 1000}k-{solver_name}" + (f"-{steps}steps" if steps > 1 else "")
        records.append(compare("density", case, "log_density_time_s", our_time, "torchdyn-cnf", peer_time, "lower"))
        records.append(
            compare(
                "density",
                case,
                "log_density_error_nats",
                float(our_error.abs().mean()),
                "torchdyn-cnf",
                float(peer_error.abs().mean()),
                "lower",
            )
        )
    return records
