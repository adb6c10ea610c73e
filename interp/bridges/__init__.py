"""Schrödinger bridges (docs/algorithms.md §4): closed forms, simulation-free bridge matching, multi-marginal bridges
with iterative reference refinement, reference dynamics and snapshot simulators.

| module | holds |
|---|---|
| ``gaussian`` | :class:`GaussianBridge`: Gaussian-to-Gaussian SB for Brownian and linear/OU references |
| ``mixture`` | :class:`MixtureBridge`, :func:`mixture_benchmark`: bridges with a known solution (BW²-UVP cases) |
| ``matching`` | :class:`SF2M` ([SF]²M / SB-CFM) and :class:`DSBM` (iterative Markovian fitting) |
| ``references`` | drifts to refine: Brownian, linear, Lotka–Volterra, repressilator, double well, gradient field |
| ``snapshots`` | snapshot checks and :func:`simulate_snapshots` |
| ``multimarginal`` | :class:`MultiMarginalBridge` and its xarray-ready :class:`MultiMarginalResult` |
| ``snapshot_matching`` | :class:`SnapshotMatching`: OT-CFM / [SF]²M, one field through several snapshots |
"""

from .gaussian import GaussianBridge, brownian_plan_cross_covariance
from .matching import DSBM, SF2M, FlowAndScore, FlowScoreLoss, brownian_bridge_interpolant
from .mixture import MixtureBridge, mixture_benchmark
from .multimarginal import MultiMarginalBridge, MultiMarginalResult
from .references import (
    Brownian,
    DoubleWell,
    GradientField,
    Linear,
    LotkaVolterra,
    Reference,
    Repressilator,
    fit_reference,
)
from .snapshot_matching import SnapshotMatching, SnapshotMatchingLoss
from .snapshots import check_snapshots, simulate_snapshots

__all__ = [
    "DSBM",
    "SF2M",
    "SnapshotMatching",
    "SnapshotMatchingLoss",
    "Brownian",
    "DoubleWell",
    "FlowAndScore",
    "FlowScoreLoss",
    "GaussianBridge",
    "GradientField",
    "Linear",
    "LotkaVolterra",
    "MixtureBridge",
    "MultiMarginalBridge",
    "MultiMarginalResult",
    "Reference",
    "Repressilator",
    "brownian_bridge_interpolant",
    "brownian_plan_cross_covariance",
    "check_snapshots",
    "fit_reference",
    "mixture_benchmark",
    "simulate_snapshots",
]
