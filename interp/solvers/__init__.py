"""Solvers: fixed-step ODE (:mod:`.ode`), fixed-step SDE (:mod:`.sde`), adaptive via libraries (:mod:`.adaptive`)."""

from .adaptive import Torchdiffeq, Torchsde
from .base import AdaptiveSolver, ODESolver, SDESolver, Solver
from .ode import ODE_SOLVERS, RK4, Euler, ExplicitRungeKutta, Heun, Midpoint
from .sde import SDE_SOLVERS, EulerMaruyama, StochasticHeun

__all__ = [
    "ODE_SOLVERS",
    "RK4",
    "SDE_SOLVERS",
    "AdaptiveSolver",
    "Euler",
    "EulerMaruyama",
    "ExplicitRungeKutta",
    "Heun",
    "Midpoint",
    "ODESolver",
    "SDESolver",
    "Solver",
    "StochasticHeun",
    "Torchdiffeq",
    "Torchsde",
]
