"""Feynman–Kac particle methods (docs/algorithms.md §5): correctors for annealed, product and guided targets, reward
steering (FK steering, SVDD, rollover budget forcing, best-of-N) and the weighted posterior sampler, all on the
weighted particles of :mod:`interp.smc`, with results in :class:`~interp.results.Trajectory`."""

from ._loop import final_weights, weighted_resample
from .correctors import (
    Composition,
    Expert,
    anneal,
    fk_correct,
    gaussian_base_rates,
    geometric,
    product,
    rlg,
    score_from_velocity,
)
from .posterior import linear_gaussian_start, posterior_sample
from .steering import POTENTIALS, BaseSampler, best_of_n, budget_forcing, fk_steer, svdd

__all__ = [
    "POTENTIALS",
    "BaseSampler",
    "Composition",
    "Expert",
    "anneal",
    "best_of_n",
    "budget_forcing",
    "final_weights",
    "fk_steer",
    "fk_correct",
    "gaussian_base_rates",
    "geometric",
    "linear_gaussian_start",
    "posterior_sample",
    "product",
    "rlg",
    "score_from_velocity",
    "svdd",
    "weighted_resample",
]
