"""Convergence orders: fitted log-error / log-step slopes compared with each solver's declared order.

* ODE: every fixed-step solver of :data:`interp.solvers.ODE_SOLVERS` on the exact Gaussian-mixture velocity
  (2D, Brownian-bridge interpolant), error = median over particles of the distance of the final states to a
  tight torchdiffeq dopri8 solution (rtol = atol = 1e-13) from the same initial points.
* SDE, strong: Euler–Maruyama on geometric Brownian motion (multiplicative noise, exact solution
  :math:`X_1 = x_0\\exp((\\mu-\\sigma^2/2) + \\sigma W_1)`): order ½. Euler–Maruyama and stochastic Heun on an
  Ornstein–Uhlenbeck process (additive noise): order 1, against a fine stochastic-Heun solution on the same
  Brownian path. (On additive noise Euler–Maruyama's strong order is 1, not ½.)
* SDE, weak: the error in :math:`E[X_1^2]` on the OU process, estimated on coupled paths (same Brownian path
  as a fine reference, so the Monte-Carlo noise cancels); the fine reference's moment is itself checked
  against the closed form :math:`E[X_1^2] = x_0^2e^{-2\\theta} + \\tfrac{\\sigma^2}{2\\theta}(1-e^{-2\\theta})`.

A fit passes when the slope lies within ``TOLERANCE`` of the declared order.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from interp import grids, integrate
from interp.brownian import BrownianPath
from interp.dynamics import SDE
from interp.interpolants import preset
from interp.records import Record, check
from interp.solvers import ODE_SOLVERS, EulerMaruyama, StochasticHeun, Torchdiffeq

from .cases import exact_marginals

TOLERANCE = 0.2


def fitted_order(steps: list[int], errors: list[float]) -> float:
    """Least-squares slope of log(error) against log(step size 1/N)."""
    h = np.log(1.0 / np.asarray(steps, dtype=float))
    return float(np.polyfit(h, np.log(np.asarray(errors)), 1)[0])


def _order_records(case: str, method: str, slope: float, declared: float) -> list[Record]:
    return [
        check("convergence", case, method, "fitted_order", slope, declared - TOLERANCE, ">="),
        check("convergence", case, method, "fitted_order", slope, declared + TOLERANCE, "<="),
    ]


def ode_orders(seed: int, n_particles: int = 128, steps=(32, 64, 128, 256)) -> list[Record]:
    generator = torch.Generator().manual_seed(seed)
    exact = exact_marginals(preset("linear-brownian"), dim=2)
    x0 = exact.sample(0.0, n_particles, generator)
    reference = integrate(
        exact.velocity, x0, grids.uniform(1), Torchdiffeq("dopri8", rtol=1e-13, atol=1e-13), progress=False
    ).final
    records = []
    for name, make in ODE_SOLVERS.items():
        solver = make()
        errors = []
        for n in steps:
            final = integrate(exact.velocity, x0, grids.uniform(n), solver, progress=False).final
            # Median over particles: the few that start near a separatrix between modes are pre-asymptotic
            # at any practical step (a coarse step sends them to another mode) and would swamp an RMS.
            errors.append(float((final - reference).norm(dim=-1).median()))
        records += _order_records("gmm-2d/linear-brownian", name, fitted_order(list(steps), errors), solver.order)
    return records


def _ou(theta: float, sigma: float) -> SDE:
    return SDE(lambda t, x: -theta * x, lambda t, x: torch.full_like(x[:, :1], sigma), additive=True)


def sde_orders(
    seed: int,
    n_paths: int = 4000,
    steps=(8, 16, 32, 64, 128),
    fine: int = 2048,
    weak_paths: int = 100_000,
    weak_steps=(4, 8, 16, 32),
    weak_fine: int = 512,
) -> list[Record]:
    generator = torch.Generator().manual_seed(seed)
    records = []
    # Strong order 1/2: Euler-Maruyama on geometric Brownian motion, exact solution on the same path.
    mu, sigma, x_start = 0.5, 0.8, 1.0
    gbm = SDE(lambda t, x: mu * x, lambda t, x: sigma * x, additive=False)
    x0 = torch.full((n_paths, 1), x_start, dtype=torch.float64)
    path = BrownianPath(0.0, 1.0, x0.shape, n_steps=fine, generator=generator)
    exact = x_start * torch.exp((mu - 0.5 * sigma**2) + sigma * path.increment(0.0, 1.0))
    errors = []
    for n in steps:
        final = integrate(gbm, x0, grids.uniform(n), EulerMaruyama(), brownian=path, progress=False).final
        errors.append(float((final - exact).abs().mean()))
    records += _order_records(
        "gbm", "euler_maruyama/strong", fitted_order(list(steps), errors), EulerMaruyama.strong_order
    )

    # Ornstein-Uhlenbeck (additive noise): strong and weak orders against a fine solution on the same path.
    # x0 = 0.5: for x0 near 1.5 the O(h) weak errors of the mean and of the variance nearly cancel in E[X^2]
    # and the fit would see second-order terms instead.
    theta, sigma, x_start = 1.0, 1.0, 0.5
    ou = _ou(theta, sigma)
    second_moment = x_start**2 * math.exp(-2 * theta) + sigma**2 / (2 * theta) * (1 - math.exp(-2 * theta))
    # The weak errors of stochastic Heun (O(h^2)) sit below its strong errors (O(h)), which set the noise of
    # the coupled estimate: hence many more paths, and a coarser reference (its weak error ~1e-5 is still
    # far below the smallest error fitted).
    for kind, paths, step_list, n_fine in (
        ("strong", n_paths, steps, fine),
        ("weak", weak_paths, weak_steps, weak_fine),
    ):
        x0 = torch.full((paths, 1), x_start, dtype=torch.float64)
        path = BrownianPath(0.0, 1.0, x0.shape, n_steps=n_fine, generator=generator)
        reference = integrate(ou, x0, grids.uniform(n_fine), StochasticHeun(), brownian=path, progress=False).final
        if kind == "weak":
            ref_moment = reference.pow(2)
            z = abs(float(ref_moment.mean()) - second_moment) / float(ref_moment.std() / math.sqrt(paths))
            records.append(check("convergence", "ou", "reference/closed-form", "E[X1^2]_z", z, 4.0))
        for solver in (EulerMaruyama(), StochasticHeun()):
            errors = []
            for n in step_list:
                final = integrate(ou, x0, grids.uniform(n), solver, brownian=path, progress=False).final
                if kind == "strong":
                    errors.append(float((final - reference).abs().mean()))
                else:
                    errors.append(abs(float((final.pow(2) - ref_moment).mean())))
            declared = solver.additive_strong_order if kind == "strong" else solver.weak_order
            records += _order_records("ou", f"{solver.name}/{kind}", fitted_order(list(step_list), errors), declared)
    return records


def run(seed: int = 0, tier: str = "full") -> list[Record]:
    """Every order fit, at full size in both tiers (a few seconds: fewer paths leave the weak-order fits too noisy
    for their ±0.2 budget)."""
    return ode_orders(seed) + sde_orders(seed)
