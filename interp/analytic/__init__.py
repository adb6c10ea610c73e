"""Closed forms: Gaussian mixtures, the exact fields of interpolants between them, and 2D test targets."""

from .gaussian_mixture import GaussianMixture
from .marginals import ExactMarginals
from .targets import Banana, Checkerboard, Funnel, Target, ring_mixture

__all__ = ["Banana", "Checkerboard", "ExactMarginals", "Funnel", "GaussianMixture", "Target", "ring_mixture"]
