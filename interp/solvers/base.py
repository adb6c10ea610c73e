"""Solver interfaces.

A solver is a small object (docs/design.md, after diffrax): ``init`` builds its state, ``step`` advances one grid
interval and returns the new state. Capabilities are declared (``order``, ``strong_order``, ``weak_order``,
``stochastic``, ``adaptive``) and checked against the dynamics before any step is taken, with an error that
says what is missing. The driver loop, recording, progress and finiteness checks live in
:func:`interp.integrate`, not in the solvers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor

from ..dynamics import SDE


class Solver(ABC):  # noqa: B024 - the families below declare the abstract step/solve
    """Base of every solver. ``nfe_per_step`` counts field evaluations per step (for NFE budgets)."""

    name: str = "solver"
    stochastic: bool = False
    adaptive: bool = False
    nfe_per_step: int = 1
    stateless: bool = False
    """True when ``step`` neither reads nor changes a state (``init`` returns ``None``): ``integrate(...,
    compile=True)`` then fuses blocks of steps into one compiled call."""

    def check_dynamics(self, dynamics) -> None:
        """Raise ``TypeError``/``ValueError`` when this solver cannot integrate ``dynamics``."""
        if self.stochastic and not isinstance(dynamics, SDE):
            raise TypeError(f"{self.name} integrates an SDE (drift and diffusion); got a plain field")
        if not self.stochastic and isinstance(dynamics, SDE):
            raise TypeError(
                f"{self.name} is an ODE solver and would drop the SDE's noise; pass the drift or use an SDE solver"
            )
        if not self.stochastic and not callable(dynamics):
            raise TypeError(f"{self.name} needs a field callable (t, x) -> Tensor; got {type(dynamics).__name__}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ODESolver(Solver):
    """Fixed-step ODE solver: ``order`` is the declared global order of accuracy."""

    order: float

    def init(self, field, t0: Tensor, x0: Tensor) -> Any:
        return None

    @abstractmethod
    def step(self, field, t0: Tensor, t1: Tensor, x: Tensor, state: Any) -> tuple[Tensor, Any]: ...


class SDESolver(Solver):
    """Fixed-step SDE solver driven by the Brownian increment ``dW`` over ``[t0, t1]``."""

    stochastic = True
    strong_order: float
    weak_order: float
    needs_additive_noise: bool = False

    def check_dynamics(self, dynamics) -> None:
        super().check_dynamics(dynamics)
        if self.needs_additive_noise and not dynamics.additive:
            raise ValueError(
                f"{self.name} solves the Stratonovich SDE, which equals the Ito one only for additive noise; "
                "use EulerMaruyama for state-dependent diffusion"
            )

    def init(self, sde: SDE, t0: Tensor, x0: Tensor) -> Any:
        return None

    @abstractmethod
    def step(self, sde: SDE, t0: Tensor, t1: Tensor, x: Tensor, dw: Tensor, state: Any) -> tuple[Tensor, Any]: ...


class AdaptiveSolver(Solver):
    """A solver that chooses its own steps and reports the state at every time of the grid."""

    adaptive = True

    @abstractmethod
    def solve(self, dynamics, x0: Tensor, grid: Tensor, generator) -> tuple[Tensor, dict]:
        """Return states ``(len(grid), batch, ...)`` and a dict of statistics."""


def init_state(solver: Solver, dynamics, t0: Tensor, x0: Tensor, grid: Tensor) -> Any:
    """``solver.init``, handing over the whole grid to solvers that declare ``needs_grid`` (multistep history,
    final-step rules)."""
    if getattr(solver, "needs_grid", False):
        return solver.init(dynamics, t0, x0, grid=grid)
    return solver.init(dynamics, t0, x0)
