"""Helpers shared by the two log-density routes of :mod:`interp.density` (ODE and Itô)."""

from __future__ import annotations

import contextlib

from torch import Tensor

from .._checks import log_density_value
from .._grad import GradientError

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def check_divergence_options(divergence: str, n_probes: int, probe: str) -> None:
    """A ``ValueError`` unless ``divergence``, ``probe`` and ``n_probes`` are among the supported options."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}; got {divergence!r}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}; got {probe!r}")
    if not (isinstance(n_probes, int) and n_probes >= 1):
        raise ValueError(f"n_probes must be a positive int; got {n_probes!r}")


def anchor(change: Tensor, states: Tensor, log_density_start, log_density_end) -> tuple[str, Tensor]:
    """Turn the change ``(time, batch, ...)`` since ``grid[0]`` into log-densities, anchored at one end."""
    if log_density_start is not None and log_density_end is not None:
        raise ValueError("give log_density_start or log_density_end, not both")
    extra = (1,) * (change.ndim - 2)
    if log_density_start is not None:
        start = log_density_value(log_density_start, states[0], "log_density_start")
        return "log_density", start.reshape(start.shape + extra) + change
    if log_density_end is not None:
        end = log_density_value(log_density_end, states[-1], "log_density_end")
        return "log_density", end.reshape(end.shape + extra) + change - change[-1]
    return "log_density_change", change


class FirstCallErrors:
    """Re-raise a failure of the field's first evaluation as a ``ValueError`` naming the state shape."""

    def __init__(self, shape):
        self.shape, self.first = tuple(shape), True

    @contextlib.contextmanager
    def __call__(self, what: str):
        try:
            yield
        except GradientError:  # already names the problem; a shape is not its cause
            raise
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            if not self.first:
                raise
            raise ValueError(f"the {what} could not be evaluated on a state of shape {self.shape}: {error}") from error
        self.first = False
