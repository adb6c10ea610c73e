r"""Log-densities along ODE trajectories, and the divergence they need.

**ODE** (Chen et al. 2018; Grathwohl et al. 2019). Along :math:`dX = b(t, X)\,dt`,
:math:`\frac{d}{dt}\log\rho_t(X_t) = -\nabla\cdot b(t, X_t)`. :func:`ode_log_density` integrates the state
augmented with this change, the divergence taken exactly (``d`` vector–Jacobian products) or by Hutchinson's
estimator :math:`E[\varepsilon^\top (\partial b/\partial x)\varepsilon]` with Rademacher or Gaussian probes drawn
once per path (so each path's estimate is an unbiased, smooth function of time). Any fixed-step solver or
torchdiffeq runs it. :func:`log_likelihood` is the data case: from the data at ``grid[0]`` to the base at
``grid[-1]``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_batch
from .._grad import autograd_on, check_graph, grad_leaf
from .._linalg import flat_dot
from .._random import seeded_generator
from ..driver import integrate
from ..results import Trajectory
from ..solvers.base import Solver
from ..solvers.ode import RK4
from ._shared import PROBES, FirstCallErrors, anchor, check_divergence_options

Field = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------------- divergence
def draw_probes(x: Tensor, n_probes: int, probe: str, generator: torch.Generator | None) -> Tensor:
    """Hutchinson probes ``(n_probes, batch, ...)``: Rademacher (±1) or standard Gaussian, in ``x``'s dtype."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}; got {probe!r}")
    if not (isinstance(n_probes, int) and n_probes >= 1):
        raise ValueError(f"n_probes must be a positive int; got {n_probes!r}")
    device = generator.device if generator is not None else x.device
    shape = (n_probes,) + tuple(x.shape)
    if probe == "gaussian":
        out = torch.randn(shape, generator=generator, dtype=x.dtype, device=device)
    else:
        out = torch.randint(0, 2, shape, generator=generator, device=device).to(x.dtype) * 2 - 1
    return out.to(x.device)


def field_divergence(
    field: Field, t, x: Tensor, *, probes: Tensor | None = None, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    r"""``field(t, x)`` and its divergence :math:`\nabla\cdot` field, shape ``(K, batch)``.

    ``probes=None`` takes the exact trace (one vector–Jacobian product per state coordinate, ``K = 1``);
    ``probes`` of shape ``(K, batch, ...)`` give ``K`` Hutchinson estimates :math:`\varepsilon^\top J\varepsilon`.
    The field must treat particles independently (no batch statistics). Without ``create_graph`` the results
    are detached; with it, gradients flow to the field's parameters and to ``x``.
    """
    with autograd_on():
        xg = grad_leaf(x, keep=create_graph)
        out = field(t, xg)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the field returned {shape} for a state of shape {tuple(x.shape)}")
        batch = x.shape[0]
        if not check_graph(out, lambda z: field(t, z), xg, "the field"):  # verified constant in x
            k = 1 if probes is None else probes.shape[0]
            return out, torch.zeros(k, batch, dtype=x.dtype, device=x.device)
        if probes is None:
            flat = out.reshape(batch, -1)
            n = flat.shape[1]
            div = torch.zeros(batch, dtype=x.dtype, device=x.device)
            for i in range(n):
                (row,) = torch.autograd.grad(flat[:, i].sum(), xg, retain_graph=True, create_graph=create_graph)
                div = div + row.reshape(batch, -1)[:, i]
            div = div[None]
        else:
            if probes.shape[1:] != x.shape:
                raise ValueError(f"probes must have shape (K, *x.shape); got {tuple(probes.shape)}")
            estimates = []
            for k in range(probes.shape[0]):
                (vjp,) = torch.autograd.grad(out, xg, probes[k], retain_graph=True, create_graph=create_graph)
                estimates.append(flat_dot(vjp, probes[k]))
            div = torch.stack(estimates)
    if not create_graph:
        out, div = out.detach(), div.detach()
    return out, div


# ---------------------------------------------------------------------- ODE route
class _AugmentedODE:
    """``y = [x, l_1..l_K]`` with ``dx/dt = b`` and ``dl_k/dt = -div_k b`` (``K`` probes or the exact trace)."""

    def __init__(self, field: Field, shape, probes: Tensor | None, create_graph: bool):
        self.field, self.shape, self.probes, self.create_graph = field, tuple(shape), probes, create_graph
        self.columns = 1 if probes is None else probes.shape[0]
        self.first_call = FirstCallErrors(shape)

    def __call__(self, t, y: Tensor) -> Tensor:
        x = y[:, : -self.columns].reshape(self.shape)
        with self.first_call("velocity field"):
            b, div = field_divergence(self.field, t, x, probes=self.probes, create_graph=self.create_graph)
        return torch.cat([b.reshape(y.shape[0], -1), -div.T.to(y.dtype)], dim=1)


def ode_log_density(
    velocity: Field,
    x: Tensor,
    grid,
    solver: Solver | None = None,
    *,
    log_density_start=None,
    log_density_end=None,
    divergence: str = "exact",
    n_probes: int = 1,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    enable_grad: bool = False,
    record: bool = False,
    progress: bool = True,
) -> Trajectory:
    r"""Integrate :math:`dX = b\,dt` from ``x`` at ``grid[0]`` and track :math:`\log\rho_t(X_t)`.

    Args:
        velocity: the field :math:`b(t, x)`.
        x: states at ``grid[0]``, ``(batch, ...)``.
        grid: times (increasing or decreasing); see :mod:`interp.grids`.
        solver: any fixed-step ODE solver or :class:`~interp.solvers.Torchdiffeq` (default RK4).
        log_density_start: :math:`\log\rho` at ``grid[0]`` (a callable of the states or a ``(batch,)`` tensor), or
        log_density_end: :math:`\log\rho` at ``grid[-1]`` (a callable of the final states), e.g. the base density
            when the path runs from data to noise. Without either, the change since ``grid[0]`` is tracked as
            ``extras["log_density_change"]``.
        divergence: ``"exact"`` (autograd trace; ``d`` backward passes per evaluation) or ``"hutchinson"``.
        n_probes: Hutchinson probes per path, drawn once per path from ``generator``. With ``n_probes >= 2`` each
            particle's standard error is kept as ``"log_density_se"``.
        probe: ``"rademacher"`` or ``"gaussian"``.
        enable_grad: keep the autograd graph (to train by maximum likelihood); otherwise nothing is kept.

    Returns:
        a :class:`~interp.results.Trajectory` with ``extras["log_density"]`` of shape ``(n_recorded, batch)``.
    """
    solver = RK4() if solver is None else solver
    if not isinstance(solver, Solver) or solver.stochastic:
        raise TypeError(f"the ODE route needs an ODE solver (fixed-step or Torchdiffeq); got {solver!r}")
    check_divergence_options(divergence, n_probes, probe)
    check_batch(x, "x")
    if log_density_start is not None and log_density_end is not None:
        raise ValueError("give log_density_start or log_density_end, not both")
    seed = None
    probes = None
    if divergence == "hutchinson":
        generator = seeded_generator(generator, x.device)
        seed = generator.initial_seed()
        probes = draw_probes(x, n_probes, probe, generator)
    field = _AugmentedODE(velocity, x.shape, probes, create_graph=enable_grad)
    batch = x.shape[0]
    y0 = torch.cat([x.reshape(batch, -1), torch.zeros(batch, field.columns, dtype=x.dtype, device=x.device)], 1)
    with contextlib.nullcontext() if enable_grad else torch.no_grad():
        traj = integrate(field, y0, grid, solver, record=record, progress=progress)
    n = traj.states.shape[0]
    states = traj.states[..., : -field.columns].reshape((n,) + tuple(x.shape))
    change = traj.states[..., -field.columns :]  # (time, batch, K)
    name, value = anchor(change, states, log_density_start, log_density_end)
    extras = {name: value.mean(-1)}
    if field.columns > 1:
        extras[name + "_se"] = value.std(-1) / math.sqrt(field.columns)
    attrs = dict(traj.attrs, divergence=divergence, route="ode")
    if probes is not None:
        attrs.update(n_probes=n_probes, probe=probe)
    return Trajectory(traj.times, states, traj.grid, traj.solver, traj.nfe, seed, attrs, extras)


def log_likelihood(
    velocity: Field, data: Tensor, base_log_density, grid, solver: Solver | None = None, **options
) -> Trajectory:
    r""":math:`\log\rho(\text{data})` under the flow of ``velocity``: integrate from the data at ``grid[0]`` to the
    base at ``grid[-1]``, where ``base_log_density`` (a callable of states) is known.

    ``traj.log_density[0]`` is the log-likelihood of ``data``; the other rows are :math:`\log\rho_t` along the
    path. ``options`` are those of :func:`ode_log_density` (``divergence``, ``n_probes``, ``enable_grad``, ...).

    Example:
        >>> traj = log_likelihood(field.velocity, x1, rho0.log_density, grids.uniform(100).flip(0))  # doctest: +SKIP
    """
    if not callable(base_log_density):
        raise TypeError("base_log_density must be a callable of the states at grid[-1]")
    return ode_log_density(velocity, data, grid, solver, log_density_end=base_log_density, **options)
