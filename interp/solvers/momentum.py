r"""Momentum variants of multistep diffusion solvers, and the LML step correction.

Wizadwongsa et al. 2023, "Diffusion sampling with momentum for mitigating divergence artifacts": in
:math:`\bar x = x/a`, :math:`\rho = n/a` (see :mod:`.multistep`) with the noise prediction :math:`e_i`,

* **heavy ball** (PLMS-HB, their Eq. 12): :math:`v \leftarrow (1-\beta)v + \beta\,\mathrm{AB}_k(e)`,
  :math:`\bar x_{i+1} = \bar x_i + \Delta\rho\,v`. :math:`\beta = 1` is iPNDM/PLMS of order ``k``; for
  :math:`\beta < 1` the method is first order (their Thm. 1) with a larger stability region.
* **GHVB** (generalised heavy ball, their Sec. 4.2): the momentum acts first,
  :math:`v \leftarrow (1-\beta)v + \beta e_i`, and an Adams–Bashforth-like combination of the past :math:`v` with
  :math:`\beta`-dependent weights (chosen so that order ``k`` is kept for every :math:`\beta`) gives the step.
  :math:`\beta = 1` is PLMS of order ``k`` again.

:class:`LML` post-processes any fixed-step solver's increment :math:`d` with the damped low-rank metric of the
Levenberg–Marquardt–Langevin method (Wang et al. 2025): :math:`d' = \lambda(\lambda I + vv^\top)^{-1}d`,
:math:`v = \kappa d_{prev} + (1-\kappa)d`, rescaled to :math:`\|d\|`. By Sherman–Morrison
:math:`d' \propto d - v\,(v^\top d)/(\lambda + \|v\|^2)`; with :math:`\kappa = 0` (the authors' default),
:math:`v = d` and :math:`d'` is parallel to :math:`d`, so after rescaling **the correction is the identity**
(docs/algorithms.md §3; tested).
"""

from __future__ import annotations

from ..interpolants import Interpolant
from .base import ODESolver, init_state
from .multistep import ADAMS_BASHFORTH
from .prediction import NoiseSpaceSolver, StepHistory


def ghvb_weights(order: int, beta: float) -> tuple[float, ...]:
    r"""Weights of the GHVB combination of the last ``order`` momenta (newest first), divided by :math:`\beta`
    (Wizadwongsa et al. 2023, Sec. 4.2); :math:`\beta = 1` gives :data:`ADAMS_BASHFORTH`."""
    b = float(beta)
    table = {
        1: (b,),
        2: ((2 + b) / 2, -(2 - b) / 2),
        3: ((18 + 5 * b) / 12, -(24 - 8 * b) / 12, (6 - b) / 12),
        4: ((46 + 9 * b) / 24, -(78 - 19 * b) / 24, (42 - 5 * b) / 24, -(10 - b) / 24),
    }
    return tuple(w / b for w in table[order])


class _Momentum(NoiseSpaceSolver):
    prefix = "momentum"

    def __init__(
        self,
        interpolant: Interpolant,
        order: int = 2,
        beta: float = 0.8,
        prediction: str = "velocity",
        *,
        warmup="lower",
    ):
        self.name = f"{self.prefix}{order}-{beta:g}"
        if order not in ADAMS_BASHFORTH:
            raise ValueError(f"order must be 1-4; got {order}")
        if not 0 < beta <= 1:
            raise ValueError(f"beta must lie in (0, 1]; got {beta}")
        super().__init__(interpolant, prediction, warmup=warmup)
        self.k, self.beta = order, float(beta)
        self.history_order = order
        self.order = self.declared_order()

    def declared_order(self) -> int:
        return self.k


class HeavyBall(_Momentum):
    """PLMS with heavy-ball momentum (order ``order`` Adams–Bashforth inside, momentum ``beta``)."""

    prefix = "hb"

    def declared_order(self) -> int:
        return self.k if self.beta == 1 else 1

    def step(self, field, t0, t1, x, state: StepHistory):
        eps = self.predict(field, t0, x)
        state.push(t0, self.view.log_snr(t0), eps, keep=self.k)
        order = state.orders[state.index]
        combined = sum(w * e for w, e in zip(ADAMS_BASHFORTH[order], state.outputs[::-1][:order], strict=True))
        velocity = state.extra.get("velocity")
        velocity = combined if velocity is None else (1 - self.beta) * velocity + self.beta * combined
        state.extra["velocity"] = velocity
        warm = self.warm_step(field, t0, t1, x, state, eps)
        if warm is not None:
            return warm, state
        state.index += 1
        return self.advance(x, t0, t1, (self.rho(t1) - self.rho(t0)) * velocity), state


class GHVB(_Momentum):
    """Generalised heavy ball of order ``order`` with momentum ``beta`` (keeps the order for every beta)."""

    prefix = "ghvb"

    def step(self, field, t0, t1, x, state: StepHistory):
        eps = self.predict(field, t0, x)
        velocity = state.extra.get("velocity")
        velocity = eps if velocity is None else (1 - self.beta) * velocity + self.beta * eps
        state.extra["velocity"] = velocity
        order, warm = self.begin_step(field, t0, t1, x, state, velocity, eps, keep=self.k)
        if warm is not None:
            return warm, state
        weights = ghvb_weights(order, self.beta)
        combined = sum(w * v for w, v in zip(weights, state.outputs[::-1][:order], strict=True))
        return self.advance(x, t0, t1, (self.rho(t1) - self.rho(t0)) * combined), state


class LML(ODESolver):
    """The LML low-rank damped correction of another fixed-step solver's increments.

    Args:
        base: any fixed-step ODE solver (its order, NFE and grid needs are passed through).
        damping: :math:`\\lambda > 0`.
        kappa: weight of the previous increment in the low-rank direction, in [0, 1]; 0 is the identity.
    """

    def __init__(self, base: ODESolver, damping: float = 1.0, kappa: float = 0.0):
        if not isinstance(base, ODESolver):
            raise TypeError(f"base must be a fixed-step ODE solver, got {type(base).__name__}")
        if not damping > 0:
            raise ValueError(f"damping (lambda) must be > 0; got {damping}")
        if not 0 <= kappa <= 1:
            raise ValueError(f"kappa must lie in [0, 1]; got {kappa}")
        self.base, self.damping, self.kappa = base, float(damping), float(kappa)
        self.name = f"lml({base.name}, kappa={kappa:g})"
        self.order, self.nfe_per_step = base.order, base.nfe_per_step
        self.needs_grid = getattr(base, "needs_grid", False)

    def init(self, field, t0, x0, grid=None):
        inner = init_state(self.base, field, t0, x0, grid)
        return {"inner": inner, "previous": None}

    def step(self, field, t0, t1, x, state):
        x_new, inner = self.base.step(field, t0, t1, x, state["inner"])
        d = (x_new - x).reshape(x.shape[0], -1)
        previous = state["previous"]
        v = d if previous is None else self.kappa * previous + (1 - self.kappa) * d
        corrected = d - v * (v * d).sum(1, keepdim=True) / (self.damping + (v * v).sum(1, keepdim=True))
        norm, norm_corrected = d.norm(dim=1, keepdim=True), corrected.norm(dim=1, keepdim=True)
        scale = norm / norm_corrected.clamp_min(1e-300)
        corrected = (corrected * scale).where(norm_corrected > 0, d)
        return x + corrected.reshape(x.shape), {"inner": inner, "previous": d}
