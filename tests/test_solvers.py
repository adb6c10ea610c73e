import math

import numpy as np
import pytest
import torch

from interp import grids, integrate
from interp.dynamics import SDE, generative_sde
from interp.solvers import (
    ODE_SOLVERS,
    RK4,
    Euler,
    EulerMaruyama,
    ExplicitRungeKutta,
    Heun,
    Midpoint,
    StochasticHeun,
    Torchdiffeq,
    Torchsde,
)


def _rotation(t, x):
    """x' = A(t) x with a time-dependent rotation-decay; exact solution in closed form below."""
    rate = 1.0 + t
    return torch.stack([-rate * x[:, 0] - x[:, 1], x[:, 0] - rate * x[:, 1]], dim=1)


def _rotation_exact(x0, t):
    decay = math.exp(-(t + t * t / 2))
    c, s = math.cos(t), math.sin(t)
    return decay * torch.stack([c * x0[:, 0] - s * x0[:, 1], s * x0[:, 0] + c * x0[:, 1]], dim=1)


@pytest.mark.parametrize("name", ODE_SOLVERS)
def test_ode_solver_order_on_exact_linear_ode(name):
    solver = ODE_SOLVERS[name]()
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]])
    exact = _rotation_exact(x0, 1.0)
    steps = [16, 32, 64, 128]
    errors = [
        float((integrate(_rotation, x0, grids.uniform(n), solver, progress=False).final - exact).abs().max())
        for n in steps
    ]
    slope = np.polyfit(np.log(1 / np.array(steps)), np.log(errors), 1)[0]
    assert abs(slope - solver.order) < 0.2


def test_rk4_three_eighths_is_torchdiffeqs_rk4():
    import torchdiffeq

    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]])
    grid = grids.quadratic(7)
    ours = integrate(_rotation, x0, grid, ODE_SOLVERS["rk4-3/8"](), progress=False).final
    theirs = torchdiffeq.odeint(_rotation, x0, grid, method="rk4")[-1]
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-14)
    classical = integrate(_rotation, x0, grid, ODE_SOLVERS["rk4"](), progress=False).final
    assert (classical - theirs).abs().max() > 1e-8  # a different fourth-order method, not the same one renamed


def test_euler_one_step_is_explicit():
    out = integrate(lambda t, x: 2 * x, torch.ones(3, 1), grids.uniform(1), ODE_SOLVERS["euler"](), progress=False)
    assert torch.allclose(out.final, 3 * torch.ones(3, 1))


def test_torchdiffeq_matches_exact_and_runs_backwards():
    x0 = torch.tensor([[1.0, 0.5]])
    forward = integrate(_rotation, x0, grids.uniform(4), Torchdiffeq(rtol=1e-10, atol=1e-12), progress=False)
    assert torch.allclose(forward.final, _rotation_exact(x0, 1.0), atol=1e-8)
    back = integrate(
        _rotation, forward.final, grids.uniform(4, 1.0, 0.0), Torchdiffeq(rtol=1e-10, atol=1e-12), progress=False
    )
    assert torch.allclose(back.final, x0, atol=1e-7)


def _ou(theta=1.0, sigma=0.7):
    return SDE(lambda t, x: -theta * x, lambda t, x: torch.full_like(x[:, :1], sigma), additive=True)


@pytest.mark.parametrize(
    "solver",
    [
        EulerMaruyama(),
        StochasticHeun(),
        Torchsde("srk", dt=0.02),
        Torchsde("euler", dt=0.02),
        Torchsde("heun", dt=0.02),
    ],
    ids=lambda s: s.name,
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sde_solvers_reach_the_ou_stationary_law(solver, seed):
    """OU from x0 = 2 to t = 1: mean 2e^{-1}, variance sigma^2 (1 - e^{-2}) / 2, within 4 standard errors."""
    n = 20000
    x0 = torch.full((n, 1), 2.0)
    out = integrate(
        _ou(), x0, grids.uniform(50), solver, generator=torch.Generator().manual_seed(seed), progress=False
    ).final
    mean, var = 2 * math.exp(-1), 0.49 * (1 - math.exp(-2)) / 2
    assert abs(float(out.mean()) - mean) < 4 * math.sqrt(var / n) + 0.02
    assert abs(float(out.var()) - var) < 4 * var * math.sqrt(2 / n) + 0.01


def test_torchsde_backward_grid_uses_time_reversal():
    seen = []

    def drift(t, x):
        seen.append(float(t))
        return torch.zeros_like(x)

    sde = SDE(drift, lambda t, x: torch.zeros_like(x), additive=True)
    integrate(
        sde,
        torch.zeros(2, 1),
        grids.uniform(2, 0.9, 0.1),
        Torchsde("euler", dt=0.1),
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert max(seen) <= 0.9 + 1e-12 and min(seen) >= 0.1 - 1e-12


def test_capabilities_are_checked():
    field = lambda t, x: -x  # noqa: E731
    sde = _ou()
    multiplicative = SDE(lambda t, x: x, lambda t, x: x, additive=False)
    with pytest.raises(TypeError, match="drop the SDE's noise"):
        integrate(sde, torch.zeros(2, 1), grids.uniform(2), ODE_SOLVERS["rk4"](), progress=False)
    with pytest.raises(TypeError, match="plain field"):
        integrate(field, torch.zeros(2, 1), grids.uniform(2), EulerMaruyama(), progress=False)
    with pytest.raises(ValueError, match="additive"):
        integrate(multiplicative, torch.ones(2, 1), grids.uniform(2), StochasticHeun(), progress=False)
    with pytest.raises(ValueError, match="Stratonovich"):
        integrate(multiplicative, torch.ones(2, 1), grids.uniform(2), Torchsde("heun"), progress=False)
    with pytest.raises(ValueError, match="unknown torchdiffeq method"):
        Torchdiffeq("nope")
    with pytest.raises(ValueError, match="lower triangular"):
        ExplicitRungeKutta("bad", [[1.0]], [1.0], [0.0], order=1)


def test_generative_sde_signs_and_noise_scale():
    velocity = lambda t, x: torch.ones_like(x)  # noqa: E731
    score = lambda t, x: 2 * torch.ones_like(x)  # noqa: E731
    x = torch.zeros(3, 2)
    forward = generative_sde(velocity, score, 0.5)
    backward = generative_sde(velocity, score, lambda t: 0.5 * torch.ones_like(t), backward=True)
    assert torch.allclose(forward.drift(0.3, x), 2 * torch.ones_like(x))
    assert torch.allclose(backward.drift(0.3, x), torch.zeros_like(x))
    assert torch.allclose(forward.diffusion(0.3, x), torch.ones(3, 1))
    with pytest.raises(ValueError, match=">= 0"):
        generative_sde(velocity, score, -1.0)
    negative = generative_sde(velocity, score, lambda t: -torch.ones_like(t))
    with pytest.raises(ValueError, match="finite and >= 0"):
        negative.drift(0.3, x)


def _nonautonomous(t, x):
    return t * x + t**2


def _hand_step(name, t0, h, x0):
    """One step of each method written out from its textbook tableau (not from ExplicitRungeKutta's tables)."""
    f = _nonautonomous
    if name == "euler":
        return x0 + h * f(t0, x0)
    if name == "heun":
        k1 = f(t0, x0)
        return x0 + h / 2 * (k1 + f(t0 + h, x0 + h * k1))
    if name == "midpoint":
        return x0 + h * f(t0 + h / 2, x0 + h / 2 * f(t0, x0))
    k1 = f(t0, x0)
    k2 = f(t0 + h / 2, x0 + h / 2 * k1)
    k3 = f(t0 + h / 2, x0 + h / 2 * k2)
    k4 = f(t0 + h, x0 + h * k3)
    return x0 + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


@pytest.mark.parametrize("solver, stages", [(Euler(), 1), (Heun(), 2), (Midpoint(), 2), (RK4(), 4)])
def test_one_step_of_each_runge_kutta_method_on_a_time_dependent_field(solver, stages):
    """The stage times matter only when the field depends on t: dx/dt = t x + t^2 from t0 = 0.3, h = 0.2."""
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    t0, h = 0.3, 0.2
    out = integrate(_nonautonomous, x0, torch.tensor([t0, t0 + h], dtype=torch.float64), solver, progress=False)
    assert torch.allclose(out.final, _hand_step(solver.name, t0, h, x0), rtol=0, atol=1e-14), solver.name
    assert out.nfe == stages and solver.nfe_per_step == stages
    assert out.solver == solver.name == {1: "euler", 4: "rk4"}.get(stages, solver.name)


@pytest.mark.parametrize("solver", [EulerMaruyama(), StochasticHeun()])
def test_one_step_of_each_sde_method_on_a_given_brownian_path(solver):
    """Pathwise, against the scheme written out by hand with the same Brownian increment: the sign of the noise
    term and the times at which drift and diffusion are read are all visible (in law, a flipped noise sign is not)."""
    from interp.brownian import BrownianPath

    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    t0, h = 0.25, 0.25
    path = BrownianPath(0.0, 1.0, x0.shape, n_steps=4, generator=torch.Generator().manual_seed(0))
    sde = SDE(lambda t, x: -t * x + t**2, lambda t, x: (1 + t) * torch.ones_like(x[:, :1]), additive=True)
    grid = torch.tensor([t0, t0 + h], dtype=torch.float64)
    out = integrate(sde, x0, grid, solver, brownian=path, progress=False)
    dw = path.increment(t0, t0 + h)
    drift, g = sde.drift, lambda t: 1 + t
    if solver.name == "euler_maruyama":
        expected = x0 + drift(t0, x0) * h + g(t0) * dw
    else:
        predictor = x0 + drift(t0, x0) * h + g(t0) * dw
        expected = x0 + 0.5 * (drift(t0, x0) + drift(t0 + h, predictor)) * h + 0.5 * (g(t0) + g(t0 + h)) * dw
    assert torch.allclose(out.final, expected, rtol=0, atol=1e-14)
