"""Every fixed-step sampler of a Gaussian-base interpolant at a given budget of field evaluations (NFE): what a
benchmark or a problem adapter compares side by side. Names are stable (they key tables and records)."""

from __future__ import annotations

from ..interpolants import Interpolant
from .dpm_solver import DPMSolver, DPMSolverPP, dpm_solver_fast_orders
from .momentum import GHVB, LML, HeavyBall
from .multistep import DEIS, IPNDM, UniPC
from .ode import RK4, RK38, Euler, Heun

STANDARD = ("Heun", "RK4", "RK4-3/8", "DPM-Solver-3", "DPM-Solver-2", "DPM-Solver++2M", "DPM-Solver++3M", "UniPC-2",
            "UniPC-3", "UniPC-2-bh1", "DEIS-3", "iPNDM-3")  # fmt: skip
"""The higher-order samplers, each at its defaults (the solvers bench's set)."""

MOMENTUM = ("Euler", "HeavyBall-2", "GHVB-2", "LML-DPM-Solver++2M")
"""First-order Euler and the momentum samplers (Wizadwongsa et al. 2023; LML's damped metric on DPM-Solver++ 2M),
whose claim is fewer divergence artefacts at low NFE under strong guidance."""


def at_budget(interpolant: Interpolant, nfe: int, names=STANDARD) -> dict[str, tuple[object, int]]:
    """``name -> (solver, steps)`` for the samplers ``names`` (from :data:`STANDARD` and :data:`MOMENTUM`), each
    spending at most ``nfe`` evaluations: one a step for the multistep and exponential methods, the most whole
    steps that fit for Heun (2 a step) and RK4 (4), DPM-Solver's fast order mix for the singlestep ones."""
    if not (isinstance(nfe, int) and nfe >= 1):
        raise ValueError(f"nfe must be a positive integer; got {nfe!r}")
    unknown = [n for n in names if n not in STANDARD + MOMENTUM]
    if unknown:
        raise ValueError(f"unknown samplers {unknown}; choose from {', '.join(STANDARD + MOMENTUM)}")
    ip = interpolant
    makers = {
        "Heun": lambda: (Heun(), nfe // 2),
        "RK4": lambda: (RK4(), nfe // 4),
        "RK4-3/8": lambda: (RK38(), nfe // 4),
        "DPM-Solver-3": lambda: _fast(DPMSolver, ip, 3, nfe),
        "DPM-Solver-2": lambda: _fast(DPMSolver, ip, 2, nfe),
        "DPM-Solver++2M": lambda: (DPMSolverPP(ip, 2), nfe),
        "DPM-Solver++3M": lambda: (DPMSolverPP(ip, 3), nfe),
        "UniPC-2": lambda: (UniPC(ip, 2), nfe),
        "UniPC-3": lambda: (UniPC(ip, 3), nfe),
        "UniPC-2-bh1": lambda: (UniPC(ip, 2, variant="bh1"), nfe),
        "DEIS-3": lambda: (DEIS(ip, 3), nfe),
        "iPNDM-3": lambda: (IPNDM(ip, 3), nfe),
        "Euler": lambda: (Euler(), nfe),
        "HeavyBall-2": lambda: (HeavyBall(ip, 2, 0.8), nfe),
        "GHVB-2": lambda: (GHVB(ip, 2, 0.8), nfe),
        "LML-DPM-Solver++2M": lambda: (LML(DPMSolverPP(ip, 2), damping=1.0, kappa=0.5), nfe),
    }
    return {name: made for name in names if (made := makers[name]())[1] >= 1}


def _fast(cls, interpolant, order: int, nfe: int):
    orders = dpm_solver_fast_orders(nfe, order)
    return cls(interpolant, order, orders=orders), len(orders)
