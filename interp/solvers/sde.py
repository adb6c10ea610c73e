r"""Fixed-step SDE solvers for :math:`dX = f\,dt + g\,dW` with diagonal noise.

* :class:`EulerMaruyama` — :math:`x' = x + f(t,x)h + g(t,x)\Delta W`. Strong order ½ in general and 1 for
  additive noise; weak order 1 (Kloeden & Platen 1992, Thms. 10.2.2, 14.1.5).
* :class:`StochasticHeun` — predictor :math:`\tilde x = x + fh + g\Delta W`, corrector
  :math:`x' = x + \tfrac12(f + \tilde f)h + \tfrac12(g + \tilde g)\Delta W`. It converges to the Stratonovich
  solution, so it is only offered for additive noise, where Itô and Stratonovich agree; there its strong
  order is 1 and its weak order 2 (Kloeden & Platen 1992, Sec. 15.1).

``h = t1 - t0`` may be negative (backward SDEs on decreasing grids); ``dw`` has variance ``|h|``.
"""

from __future__ import annotations

from .base import SDESolver


class EulerMaruyama(SDESolver):
    name = "euler_maruyama"
    strong_order = 0.5
    additive_strong_order = 1.0
    weak_order = 1.0
    nfe_per_step = 1

    def step(self, sde, t0, t1, x, dw, state):
        return x + sde.drift(t0, x) * (t1 - t0) + sde.diffusion(t0, x) * dw, state


class StochasticHeun(SDESolver):
    name = "stochastic_heun"
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
