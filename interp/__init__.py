"""interp: stochastic interpolants, solvers and samplers, checked against closed forms.

The public API is what this module re-exports; submodules hold one concept each (see README, "Architecture").
"""

__version__ = "0.1.0"

from . import analytic, bridges, couplings, grids, losses, metrics, nets, schedules, solvers  # noqa: E402
from .brownian import BrownianPath  # noqa: E402
from .dynamics import SDE, generative_sde  # noqa: E402
from .integrate import NonFiniteStateError, integrate  # noqa: E402
from .interpolants import PRESETS, Interpolant, Posterior, preset  # noqa: E402
from .results import Trajectory  # noqa: E402

__all__ = [
    "PRESETS",
    "SDE",
    "BrownianPath",
    "Interpolant",
    "NonFiniteStateError",
    "Posterior",
    "Trajectory",
    "__version__",
    "analytic",
    "bridges",
    "couplings",
    "generative_sde",
    "grids",
    "integrate",
    "losses",
    "metrics",
    "nets",
    "preset",
    "schedules",
    "solvers",
]
