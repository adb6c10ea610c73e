"""Adaptive and library-backed solvers: torchdiffeq for ODEs, torchsde for SDEs.

These delegate the stepping to well-kept libraries (Chen et al. 2018, torchdiffeq; Li et al. 2020, torchsde)
and report the state at every time of the requested grid. Randomness for torchsde comes from a
:class:`torchsde.BrownianInterval` whose entropy is drawn from the caller's ``torch.Generator``, so the same
seed gives the same path.
"""

from __future__ import annotations

import torch
import torchdiffeq
import torchsde

from .._checks import check_count, check_positive
from ..brownian import brownian_interval
from ..dynamics import SDE
from ..stepping import ConvergenceError, NonFiniteStateError
from .base import AdaptiveSolver

# The method names torchdiffeq.odeint documents (its own table is private, so it is not read here): an unknown
# name is refused when the solver is built rather than deep inside odeint.
TORCHDIFFEQ_METHODS = (
    "adaptive_heun",
    "bosh3",
    "dopri5",
    "dopri8",
    "euler",
    "explicit_adams",
    "fehlberg2",
    "fixed_adams",
    "heun2",
    "heun3",
    "implicit_adams",
    "midpoint",
    "rk4",
    "scipy_solver",
)

_ADAPTIVE_RK = {"dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2"}
_ITO_METHODS = {"euler", "milstein", "srk"}
_STRATONOVICH_METHODS = {"midpoint", "heun", "reversible_heun", "milstein_stratonovich"}


class _Guarded:
    """Counts a library solver's evaluations of a user function, stops it at ``max_evaluations``
    (:class:`ConvergenceError`: a stiff field or a tolerance out of reach would otherwise run without end) and
    stops it at the first non-finite value (:class:`NonFiniteStateError` with the time; an adaptive solver would
    otherwise shrink its step on NaN errors until its own assertion "underflow in dt")."""

    def __init__(self, name: str, max_evaluations: int, time_of=lambda s: s):
        self.name, self.max_evaluations, self.time_of, self.count = name, max_evaluations, time_of, 0

    def __call__(self, fn, s, y):
        self.count += 1
        if self.count > self.max_evaluations:
            raise ConvergenceError(
                f"{self.name}: more than {self.max_evaluations} field evaluations before the end of the grid "
                f"(reached t = {float(self.time_of(s)):.6g}); the field may be stiff or the tolerances out of reach: "
                "loosen rtol/atol, use a fixed-step solver, or raise max_evaluations"
            )
        out = fn(s, y)
        if not torch.isfinite(out).all():
            raise NonFiniteStateError(self.count, float(self.time_of(s)), f"{self.name} (field evaluation)")
        return out


def _tolerances(rtol, atol) -> None:
    check_positive(rtol, "rtol")
    check_positive(atol, "atol", allow_zero=True)


class Torchdiffeq(AdaptiveSolver):
    """Any :func:`torchdiffeq.odeint` method (``dopri5``, ``dopri8``, ``bosh3``, ``rk4``, ...).

    At most ``max_evaluations`` field evaluations (a :class:`~interp.stepping.ConvergenceError` beyond); a
    non-finite field value stops the solve with :class:`~interp.stepping.NonFiniteStateError` naming its time."""

    def __init__(
        self,
        method: str = "dopri5",
        rtol: float = 1e-7,
        atol: float = 1e-9,
        options: dict | None = None,
        max_evaluations: int = 1_000_000,
    ):
        if method not in TORCHDIFFEQ_METHODS:
            raise ValueError(f"unknown torchdiffeq method {method!r}; choose from {list(TORCHDIFFEQ_METHODS)}")
        _tolerances(rtol, atol)
        self.method, self.rtol, self.atol, self.options = method, rtol, atol, options
        self.max_evaluations = check_count(max_evaluations, "max_evaluations")
        self.name = f"torchdiffeq_{method}"

    def solve(self, field, x0, grid, generator):
        options = dict(self.options or {})
        if self.method in _ADAPTIVE_RK:
            # Make the last step land on the final time: otherwise dopri-type steps overshoot it and the field
            # is evaluated outside [0, 1], where interpolant coefficients may not exist.
            options.setdefault("step_t", grid[-1:].to(x0))
        guard = _Guarded(self.name, self.max_evaluations)
        states = torchdiffeq.odeint(
            lambda t, x: guard(field, t, x),
            x0,
            grid.to(x0),
            rtol=self.rtol,
            atol=self.atol,
            method=self.method,
            options=options,
        )
        return states, {"rtol": self.rtol, "atol": self.atol, "evaluations": guard.count}

    def __repr__(self):
        return f"Torchdiffeq(method={self.method!r}, rtol={self.rtol}, atol={self.atol})"


class _TorchsdeAdapter(torch.nn.Module):
    """Presents an :class:`SDE` on a (possibly reversed) grid to torchsde's ``f``/``g`` interface."""

    noise_type = "diagonal"

    def __init__(self, sde: SDE, shape, sde_type: str, reverse: bool, guard: _Guarded):
        super().__init__()
        self.sde, self.shape, self.sde_type, self.reverse, self.guard = sde, tuple(shape), sde_type, reverse, guard

    def _time(self, s):
        return 1 - s if self.reverse else s

    def _drift(self, s, y):
        out = self.sde.drift(self._time(s), y.reshape(self.shape))
        return (-out if self.reverse else out).reshape(y.shape)

    def _diffusion(self, s, y):
        out = self.sde.diffusion(self._time(s), y.reshape(self.shape))
        return torch.broadcast_to(out, self.shape).reshape(y.shape)

    def f(self, s, y):
        return self.guard(self._drift, s, y)

    def g(self, s, y):
        return self.guard(self._diffusion, s, y)


class Torchsde(AdaptiveSolver):
    """:func:`torchsde.sdeint` with diagonal noise: ``euler``, ``milstein``, ``srk`` (Itô) or, for additive
    noise only, the Stratonovich methods ``midpoint``, ``heun``, ``reversible_heun``.

    ``adaptive=True`` lets torchsde control the step (error estimate by step doubling) within ``rtol``/``atol``.
    Decreasing grids are run as the time-reversed SDE in ``s = 1 - t``.
    """

    stochastic = True

    def __init__(
        self,
        method: str = "srk",
        dt: float = 1e-2,
        adaptive: bool = False,
        rtol: float = 1e-5,
        atol: float = 1e-4,
        max_evaluations: int = 1_000_000,
    ):
        if method not in _ITO_METHODS | _STRATONOVICH_METHODS:
            raise ValueError(
                f"unknown torchsde method {method!r}; choose from {sorted(_ITO_METHODS | _STRATONOVICH_METHODS)}"
            )
        check_positive(dt, "dt")
        _tolerances(rtol, atol)
        self.method, self.dt, self.adaptive_steps, self.rtol, self.atol = method, dt, adaptive, rtol, atol
        self.max_evaluations = check_count(max_evaluations, "max_evaluations")
        self.name = f"torchsde_{method}"

    def check_dynamics(self, dynamics):
        super().check_dynamics(dynamics)
        if self.method in _STRATONOVICH_METHODS and not dynamics.additive:
            raise ValueError(f"torchsde {self.method!r} is a Stratonovich method; it needs additive noise here")

    def solve(self, sde, x0, grid, generator):
        reverse = bool(grid[-1] < grid[0])
        ts = (1 - grid if reverse else grid).to(x0)
        sde_type = "ito" if self.method in _ITO_METHODS else "stratonovich"
        method = "milstein" if self.method == "milstein_stratonovich" else self.method
        guard = _Guarded(self.name, self.max_evaluations, (lambda s: 1 - s) if reverse else (lambda s: s))
        adapter = _TorchsdeAdapter(sde, x0.shape, sde_type, reverse, guard)
        y0 = x0.reshape(x0.shape[0], -1)
        bm = brownian_interval(
            float(ts[0]),
            float(ts[-1]),
            y0.shape,
            dtype=y0.dtype,
            device=y0.device,
            generator=generator,
            space_time=method == "srk",
        )
        states = torchsde.sdeint(
            adapter,
            y0,
            ts,
            bm=bm,
            method=method,
            dt=self.dt,
            adaptive=self.adaptive_steps,
            rtol=self.rtol,
            atol=self.atol,
        )
        return states.reshape((len(grid),) + tuple(x0.shape)), {"dt": self.dt, "adaptive": self.adaptive_steps}

    def __repr__(self):
        return f"Torchsde(method={self.method!r}, dt={self.dt}, adaptive={self.adaptive_steps})"
