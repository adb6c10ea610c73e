r"""Quadratic objectives whose minimisers are the interpolant's fields (docs/algorithms.md §1; ABV 2023, Sec. 2.2).

For a model :math:`\hat f(t, x)` and a :class:`Parameterisation` with regression target :math:`y`
(a function of :math:`t, x_0, x_1, z`), the loss is

.. math:: L = E_{t, x_0, x_1, z}\big[w(t)\,|\hat f(t, x_t) - y|^2\big] / \dim,

whose minimiser is :math:`E[y \mid x_t]` — equal to the ABV form :math:`E[\tfrac12|\hat f|^2 - y\cdot\hat f]`
up to a constant. Targets :math:`y` and minimisers:

* ``VELOCITY``: :math:`\dot\alpha x_0+\dot\beta x_1+\dot\gamma z` -> :math:`b`;
* ``MEAN_VELOCITY``: :math:`\dot\alpha x_0+\dot\beta x_1` -> :math:`v = b + \gamma\dot\gamma s`;
* ``DENOISER``: :math:`z` -> :math:`\eta = -\gamma s`;
* ``SCORE``: :math:`-z/\gamma`, loss weighted by :math:`\gamma^2` -> :math:`s`;
* ``X0`` / ``X1``: :math:`x_0` / :math:`x_1` -> :math:`E[x_0\mid x]` / :math:`E[x_1\mid x]` (noise / data
  prediction on a Gaussian base).

The score loss is written :math:`|\gamma\hat s + z|^2` (the :math:`\gamma^2`-weighted form), finite at every
``t``. Times are drawn uniformly in ``[t_min, t_max]``: the clip keeps :math:`\dot\gamma` finite for
Brownian-bridge :math:`\gamma` (and the data-end singularity of VP out of reach); set it with ``time_range``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import time_column
from .interpolants import Interpolant, InterpolantSample

Model = Callable[[Tensor, Tensor], Tensor]


class Parameterisation(enum.Enum):
    """What a model predicts."""

    VELOCITY = "velocity"
    MEAN_VELOCITY = "mean_velocity"
    DENOISER = "denoiser"
    SCORE = "score"
    X0 = "x0"
    X1 = "x1"


def sample_times(batch: int, generator: torch.Generator | None, t_min: float, t_max: float, *, dtype, device) -> Tensor:
    """``batch`` times uniform on ``[t_min, t_max]``."""
    if not 0 <= t_min < t_max <= 1:
        raise ValueError(f"need 0 <= t_min < t_max <= 1; got ({t_min}, {t_max})")
    noise_device = generator.device if generator is not None else device
    u = torch.rand(batch, generator=generator, dtype=dtype, device=noise_device).to(device)
    return t_min + (t_max - t_min) * u


class InterpolantLoss:
    r"""Regression loss for one :class:`Parameterisation` of an :class:`~interp.interpolants.Interpolant`.

    Args:
        interpolant: the path.
        parameterisation: what the model predicts.
        time_range: ``(t_min, t_max)`` for the training times; defaults to the interpolant's ``time_range``
            shrunk by ``1e-3`` at ends where a target needs it (Brownian :math:`\dot\gamma`, :math:`1/\gamma`).
        weighting: optional :math:`w(t)`, a callable of the ``(batch,)`` times.
        antithetic: use :math:`z` and :math:`-z` on two copies of the batch (variance reduction for the
            :math:`\dot\gamma z` and :math:`z` terms; ABV 2023, Sec. 6.1).

    Example:
        >>> loss_fn = InterpolantLoss(preset("linear"), Parameterisation.VELOCITY)  # doctest: +SKIP
        >>> loss = loss_fn(model, x0, x1, generator)                                # doctest: +SKIP
    """

    END_CLIP = 1e-3
    """Distance kept from an end where the target diverges (documented clip, not a hidden epsilon)."""

    def __init__(
        self,
        interpolant: Interpolant,
        parameterisation: Parameterisation,
        *,
        time_range: tuple[float, float] | None = None,
        weighting: Callable[[Tensor], Tensor] | None = None,
        antithetic: bool = False,
    ):
        if not isinstance(interpolant, Interpolant):
            raise TypeError(f"interpolant must be an Interpolant, got {type(interpolant).__name__}")
        if not isinstance(parameterisation, Parameterisation):
            raise TypeError(f"parameterisation must be a Parameterisation, got {parameterisation!r}")
        noise_targets = {Parameterisation.DENOISER, Parameterisation.SCORE}
        if interpolant.noise.is_zero and parameterisation in noise_targets:
            raise ValueError(f"{parameterisation.value} needs gamma > 0; this interpolant has gamma = 0")
        self.interpolant, self.parameterisation = interpolant, parameterisation
        self.weighting, self.antithetic = weighting, antithetic
        if time_range is None:
            t_min, t_max = interpolant.time_range
            if not interpolant.noise.is_zero and parameterisation in {
                Parameterisation.VELOCITY,
                Parameterisation.SCORE,
            }:
                t_min, t_max = max(t_min, self.END_CLIP), min(t_max, 1 - self.END_CLIP)
            time_range = (t_min, t_max)
        self.time_range = (float(time_range[0]), float(time_range[1]))

    def target(self, sample: InterpolantSample) -> Tensor:
        p = self.parameterisation
        if p is Parameterisation.VELOCITY:
            return sample.velocity
        if p is Parameterisation.MEAN_VELOCITY:
            return sample.mean_velocity
        if p is Parameterisation.X0:
            return sample.x0
        if p is Parameterisation.X1:
            return sample.x1
        return sample.z  # DENOISER, and SCORE in its gamma-weighted form

    def sample_times(self, batch: int, generator: torch.Generator | None, *, dtype, device) -> Tensor:
        """Training times for a batch, uniform on :attr:`time_range`."""
        return sample_times(batch, generator, *self.time_range, dtype=dtype, device=device)

    def __call__(
        self,
        model: Model,
        x0: Tensor,
        x1: Tensor,
        generator: torch.Generator | None = None,
        *,
        t: Tensor | None = None,
        z: Tensor | None = None,
    ) -> Tensor:
        """Mean loss over the batch (a scalar tensor with gradients w.r.t. the model's parameters).

        ``t`` (``(batch,)``) and ``z`` (like ``x0``; with ``antithetic`` the half that is mirrored) are drawn from
        ``generator`` unless given; a distributed trainer draws them for the global batch and passes its slice.
        """
        # Finiteness and dtype of x0, x1 (and z) are checked once, by Interpolant.sample below.
        if not isinstance(x0, Tensor) or not isinstance(x1, Tensor):
            raise TypeError("x0 and x1 must be tensors")
        if x0.shape != x1.shape:
            raise ValueError(f"x0 and x1 must have the same shape; got {tuple(x0.shape)} and {tuple(x1.shape)}")
        if x0.ndim == 0 or x0.shape[0] == 0:
            raise ValueError("the batch is empty")
        if t is None:
            t = self.sample_times(x0.shape[0], generator, dtype=x0.dtype, device=x0.device)
        if self.antithetic:
            if z is None:
                noise_device = generator.device if generator is not None else x0.device
                z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=noise_device).to(x0.device)
            x0, x1, t, z = torch.cat([x0, x0]), torch.cat([x1, x1]), torch.cat([t, t]), torch.cat([z, -z])
        sample = self.interpolant.sample(x0, x1, t, z=z, generator=generator)
        prediction = model(t, sample.xt)
        if prediction.shape != sample.xt.shape:
            raise ValueError(f"the model returned {tuple(prediction.shape)} for a state of {tuple(sample.xt.shape)}")
        if self.parameterisation is Parameterisation.SCORE:
            gamma = time_column(self.interpolant.noise.gamma(t), sample.xt)
            residual = gamma * prediction + sample.z
        else:
            residual = prediction - self.target(sample)
        per_sample = residual.pow(2).reshape(residual.shape[0], -1).mean(dim=1)
        if self.weighting is not None:
            per_sample = per_sample * self.weighting(t)
        return per_sample.mean()
