"""interp: stochastic interpolants, solvers and samplers, checked against closed forms.

The public API is what this module re-exports; submodules hold one concept each (see README, "Architecture").
"""

__version__ = "0.1.0"

from . import analytic, grids, metrics, schedules, solvers  # noqa: E402
from .brownian import BrownianPath  # noqa: E402
from .dynamics import SDE, generative_sde  # noqa: E402
from .integrate import NonFiniteStateError, integrate  # noqa: E402
from .interpolants import PRESETS, Interpolant, Posterior, preset  # noqa: E402
from .results import Trajectory  # noqa: E402

__all__ = [
    "PRESETS", "SDE", "BrownianPath", "Interpolant", "NonFiniteStateError", "Posterior", "Trajectory", "analytic",
    "generative_sde", "grids", "integrate", "metrics", "preset", "schedules", "solvers", "__version__",
]
