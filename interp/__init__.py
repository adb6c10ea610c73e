"""interp: stochastic interpolants, solvers and samplers, checked against closed forms."""

__version__ = "0.1.0"
