r"""Fixed-step explicit Runge–Kutta ODE solvers: Euler, Heun, midpoint, RK4 and its 3/8 rule.

One class, :class:`ExplicitRungeKutta`, runs any explicit Butcher tableau
:math:`k_i = f(t + c_i h, x + h\sum_{j<i} a_{ij}k_j)`, :math:`x' = x + h\sum_i b_i k_i`
(Hairer, Nørsett & Wanner, "Solving ODEs I", Sec. II.1); the named solvers are its instances, each declaring
its order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import ODESolver


class ExplicitRungeKutta(ODESolver):
    """An explicit Runge–Kutta method from its tableau ``(a, b, c)`` and declared ``order``."""

    stateless = True

    def __init__(self, name: str, a: Sequence[Sequence[float]], b: Sequence[float], c: Sequence[float], order: int):
        stages = len(b)
        if len(c) != stages or len(a) != stages or any(len(row) != i for i, row in enumerate(a)):
            raise ValueError(
                "a must be strictly lower triangular (row i has i entries) with len(a) == len(b) == len(c)"
            )
        if abs(sum(b) - 1) > 1e-12:
            raise ValueError(f"the weights b must sum to 1 (consistency); got {sum(b)}")
        self.name, self.a, self.b, self.c, self.order = name, a, b, c, order
        self.nfe_per_step = stages

    def step(self, field, t0, t1, x, state):
        h = t1 - t0
        ks = []
        for a_row, c_i in zip(self.a, self.c, strict=False):
            xi = x
            for a_ij, k in zip(a_row, ks, strict=False):
                if a_ij:
                    xi = xi + (h * a_ij) * k
            ks.append(field(t0 + c_i * h, xi))
        increment = sum((b_i * k for b_i, k in zip(self.b, ks, strict=False) if b_i), torch.zeros_like(x))
        return x + h * increment, state

    def __repr__(self):
        if type(self) is not ExplicitRungeKutta:
            return f"{type(self).__name__}()"
        return f"ExplicitRungeKutta({self.name!r}, order={self.order})"


class Euler(ExplicitRungeKutta):
    """Forward Euler, order 1."""

    def __init__(self):
        super().__init__("euler", [[]], [1.0], [0.0], order=1)


class Heun(ExplicitRungeKutta):
    """Heun's method (explicit trapezoid), order 2."""

    def __init__(self):
        super().__init__("heun", [[], [1.0]], [0.5, 0.5], [0.0, 1.0], order=2)


class Midpoint(ExplicitRungeKutta):
    """Explicit midpoint, order 2."""

    def __init__(self):
        super().__init__("midpoint", [[], [0.5]], [0.0, 1.0], [0.0, 0.5], order=2)


class RK4(ExplicitRungeKutta):
    """The classical fourth-order Runge–Kutta method."""

    def __init__(self):
        super().__init__(
            "rk4", [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6], [0.0, 0.5, 0.5, 1.0], order=4
        )


class RK38(ExplicitRungeKutta):
    """Kutta's 3/8 rule, the other classical fourth-order method (Hairer, Nørsett & Wanner, Table II.1.2); the
    method torchdiffeq's fixed-grid ``rk4`` runs, so the two give the same numbers on the same grid."""

    def __init__(self):
        super().__init__(
            "rk4-3/8",
            [[], [1 / 3], [-1 / 3, 1.0], [1.0, -1.0, 1.0]],
            [1 / 8, 3 / 8, 3 / 8, 1 / 8],
            [0.0, 1 / 3, 2 / 3, 1.0],
            order=4,
        )


ODE_SOLVERS = {"euler": Euler, "heun": Heun, "midpoint": Midpoint, "rk4": RK4, "rk4-3/8": RK38}
"""Every fixed-step ODE solver, by name (the convergence-order checks iterate over this)."""
