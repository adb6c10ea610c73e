"""Log-densities along trajectories: the ODE route (:mod:`.ode`) and the Itô density estimator along SDEs
(:mod:`.ito`)."""

from ._shared import DIVERGENCES, PROBES
from .ito import SCHEMES, gaussian_base_coefficients, gaussian_base_rate, ito_log_density
from .ode import Field, draw_probes, field_divergence, log_likelihood, ode_log_density

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "SCHEMES",
    "Field",
    "draw_probes",
    "field_divergence",
    "gaussian_base_coefficients",
    "gaussian_base_rate",
    "ito_log_density",
    "log_likelihood",
    "ode_log_density",
]
