"""interp: stochastic interpolants, solvers and samplers, checked against closed forms.

The public API is what this module re-exports; submodules hold one concept each (docs/design.md). Every
subsystem is reachable as an attribute (``interp.langevin``, ``interp.feynman_kac``, ...) after ``import interp``.
"""

from . import (
    analytic,
    bridges,
    cli,
    couplings,
    density,
    diagnostics,
    dynamics,
    feynman_kac,
    fields,
    grid_search,
    grids,
    interpolants,
    inverse,
    langevin,
    losses,
    metrics,
    nets,
    records,
    results,
    schedules,
    sharded,
    smc,
    solvers,
    stepping,
    superposition,
    train,
    wgf,
)
from ._grad import GradientError
from ._version import __version__
from .brownian import BrownianPath
from .driver import integrate
from .dynamics import SDE, generative_sde
from .interpolants import PRESETS, Interpolant, Posterior, preset
from .results import Trajectory
from .stepping import ConvergenceError, NonFiniteStateError

__all__ = [
    "PRESETS",
    "SDE",
    "BrownianPath",
    "ConvergenceError",
    "GradientError",
    "Interpolant",
    "NonFiniteStateError",
    "Posterior",
    "Trajectory",
    "__version__",
    "analytic",
    "bridges",
    "cli",
    "couplings",
    "density",
    "diagnostics",
    "dynamics",
    "feynman_kac",
    "fields",
    "generative_sde",
    "grid_search",
    "grids",
    "integrate",
    "interpolants",
    "inverse",
    "langevin",
    "losses",
    "metrics",
    "nets",
    "preset",
    "records",
    "results",
    "schedules",
    "sharded",
    "smc",
    "solvers",
    "stepping",
    "superposition",
    "train",
    "wgf",
]
