r"""Dynamics the solvers integrate: a plain field (ODE) or an :class:`SDE`, and the interpolant SDEs.

A *field* is any callable ``field(t, x) -> Tensor`` with the shape of ``x`` (docs/design.md). An :class:`SDE`
pairs a drift field with a diagonal diffusion :math:`g(t, x)` (broadcastable to ``x``):
:math:`dX = f(t, X)\,dt + g(t, X)\,dW` in the Itô sense.

The generative SDEs of a stochastic interpolant (Albergo, Boffi & Vanden-Eijnden 2023, Eqs. 2.32-2.33),
for any :math:`\epsilon(t) \ge 0`, velocity :math:`b` and score :math:`s`:

* forward  :math:`dX = [b + \epsilon s]\,dt + \sqrt{2\epsilon}\,dW`, run ``t: 0 -> 1``;
* backward :math:`dX = [b - \epsilon s]\,dt + \sqrt{2\epsilon}\,d\bar W`, run ``t: 1 -> 0`` on a decreasing grid.

Both have the interpolant's marginals :math:`\rho_t`; :math:`\epsilon = 0` is the probability-flow ODE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import batch_time, time_column

Field = Callable[[Tensor, Tensor], Tensor]
NoiseScale = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class SDE:
    r"""Itô SDE :math:`dX = f(t,X)dt + g(t,X)dW` with diagonal noise.

    Args:
        drift: field ``(t, x) -> (batch, ...)``.
        diffusion: ``(t, x) -> Tensor`` broadcastable to ``x`` (e.g. ``(batch, 1)``).
        additive: ``True`` when :math:`g` depends on ``t`` only; then the Itô and Stratonovich readings
            coincide and Stratonovich solvers (stochastic Heun) may be used.
    """

    drift: Field
    diffusion: Callable[[Tensor, Tensor], Tensor]
    additive: bool = False

    def __post_init__(self):
        if not callable(self.drift) or not callable(self.diffusion):
            raise TypeError("drift and diffusion must be callables (t, x) -> Tensor")


def constant_noise_sde(drift: Field, scale: float) -> SDE:
    r""":math:`dX = f(t, X)\,dt + \text{scale}\,dW`: additive noise of a constant scale, any state shape."""
    scale = float(scale)
    if not scale >= 0:
        raise ValueError(f"scale must be >= 0; got {scale}")

    def diffusion(t, x):
        return torch.full((x.shape[0],) + (1,) * (x.ndim - 1), scale, dtype=x.dtype, device=x.device)

    return SDE(drift, diffusion, additive=True)


def noise_scale_fn(noise_scale) -> NoiseScale:
    """:math:`\\epsilon(t)` as a callable of ``t``: ``noise_scale`` itself if callable, else the constant (>= 0)."""
    if callable(noise_scale):
        return noise_scale
    value = float(noise_scale)
    if not value >= 0:
        raise ValueError(f"noise_scale (epsilon) must be >= 0; got {noise_scale}")
    return lambda t: torch.full_like(t, value)


def generative_sde(velocity: Field, score: Field, noise_scale, *, backward: bool = False) -> SDE:
    r"""The interpolant SDE with :math:`\epsilon(t)` = ``noise_scale`` (a float or a callable of ``t``).

    ``backward=True`` gives the drift :math:`b - \epsilon s` to integrate on a decreasing grid.

    Example:
        >>> sde = generative_sde(exact.velocity, exact.score, 0.5)  # doctest: +SKIP
    """
    eps = noise_scale_fn(noise_scale)
    sign = -1.0 if backward else 1.0

    def epsilon(t, x) -> Tensor:
        tb = batch_time(t, x)
        value = eps(tb)
        if not torch.isfinite(value).all() or (value < 0).any():
            raise ValueError(f"noise_scale epsilon(t) must be finite and >= 0; got {value.min().item()} at some t")
        return time_column(value.to(x.dtype), x)

    def drift(t, x):
        return velocity(t, x) + sign * epsilon(t, x) * score(t, x)

    def diffusion(t, x):
        return torch.sqrt(2 * epsilon(t, x))

    return SDE(drift, diffusion, additive=True)
