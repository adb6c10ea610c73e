r"""Fixed-step SDE solvers for :math:`dX = f\,dt + g\,dW` with diagonal noise.

* :class:`EulerMaruyama` — :math:`x' = x + f(t,x)h + g(t,x)\Delta W`. Strong order ½ in general and 1 for
  additive noise; weak order 1 (Kloeden & Platen 1992, Thms. 10.2.2, 14.1.5).
* :class:`StochasticHeun` — predictor :math:`\tilde x = x + fh + g\Delta W`, corrector
  :math:`x' = x + \tfrac12(f + \tilde f)h + \tfrac12(g + \tilde g)\Delta W`. It converges to the Stratonovich
  solution, so it is only offered for additive noise, where Itô and Stratonovich agree; there its strong
  order is 1 and its weak order 2 (Kloeden & Platen 1992, Sec. 15.1).
* :class:`SDEDPMSolverPP` — the stochastic exponential integrator of DPM-Solver++ for Gaussian-base interpolants.

``h = t1 - t0`` may be negative (backward SDEs on decreasing grids); ``dw`` has variance ``|h|``.
"""

from __future__ import annotations

import torch

from ..dynamics import SDE
from .base import SDESolver
from .prediction import PredictionSolver


class EulerMaruyama(SDESolver):
    name = "euler_maruyama"
    stateless = True
    strong_order = 0.5
    additive_strong_order = 1.0
    weak_order = 1.0
    nfe_per_step = 1

    def step(self, sde, t0, t1, x, dw, state):
        return x + sde.drift(t0, x) * (t1 - t0) + sde.diffusion(t0, x) * dw, state


class StochasticHeun(SDESolver):
    name = "stochastic_heun"
    stateless = True
    strong_order = 1.0
    additive_strong_order = 1.0
    weak_order = 2.0
    nfe_per_step = 2
    needs_additive_noise = True

    def step(self, sde, t0, t1, x, dw, state):
        h = t1 - t0
        f0, g0 = sde.drift(t0, x), sde.diffusion(t0, x)
        predictor = x + f0 * h + g0 * dw
        f1, g1 = sde.drift(t1, predictor), sde.diffusion(t1, predictor)
        return x + 0.5 * (f0 + f1) * h + 0.5 * (g0 + g1) * dw, state


SDE_SOLVERS = {"euler_maruyama": EulerMaruyama, "stochastic_heun": StochasticHeun}


class SDEDPMSolverPP(PredictionSolver):
    r"""SDE-DPM-Solver++ 1 and 2M (Lu et al. 2022b, Sec. 5 and App. C), a stochastic exponential integrator.

    It samples the reverse diffusion SDE of a Gaussian-base interpolant, which in flow time is the forward
    generative SDE of :mod:`interp.dynamics` with the matched noise :math:`\epsilon = -D`
    (:func:`interp.density.gaussian_base_coefficients`); the linear part and the noise are integrated exactly:

    .. math::
        x_t = \tfrac{n_t}{n_s}e^{-h}x_s + a_t(1-e^{-2h})\big(\hat x_s + \tfrac12 D_1\big)
              + n_t\sqrt{1-e^{-2h}}\,\xi ,

    with :math:`D_1` the 2M difference of :class:`~interp.solvers.DPMSolverPP` (0 for order 1) and
    :math:`\xi = \Delta W/\sqrt{|\Delta t|}` taken from the driver's Brownian increment, so seeds and
    :class:`~interp.brownian.BrownianPath` work as for any SDE solver. Its dynamics is the *field* (the noise
    level is implied by the schedule), not an :class:`~interp.dynamics.SDE`. One evaluation per step.
    """

    stochastic = True
    parameterisation = "data"
    weak_order = 1.0

    def __init__(self, interpolant, order: int = 2, prediction: str = "velocity", *, lower_order_final: int = 15):
        if order not in (1, 2):
            raise ValueError(f"SDE-DPM-Solver++ order must be 1 or 2; got {order}")
        self.name = f"sde-dpmsolver++{order}{'M' if order == 2 else ''}"
        super().__init__(interpolant, prediction)
        self.order = self.history_order = order
        self.lower_order_final = int(lower_order_final)

    def check_dynamics(self, dynamics) -> None:
        if isinstance(dynamics, SDE) or not callable(dynamics):
            raise TypeError(f"{self.name} takes the field (t, x) -> prediction; its noise is set by the schedule")

    def step(self, field, t0, t1, x, dw, state):
        a1, n1, l1 = self.view.at(t1)
        n0, l0 = self.view.noise(t0), self.view.log_snr(t0)
        m0 = self.predict(field, t0, x)
        state.push(t0, l0, m0, keep=2)
        order = state.orders[state.index]
        state.index += 1
        if n1 == 0:
            return a1 * m0, state
        h = l1 - l0
        direction = m0
        if order == 2 and len(state.outputs) == 2:
            direction = m0 + 0.5 * (m0 - state.outputs[-2]) * h / (l0 - state.lams[-2])
        one_minus = -torch.expm1(-2 * h)
        xi = dw / torch.sqrt((t1 - t0).abs())
        return (n1 / n0) * torch.exp(-h) * x + a1 * one_minus * direction + n1 * torch.sqrt(one_minus) * xi, state
