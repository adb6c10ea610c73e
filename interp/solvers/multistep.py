r"""Multistep exponential integrators: DEIS (tAB, iPNDM) and UniPC (bh1/bh2).

Conventions as in :mod:`.exponential` (signal :math:`a_t = \beta(t)`, noise :math:`n_t = \alpha(t)`,
:math:`\lambda = \log(a/n)`, flow time increasing towards the data).

* **DEIS** (Zhang & Chen 2023, "Fast sampling of diffusion models with exponential integrator", Sec. 4): with
  :math:`\bar x = x/a` and :math:`\rho = n/a` the ODE is :math:`d\bar x = \hat\epsilon\,d\rho`. *tAB-r* fits a
  Lagrange polynomial through the last ``r`` noise predictions **in time** and integrates it exactly against
  :math:`d\rho`: :math:`\bar x_{i+1} = \bar x_i + \sum_j C_{ij}\hat\epsilon_{i-j}`,
  :math:`C_{ij} = \int_{t_i}^{t_{i+1}} \rho'(\tau) L_j(\tau)\,d\tau` (Gauss–Legendre, 12 nodes: the integrand is
  smooth on a step). *iPNDM* uses the fixed Adams–Bashforth weights of equal steps in :math:`\rho` instead
  (cheap; exact order only on grids uniform in :math:`\rho`).
* **UniPC** (Zhao et al. 2023, "UniPC", Alg. 1-2; data prediction): the predictor UniP-p uses the last ``p``
  outputs; the corrector UniC re-solves the same step with the output at the new point included, *reusing
  that output* for the next predictor, so it costs no evaluation and raises the order to ``p + 1``.
  ``variant`` "bh1" (:math:`B(h) = h`) or "bh2" (:math:`B(h) = e^h - 1`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..interpolants import Interpolant
from .prediction import NoiseSpaceSolver, PredictionSolver, StepHistory, multistep_orders

ADAMS_BASHFORTH = {1: (1.0,), 2: (1.5, -0.5), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}
"""Adams–Bashforth weights for equal steps, newest value first."""

_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(12)


class DEIS(NoiseSpaceSolver):
    r"""DEIS tAB-``order`` (1, 2 or 3): exponential Adams–Bashforth with a Lagrange basis in time.

    One evaluation per step; warm start with lower orders (``order`` = 1 is DDIM).
    """

    def __init__(self, interpolant: Interpolant, order: int = 3, prediction: str = "velocity", *, warmup="lower"):
        if order not in (1, 2, 3):
            raise ValueError(f"DEIS tAB order must be 1, 2 or 3; got {order}")
        self.name = f"deis-tab{order}"
        super().__init__(interpolant, prediction, warmup=warmup)
        self.order = self.history_order = order

    def coefficients(self, t0: Tensor, t1: Tensor, nodes: list[Tensor]) -> list[Tensor]:
        r""":math:`\int_{t_0}^{t_1}\rho'(\tau)L_j(\tau)\,d\tau` for the Lagrange basis on ``nodes``."""
        xi = torch.as_tensor(_GAUSS_NODES, dtype=t0.dtype, device=t0.device)
        w = torch.as_tensor(_GAUSS_WEIGHTS, dtype=t0.dtype, device=t0.device)
        half = 0.5 * (t1 - t0)
        tau = t0 + half * (xi + 1)
        weight = half * w * self.rho_dot(tau)
        out = []
        for j, tj in enumerate(nodes):
            basis = torch.ones_like(tau)
            for k, tk in enumerate(nodes):
                if k != j:
                    basis = basis * (tau - tk) / (tj - tk)
            out.append((weight * basis).sum())
        return out

    def step(self, field, t0, t1, x, state: StepHistory):
        eps = self.predict(field, t0, x)
        order, warm = self.begin_step(field, t0, t1, x, state, eps, eps, keep=self.order)
        if warm is not None:
            return warm, state
        nodes = state.times[::-1][:order]
        outputs = state.outputs[::-1][:order]
        if order == 1:  # the exact integral of d rho: DDIM
            increment = (self.rho(t1) - self.rho(t0)) * eps
        else:
            increment = sum(c * e for c, e in zip(self.coefficients(t0, t1, nodes), outputs, strict=True))
        return self.advance(x, t0, t1, increment), state


class IPNDM(NoiseSpaceSolver):
    r"""iPNDM (Zhang & Chen 2023, App. D): :math:`\bar x_{i+1} = \bar x_i + (\rho_{i+1}-\rho_i)\sum_j w_j
    \hat\epsilon_{i-j}` with the equal-step Adams–Bashforth weights of order ``order`` (1-4), lower orders
    while the history fills. Its declared order holds on grids uniform in :math:`\rho`; elsewhere the fixed
    weights cost accuracy (the convergence checks fit it on such a grid)."""

    def __init__(self, interpolant: Interpolant, order: int = 4, prediction: str = "velocity", *, warmup="lower"):
        if order not in ADAMS_BASHFORTH:
            raise ValueError(f"iPNDM order must be 1-4; got {order}")
        self.name = f"ipndm{order}"
        super().__init__(interpolant, prediction, warmup=warmup)
        self.order = self.history_order = order

    def step(self, field, t0, t1, x, state: StepHistory):
        eps = self.predict(field, t0, x)
        order, warm = self.begin_step(field, t0, t1, x, state, eps, eps, keep=self.order)
        if warm is not None:
            return warm, state
        outputs = state.outputs[::-1][:order]
        combined = sum(w * e for w, e in zip(ADAMS_BASHFORTH[order], outputs, strict=True))
        return self.advance(x, t0, t1, (self.rho(t1) - self.rho(t0)) * combined), state


def _unipc_update(
    x: Tensor,
    a_t: Tensor,
    n_t: Tensor,
    n_s: Tensor,
    h: Tensor,
    m0: Tensor,
    previous: list[tuple[Tensor, Tensor]],
    order: int,
    variant: str,
    m_t: Tensor | None = None,
) -> Tensor:
    r"""One UniP (``m_t`` None) or UniC (``m_t`` = output at the new point) step of order ``order`` from ``s`` to
    ``t`` with the data prediction; ``previous`` = ``[(r_k, m_k)]`` for the earlier outputs, where
    :math:`r_k = (\lambda_{s_k} - \lambda_s)/h`. Zhao et al. 2023, Alg. 1-2 with :math:`\hat h = -h`."""
    hh = -h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if variant == "bh1" else h_phi_1
    rks = [r for r, _ in previous[: order - 1]] + [torch.ones_like(h)]
    b, factorial = [], 1
    for i in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    # the update as one linear combination of full-size tensors, its scalar coefficients combined first: the
    # written-out form (differences D_k = (m_k - m0) / r_k, then their weighted sum) took twice the tensor operations
    scale = -(a_t * b_h)
    if m_t is None:  # predictor: the first order - 1 conditions
        rhos = [] if not previous[: order - 1] else [0.5] if order == 2 else _solve_vandermonde(rks[:-1], b[:-1])
    elif order == 1:
        rhos = [0.5]
    elif order == 2:  # [[1, 1], [r, 1]] rho = b in closed form: a 2x2 torch.linalg.solve cost 70 us per step
        rho_0 = (b[0] - b[1]) / (1 - rks[0])
        rhos = [rho_0, b[0] - rho_0]
    else:
        rhos = _solve_vandermonde(rks, b)
    m0_coefficient = -(a_t * h_phi_1)
    out = (n_t / n_s) * x
    for rho, (r, m) in zip(rhos, previous[: order - 1], strict=False):  # scale * rho * (m - m0) / r
        c = scale * rho / r
        out = out + c * m
        m0_coefficient = m0_coefficient - c
    if m_t is not None:
        c = scale * rhos[-1]
        out = out + c * m_t
        m0_coefficient = m0_coefficient - c
    return out + m0_coefficient * m0


def _solve_vandermonde(rks: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    """``rho`` with ``sum_k rho_k r_k^(i-1) = b_i`` for i = 1 ... len(b)."""
    big_r = torch.stack([torch.stack([r ** (i - 1) for r in rks]) for i in range(1, len(b) + 1)])
    return list(torch.linalg.solve(big_r, torch.stack(b)).unbind(0))


class UniPC(PredictionSolver):
    r"""UniPC-``order`` (1-3) with the data prediction; ``corrector=False`` gives the bare predictor UniP.

    Declared order ``order + 1`` with the corrector, ``order`` without. One evaluation per step: the states
    recorded at interior grid points are the predictor values (their correction happens with the next step's
    evaluation); the final state is the last predictor, as in the reference implementation.
    """

    parameterisation = "data"

    def __init__(
        self,
        interpolant: Interpolant,
        order: int = 2,
        prediction: str = "velocity",
        *,
        variant: str = "bh2",
        corrector: bool = True,
        lower_order_final: int = 10,
        thresholding=None,
        warmup: str = "lower",
    ):
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3; got {order}")
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"variant must be 'bh1' or 'bh2'; got {variant!r}")
        self.name = f"unipc{order}-{variant}" + ("" if corrector else "-p")
        super().__init__(interpolant, prediction, thresholding, warmup)
        self.max_order, self.variant, self.corrector = order, variant, bool(corrector)
        self.order = order + 1 if corrector else order
        self.history_order = self.order
        self.lower_order_final = int(lower_order_final)

    def step_orders(self, n_steps: int) -> list[int]:
        return multistep_orders(self.max_order, n_steps, self.lower_order_final)

    def _previous(self, state: StepHistory, lam_s: Tensor, h: Tensor, skip: int) -> list[tuple[Tensor, Tensor]]:
        lams, outputs = state.lams[::-1][skip:], state.outputs[::-1][skip:]
        return [((lam - lam_s) / h, m) for lam, m in zip(lams, outputs, strict=True)]

    def step(self, field, t0, t1, x, state: StepHistory):
        v = self.view
        n0, l0 = v.noise(t0), v.log_snr(t0)
        noise, m = self.predict_pair(field, t0, x)
        last = state.extra.get("last")
        if last is not None and self.corrector:  # UniC on the previous step, with the output just computed
            x_prev, n_prev, l_prev, order_prev = last
            h_prev = l0 - l_prev
            previous = self._previous(state, l_prev, h_prev, skip=1)
            x = _unipc_update(
                x_prev, v.signal(t0), n0, n_prev, h_prev, state.outputs[-1], previous, order_prev, self.variant, m
            )
        order, warm = self.begin_step(field, t0, t1, x, state, m, noise, keep=self.max_order)
        if warm is not None:
            state.extra["last"] = None
            return warm, state
        order = min(order, len(state.outputs))
        a1, n1, l1 = v.at(t1)
        if n1 == 0:  # denoise to zero
            return a1 * m, state
        h = l1 - l0
        previous = self._previous(state, l0, h, skip=1)
        x_next = _unipc_update(x, a1, n1, n0, h, m, previous, order, self.variant)
        state.extra["last"] = (x, n0, l0, order)
        return x_next, state
