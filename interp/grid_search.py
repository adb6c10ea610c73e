r"""Searched time grids: optimise the knots of a grid for one solver and one NFE budget.

After AutoDiffusion (Li et al. 2023) and the step-schedule searches of USF/S³ (Liu et al. 2024; Frankel et al.
2025): fix the solver, the number of steps and the end points; parameterise the interior knots as
:math:`t_i = t_{start} + (t_{end}-t_{start})\sum_{j\le i}\mathrm{softmax}(\theta)_j` (monotone by construction);
minimise the mean squared pathwise error of the final states against a tight reference solution on a *pilot* set
of initial points, by Adam with gradients through the solver (every solver here is differentiable in its grid,
including the intermediate points of singlestep DPM-Solver, whose log-SNR inverse is closed form for the built-in
schedules). The grid is then judged on *fresh* noise, never on the pilot set (``validate.bench solvers``).

No library does this for arbitrary solvers and fields, hence the hand-written loop.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from ._checks import check_batch, check_same_shape
from ._files import write_atomically
from .grids import check_grid
from .solvers.base import ODESolver, init_state


@dataclass
class SearchedGrid:
    """A searched grid and how it was found (``pilot_error``: RMS pathwise error on the pilot set)."""

    grid: list[float]
    solver: str
    nfe: int
    initial_error: float
    pilot_error: float
    iterations: int
    history: list[float] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def tensor(self, dtype=torch.float64) -> Tensor:
        return torch.tensor(self.grid, dtype=dtype)

    def save(self, path) -> None:
        """Write JSON atomically."""

        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(asdict(self), f, indent=1)

        write_atomically(path, write)

    @classmethod
    def load(cls, path) -> SearchedGrid:
        with open(path) as f:
            data = json.load(f)
        out = cls(**data)
        check_grid(torch.tensor(out.grid, dtype=torch.float64), f"grid in {path}")
        return out


def solve(field_fn, x0: Tensor, grid: Tensor, solver: ODESolver) -> Tensor:
    """Final state of ``solver`` on ``grid`` from ``x0``, keeping the autograd graph (no driver checks)."""
    state = init_state(solver, field_fn, grid[0], x0, grid)
    x = x0
    for i in range(grid.shape[0] - 1):
        x, state = solver.step(field_fn, grid[i], grid[i + 1], x, state)
    return x


def search_grid(
    field_fn,
    solver: ODESolver,
    x_pilot: Tensor,
    reference: Tensor,
    initial_grid,
    *,
    iterations: int = 150,
    lr: float = 0.05,
) -> SearchedGrid:
    """Optimise the interior knots of ``initial_grid`` (its end points and step count are kept).

    Args:
        field_fn: the field ``(t, x)`` the solver integrates (differentiable in ``t``).
        solver: a fixed-step ODE solver (any in :mod:`interp.solvers` except the adaptive ones).
        x_pilot: pilot initial points ``(n, ...)``.
        reference: their tight reference final states (same shape).
        initial_grid: the starting grid (e.g. :func:`interp.grids.log_snr_uniform`).
        iterations: Adam iterations on the knot logits.
        lr: Adam's learning rate.

    Returns:
        :class:`SearchedGrid`, the best grid seen (never worse on the pilot set than ``initial_grid``).
    """
    if not isinstance(solver, ODESolver) or solver.stochastic:
        raise TypeError(f"solver must be a fixed-step ODE solver; got {type(solver).__name__}")
    check_batch(x_pilot, "x_pilot")
    check_same_shape(x_pilot, reference, "x_pilot", "reference")
    if not (isinstance(iterations, int) and iterations >= 0):
        raise ValueError(f"iterations must be a non-negative integer; got {iterations!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive; got {lr}")
    grid0 = check_grid(torch.as_tensor(initial_grid, dtype=x_pilot.dtype), "initial_grid").to(x_pilot)
    if grid0.shape[0] < 3:
        raise ValueError("a grid of one step has no interior knot to search")
    start, span = grid0[0], grid0[-1] - grid0[0]
    theta = torch.log((grid0[1:] - grid0[:-1]) / span).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=lr)

    def grid_of(logits: Tensor) -> Tensor:
        cumulative = torch.cumsum(torch.softmax(logits, 0), 0)
        return torch.cat([start.reshape(1), start + span * cumulative[:-1], grid0[-1:]])

    def loss_of(grid: Tensor) -> Tensor:
        final = solve(field_fn, x_pilot, grid, solver)
        return (final - reference).pow(2).reshape(x_pilot.shape[0], -1).sum(1).mean()

    with torch.no_grad():
        initial = float(loss_of(grid0)) ** 0.5
    best, best_grid, history = initial, grid0.detach().clone(), [initial]
    for _ in range(iterations):
        optimiser.zero_grad()
        grid = grid_of(theta)
        with torch.enable_grad():
            loss = loss_of(grid)
        if not torch.isfinite(loss):  # a knot layout the solver cannot take: step back and shrink the step
            with torch.no_grad():
                theta.copy_(torch.log((best_grid[1:] - best_grid[:-1]) / span))
            for group in optimiser.param_groups:
                group["lr"] *= 0.5
            continue
        value = float(loss.detach()) ** 0.5
        history.append(value)
        if value < best:
            best, best_grid = value, grid.detach().clone()
        loss.backward()
        optimiser.step()
    return SearchedGrid(
        grid=best_grid.tolist(),
        solver=solver.name,
        nfe=int(getattr(solver, "nfe_per_step", 1)) * (grid0.shape[0] - 1),
        initial_error=initial,
        pilot_error=best,
        iterations=iterations,
        history=history,
    )
