r"""Couplings: how the pairs :math:`(x_0, x_1)` of a training batch are drawn.

* :class:`IndependentCoupling` — keep the independent draws as they are (:math:`\pi = \rho_0 \otimes \rho_1`).
* :class:`ExactOTCoupling` — minibatch optimal transport with cost :math:`|x_0 - x_1|^2` (POT ``ot.emd``;
  Tong et al. 2023 "OT-CFM", Pooladian et al. 2023). For equal batch sizes the plan is a permutation and
  each :math:`x_0` is paired with its match.
* :class:`EntropicOTCoupling` — the static Schrödinger-bridge plan for a reference :math:`\sqrt{\epsilon}\,W`:
  entropic OT with cost :math:`|x_0-x_1|^2` and entropy weight :math:`2\epsilon` (docs/algorithms.md §4), solved by
  POT's ``ot.sinkhorn(a, b, M, reg=2 * epsilon)`` on the *unnormalised* cost, then ``batch`` pairs drawn from the
  plan with an explicit ``torch.Generator``. For Gaussians :math:`N(0,1) \to N(0,1)` with :math:`\epsilon=1` the
  pairs have covariance :math:`(\sqrt5-1)/2`.

Plans are computed with POT's torch backend, so tensors stay on their device. States of any shape
``(batch, ...)`` are flattened for the cost.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod

import ot
import torch
from torch import Tensor

from ._checks import check_batch, check_count, check_positive
from .stepping import ConvergenceError


def _check_pair(x0: Tensor, x1: Tensor) -> None:
    check_batch(x0, "x0")
    check_batch(x1, "x1")
    if x0.shape[0] == 0 or x1.shape[0] == 0:
        raise ValueError("x0 and x1 must not be empty")
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x0 and x1 must share their trailing shape; got {tuple(x0.shape)} and {tuple(x1.shape)}")


def squared_distances(x0: Tensor, x1: Tensor) -> Tensor:
    """Cost matrix :math:`M_{ij} = |x_{0,i} - x_{1,j}|^2`, shape ``(batch0, batch1)``."""
    return torch.cdist(x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)) ** 2


class Coupling(ABC):
    """Re-pairs two batches. ``pair(x0, x1, generator)`` returns two batches of equal size."""

    name = "coupling"

    @abstractmethod
    def pair(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class IndependentCoupling(Coupling):
    """Independent pairs: the batches are returned as drawn (they must have the same size)."""

    name = "independent"

    def pair(self, x0, x1, generator=None):
        _check_pair(x0, x1)
        if x0.shape[0] != x1.shape[0]:
            raise ValueError(f"independent pairs need equal batch sizes; got {x0.shape[0]} and {x1.shape[0]}")
        return x0, x1


class _PlanCoupling(Coupling):
    """A coupling given by a transport plan between the two empirical measures."""

    @abstractmethod
    def plan(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The plan, shape ``(batch0, batch1)``, rows summing to ``1/batch0`` and columns to ``1/batch1``."""

    def sample_pairs(self, plan: Tensor, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` index pairs ``(i, j)`` with probability ``plan[i, j]`` (with replacement)."""
        flat = plan.reshape(-1).clamp(min=0)
        device = generator.device if generator is not None else flat.device
        index = torch.multinomial(flat.to(device), n, replacement=True, generator=generator).to(flat.device)
        return index // plan.shape[1], index % plan.shape[1]

    def pair(self, x0, x1, generator=None):
        _check_pair(x0, x1)
        plan = self.plan(x0, x1)
        total = plan.sum()  # plans are >= 0, so a NaN or an infinity anywhere shows in the sum (one reduction)
        if not bool(torch.isfinite(total)) or total <= 0:
            raise ValueError(f"{self.name}: the transport plan is degenerate (non-finite or zero)")
        i, j = self._pairs(plan, x0.shape[0], generator)
        return x0[i], x1[j]

    def _pairs(self, plan, n, generator):
        return self.sample_pairs(plan, n, generator)


def exact_ot(a, b, cost, max_iterations: int, what: str, *, value_only: bool = False):
    """POT's network simplex (``ot.emd``, or ``ot.emd2`` for the cost alone) with its own optimality code checked:
    stopping at ``max_iterations`` short of optimal is a :class:`~interp.stepping.ConvergenceError` naming
    ``what``, never a sub-optimal plan returned with only POT's warning (docs/design.md, "Iterative solvers")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        solve = ot.emd2 if value_only else ot.emd
        out, log = solve(a, b, cost, numItermax=max_iterations, log=True)
    if log["result_code"] != 1:
        raise ConvergenceError(
            f"{what}: exact OT stopped before optimality ({log['warning'] or 'result code ' + str(log['result_code'])}"
            f", cap {max_iterations} iterations); raise the cap or use fewer points"
        )
    return out


class ExactOTCoupling(_PlanCoupling):
    """Minibatch exact OT with squared Euclidean cost (POT ``ot.emd``)."""

    name = "exact_ot"

    def __init__(self, max_iterations: int = 1_000_000):
        self.max_iterations = check_count(max_iterations, "max_iterations")

    def plan(self, x0, x1):
        a = torch.full((x0.shape[0],), 1.0 / x0.shape[0], dtype=x0.dtype, device=x0.device)
        b = torch.full((x1.shape[0],), 1.0 / x1.shape[0], dtype=x1.dtype, device=x1.device)
        return exact_ot(a, b, squared_distances(x0, x1).detach(), self.max_iterations, "ExactOTCoupling")

    def _pairs(self, plan, n, generator):
        if plan.shape[0] == plan.shape[1]:
            # Equal sizes: the optimal plan is a permutation (Birkhoff); pair each x0 with its match.
            return torch.arange(n, device=plan.device), plan.argmax(dim=1)
        return self.sample_pairs(plan, n, generator)


SINKHORN_METHODS = ("sinkhorn_log", "sinkhorn", "sinkhorn_stabilized", "sinkhorn_epsilon_scaling")


class EntropicOTCoupling(_PlanCoupling):
    r"""Static Schrödinger-bridge plan for the reference :math:`\sqrt{\epsilon}W`: Sinkhorn with ``reg = 2 epsilon``.

    Args:
        epsilon: the reference noise :math:`\epsilon > 0` (docs/algorithms.md §4); the cost is not normalised, so the
            plan is the entropic OT plan of the actual squared distances.
        max_iterations: Sinkhorn iterations at most (POT ``numItermax``).
        tolerance: stop when the plan's marginal error is below ``tolerance`` relative to the marginal
            (POT ``stopThr = tolerance * |b|_2``). The default 1e-2 is far below the :math:`O(n^{-1/2})` error of a
            minibatch plan itself; a fixed absolute threshold such as 1e-9 is out of reach for small ``epsilon``
            in several dimensions (Sinkhorn stalls near 1e-4 relative) and made every training step run to
            ``max_iterations``.
        method: POT's Sinkhorn variant; ``"sinkhorn_log"`` (default) stays stable for small ``epsilon``.

    Every plan is checked: its row and column marginals must match within ``tolerance`` (the same relative L2
    measure POT stops on). When log-domain Sinkhorn stops at ``max_iterations`` short of that — ``epsilon`` small
    against the squared distances, where it crawls — the plan is recomputed once with POT's
    ``"sinkhorn_epsilon_scaling"`` (which anneals the regularisation and converges there), a ``UserWarning`` says
    so the first time, ``fallbacks`` counts it, and later plans of this coupling use it directly. A plan that still
    misses its marginals raises :class:`~interp.stepping.ConvergenceError`; none is returned silently
    (docs/design.md, "Iterative solvers").
    """

    name = "entropic_ot"

    def __init__(
        self, epsilon: float, max_iterations: int = 10_000, tolerance: float = 1e-2, method: str = "sinkhorn_log"
    ):
        check_positive(epsilon, "epsilon")
        check_positive(tolerance, "tolerance")
        check_count(max_iterations, "max_iterations")
        if method not in SINKHORN_METHODS:
            raise ValueError(f"method must be one of {SINKHORN_METHODS}; got {method!r}")
        self.epsilon, self.max_iterations, self.tolerance, self.method = (
            float(epsilon),
            max_iterations,
            float(tolerance),
            method,
        )
        self.fallbacks = 0

    def _sinkhorn(self, a, b, cost, method):
        with warnings.catch_warnings():  # POT warns on its cap; the marginals are checked here instead
            warnings.simplefilter("ignore", UserWarning)
            plan = ot.sinkhorn(
                a,
                b,
                cost,
                reg=2 * self.epsilon,
                method=method,
                numItermax=self.max_iterations,
                stopThr=self.tolerance * float(torch.linalg.norm(b)),
            )
        rows = float(torch.linalg.norm(plan.sum(1) - a) / torch.linalg.norm(a))
        columns = float(torch.linalg.norm(plan.sum(0) - b) / torch.linalg.norm(b))
        error = max(rows, columns)
        return plan, (error if math.isfinite(error) else math.inf)

    def plan(self, x0, x1):
        # Solved in float64 whatever the data's dtype (float32 log-domain updates lose the marginals' digits).
        cost = squared_distances(x0, x1).detach().double()
        a = torch.full((x0.shape[0],), 1.0 / x0.shape[0], dtype=cost.dtype, device=cost.device)
        b = torch.full((x1.shape[0],), 1.0 / x1.shape[0], dtype=cost.dtype, device=cost.device)
        slack = 1 + 1e-6  # POT tests the same quantity with its own rounding
        method = "sinkhorn_epsilon_scaling" if self.fallbacks else self.method
        plan, error = self._sinkhorn(a, b, cost, method)
        if error > self.tolerance * slack and method != "sinkhorn_epsilon_scaling":
            if not self.fallbacks:
                warnings.warn(
                    f"EntropicOTCoupling: {method} missed the marginals by {error:.3g} (tolerance {self.tolerance:g}) "
                    f"after {self.max_iterations} iterations at epsilon={self.epsilon:g}; this and later plans use "
                    "sinkhorn_epsilon_scaling",
                    UserWarning,
                    stacklevel=2,
                )
            self.fallbacks += 1
            method = "sinkhorn_epsilon_scaling"
            plan, error = self._sinkhorn(a, b, cost, method)
        if error > self.tolerance * slack:
            scale = float(cost.median())
            raise ConvergenceError(
                f"EntropicOTCoupling: Sinkhorn ({method}) missed the marginals by {error:.3g} relative (tolerance "
                f"{self.tolerance:g}) after {self.max_iterations} iterations at epsilon={self.epsilon:g} against a "
                f"median squared distance {scale:.3g}; raise max_iterations or epsilon, standardise the data, or use "
                "OTCoupling (exact OT, the epsilon -> 0 limit)"
            )
        return plan.to(x0.dtype)

    def __repr__(self):
        return f"EntropicOTCoupling(epsilon={self.epsilon})"
