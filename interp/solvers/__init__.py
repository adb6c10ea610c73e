"""Solvers, each a class with ``init``/``step`` and a declared order: fixed-step ODE (:mod:`.ode`), exponential
integrators for Gaussian-base interpolants (the shared base :mod:`.prediction`; :mod:`.dpm_solver`,
:mod:`.multistep`, :mod:`.momentum`), fixed-step SDE (:mod:`.sde`), adaptive via libraries (:mod:`.adaptive`);
every fixed-step sampler at an NFE budget (:mod:`.catalogue`)."""

from .adaptive import Torchdiffeq, Torchsde
from .base import AdaptiveSolver, ODESolver, SDESolver, Solver
from .catalogue import MOMENTUM, STANDARD, at_budget
from .dpm_solver import DPMSolver, DPMSolverPP, dpm_solver_fast_orders
from .momentum import GHVB, LML, HeavyBall, ghvb_weights
from .multistep import ADAMS_BASHFORTH, DEIS, IPNDM, UniPC
from .ode import ODE_SOLVERS, RK4, RK38, Euler, ExplicitRungeKutta, Heun, Midpoint
from .prediction import DiffusionView, NoiseSpaceSolver, PredictionSolver, dynamic_threshold
from .sde import SDE_SOLVERS, EulerMaruyama, SDEDPMSolverPP, StochasticHeun

__all__ = [
    "ADAMS_BASHFORTH",
    "DEIS",
    "GHVB",
    "IPNDM",
    "LML",
    "MOMENTUM",
    "ODE_SOLVERS",
    "RK4",
    "RK38",
    "SDE_SOLVERS",
    "STANDARD",
    "AdaptiveSolver",
    "DPMSolver",
    "DPMSolverPP",
    "DiffusionView",
    "Euler",
    "EulerMaruyama",
    "ExplicitRungeKutta",
    "HeavyBall",
    "Heun",
    "Midpoint",
    "NoiseSpaceSolver",
    "ODESolver",
    "PredictionSolver",
    "SDEDPMSolverPP",
    "SDESolver",
    "Solver",
    "StochasticHeun",
    "Torchdiffeq",
    "Torchsde",
    "UniPC",
    "at_budget",
    "dpm_solver_fast_orders",
    "dynamic_threshold",
    "ghvb_weights",
]
