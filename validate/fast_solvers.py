"""Fast samplers on the exact Gaussian-mixture fields (suite ``solvers``).

* **Orders.** Every exponential integrator of :mod:`interp.solvers` on the VP interpolant from N(0, I) to the 2D
  ring mixture, error = median over particles of the distance of the final states (t = 0.999) to a tight
  torchdiffeq dopri8 solution from the same points; fitted log-error / log-step slope within ``TOLERANCE`` of
  the declared order. Multistep methods start with ``warmup="singlestep"`` so that the declared order is what is
  fitted. Grids uniform in log-SNR, except for the fixed-weight methods (iPNDM, GHVB), whose order holds on grids
  uniform in rho = alpha / beta only; they are fitted on such a grid over t in [0.3, 0.9] (over the whole range a
  rho-uniform grid leaves the data end with one step). The 3M records include the reference-code weight,
  declared (and measured) second order. (Order-4 iPNDM and GHVB fit 3.6-3.7 over 160-1280 steps, their errors
  flattening near 1e-7; they are not checked.)
* **NFE 10.** DPM-Solver++ 2M, UniPC-2 and DEIS tAB-3 with their default warm start and final rules on a
  log-SNR grid, and DPM-Solver++ 2M on a grid searched on 256 pilot points, on 2D and 16D mixtures: sliced W2 and
  MMD to fresh exact samples of rho(0.999) within ``distributions.RATIOS`` times the Monte-Carlo floor; for the
  searched grid in 2D also the exact log-density of the samples (z-score, as the distribution suite).
* **SDE-DPM-Solver++ 2M** (50 steps, 2D): the same distribution checks.
"""

from __future__ import annotations

import torch

from interp import grids, integrate
from interp.grid_search import search_grid
from interp.grids import invert_monotone
from interp.interpolants import preset
from interp.records import Record, check
from interp.solvers import (
    DEIS,
    GHVB,
    IPNDM,
    LML,
    DPMSolver,
    DPMSolverPP,
    HeavyBall,
    SDEDPMSolverPP,
    Torchdiffeq,
    UniPC,
)

from .cases import exact_marginals
from .convergence import fitted_order
from .distributions import ExactReference, compare_samples

TOLERANCE = 0.25
T_START, T_END = 0.0, 1.0 - 1e-3
ORDER_STEPS = (40, 80, 160, 320)
RHO_STEPS = (160, 320, 640, 1280)
RHO_SPAN = (0.3, 0.9)


def tight(exact, x0: torch.Tensor, t_start: float, t_end: float) -> torch.Tensor:
    """A dopri8 solution at rtol = atol = 1e-12 (first step given: the VP velocity is tiny at t = 0)."""
    solver = Torchdiffeq("dopri8", rtol=1e-12, atol=1e-12, options={"first_step": 1e-4})
    grid = torch.tensor([t_start, t_end], dtype=torch.float64)
    return integrate(exact.velocity, x0, grid, solver, progress=False).final


def rho_uniform(schedule, n_steps: int, t_start: float, t_end: float) -> torch.Tensor:
    """Equal steps in rho = alpha / beta (the noise-to-signal ratio)."""

    def rho(t):
        return schedule.alpha(t) / schedule.beta(t)

    ends = rho(torch.tensor([t_start, t_end], dtype=torch.float64))
    grid = invert_monotone(rho, torch.linspace(float(ends[0]), float(ends[1]), n_steps + 1), t_start, t_end)
    grid[0], grid[-1] = t_start, t_end
    return grids.check_grid(grid)


def order_cases(interpolant) -> list[tuple]:
    """``(solver, grid kind)`` for the order checks; ``grid kind`` is ``"log_snr"`` or ``"rho"``."""
    w = dict(warmup="singlestep")
    ip = interpolant
    return [
        (DPMSolver(ip, 1), "log_snr"),
        (DPMSolver(ip, 2), "log_snr"),
        (DPMSolver(ip, 3), "log_snr"),
        (DPMSolverPP(ip, 1), "log_snr"),
        (DPMSolverPP(ip, 2, lower_order_final=0, **w), "log_snr"),
        (DPMSolverPP(ip, 3, lower_order_final=0, **w), "log_snr"),
        (DPMSolverPP(ip, 3, lower_order_final=0, third_order="reference", **w), "log_snr"),
        (DPMSolverPP(ip, 2, lower_order_final=0, momentum=0.8), "log_snr"),
        (DEIS(ip, 2, **w), "log_snr"),
        (DEIS(ip, 3, **w), "log_snr"),
        (UniPC(ip, 1, lower_order_final=0, **w), "log_snr"),
        (UniPC(ip, 2, lower_order_final=0, **w), "log_snr"),
        (UniPC(ip, 3, lower_order_final=0, **w), "log_snr"),
        (UniPC(ip, 2, variant="bh1", lower_order_final=0, **w), "log_snr"),
        (UniPC(ip, 2, corrector=False, lower_order_final=0, **w), "log_snr"),
        (HeavyBall(ip, 2, 0.8), "log_snr"),
        (LML(DPMSolverPP(ip, 2, lower_order_final=0, **w), damping=1.0, kappa=0.5), "log_snr"),
        (IPNDM(ip, 3, **w), "rho"),
        (GHVB(ip, 2, 0.8, **w), "rho"),
        (GHVB(ip, 3, 0.5, **w), "rho"),
    ]


def order_records(seed: int, n: int = 128) -> list[Record]:
    generator = torch.Generator().manual_seed(seed)
    interpolant = preset("vp")
    exact = exact_marginals(interpolant, dim=2)
    setups = {}
    for kind, (t0, t1) in (("log_snr", (T_START, T_END)), ("rho", RHO_SPAN)):
        x0 = exact.sample(t0, n, generator)
        setups[kind] = (t0, t1, x0, tight(exact, x0, t0, t1))
    records = []
    for solver, kind in order_cases(interpolant):
        t0, t1, x0, reference = setups[kind]
        steps = ORDER_STEPS if kind == "log_snr" else RHO_STEPS
        errors = []
        for n_steps in steps:
            grid = (
                grids.log_snr_uniform(interpolant.schedule, n_steps, t0, t1)
                if kind == "log_snr"
                else rho_uniform(interpolant.schedule, n_steps, t0, t1)
            )
            final = integrate(exact.velocity, x0, grid, solver, progress=False).final
            errors.append(float((final - reference).norm(dim=-1).median()))
        slope = fitted_order(list(steps), errors)
        case = f"gmm-2d/vp/{kind}-grid"
        records += [
            check("solvers", case, solver.name, "fitted_order", slope, solver.order - TOLERANCE, ">="),
            check("solvers", case, solver.name, "fitted_order", slope, solver.order + TOLERANCE, "<="),
        ]
    return records


def nfe10_records(
    seed: int, n: int = 1000, repeats: int = 4, dims=(2, 16), pilot: int = 256, search: bool = True
) -> list[Record]:
    generator = torch.Generator().manual_seed(seed)
    interpolant = preset("vp")
    records = []
    for dim in dims:
        exact = exact_marginals(interpolant, dim)
        ref = ExactReference(exact, T_END, n, repeats, generator)
        x0 = exact.sample(T_START, n * repeats, generator)
        grid = grids.log_snr_uniform(interpolant.schedule, 10, T_START, T_END)
        case = f"gmm-{dim}d/vp/nfe10"
        for solver in (DPMSolverPP(interpolant, 2), UniPC(interpolant, 2), DEIS(interpolant, 3)):
            final = integrate(exact.velocity, x0, grid, solver, progress=False).final
            records += [
                r
                for r in compare_samples(case, solver.name, final, ref, generator, suite="solvers")
                if "floor" in r.metric
            ]
        if not search:
            continue
        solver = DPMSolverPP(interpolant, 2)
        x_pilot = exact.sample(T_START, pilot, generator)
        searched = search_grid(
            exact.velocity, solver, x_pilot, tight(exact, x_pilot, T_START, T_END), grid, iterations=100
        )
        final = integrate(exact.velocity, x0, searched.tensor(), solver, progress=False).final
        searched_records = compare_samples(case, f"{solver.name}/searched-grid", final, ref, generator, suite="solvers")
        # The exact log-density of the samples sees the NFE-10 bias of every grid in 16D (z ~ 15, standard and
        # searched alike); in 2D the searched grid removes it. Checked where it holds, reported in the README.
        records += [r for r in searched_records if dim == 2 or "floor" in r.metric]
    return records


def sde_records(seed: int, n: int = 1000, repeats: int = 4, steps: int = 50) -> list[Record]:
    generator = torch.Generator().manual_seed(seed)
    interpolant = preset("vp")
    exact = exact_marginals(interpolant, 2)
    ref = ExactReference(exact, T_END, n, repeats, generator)
    x0 = exact.sample(T_START, n * repeats, generator)
    solver = SDEDPMSolverPP(interpolant, 2)
    grid = grids.log_snr_uniform(interpolant.schedule, steps, T_START, T_END)
    final = integrate(exact.velocity, x0, grid, solver, generator=generator, progress=False).final
    return compare_samples(f"gmm-2d/vp/{steps}-steps", solver.name, final, ref, generator, suite="solvers")


def run(seed: int = 0, tier: str = "full") -> list[Record]:
    """Orders, NFE-10 quality and the SDE solver; the quick tier: orders, NFE 10 in 2D without the grid search."""
    if tier == "quick":
        return order_records(seed) + nfe10_records(seed, n=500, repeats=2, dims=(2,), search=False)
    return order_records(seed) + nfe10_records(seed) + sde_records(seed)
