"""Schrödinger bridges (ALGORITHMS.md §4): closed forms, simulation-free bridge matching, multi-marginal bridges."""

from .gaussian import GaussianBridge, brownian_plan_cross_covariance

__all__ = ["GaussianBridge", "brownian_plan_cross_covariance"]
