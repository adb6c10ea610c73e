"""The single driver loop: dynamics + initial state + grid + solver -> :class:`~interp.results.Trajectory`.

Every solver, fixed-step or adaptive, ODE or SDE, runs through :func:`integrate`, which validates the input,
counts function evaluations (NFE), draws the Brownian increments from an explicit ``torch.Generator``,
records the path where asked, shows a progress bar and refuses to carry a non-finite state forward.

A fixed-step solver whose state has a ``tracked()`` method returning ``{name: (batch, ...) tensor}`` (the
log-density of :mod:`interp.density`, the mixing weights of :mod:`interp.superposition`) has those values
recorded with the states, into ``Trajectory.extras``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import check_batch
from .brownian import BrownianPath
from .dynamics import SDE
from .grids import check_grid
from .results import Trajectory
from .solvers.base import Solver, init_state
from .stepping import FusedSteps, NonFiniteStateError, StepLoop, compile_fallback, record_indices, seeded_generator

__all__ = ["NonFiniteStateError", "integrate"]


class _Counted:
    """Wraps a callable ``(t, x)`` and counts its calls (one call = one batched evaluation)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, t, x):
        self.calls += 1
        out = self.fn(t, x)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the field returned {shape} for a state of shape {tuple(x.shape)}")
        return out


class _Diffusion:
    """Checks that an SDE's diffusion broadcasts to the state (``(batch, ...)``, ``(batch, 1)``, a scalar): a
    ``(3,)`` diffusion for a ``(4, 2)`` state would otherwise fail inside a solver's arithmetic, or worse, broadcast
    along the wrong axis."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, t, x):
        out = self.fn(t, x)
        if not isinstance(out, Tensor):
            raise ValueError(f"the diffusion returned {type(out).__name__}, not a tensor")
        try:
            fits = torch.broadcast_shapes(out.shape, x.shape) == x.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"the diffusion returned {tuple(out.shape)} for a state of shape {tuple(x.shape)}; it must broadcast "
                "to the state: (batch, ...), (batch, 1) or a scalar"
            )
        return out


def integrate(
    dynamics,
    x0: Tensor,
    grid,
    solver: Solver,
    *,
    generator: torch.Generator | None = None,
    brownian: BrownianPath | None = None,
    record: bool | Sequence[float] = False,
    progress: bool = True,
    check_finite: bool = True,
    compile: bool = False,
    block: int = 8,
) -> Trajectory:
    """Integrate ``dynamics`` from ``x0`` over ``grid`` with ``solver``.

    Args:
        dynamics: a field ``(t, x) -> Tensor`` for ODE solvers, an :class:`~interp.dynamics.SDE` for SDE solvers.
        x0: initial state ``(batch, ...)``.
        grid: strictly monotone times in [0, 1] (see :mod:`interp.grids`); decreasing runs backwards.
        solver: an ODE, SDE or adaptive solver (:mod:`interp.solvers`).
        generator: drives the noise of SDE solvers. When ``None`` a fresh generator is seeded from the OS and
            its seed recorded in the trajectory, so any run can be repeated.
        brownian: an optional fixed :class:`~interp.brownian.BrownianPath` to take increments from instead.
        record: ``False`` keeps the first and last states, ``True`` every grid state, or a list of grid times.
        progress: show a tqdm bar over the steps of a fixed-step solver (auto-disabled when output is not a
            terminal; adaptive solvers step inside their library).
        check_finite: raise :class:`NonFiniteStateError` at the first non-finite state.
        compile: run the steps compiled (:func:`torch.compile`; docs/design.md, "Compiled stepping"). A solver
            whose step keeps no state (Euler … RK4, Euler–Maruyama, stochastic Heun) runs ``block`` steps per
            compiled call, with the finiteness flags read once per block; any other fixed-step solver keeps its
            Python step and has the field compiled. The first step runs eagerly (it checks the field's output
            shape). Same numbers as eager up to floating-point rounding; the compilation time is reported in
            ``attrs["compile_seconds"]``, the mode in ``attrs["compiled"]`` (``"blocks"``, ``"field"``, or
            ``"none"`` after a fallback, whose reason is in ``attrs["compile_fallback"]``).
        block: steps per compiled call (blocks mode).

    Returns:
        :class:`~interp.results.Trajectory` with ``times``, ``states``, ``nfe``, ``solver``, ``grid``, ``seed``.

    Example:
        >>> traj = integrate(lambda t, x: -x, torch.ones(3, 2), grids.uniform(10), RK4())  # doctest: +SKIP
    """
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be an interp solver, got {type(solver).__name__}")
    if not (isinstance(block, int) and not isinstance(block, bool) and block >= 1):
        raise ValueError(f"block must be a positive integer; got {block!r}")
    if compile and solver.adaptive:
        raise ValueError(f"compile=True runs fixed-step solvers; {solver.name} steps inside its own library")
    check_batch(x0, "x0")
    grid = check_grid(grid)
    solver.check_dynamics(dynamics)
    indices = record_indices(record, grid)

    if isinstance(dynamics, SDE):
        counted = _Counted(dynamics.drift)
        dynamics = SDE(counted, _Diffusion(dynamics.diffusion), dynamics.additive)
    else:
        counted = dynamics = _Counted(dynamics)

    if brownian is not None:
        if not isinstance(brownian, BrownianPath):
            raise TypeError(f"brownian must be a BrownianPath; got {type(brownian).__name__}")
        if brownian.shape != tuple(x0.shape):
            raise ValueError(f"brownian has shape {brownian.shape}; the state x0 has {tuple(x0.shape)}")
    seed = None
    if solver.stochastic and brownian is None:
        generator = seeded_generator(generator, x0.device)
        seed = generator.initial_seed()

    times = grid.to(device=x0.device, dtype=x0.dtype)
    attrs: dict = {}
    if solver.adaptive:
        states, stats = solver.solve(dynamics, x0, times, generator)
        attrs.update({k: v for k, v in stats.items() if isinstance(v, (int, float, str, bool))})
        if check_finite:
            for i in range(states.shape[0]):
                if not torch.isfinite(states[i]).all():
                    raise NonFiniteStateError(i, float(grid[i]), solver.name)
        recorded = states[indices]
        extras = {}
    else:
        recorded, extras, compiled = _run_fixed_steps(
            dynamics, x0, times, solver, generator, brownian, indices, progress, check_finite, compile, block
        )
        if compile:
            counted.calls += compiled.pop("uncounted_nfe", 0)
            attrs.update({k: v for k, v in compiled.items() if v is not None})
    return Trajectory(
        times=grid[indices].clone(),
        states=recorded,
        grid=grid.clone(),
        solver=solver.name,
        nfe=counted.calls,
        seed=seed,
        attrs=attrs,
        extras=extras,
    )


def _tracked(state) -> dict[str, Tensor]:
    tracked = getattr(state, "tracked", None)
    return tracked() if callable(tracked) else {}


def _run_fixed_steps(
    dynamics, x0, times, solver, generator, brownian, indices, progress, check_finite, compile=False, block=8
) -> tuple[Tensor, dict[str, Tensor], dict]:
    n_steps = times.shape[0] - 1
    loop = StepLoop(solver.name, n_steps, keep=indices, progress=progress, check_finite=check_finite)
    x = x0
    state = init_state(solver, dynamics, times[0], x0, times)
    loop.keep(0, x0, _tracked(state))
    noise_device = generator.device if generator is not None else x0.device

    def increment(i: int, x: Tensor) -> Tensor:  # the Brownian increment of step i, drawn as the eager loop draws it
        t0, t1 = times[i], times[i + 1]
        if brownian is not None:
            return brownian.increment(t0, t1).to(x)
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=noise_device).to(x.device)
        return torch.sqrt((t1 - t0).abs()) * xi

    def step(dynamics, i: int, x: Tensor, state, dw: Tensor | None = None):
        t0, t1 = times[i], times[i + 1]
        if solver.stochastic:
            return solver.step(dynamics, t0, t1, x, increment(i, x) if dw is None else dw, state)
        return solver.step(dynamics, t0, t1, x, state)

    info: dict = {}
    if compile and not (getattr(solver, "stateless", False) and state is None):
        info = {"compiled": "field"}
        dynamics = _compile_field(dynamics, solver.name, info)
    elif compile:
        info = {"compiled": "blocks", "block": block}
        return (*_run_blocks(dynamics, x0, times, solver, step, increment, loop, block, info), info)
    for i in loop.steps():
        with loop.naming_earlier_failures():
            x, state = step(dynamics, i, x, state)
        # no host synchronisation per step: the flags are read every loop.check_every steps and at the end
        loop.defer(i, times[i + 1], x)
        if loop.wants(i + 1):
            loop.keep(i + 1, x, _tracked(state))
    loop.check()
    if info.get("compiled") == "field" and info.get("compile_fallback"):
        info["compiled"] = "none"
    return (*loop.stacked(), info)


def _compile_field(dynamics, name: str, info: dict):
    """``dynamics`` with its field (an SDE's drift) compiled: the first call's time goes to
    ``info["compile_seconds"]``; where compilation fails, eager from then on, with a warning and
    ``info["compile_fallback"]``."""
    counted = dynamics.drift if isinstance(dynamics, SDE) else dynamics
    eager = counted.fn
    compiled = torch.compile(eager, dynamic=False)

    def field(t, x):
        nonlocal compiled
        if compiled is None:
            return eager(t, x)
        if "compile_seconds" in info:
            return compiled(t, x)
        started = time.perf_counter()
        try:
            out = compiled(t, x)
        except Exception as error:  # compilation failed; an error of the field itself recurs eagerly below
            out = eager(t, x)
            compiled = None
            info["compile_fallback"] = compile_fallback(name, error, stacklevel=5)
        info["compile_seconds"] = time.perf_counter() - started
        return out

    counted.fn = field
    return dynamics


def _run_blocks(dynamics, x0, times, solver, step, increment, loop, block, info):
    """The steps of a stateless solver ``block`` at a time in one compiled call (:class:`FusedSteps`); the first
    step runs eagerly through the counted field, which checks its output shape."""
    n_steps = times.shape[0] - 1
    raw = SDE(dynamics.drift.fn, dynamics.diffusion.fn, dynamics.additive) if isinstance(dynamics, SDE) else dynamics.fn
    stochastic = solver.stochastic

    def advance(carry, inputs):
        t0, t1 = inputs[0], inputs[1]
        if stochastic:
            x, _ = solver.step(raw, t0, t1, carry[0], inputs[2], None)
        else:
            x, _ = solver.step(raw, t0, t1, carry[0], None)
        return (x,), torch.zeros((), dtype=torch.bool, device=x.device)

    fused = FusedSteps(advance, block, compile=True, name=solver.name)
    bar = tqdm(total=n_steps, desc=solver.name, disable=None if loop.progress else True, leave=False)
    with loop.naming_earlier_failures():
        x, _ = step(dynamics, 0, x0, None)
    loop.guard(0, times[1], x)
    loop.keep(1, x)
    bar.update(1)
    done = 1
    while done < n_steps:
        size = min(block, n_steps - done)
        inputs = (times[done : done + size], times[done + 1 : done + size + 1])
        if stochastic:
            inputs = (*inputs, torch.stack([increment(done + k, x) for k in range(size)]))
        if size == block:
            carry, states, bad = fused((x,), inputs)
        else:  # the last, shorter block runs eagerly: a compiled call of another length would compile again
            carry, states, bad = FusedSteps(advance, size)((x,), inputs)
        if loop.check_finite and bool(bad):  # one host synchronisation per block: replay it to name the step
            replayed, y = [], x
            for k in range(size):
                y, _ = step(raw, done + k, y, None, inputs[2][k] if stochastic else None)
                loop.guard(done + k, times[done + k + 1], y)
                replayed.append(y)
            # not raised (a compiled block can round differently from eager): the eager replay is the path
            carry, states = (y,), torch.stack(replayed)
        x = carry[0]
        for k in range(size):
            loop.keep(done + k + 1, states[k])
        done += size
        bar.update(size)
    bar.close()
    info["uncounted_nfe"] = (n_steps - 1) * solver.nfe_per_step
    info["compile_seconds"] = fused.first_call_seconds
    if fused.fallback:
        info["compiled"], info["compile_fallback"] = "none", fused.fallback
    return loop.stacked()
