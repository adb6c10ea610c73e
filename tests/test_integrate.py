import pytest
import torch

from interp import NonFiniteStateError, grids, integrate
from interp.brownian import BrownianPath
from interp.dynamics import SDE
from interp.solvers import RK4, Euler, EulerMaruyama, Heun, StochasticHeun, Torchdiffeq


def _sde():
    return SDE(lambda t, x: -x, lambda t, x: torch.ones_like(x[:, :1]), additive=True)


def test_nfe_and_recording():
    field = lambda t, x: -x  # noqa: E731
    x0 = torch.ones(5, 2)
    out = integrate(field, x0, grids.uniform(8), RK4(), progress=False)
    assert out.nfe == 8 * 4 and out.states.shape == (2, 5, 2)
    assert torch.equal(out.times, torch.tensor([0.0, 1.0]))
    everything = integrate(field, x0, grids.uniform(8), Heun(), record=True, progress=False)
    assert everything.nfe == 16 and everything.states.shape == (9, 5, 2)
    some = integrate(field, x0, grids.uniform(8), Euler(), record=[0.25, 0.5], progress=False)
    assert torch.allclose(some.times, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    # Values against closed forms, not just "different": Heun on dx/dt = -x multiplies by 1 - h + h^2/2 per step,
    # Euler by 1 - h, RK4 by the degree-4 Taylor polynomial of exp(-h).
    h = 1 / 8
    assert torch.allclose(everything.states[4], x0 * (1 - h + h**2 / 2) ** 4, rtol=1e-12)
    assert torch.allclose(some.at(0.5), x0 * (1 - h) ** 4, rtol=1e-12)
    taylor = 1 - h + h**2 / 2 - h**3 / 6 + h**4 / 24
    assert torch.allclose(out.final, x0 * taylor**8, rtol=1e-12)
    assert torch.allclose(some.at(0.25), integrate(field, x0, grids.uniform(2, 0, 0.25), Euler(), progress=False).final)
    with pytest.raises(ValueError, match="not a point of the grid"):
        integrate(field, x0, grids.uniform(8), Euler(), record=[0.3], progress=False)
    with pytest.raises(ValueError, match="was not recorded"):
        some.at(0.75)


def test_any_state_shape():
    x0 = torch.ones(4, 3, 5, 5)
    out = integrate(lambda t, x: -x, x0, grids.uniform(4), RK4(), progress=False)
    assert out.final.shape == x0.shape
    assert torch.allclose(out.final, x0 * torch.exp(torch.tensor(-1.0)), atol=1e-4)


def test_same_seed_same_path_and_seed_recorded():
    x0 = torch.zeros(6, 2)
    a = integrate(
        _sde(), x0, grids.uniform(10), EulerMaruyama(), generator=torch.Generator().manual_seed(7), progress=False
    )
    b = integrate(
        _sde(), x0, grids.uniform(10), EulerMaruyama(), generator=torch.Generator().manual_seed(7), progress=False
    )
    c = integrate(_sde(), x0, grids.uniform(10), EulerMaruyama(), progress=False)
    assert torch.equal(a.final, b.final) and a.seed == 7
    assert c.seed is not None
    replay = integrate(
        _sde(), x0, grids.uniform(10), EulerMaruyama(), generator=torch.Generator().manual_seed(c.seed), progress=False
    )
    assert torch.equal(replay.final, c.final)


def test_brownian_path_is_shared_across_step_sizes():
    path = BrownianPath(0.0, 1.0, (3, 2), n_steps=8, generator=torch.Generator().manual_seed(0))
    total = sum(path.increment(i / 8, (i + 1) / 8) for i in range(8))
    assert torch.allclose(total, path.increment(0.0, 1.0))
    zero_drift = SDE(lambda t, x: torch.zeros_like(x), lambda t, x: torch.ones_like(x[:, :1]), additive=True)
    fine = integrate(zero_drift, torch.zeros(3, 2), grids.uniform(8), EulerMaruyama(), brownian=path, progress=False)
    coarse = integrate(zero_drift, torch.zeros(3, 2), grids.uniform(2), EulerMaruyama(), brownian=path, progress=False)
    assert torch.allclose(fine.final, coarse.final)
    with pytest.raises(ValueError, match="not on the path's grid"):
        path.increment(0.0, 0.1)


def test_non_finite_state_names_step_and_time():
    blow_up = lambda t, x: x**3 * 1e3  # noqa: E731
    with pytest.raises(NonFiniteStateError, match=r"step \d+ \(t = "):
        integrate(blow_up, torch.full((2, 1), 10.0), grids.uniform(20), Euler(), progress=False)
    nan_field = lambda t, x: x * float("nan")  # noqa: E731
    with pytest.raises(NonFiniteStateError) as info:
        integrate(nan_field, torch.ones(2, 1), grids.uniform(5), Euler(), progress=False)
    assert info.value.step == 0 and abs(info.value.time - 0.2) < 1e-12


@pytest.mark.parametrize("steps", [10, 100])  # the failure inside the first block of flags, and in a later one
def test_deferred_flags_name_the_first_non_finite_step(steps):
    # The driver reads its finiteness flags once per block of steps, not per step. A field turning NaN after
    # t = 0.55 is named at the step it did so, both when the field keeps computing on the NaN state and when, as
    # the analytic fields do, it refuses a non-finite input with its own error.
    def nan_after(t, x):
        return torch.where(t > 0.55, torch.nan, -x)

    def refusing(t, x):
        if not torch.isfinite(x).all():
            raise ValueError("x must be finite")
        return nan_after(t, x)

    grid = grids.uniform(steps)
    first = int(torch.nonzero(grid[:-1] > 0.55)[0])  # Euler's step from grid[first] is the first to use a NaN
    for field in (nan_after, refusing):
        with pytest.raises(NonFiniteStateError) as info:
            integrate(field, torch.ones(3, 2), grid, Euler(), record=True, progress=False)
        assert info.value.step == first and info.value.time == pytest.approx(float(grid[first + 1]))
        if field is refusing and first < steps - 1:
            assert isinstance(info.value.__cause__, ValueError)


def test_bad_input():
    field = lambda t, x: -x  # noqa: E731
    with pytest.raises(ValueError, match="finite"):
        integrate(field, torch.tensor([[float("nan")]]), grids.uniform(2), Euler(), progress=False)
    with pytest.raises(ValueError, match="strictly"):
        integrate(field, torch.ones(2, 1), torch.tensor([0.0, 0.5, 0.5]), Euler(), progress=False)
    with pytest.raises(ValueError, match="returned"):
        integrate(lambda t, x: x[:, :1], torch.ones(2, 3), grids.uniform(2), Euler(), progress=False)
    with pytest.raises(TypeError, match="interp solver"):
        integrate(field, torch.ones(2, 1), grids.uniform(2), "rk4", progress=False)
    with pytest.raises(TypeError, match="floating"):
        integrate(field, torch.ones(2, 1, dtype=torch.int64), grids.uniform(2), Euler(), progress=False)


def test_adaptive_nfe_is_counted():
    out = integrate(lambda t, x: -x, torch.ones(2, 1), grids.uniform(2), Torchdiffeq(), progress=False)
    assert out.nfe > 6 and out.states.shape == (2, 2, 1)


# ---------------------------------------------------------------------- compiled stepping (docs/design.md)
def _decay_sde():  # state-dependent drift, additive noise: Euler-Maruyama and stochastic Heun both apply
    return SDE(lambda t, x: -x * (1 + t), lambda t, x: 0.5 * torch.ones_like(x), additive=True)


@pytest.mark.parametrize("solver", [RK4(), EulerMaruyama(), StochasticHeun()], ids=lambda s: s.name)
def test_compiled_blocks_give_the_eager_path(solver):
    # 1 eager step, two compiled blocks of 4 and an eager tail of 3: every state, the NFE and (for the SDE
    # solvers) the Brownian increments of the same seed as the eager loop; fusion may round, so 1e-12 in float64
    dynamics = _decay_sde() if solver.stochastic else (lambda t, x: -x * (1 + t))
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    grid = grids.uniform(12, dtype=torch.float64)
    runs = [
        integrate(
            dynamics,
            x0,
            grid,
            solver,
            generator=torch.Generator().manual_seed(3),
            record=True,
            progress=False,
            compile=compile,
            block=4,
        )
        for compile in (False, True)
    ]
    eager, fused = runs
    assert fused.attrs["compiled"] == "blocks" and fused.attrs["compile_seconds"] > 0
    assert "compile_fallback" not in fused.attrs and fused.nfe == eager.nfe == 12 * solver.nfe_per_step
    assert torch.allclose(fused.states, eager.states, atol=1e-12, rtol=0)
    assert fused.seed == eager.seed == (3 if solver.stochastic else None)
    if not solver.stochastic:  # and both against the closed form's RK4 error scale
        exact = x0 * torch.exp(-(grid + grid**2 / 2))[:, None, None]
        assert (fused.states - exact).abs().max() < 1e-5  # RK4 at h = 1/12: about 3e-6


def test_compiled_blocks_name_the_first_non_finite_step():
    # the flagged block is replayed eagerly: the error names the step (here inside the second block) and time
    grid = grids.uniform(12, dtype=torch.float64)

    def nan_after(t, x):
        return torch.where(t > 0.55, torch.nan, -x)

    with pytest.raises(NonFiniteStateError) as info:
        integrate(nan_after, torch.ones(3, 2, dtype=torch.float64), grid, Euler(), progress=False, compile=True,
                  block=4)  # fmt: skip
    first = int(torch.nonzero(grid[:-1] > 0.55)[0])
    assert info.value.step == first and info.value.time == pytest.approx(float(grid[first + 1]))


def test_compiled_field_for_a_stateful_solver_and_the_fallback(monkeypatch):
    from interp.interpolants import preset
    from interp.solvers import DPMSolverPP

    interpolant = preset("vp")
    lo, hi = interpolant.time_range
    grid = grids.uniform(8, lo, hi, dtype=torch.float64)
    x0 = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=torch.float64)

    def field(t, x):
        return -x * t

    eager = integrate(field, x0, grid, DPMSolverPP(interpolant, 2), progress=False)
    compiled = integrate(field, x0, grid, DPMSolverPP(interpolant, 2), progress=False, compile=True)
    assert compiled.attrs["compiled"] == "field" and compiled.nfe == eager.nfe == 8
    assert torch.allclose(compiled.states, eager.states, atol=1e-12, rtol=0)

    import interp.driver
    import interp.stepping

    def unavailable(fn, **kwargs):
        def fails(*args):
            raise RuntimeError("no C compiler\nmore detail")

        return fails

    for module in (interp.driver, interp.stepping):
        monkeypatch.setattr(module.torch, "compile", unavailable)
    for solver in (DPMSolverPP(interpolant, 2), Euler()):
        with pytest.warns(RuntimeWarning, match="torch.compile is unavailable here .RuntimeError: no C compiler."):
            fallen = integrate(field, x0, grid, solver, progress=False, compile=True, block=3)
        plain = integrate(field, x0, grid, solver, progress=False)
        assert fallen.attrs["compiled"] == "none" and "no C compiler" in fallen.attrs["compile_fallback"]
        assert torch.equal(fallen.states, plain.states) and fallen.nfe == plain.nfe


def test_compile_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="block must be a positive integer"):
        integrate(lambda t, x: -x, torch.ones(2, 1), grids.uniform(4), Euler(), progress=False, block=0)
    with pytest.raises(ValueError, match="fixed-step"):
        integrate(lambda t, x: -x, torch.ones(2, 1), grids.uniform(4), Torchdiffeq(), progress=False, compile=True)
