"""Trained models as fields: wrap networks and what they predict, and read off any parameterisation.

A :class:`LearnedField` calls its models at ``(t, x)`` and converts their predictions through
:meth:`interp.interpolants.Interpolant.posterior`, so a network trained for the noise, the data, the score
or the velocity plugs into every solver exactly like an exact field of :mod:`interp.analytic`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from .interpolants import Interpolant, Posterior
from .losses import Parameterisation

Model = Callable[[Tensor, Tensor], Tensor]


class LearnedField:
    """Fields of ``interpolant`` from trained ``models`` keyed by :class:`~interp.losses.Parameterisation`.

    A Gaussian-base interpolant needs one model; a two-sided one with gamma > 0 needs a mean part (velocity,
    mean velocity, x0 or x1) and a noise part (score or denoiser). The combinations are checked on first use
    by :meth:`~interp.interpolants.Interpolant.posterior`.

    Example:
        >>> field = LearnedField(preset("flow"), {Parameterisation.VELOCITY: net})  # doctest: +SKIP
        >>> integrate(field.velocity, x0, grids.uniform(50), RK4())                 # doctest: +SKIP
    """

    def __init__(self, interpolant: Interpolant, models: Mapping[Parameterisation, Model]):
        if not isinstance(interpolant, Interpolant):
            raise TypeError(f"interpolant must be an Interpolant, got {type(interpolant).__name__}")
        if not models:
            raise ValueError("give at least one model")
        for key, model in models.items():
            if not isinstance(key, Parameterisation):
                raise TypeError(f"model keys must be Parameterisation members; got {key!r}")
            if not callable(model):
                raise TypeError(f"the model for {key.value} must be callable (t, x) -> Tensor")
        self.interpolant, self.models = interpolant, dict(models)

    def posterior(self, t, x: Tensor) -> Posterior:
        predictions = {key.value: model(t, x) for key, model in self.models.items()}
        return self.interpolant.posterior(t, x, **predictions)

    def _direct(self, key: Parameterisation, t, x: Tensor) -> Tensor | None:
        """The model's own prediction when it predicts ``key`` (no conversion, so no singular end)."""
        model = self.models.get(key)
        return None if model is None else model(t, x)

    def velocity(self, t, x: Tensor) -> Tensor:
        direct = self._direct(Parameterisation.VELOCITY, t, x)
        return direct if direct is not None else self.posterior(t, x).velocity

    def score(self, t, x: Tensor) -> Tensor:
        direct = self._direct(Parameterisation.SCORE, t, x)
        return direct if direct is not None else self.posterior(t, x).score

    def denoiser(self, t, x: Tensor) -> Tensor:
        return self.posterior(t, x).denoiser

    def x0(self, t, x: Tensor) -> Tensor:
        return self.posterior(t, x).x0

    def x1(self, t, x: Tensor) -> Tensor:
        return self.posterior(t, x).x1
