r"""Weighted particles: log-weights, effective sample size, resampling schemes and policies, the running estimate of
the log normalising constant, and the ancestry (docs/algorithms.md §5).

Everything stays in log space (``logsumexp``, never a raw ``exp`` of an unnormalised log-weight), so weights that
underflow in linear space still give finite, correct answers; degenerate weights (all :math:`-\infty`, any NaN or
:math:`+\infty`) raise :class:`DegenerateWeightsError` instead of producing NaN.

Resampling schemes (Douc, Cappé & Moulines 2005; each returns ancestor indices ``(n,)`` and is unbiased: the
expected number of copies of particle ``i`` is :math:`n W_i`): ``multinomial``; ``stratified`` (one uniform in each
of ``n`` strata); ``systematic`` (one uniform shared by all strata: every count is :math:`\lfloor nW_i\rfloor` or
:math:`\lceil nW_i\rceil`); ``residual`` (the integer parts deterministically, the rest multinomially).

The particles library (Chopin) does this in numpy; here it is torch on the particles' device with an explicit
generator, inside the sampling loop, so it is written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._random import rand

__all__ = [
    "SCHEMES",
    "DegenerateWeightsError",
    "Particles",
    "ResamplePolicy",
    "effective_sample_size",
    "log_mean_exp",
    "normalised_log_weights",
    "resample_indices",
]


class DegenerateWeightsError(ValueError):
    """The log-weights cannot be normalised: all :math:`-\\infty`, or some NaN or :math:`+\\infty`."""


def _check_log_weights(log_weights: Tensor) -> Tensor:
    if not isinstance(log_weights, Tensor) or log_weights.ndim != 1 or log_weights.numel() == 0:
        raise ValueError(f"log_weights must be a non-empty 1-D tensor; got {getattr(log_weights, 'shape', None)}")
    if torch.isnan(log_weights).any():
        raise DegenerateWeightsError(f"{int(torch.isnan(log_weights).sum())} log-weights are NaN")
    if (log_weights == math.inf).any():
        raise DegenerateWeightsError("a log-weight is +inf")
    if (log_weights == -math.inf).all():
        raise DegenerateWeightsError("every log-weight is -inf: no particle carries any weight")
    return log_weights


def normalised_log_weights(log_weights: Tensor) -> Tensor:
    """:math:`\\log W_i = \\log w_i - \\log\\sum_j w_j`."""
    log_weights = _check_log_weights(log_weights)
    return log_weights - torch.logsumexp(log_weights, dim=0)


def effective_sample_size(log_weights: Tensor) -> float:
    """:math:`(\\sum w)^2 / \\sum w^2`, computed as :math:`\\exp(2\\,\\mathrm{lse}(\\log w) - \\mathrm{lse}(2\\log w))`;
    between 1 and ``n``."""
    log_weights = _check_log_weights(log_weights)
    return float(torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0)))


def _inverse_cdf(weights: Tensor, points: Tensor) -> Tensor:
    cdf = torch.cumsum(weights, dim=0)
    cdf[-1] = 1.0  # guard the last bin against rounding
    return torch.searchsorted(cdf, points, right=True).clamp(max=weights.numel() - 1)


def _multinomial(weights: Tensor, n: int, generator) -> Tensor:
    return _inverse_cdf(weights, torch.sort(rand(n, generator, weights, torch.float64)).values)


def _stratified(weights: Tensor, n: int, generator) -> Tensor:
    return _inverse_cdf(
        weights,
        (torch.arange(n, dtype=torch.float64, device=weights.device) + rand(n, generator, weights, torch.float64)) / n,
    )


def _systematic(weights: Tensor, n: int, generator) -> Tensor:
    return _inverse_cdf(
        weights,
        (torch.arange(n, dtype=torch.float64, device=weights.device) + rand(1, generator, weights, torch.float64)) / n,
    )


def _residual(weights: Tensor, n: int, generator) -> Tensor:
    copies = torch.floor(n * weights).long()
    fixed = torch.repeat_interleave(torch.arange(weights.numel(), device=weights.device), copies)
    rest = n - int(copies.sum())
    if rest == 0:
        return fixed
    remainder = n * weights - copies
    return torch.cat([fixed, _multinomial(remainder / remainder.sum(), rest, generator)])


SCHEMES: dict[str, Callable[[Tensor, int, torch.Generator | None], Tensor]] = {
    "multinomial": _multinomial,
    "stratified": _stratified,
    "systematic": _systematic,
    "residual": _residual,
}


def resample_indices(
    log_weights: Tensor, scheme: str = "systematic", n: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Ancestor indices ``(n,)`` (default ``n`` = number of particles) drawn by ``scheme`` from the weights."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose from {sorted(SCHEMES)}")
    n = log_weights.numel() if n is None else n
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer; got {n!r}")
    weights = torch.exp(normalised_log_weights(log_weights).double())
    return SCHEMES[scheme](weights, n, generator)


@dataclass(frozen=True)
class ResamplePolicy:
    """When to resample: ``"always"``; ``"ess"`` when the ESS falls below ``threshold`` × n; ``"schedule"`` at the
    listed ``steps``; any of them restricted to the ``window`` [start, end] of step indices; ``"never"``."""

    kind: str = "ess"
    threshold: float = 0.5
    steps: tuple[int, ...] = ()
    window: tuple[int, int] | None = None

    def __post_init__(self):
        if self.kind not in ("always", "ess", "schedule", "never"):
            raise ValueError(f"kind must be always, ess, schedule or never; got {self.kind!r}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1]; got {self.threshold}")
        if self.window is not None and not (len(self.window) == 2 and self.window[0] <= self.window[1]):
            raise ValueError(f"window must be (start, end) with start <= end; got {self.window}")

    def due(self, step: int, log_weights: Tensor) -> bool:
        if self.kind == "never" or (self.window is not None and not self.window[0] <= step <= self.window[1]):
            return False
        if self.kind == "always":
            return True
        if self.kind == "schedule":
            return step in self.steps
        return effective_sample_size(log_weights) < self.threshold * log_weights.numel()


@dataclass
class Particles:
    """States ``x`` ``(n, ...)`` with log-weights ``(n,)``, the running :math:`\\log\\hat Z` and the ancestry.

    :meth:`reweight` multiplies the weights by :math:`e^{\\text{increment}}` and adds
    :math:`\\log\\sum_i W_i e^{\\text{increment}_i}` to :math:`\\log\\hat Z` (an unbiased estimate of the ratio of
    normalising constants in :math:`\\hat Z`); :meth:`resample` copies states by the chosen scheme, resets the
    weights to uniform (keeping :math:`\\log\\hat Z`) and records the ancestors.
    """

    x: Tensor
    log_weights: Tensor
    log_normaliser: float = 0.0
    ancestry: list[Tensor] = field(default_factory=list)
    resampled_at: list[int] = field(default_factory=list)

    @classmethod
    def uniform(cls, x: Tensor) -> Particles:
        return cls(x, torch.zeros(x.shape[0], dtype=torch.float64, device=x.device))

    @property
    def ess(self) -> float:
        return effective_sample_size(self.log_weights)

    def reweight(self, log_increment: Tensor) -> Particles:
        if log_increment.shape != self.log_weights.shape:
            raise ValueError(
                f"log_increment must have shape {tuple(self.log_weights.shape)}; got {tuple(log_increment.shape)}"
            )
        if torch.isnan(log_increment).any():
            raise DegenerateWeightsError(f"{int(torch.isnan(log_increment).sum())} log-weight increments are NaN")
        new = self.log_weights + log_increment.to(self.log_weights)
        step = torch.logsumexp(normalised_log_weights(self.log_weights) + log_increment.to(self.log_weights), 0)
        _check_log_weights(new)
        self.log_weights = new
        self.log_normaliser += float(step)
        return self

    def resample(
        self, scheme: str = "systematic", generator: torch.Generator | None = None, step: int = -1
    ) -> Particles:
        index = resample_indices(self.log_weights, scheme, generator=generator)
        self.x = self.x[index]
        self.log_weights = torch.full_like(self.log_weights, -math.log(index.numel()))
        self.ancestry.append(index)
        self.resampled_at.append(step)
        return self

    def maybe_resample(self, policy: ResamplePolicy, step: int, scheme="systematic", generator=None) -> bool:
        if policy.due(step, self.log_weights):
            self.resample(scheme, generator, step)
            return True
        return False

    def lineage(self) -> Tensor:
        """For each final particle, the index of its ancestor before the first resampling ``(n,)``."""
        origin = torch.arange(self.log_weights.numel(), device=self.log_weights.device)
        for index in reversed(self.ancestry):
            origin = index[origin]
        return origin


def log_mean_exp(values: Iterable[float]) -> float:
    """:math:`\\log\\frac1m\\sum e^{v}` of a few numbers (e.g. log-normaliser estimates over runs)."""
    v = torch.as_tensor(list(values), dtype=torch.float64)
    return float(torch.logsumexp(v, 0) - math.log(v.numel()))
