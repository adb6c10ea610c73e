r"""Exponential integrators for Gaussian-base interpolants: DPM-Solver (singlestep) and DPM-Solver++ (multistep).

A Gaussian-base interpolant :math:`x_t = \alpha(t) x_0 + \beta(t) x_1`, :math:`x_0 \sim N(0, I)`, is a diffusion
with signal coefficient :math:`a_t = \beta(t)` and noise coefficient :math:`n_t = \alpha(t)` (diffusion
convention: :math:`x = a\hat x + n\hat\epsilon`). Its probability-flow ODE is semi-linear in the log
signal-to-noise ratio :math:`\lambda = \log(a/n)` (Lu et al. 2022, "DPM-Solver", Eq. 3.4):

.. math::
    x_t = \frac{a_t}{a_s}x_s - a_t\int_{\lambda_s}^{\lambda_t} e^{-\lambda}\hat\epsilon\,d\lambda
        = \frac{n_t}{n_s}x_s + n_t\int_{\lambda_s}^{\lambda_t} e^{\lambda}\hat x\,d\lambda ,

exact for *any* :math:`\alpha, \beta`, not only VP. The solvers below integrate the linear part exactly and
expand the noise prediction :math:`\hat\epsilon = E[x_0\mid x]` (DPM-Solver) or the data prediction
:math:`\hat x = E[x_1\mid x]` (DPM-Solver++, Lu et al. 2022b) in :math:`\lambda`.

The shared base (flow time ↔ diffusion convention, field conversion, warm start) is :mod:`interp.solvers.prediction`.
"""

from __future__ import annotations

import torch

from ..interpolants import Interpolant
from .prediction import PredictionSolver, StepHistory, singlestep_update


class DPMSolverPP(PredictionSolver):
    r"""DPM-Solver++ (Lu et al. 2022b, Alg. 1-2), multistep with the data prediction :math:`\hat x`.

    With :math:`h = \lambda_t - \lambda_s` and :math:`\varphi = e^{-h} - 1`:

    * order 1: :math:`x_t = \tfrac{n_t}{n_s}x_s - a_t\varphi\,\hat x_s` (DDIM);
    * 2M: :math:`r_0 = h_{-1}/h`, :math:`D_1 = (\hat x_s - \hat x_{s-1})/r_0`,
      :math:`x_t = \tfrac{n_t}{n_s}x_s - a_t\varphi(\hat x_s + \tfrac12 D_1)`;
    * 3M: :math:`x_t = \tfrac{n_t}{n_s}x_s - a_t\varphi\hat x_s + a_t(\tfrac{\varphi}{h}+1)D_1
      - a_t(\tfrac{\varphi+h}{h^2}-\tfrac12)\,w D_2` with the divided differences :math:`D_1 \approx h\hat x'`,
      :math:`D_2 = (D_{1,0}-D_{1,1})/(r_0+r_1)` of the last three outputs.

    **The 3M weight.** Taylor expansion gives :math:`D_2 = \tfrac{h^2}{2}\hat x'' + O(h^3)` while the exact
    integral needs :math:`h^2\hat x''` in that slot, so third order needs :math:`w = 2`. Lu et al.'s reference code
    (and diffusers, which follows it) use :math:`w = 1`, which is second order: on the exact Gaussian-mixture fields
    the fitted slope is 1.9-2.2 with :math:`w = 1` and 3.2 with :math:`w = 2` (VP, GVP and flow schedules;
    ``tests/test_fast_solvers.py``). ``third_order="taylor"`` (default, :math:`w = 2`, declared order 3) or
    ``"reference"`` (:math:`w = 1`, declared order 2; often the smaller error at very few steps).

    One field evaluation per step. ``order`` is 1, 2 or 3; the first steps warm up with lower orders and grids of
    fewer than ``lower_order_final`` steps lower the order at the last two steps (0 disables). ``momentum`` =
    :math:`\beta < 1` applies heavy-ball momentum to the combined output (Wizadwongsa et al. 2023, Sec. 4.1):
    :math:`v \leftarrow (1-\beta)v + \beta(\hat x_s + \tfrac12 D_1)`; it trades order (first) for stability.
    """

    parameterisation = "data"

    def __init__(
        self,
        interpolant: Interpolant,
        order: int = 2,
        prediction: str = "velocity",
        *,
        lower_order_final: int = 15,
        momentum: float = 1.0,
        thresholding=None,
        warmup: str = "lower",
        third_order: str = "taylor",
    ):
        if order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3; got {order}")
        if third_order not in ("taylor", "reference"):
            raise ValueError(f"third_order must be 'taylor' or 'reference'; got {third_order!r}")
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum (beta) must lie in (0, 1]; got {momentum}")
        self.name = f"dpmsolver++{order}{'M' if order > 1 else ''}" + (f"-hb{momentum:g}" if momentum < 1 else "")
        super().__init__(interpolant, prediction, thresholding, warmup)
        self.order = order if momentum == 1 else 1
        if order == 3 and third_order == "reference":
            self.order = 2 if momentum == 1 else 1
            self.name += "-ref"
        self.history_order = order
        self._d2_weight = 2.0 if third_order == "taylor" else 1.0
        self.max_order, self.lower_order_final, self.momentum = order, int(lower_order_final), float(momentum)

    def step(self, field, t0, t1, x, state: StepHistory):
        a1, n1, l1 = self.view.at(t1)
        n0, l0 = self.view.noise(t0), self.view.log_snr(t0)
        noise, m0 = self.predict_pair(field, t0, x)
        order, warm = self.begin_step(field, t0, t1, x, state, m0, noise, keep=3)
        if warm is not None:
            return warm, state
        if n1 == 0:  # denoise to zero: lambda_t = inf, the first-order step returns a_t * x_hat
            return a1 * m0, state
        h = l1 - l0
        phi = torch.expm1(-h)
        order = min(order, len(state.outputs))
        if order == 1:
            direction = m0
        elif order == 2:
            r0 = (l0 - state.lams[-2]) / h
            direction = m0 + 0.5 * (m0 - state.outputs[-2]) / r0
        else:
            m1, m2 = state.outputs[-2], state.outputs[-3]
            r0, r1 = (l0 - state.lams[-2]) / h, (state.lams[-2] - state.lams[-3]) / h
            d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
            d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            d2 = self._d2_weight * (d1_0 - d1_1) / (r0 + r1)
            # x_t = n_t/n_s x - a_t phi m0 + a_t (phi/h + 1) D1 - a_t ((phi + h)/h^2 - 1/2) D2, folded into one
            # direction multiplying -a_t phi:
            direction = m0 - ((phi / h + 1) / phi) * d1 + (((phi + h) / h**2 - 0.5) / phi) * d2
        if self.momentum < 1:
            velocity = state.extra.get("velocity")
            direction = direction if velocity is None else (1 - self.momentum) * velocity + self.momentum * direction
            state.extra["velocity"] = direction
        return (n1 / n0) * x - a1 * phi * direction, state


def dpm_solver_fast_orders(nfe: int, order: int = 3) -> list[int]:
    """Per-step orders of singlestep DPM-Solver spending exactly ``nfe`` evaluations (Lu et al. 2022, Sec. 3.4)."""
    if not (isinstance(nfe, int) and nfe >= 1):
        raise ValueError(f"nfe must be a positive integer; got {nfe!r}")
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3; got {order}")
    if order == 1:
        return [1] * nfe
    if order == 2 or nfe < 3:
        return [2] * (nfe // 2) + [1] * (nfe % 2)
    k, rest = divmod(nfe, 3)
    return [3] * (k - 1) + {0: [2, 1], 1: [3, 1], 2: [3, 2]}[rest]


class DPMSolver(PredictionSolver):
    r"""Singlestep DPM-Solver-1/2/3 (Lu et al. 2022, Alg. 1-2) with the noise prediction :math:`\hat\epsilon`.

    Each step from ``s`` to ``t`` (:math:`h = \lambda_t - \lambda_s`) places its intermediate points at
    :math:`\lambda_s + r_i h` (:math:`r = \tfrac12` for order 2; :math:`\tfrac13, \tfrac23` for order 3) and
    spends ``order`` evaluations. ``orders`` (one per step, e.g. :func:`dpm_solver_fast_orders`) mixes orders
    to hit an NFE budget; it must have one entry per grid step.
    """

    parameterisation = "noise"

    def __init__(self, interpolant: Interpolant, order: int = 3, prediction: str = "velocity", *, orders=None):
        if order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver order must be 1, 2 or 3; got {order}")
        self.name = f"dpmsolver{order}"
        super().__init__(interpolant, prediction)
        self.order = order
        self.orders = None if orders is None else [int(k) for k in orders]
        if self.orders is not None and not all(k in (1, 2, 3) for k in self.orders):
            raise ValueError(f"orders must be a list of 1, 2 or 3; got {orders}")
        self.nfe_per_step = order

    def step_orders(self, n_steps: int) -> list[int]:
        if self.orders is None:
            return [self.order] * n_steps
        if len(self.orders) != n_steps:
            raise ValueError(f"orders has {len(self.orders)} entries for a grid of {n_steps} steps")
        return self.orders

    def step(self, field, t0, t1, x, state: StepHistory):
        order = state.orders[state.index]
        state.index += 1

        def predict_noise(t, y):
            return self.predict(field, t, y)

        return singlestep_update(self.view, predict_noise, t0, t1, x, predict_noise(t0, x), order), state
