r"""Snapshot data: checks, time normalisation, and a simulator with known dynamics.

Snapshots are populations observed at increasing times :math:`t_0 < \dots < t_K` (any units), possibly with
different counts; each is a ``(n_k, d)`` tensor. Internally a horizon :math:`[t_0, t_K]` is mapped to the
package's :math:`s \in [0, 1]` (docs/design.md, "Time"): with :math:`T = t_K - t_0`, the SDE
:math:`dX = b(X)\,dt + \sigma\,dW_t` reads :math:`dX = T\,b(X)\,ds + \sigma\sqrt T\,dW_s`.

:func:`simulate_snapshots` runs a reference drift (e.g. :class:`~interp.bridges.references.LotkaVolterra`) with
interp's SDE solvers and observes each simulated particle once (measurement destroys it, as for cells).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .._checks import as_tensor
from ..driver import integrate
from ..dynamics import SDE, constant_noise_sde
from ..solvers import EulerMaruyama
from ..solvers.base import SDESolver


def check_snapshots(snapshots: Sequence[Tensor], times, *, minimum: int = 2) -> tuple[list[Tensor], Tensor]:
    """Validate snapshots and their times; returns them as a list and a float64 tensor of times."""
    if isinstance(snapshots, Tensor) or not isinstance(snapshots, Sequence):
        raise TypeError("snapshots must be a sequence of (n_k, d) tensors, one per time")
    snapshots = list(snapshots)
    if len(snapshots) < minimum:
        raise ValueError(f"need at least {minimum} snapshots; got {len(snapshots)}")
    times = as_tensor(times, "times", dtype=torch.float64).reshape(-1).cpu()
    if times.shape[0] != len(snapshots):
        raise ValueError(f"times has {times.shape[0]} entries for {len(snapshots)} snapshots")
    if not torch.isfinite(times).all():
        raise ValueError("times must be finite")
    if (times[1:] <= times[:-1]).any():
        raise ValueError(f"times must be strictly increasing; got {times.tolist()}")
    dim = None
    for k, x in enumerate(snapshots):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"snapshot {k} must be a floating-point tensor")
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"snapshot {k} must have shape (n_k, d) with n_k >= 1; got {tuple(x.shape)}")
        if dim is None:
            dim = x.shape[1]
        elif x.shape[1] != dim:
            raise ValueError(
                f"snapshots must share their dimension: snapshot 0 has {dim}, snapshot {k} has {x.shape[1]}"
            )
        if not torch.isfinite(x).all():
            raise ValueError(f"snapshot {k} (time {float(times[k])}) has non-finite entries")
    return snapshots, times


def interval_grid(s0: float, s1: float, span: float, steps_per_unit: float) -> Tensor:
    """Uniform normalised grid on ``[s0, s1]`` with about ``steps_per_unit`` steps per unit of real time."""
    n = max(1, math.ceil((s1 - s0) * span * steps_per_unit - 1e-9))
    return torch.linspace(s0, s1, n + 1, dtype=torch.float64)


def time_scaled_sde(reference: Callable[[Tensor], Tensor], sigma: float, span: float) -> SDE:
    r""":math:`dX = T\,b(X)\,ds + \sigma\sqrt T\,dW_s` on normalised time for a time-homogeneous drift ``reference``."""
    return constant_noise_sde(lambda s, x: span * reference(x), sigma * math.sqrt(span))


@torch.no_grad()
def simulate_snapshots(
    reference: nn.Module,
    initial: Tensor | Callable[[int, torch.Generator], Tensor],
    times,
    sigma: float,
    n_per_snapshot: int,
    *,
    steps_per_unit: float = 100.0,
    solver: SDESolver | None = None,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Simulate :math:`dX = b(X)\\,dt + \\sigma\\,dW` from ``initial`` and observe ``n_per_snapshot`` fresh particles
    at each of ``times`` (each particle is observed once).

    Args:
        reference: the drift ``b(x)``.
        initial: a tensor of ``len(times) * n_per_snapshot`` starting states, or a sampler ``(n, generator)``.
        times: increasing observation times; the simulation starts at ``times[0]``.
        sigma: constant diffusion (> 0).
        steps_per_unit: solver steps per unit of time (Euler–Maruyama by default).

    Returns:
        a list of ``(n_per_snapshot, d)`` tensors, one per time.
    """
    times = as_tensor(times, "times", dtype=torch.float64).reshape(-1).cpu()
    if times.shape[0] < 1 or (times[1:] <= times[:-1]).any():
        raise ValueError(f"times must be strictly increasing; got {times.tolist()}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive; got {sigma}")
    if not (isinstance(n_per_snapshot, int) and n_per_snapshot >= 1):
        raise ValueError(f"n_per_snapshot must be a positive integer; got {n_per_snapshot!r}")
    k = times.shape[0]
    total = k * n_per_snapshot
    x0 = initial(total, generator) if callable(initial) else initial
    if not isinstance(x0, Tensor) or x0.ndim != 2 or x0.shape[0] != total:
        raise ValueError(f"initial must give ({total}, d) states ({k} times x {n_per_snapshot} particles)")
    if k == 1:
        return [x0]
    span = float(times[-1] - times[0])
    normalised = ((times - times[0]) / span).tolist()
    grid = torch.cat(
        [interval_grid(a, b, span, steps_per_unit)[:-1] for a, b in zip(normalised[:-1], normalised[1:], strict=True)]
        + [torch.ones(1, dtype=torch.float64)]
    )
    sde = time_scaled_sde(reference, sigma, span)
    trajectory = integrate(
        sde, x0, grid, solver or EulerMaruyama(), generator=generator, record=normalised, progress=False
    )
    return [trajectory.states[i, i * n_per_snapshot : (i + 1) * n_per_snapshot] for i in range(k)]
