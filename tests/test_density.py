import math

import pytest
import torch

from interp import grids
from interp.analytic import ExactMarginals, GaussianMixture
from interp.density import (
    draw_probes,
    field_divergence,
    gaussian_base_coefficients,
    ito_log_density,
    log_likelihood,
    ode_log_density,
)
from interp.fields import LearnedField
from interp.interpolants import preset
from interp.losses import Parameterisation
from interp.nets import MLP
from interp.results import Trajectory
from interp.solvers import RK4, EulerMaruyama, StochasticHeun, Torchdiffeq, Torchsde

SEEDS = (0, 1, 2)


def _two_sided(dim=2):
    rho0 = GaussianMixture(torch.tensor([0.4, 0.6]), torch.tensor([[-1.0] * dim, [1.0] * dim]), 0.5)
    rho1 = GaussianMixture(
        torch.tensor([1.0, 2.0]), torch.tensor([[2.0] + [0.0] * (dim - 1), [0.0, 2.0] + [0.0] * (dim - 2)]), 0.3
    )
    return ExactMarginals(preset("linear-brownian"), rho0, rho1)


def _vp(dim=2):
    base = GaussianMixture(torch.ones(1), torch.zeros(1, dim), 1.0)
    target = GaussianMixture(torch.ones(2), torch.stack([torch.full((dim,), 1.5), torch.full((dim,), -1.5)]), 0.2)
    return preset("vp"), ExactMarginals(preset("vp"), base, target)


# ---------------------------------------------------------------- closed forms used by the estimators
@pytest.mark.parametrize("name", ["linear-brownian", "vp", "trig"])
@pytest.mark.parametrize("t", [0.2, 0.7])
def test_time_derivative_matches_finite_differences(name, t):
    interpolant = preset(name)
    base = GaussianMixture(torch.ones(1), torch.zeros(1, 3), 1.0) if interpolant.gaussian_base else _two_sided(3).rho0
    exact = ExactMarginals(interpolant, base, _two_sided(3).rho1)
    x = exact.sample(t, 30, torch.Generator().manual_seed(0))
    h = 1e-5
    fd = (exact.log_density(t + h, x.clone()) - exact.log_density(t - h, x.clone())) / (2 * h)
    assert torch.allclose(exact.log_density_time_derivative(t, x), fd, atol=1e-6)
    per_particle = exact.log_density_time_derivative(torch.full((30,), t), x.clone())
    assert torch.allclose(per_particle, exact.log_density_time_derivative(t, x.clone()), atol=1e-12)


def test_exact_divergence_matches_closed_form():
    exact = _two_sided(3)
    x = exact.sample(0.4, 40, torch.Generator().manual_seed(1))
    b, div = field_divergence(exact.velocity, 0.4, x)
    assert div.shape == (1, 40)
    assert torch.allclose(b, exact.velocity(0.4, x.clone()))
    assert torch.allclose(div[0], exact.velocity_divergence(0.4, x.clone()), atol=1e-10)
    assert not div.requires_grad


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
@pytest.mark.parametrize("seed", SEEDS)
def test_hutchinson_is_unbiased(probe, seed):
    exact = _two_sided(3)
    x = exact.sample(0.4, 5, torch.Generator().manual_seed(1))
    probes = draw_probes(x, 4000, probe, torch.Generator().manual_seed(seed))
    _, estimates = field_divergence(exact.velocity, 0.4, x, probes=probes)
    truth = exact.velocity_divergence(0.4, x.clone())
    standard_error = estimates.std(0) / math.sqrt(4000)
    assert ((estimates.mean(0) - truth).abs() <= 4 * standard_error + 1e-12).all()


def test_probes_are_checked():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="probe"):
        draw_probes(x, 1, "uniform", None)
    with pytest.raises(ValueError, match="n_probes"):
        draw_probes(x, 0, "gaussian", None)
    assert set(draw_probes(x, 5, "rademacher", torch.Generator().manual_seed(0)).unique().tolist()) == {-1.0, 1.0}


# ---------------------------------------------------------------- ODE route
def test_ode_likelihood_matches_closed_form_both_directions():
    exact = _two_sided(2)
    g = torch.Generator().manual_seed(0)
    data = exact.rho1.sample(200, g)
    grid = grids.uniform(60).flip(0)
    traj = log_likelihood(exact.velocity, data, exact.rho0.log_density, grid, RK4(), progress=False)
    assert traj.log_density.shape == (2, 200)
    assert (traj.log_density[0] - exact.rho1.log_density(data)).abs().max() < 1e-4
    assert (traj.log_density[-1] - exact.rho0.log_density(traj.final)).abs().max() < 1e-12  # the anchor
    forward = ode_log_density(
        exact.velocity, traj.final, grids.uniform(60), RK4(), log_density_start=exact.rho0.log_density, progress=False
    )
    assert (forward.log_density[-1] - exact.rho1.log_density(forward.final)).abs().max() < 1e-4
    unanchored = ode_log_density(exact.velocity, data, grid, RK4(), progress=False)
    change = unanchored.extras["log_density_change"]
    assert torch.allclose(change[-1], traj.log_density[-1] - traj.log_density[0], atol=1e-10)
    # the result describes its run: recorded times, grid, solver, evaluations (RK4: 4 per step), route
    assert torch.equal(forward.times, grids.uniform(60)[[0, -1]]) and torch.equal(forward.grid, grids.uniform(60))
    assert (forward.solver, forward.nfe, forward.seed) == ("rk4", 240, None)
    assert forward.attrs["route"] == "ode" and forward.attrs["divergence"] == "exact"
    assert set(forward.extras) == {"log_density"}  # one probe or the exact trace: no standard error


def test_ode_likelihood_through_torchdiffeq():
    exact = _two_sided(2)
    data = exact.rho1.sample(50, torch.Generator().manual_seed(3))
    traj = log_likelihood(
        exact.velocity, data, exact.rho0.log_density, torch.tensor([1.0, 0.0]), Torchdiffeq("dopri5", 1e-8, 1e-10)
    )
    assert (traj.log_density[0] - exact.rho1.log_density(data)).abs().max() < 1e-5


def test_hutchinson_probes_are_fixed_per_path_and_seeded():
    exact = _two_sided(2)
    data = exact.rho1.sample(100, torch.Generator().manual_seed(0))
    grid = grids.uniform(20).flip(0)
    runs = [
        log_likelihood(
            exact.velocity,
            data,
            exact.rho0.log_density,
            grid,
            divergence="hutchinson",
            n_probes=3,
            probe="gaussian",
            generator=torch.Generator().manual_seed(5),
            progress=False,
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0].log_density, runs[1].log_density)
    assert runs[0].seed == 5 and runs[0].attrs["n_probes"] == 3 and runs[0].attrs["probe"] == "gaussian"
    se = runs[0].extras["log_density_se"][0]
    assert (se > 0).all()
    exact_trace = log_likelihood(exact.velocity, data, exact.rho0.log_density, grid, progress=False)
    z = (runs[0].log_density[0] - exact_trace.log_density[0]) / se
    # per-particle standard errors of the right size: from 3 probes z is Student-t with 2 degrees of freedom,
    # P(|z| < 1) = 0.577 (100 particles: 0.05 s.e.), P(|z| < 6) = 0.973
    assert (z.abs() < 6).float().mean() > 0.9
    assert 0.4 < (z.abs() < 1).float().mean() < 0.75


class _Scaling(torch.nn.Module):
    """b(t, x) = a x: from N(0, I) at t = 0, log rho_1(x) = log N(x e^{-a}; 0, I) - d a."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, t, x):
        return self.a * x


def test_gradients_flow_only_when_asked():
    field = _Scaling()
    data = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))

    def base(x):
        return -0.5 * (x**2).sum(-1) - 1.5 * math.log(2 * math.pi)

    grid = grids.uniform(40).flip(0)
    plain = log_likelihood(field, data, base, grid, progress=False)
    assert not plain.log_density.requires_grad
    traj = log_likelihood(field, data, base, grid, enable_grad=True, progress=False)
    traj.log_density[0].mean().backward()
    a = field.a.detach()
    expected = ((data**2).sum(-1) * torch.exp(-2 * a) - 3).mean()
    assert torch.allclose(field.a.grad, expected, atol=1e-6)
    closed = (base(data * torch.exp(-a)) - 3 * a).detach()
    assert torch.allclose(plain.log_density[0], closed, atol=1e-7)


def test_bad_inputs_raise_clear_errors():
    exact = _two_sided(2)
    grid = grids.uniform(5).flip(0)
    with pytest.raises(ValueError, match="shape \\(4, 3\\)"):
        log_likelihood(exact.velocity, torch.zeros(4, 3), exact.rho0.log_density, grid, progress=False)
    net = MLP((2,), hidden=8, depth=1)
    with pytest.raises(ValueError, match="could not be evaluated"):
        log_likelihood(net, torch.zeros(4, 3), exact.rho0.log_density, grid, progress=False)
    with pytest.raises(ValueError, match="one log-density per particle"):
        log_likelihood(exact.velocity, torch.zeros(4, 2), lambda x: x, grid, progress=False)
    with pytest.raises(TypeError, match="ODE solver"):
        ode_log_density(exact.velocity, torch.zeros(4, 2), grid, EulerMaruyama())
    with pytest.raises(ValueError, match="divergence"):
        ode_log_density(exact.velocity, torch.zeros(4, 2), grid, divergence="trace")
    with pytest.raises(ValueError, match="not both"):
        ode_log_density(exact.velocity, torch.zeros(4, 2), grid, log_density_start=1.0, log_density_end=1.0)


# ---------------------------------------------------------------- Itô route
def test_ito_needs_a_score_and_the_right_pieces():
    exact = _two_sided(2)
    x = torch.zeros(4, 2)
    grid = grids.uniform(5)
    with pytest.raises(ValueError, match="needs the score"):
        ito_log_density(None, x, grid, velocity=exact.velocity, noise_scale=0.5)
    with pytest.raises(ValueError, match="velocity="):
        ito_log_density(exact.score, x, grid, noise_scale=0.5)
    with pytest.raises(ValueError, match="matched"):
        ito_log_density(exact.score, x, grid, velocity=exact.velocity)
    with pytest.raises(TypeError, match="fixed-step SDE solver"):
        ito_log_density(exact.score, x, grid, Torchsde(), velocity=exact.velocity, noise_scale=0.5)
    with pytest.raises(ValueError, match="beta"):
        flow = preset("flow")
        base = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
        ito_log_density(ExactMarginals(flow, base, exact.rho1).score, x, grid, interpolant=flow, progress=False)
    velocity_only = LearnedField(preset("linear"), {Parameterisation.VELOCITY: exact.velocity})
    with pytest.raises(ValueError, match="score"):
        ito_log_density(velocity_only.score, x, grid, velocity=velocity_only.velocity, noise_scale=0.5, progress=False)


@pytest.mark.parametrize("backward", [False, True])
def test_ito_routes_agree_with_each_other(backward):
    """The Gaussian-base identity, the general route (autograd divergence) and the closed-form time derivative
    are three computations of the same increments: on the same noise they agree to round-off."""
    interpolant, exact = _vp()
    lo, hi = interpolant.time_range
    t0, t1 = (hi, lo) if backward else (lo, hi)
    x = exact.sample(t0, 50, torch.Generator().manual_seed(0))
    grid = torch.linspace(t0, t1, 41)

    def run(scheme, **options):
        return ito_log_density(
            exact.score,
            x,
            grid,
            interpolant=interpolant,
            scheme=scheme,
            generator=torch.Generator().manual_seed(1),
            progress=False,
            **options,
        )

    for scheme in ("ito", "trapezoid"):
        identity = run(scheme)
        closed = run(scheme, time_derivative=exact.log_density_time_derivative, laplacian=exact.laplacian_log_density)
        general = ito_log_density(
            exact.score,
            x,
            grid,
            velocity=exact.velocity,
            noise_scale=lambda t: -gaussian_base_coefficients(interpolant, t)[1],
            scheme=scheme,
            generator=torch.Generator().manual_seed(1),
            progress=False,
        )
        assert torch.allclose(identity.final, general.final, atol=1e-9)
        change = identity.extras["log_density_change"]
        assert torch.allclose(change, closed.extras["log_density_change"], atol=1e-7)
        assert torch.allclose(change, general.extras["log_density_change"], atol=1e-7)


def test_divergence_free_estimate_costs_no_extra_evaluation():
    interpolant, exact = _vp()
    x = exact.sample(0.0, 20, torch.Generator().manual_seed(0))
    calls = {"n": 0}

    def score(t, y):
        calls["n"] += 1
        return exact.score(t, y)

    traj = ito_log_density(
        score,
        x,
        grids.uniform(30, t_end=interpolant.time_range[1]),
        interpolant=interpolant,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert calls["n"] == 30 == traj.attrs["score_evaluations"]
    assert traj.attrs["direction"] == "forward" and traj.attrs["noise_scale"] == "matched"


@pytest.mark.parametrize("seed", SEEDS)
def test_ito_trapezoid_matches_the_closed_form(seed):
    interpolant, exact = _vp()
    lo, hi = interpolant.time_range
    g = torch.Generator().manual_seed(seed)
    x = exact.sample(lo, 300, g)
    grid = torch.linspace(lo, hi, 201)
    middle_time = float(grid[100])
    traj = ito_log_density(
        exact.score,
        x,
        grid,
        interpolant=interpolant,
        scheme="trapezoid",
        laplacian=exact.laplacian_log_density,
        log_density_start=lambda y: exact.log_density(lo, y),
        generator=g,
        record=[middle_time],
        progress=False,
    )
    assert traj.log_density.shape == (3, 300)
    error = traj.log_density[-1] - exact.log_density(hi, traj.final)
    assert error.abs().mean() < 0.05
    middle = traj.log_density[1] - exact.log_density(middle_time, traj.at(middle_time))
    assert middle.abs().mean() < 0.05


def test_ito_with_a_two_sided_interpolant_and_heun():
    exact = _two_sided(2)
    lo, hi = exact.interpolant.time_range
    g = torch.Generator().manual_seed(0)
    x = exact.sample(lo, 200, g)
    traj = ito_log_density(
        exact.score,
        x,
        torch.linspace(lo, hi, 101),
        StochasticHeun(),
        velocity=exact.velocity,
        noise_scale=0.3,
        scheme="trapezoid",
        time_derivative=exact.log_density_time_derivative,
        log_density_start=exact.rho0.log_density,
        generator=g,
        progress=False,
    )
    assert (traj.log_density[-1] - exact.log_density(hi, traj.final)).abs().mean() < 0.02
    # Itô's formula holds for any drift; the samples follow rho only with the drift b + eps s: their mean exact
    # log-density within 4 standard errors of rho_hi's (from 20 000 exact draws)
    reference = exact.log_density(hi, exact.sample(hi, 20000, g))
    ours = exact.log_density(hi, traj.final)
    se = (ours.var() / ours.numel() + reference.var() / reference.numel()).sqrt()
    assert (ours.mean() - reference.mean()).abs() < 4 * se


def test_log_density_survives_xarray_and_netcdf(tmp_path):
    interpolant, exact = _vp()
    x = exact.sample(0.0, 10, torch.Generator().manual_seed(0))
    traj = ito_log_density(
        exact.score,
        x,
        torch.linspace(0, 0.5, 6),
        interpolant=interpolant,
        record=True,
        log_density_start=lambda y: exact.log_density(0.0, y),
        progress=False,
    )
    ds = traj.to_xarray()
    assert ds["log_density"].dims == ("time", "particle")
    path = tmp_path / "traj.nc"
    traj.to_netcdf(path)
    back = Trajectory.load(path)
    assert torch.allclose(back.log_density, traj.log_density)
    with pytest.raises(KeyError, match="no log-density"):
        _ = Trajectory(traj.times, traj.states, traj.grid, "x", 0).log_density
    with pytest.raises(ValueError, match="leading shape"):
        Trajectory(traj.times, traj.states, traj.grid, "x", 0, extras={"bad": torch.zeros(2)})
