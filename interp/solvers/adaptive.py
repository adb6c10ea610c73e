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

from ..brownian import brownian_interval
from ..dynamics import SDE
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


class Torchdiffeq(AdaptiveSolver):
    """Any :func:`torchdiffeq.odeint` method (``dopri5``, ``dopri8``, ``bosh3``, ``rk4``, ...)."""

    def __init__(self, method: str = "dopri5", rtol: float = 1e-7, atol: float = 1e-9, options: dict | None = None):
        if method not in TORCHDIFFEQ_METHODS:
            raise ValueError(f"unknown torchdiffeq method {method!r}; choose from {list(TORCHDIFFEQ_METHODS)}")
        if not (rtol > 0 and atol >= 0):
            raise ValueError(f"need rtol > 0 and atol >= 0; got rtol={rtol}, atol={atol}")
        self.method, self.rtol, self.atol, self.options = method, rtol, atol, options
        self.name = f"torchdiffeq_{method}"

    def solve(self, field, x0, grid, generator):
        options = dict(self.options or {})
        if self.method in _ADAPTIVE_RK:
            # Make the last step land on the final time: otherwise dopri-type steps overshoot it and the field
            # is evaluated outside [0, 1], where interpolant coefficients may not exist.
            options.setdefault("step_t", grid[-1:].to(x0))
        states = torchdiffeq.odeint(
            field, x0, grid.to(x0), rtol=self.rtol, atol=self.atol, method=self.method, options=options
        )
        return states, {"rtol": self.rtol, "atol": self.atol}

    def __repr__(self):
        return f"Torchdiffeq(method={self.method!r}, rtol={self.rtol}, atol={self.atol})"


class _TorchsdeAdapter(torch.nn.Module):
    """Presents an :class:`SDE` on a (possibly reversed) grid to torchsde's ``f``/``g`` interface."""

    noise_type = "diagonal"

    def __init__(self, sde: SDE, shape, sde_type: str, reverse: bool):
        super().__init__()
        self.sde, self.shape, self.sde_type, self.reverse = sde, tuple(shape), sde_type, reverse

    def _time(self, s):
        return 1 - s if self.reverse else s

    def f(self, s, y):
        x = y.reshape(self.shape)
        out = self.sde.drift(self._time(s), x)
        return (-out if self.reverse else out).reshape(y.shape)

    def g(self, s, y):
        x = y.reshape(self.shape)
        return torch.broadcast_to(self.sde.diffusion(self._time(s), x), self.shape).reshape(y.shape)


class Torchsde(AdaptiveSolver):
    """:func:`torchsde.sdeint` with diagonal noise: ``euler``, ``milstein``, ``srk`` (Itô) or, for additive
    noise only, the Stratonovich methods ``midpoint``, ``heun``, ``reversible_heun``.

    ``adaptive=True`` lets torchsde control the step (error estimate by step doubling) within ``rtol``/``atol``.
    Decreasing grids are run as the time-reversed SDE in ``s = 1 - t``.
    """

    stochastic = True

    def __init__(
        self, method: str = "srk", dt: float = 1e-2, adaptive: bool = False, rtol: float = 1e-5, atol: float = 1e-4
    ):
        if method not in _ITO_METHODS | _STRATONOVICH_METHODS:
            raise ValueError(
                f"unknown torchsde method {method!r}; choose from {sorted(_ITO_METHODS | _STRATONOVICH_METHODS)}"
            )
        if not dt > 0:
            raise ValueError(f"dt must be positive; got {dt}")
        self.method, self.dt, self.adaptive_steps, self.rtol, self.atol = method, dt, adaptive, rtol, atol
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
        adapter = _TorchsdeAdapter(sde, x0.shape, sde_type, reverse)
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
