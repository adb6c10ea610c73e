"""The single driver loop: dynamics + initial state + grid + solver -> :class:`~interp.results.Trajectory`.

Every solver, fixed-step or adaptive, ODE or SDE, runs through :func:`integrate`, which validates the input,
counts function evaluations (NFE), draws the Brownian increments from an explicit ``torch.Generator``,
records the path where asked, shows a progress bar and refuses to carry a non-finite state forward.

A fixed-step solver whose state has a ``tracked()`` method returning ``{name: (batch, ...) tensor}`` (the
log-density of :mod:`interp.density`, the mixing weights of :mod:`interp.superposition`) has those values
recorded with the states, into ``Trajectory.extras``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import check_batch
from .brownian import BrownianPath
from .dynamics import SDE
from .grids import check_grid
from .results import Trajectory
from .solvers.base import Solver, init_state
from .stepping import NonFiniteStateError, StepLoop, record_indices, seeded_generator

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

    Returns:
        :class:`~interp.results.Trajectory` with ``times``, ``states``, ``nfe``, ``solver``, ``grid``, ``seed``.

    Example:
        >>> traj = integrate(lambda t, x: -x, torch.ones(3, 2), grids.uniform(10), RK4())  # doctest: +SKIP
    """
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be an interp solver, got {type(solver).__name__}")
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
        recorded, extras = _run_fixed_steps(
            dynamics, x0, times, solver, generator, brownian, indices, progress, check_finite
        )
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
    dynamics, x0, times, solver, generator, brownian, indices, progress, check_finite
) -> tuple[Tensor, dict[str, Tensor]]:
    n_steps = times.shape[0] - 1
    loop = StepLoop(solver.name, n_steps, keep=indices, progress=progress, check_finite=check_finite)
    x = x0
    state = init_state(solver, dynamics, times[0], x0, times)
    loop.keep(0, x0, _tracked(state))
    noise_device = generator.device if generator is not None else x0.device
    for i in loop.steps():
        t0, t1 = times[i], times[i + 1]
        with loop.naming_earlier_failures():
            if solver.stochastic:
                if brownian is not None:
                    dw = brownian.increment(t0, t1).to(x)
                else:
                    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=noise_device).to(x.device)
                    dw = torch.sqrt((t1 - t0).abs()) * xi
                x, state = solver.step(dynamics, t0, t1, x, dw, state)
            else:
                x, state = solver.step(dynamics, t0, t1, x, state)
        # no host synchronisation per step: the flags are read every loop.check_every steps and at the end
        loop.defer(i, t1, x)
        if loop.wants(i + 1):
            loop.keep(i + 1, x, _tracked(state))
    loop.check()
    return loop.stacked()
