r"""Time grids for the integration driver.

A grid is a 1-D float tensor of at least two strictly monotone times in [0, 1]; decreasing grids run a
dynamics backwards (``t: 1 -> 0``). Flow convention throughout: data at ``t = 1``.

* :func:`uniform` — equal steps.
* :func:`quadratic` — steps shrinking quadratically towards ``t_end`` (Lu et al. 2022, "time-quadratic").
* :func:`log_snr_uniform` — equal steps in :math:`\lambda = \log(\beta/\alpha)` for Gaussian-base schedules
  (Lu et al. 2022, DPM-Solver, Sec. 3.3).
* :func:`edm` — Karras et al. 2022, Eq. 5: :math:`\sigma_i = (\sigma_{max}^{1/\rho} +
  \tfrac{i}{n}(\sigma_{min}^{1/\rho}-\sigma_{max}^{1/\rho}))^\rho` with :math:`\sigma = \alpha/\beta`, mapped back
  to ``t`` by inverting the schedule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import as_tensor, check_finite
from .schedules import Schedule


def check_grid(grid, name: str = "grid") -> Tensor:
    """Validate a grid: 1-D, at least two points, finite, inside [0, 1], strictly monotone."""
    grid = as_tensor(grid, name, dtype=torch.float64) if not isinstance(grid, Tensor) else grid
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(f"{name} must be 1-D with at least two times; got shape {tuple(grid.shape)}")
    check_finite(grid, name)
    if grid.min() < 0 or grid.max() > 1:
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{float(grid.min())}, {float(grid.max())}]")
    steps = grid[1:] - grid[:-1]
    if not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError(f"{name} must be strictly increasing or strictly decreasing")
    return grid


def _check_steps(n_steps: int) -> None:
    if not (isinstance(n_steps, int) and n_steps >= 1):
        raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}")


def uniform(n_steps: int, t_start: float = 0.0, t_end: float = 1.0, dtype=torch.float64) -> Tensor:
    """``n_steps`` equal steps from ``t_start`` to ``t_end``; shape ``(n_steps + 1,)``."""
    _check_steps(n_steps)
    return check_grid(torch.linspace(t_start, t_end, n_steps + 1, dtype=dtype))


def quadratic(n_steps: int, t_start: float = 0.0, t_end: float = 1.0, dtype=torch.float64) -> Tensor:
    r"""Steps shrinking linearly towards ``t_end``: :math:`t_i = t_{end} - (t_{end}-t_{start})(1 - i/n)^2`."""
    _check_steps(n_steps)
    u = torch.linspace(0, 1, n_steps + 1, dtype=dtype)
    grid = t_end - (t_end - t_start) * (1 - u) ** 2
    grid[-1] = t_end
    return check_grid(grid)


def invert_monotone(fn: Callable[[Tensor], Tensor], values: Tensor, lo: float, hi: float, iters: int = 200) -> Tensor:
    """Solve ``fn(t) = value`` for each value by bisection on ``[lo, hi]``; ``fn`` monotone there.

    A value outside ``fn``'s range on ``[lo, hi]`` has no solution there: a ``ValueError``, not the nearest end
    (bisection would silently return it)."""
    lo_t = torch.full_like(values, lo)
    hi_t = torch.full_like(values, hi)
    f_lo, f_hi = fn(torch.tensor([lo], dtype=values.dtype)), fn(torch.tensor([hi], dtype=values.dtype))
    increasing = bool(f_hi > f_lo)
    low, high = (f_lo, f_hi) if increasing else (f_hi, f_lo)
    # Ends computed along another path, or rounded to float32 on the way, may differ by a few float32 ulps: the
    # same end, allowed; anything beyond has no solution here.
    scale = max(float(low.abs().max()), float(high.abs().max()), float((high - low).abs().max()))
    slack = 16 * max(torch.finfo(values.dtype).eps, torch.finfo(torch.float32).eps) * scale
    if bool(((values < low - slack) | (values > high + slack) | ~torch.isfinite(values)).any()):
        raise ValueError(
            f"values must lie in the function's range [{float(low):.6g}, {float(high):.6g}] on [{lo}, {hi}]; got "
            f"[{float(values.min()):.6g}, {float(values.max()):.6g}]"
        )
    for _ in range(iters):
        mid = 0.5 * (lo_t + hi_t)
        above = fn(mid) > values
        go_low = above if increasing else ~above
        hi_t = torch.where(go_low, mid, hi_t)
        lo_t = torch.where(go_low, lo_t, mid)
    return 0.5 * (lo_t + hi_t)


def _schedule_grid(
    schedule: Schedule,
    level: Callable[[Tensor], Tensor],
    knots: Callable[[Tensor, Tensor], Tensor],
    n_steps: int,
    t_start: float,
    t_end: float,
    what: str,
) -> Tensor:
    _check_steps(n_steps)
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be an interp.schedules.Schedule, got {type(schedule).__name__}")
    if not schedule.gaussian_base:
        raise ValueError(f"{what} grids need a Gaussian-base schedule (noise = alpha * x0)")
    ends = torch.tensor([t_start, t_end], dtype=torch.float64)
    check_grid(ends, "(t_start, t_end)")
    levels = level(ends)
    if not torch.isfinite(levels).all():
        raise ValueError(f"{what} is infinite at t_start={t_start} or t_end={t_end}; move them inside (0, 1)")
    u = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64)
    targets = knots(levels, u)
    lo, hi = min(t_start, t_end), max(t_start, t_end)
    grid = invert_monotone(level, targets, lo, hi)
    grid[0], grid[-1] = t_start, t_end
    return check_grid(grid)


def log_snr_uniform(schedule: Schedule, n_steps: int, t_start: float, t_end: float) -> Tensor:
    r"""Equal steps in :math:`\lambda(t) = \log(\beta(t)/\alpha(t))`."""

    def log_snr(t):
        return torch.log(schedule.beta(t)) - torch.log(schedule.alpha(t))

    return _schedule_grid(
        schedule, log_snr, lambda lv, u: lv[0] + u * (lv[1] - lv[0]), n_steps, t_start, t_end, "the log-SNR"
    )


def edm(schedule: Schedule, n_steps: int, t_start: float, t_end: float, rho: float = 7.0) -> Tensor:
    r"""Karras et al. (2022) grid with exponent ``rho`` in the noise level :math:`\sigma(t)=\alpha(t)/\beta(t)`."""
    if not rho > 0:
        raise ValueError(f"rho must be positive; got {rho}")

    def sigma(t):
        return schedule.alpha(t) / schedule.beta(t)

    def knots(levels, u):
        a, b = levels[0] ** (1 / rho), levels[1] ** (1 / rho)
        return (a + u * (b - a)) ** rho

    return _schedule_grid(schedule, sigma, knots, n_steps, t_start, t_end, "sigma = alpha / beta")


STANDARD = ("uniform", "quadratic", "log_snr", "edm")
"""The standard grids by name (what the solver comparisons try for each method)."""


def standard(kind: str, schedule: Schedule, n_steps: int, t_start: float, t_end: float) -> Tensor:
    """The standard grid named ``kind`` (one of :data:`STANDARD`) of ``n_steps`` steps from ``t_start`` to
    ``t_end``; ``schedule`` is read by the log-SNR and EDM grids."""
    if kind == "uniform":
        return uniform(n_steps, t_start, t_end)
    if kind == "quadratic":
        return quadratic(n_steps, t_start, t_end)
    if kind == "log_snr":
        return log_snr_uniform(schedule, n_steps, t_start, t_end)
    if kind == "edm":
        return edm(schedule, n_steps, t_start, t_end)
    raise ValueError(f"unknown grid {kind!r}; choose from {', '.join(STANDARD)}")
