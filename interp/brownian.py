"""Brownian increments for the SDE solvers: the noise is a control (after diffrax), drawn per step.

By default the driver draws :math:`\\Delta W = \\sqrt{|h|}\\,\\xi` from the caller's generator. A
:class:`BrownianPath` instead answers :math:`W(t_1) - W(t_0)` for any pair of times on one fixed path (through
:class:`torchsde.BrownianInterval`, which fills in queried times by Brownian-bridge sampling), so solutions
with different step sizes can be compared pathwise (strong convergence checks).
"""

from __future__ import annotations

import torch
import torchsde
from torch import Tensor


def brownian_interval(t0: float, t1: float, shape, *, dtype, device, generator, space_time: bool = False):
    """A :class:`torchsde.BrownianInterval` on ``[t0, t1]`` whose entropy is drawn from ``generator``."""
    seed_device = generator.device if generator is not None else "cpu"
    entropy = int(torch.randint(0, 2**62, (), generator=generator, device=seed_device))
    return torchsde.BrownianInterval(
        t0=t0, t1=t1, size=tuple(shape), dtype=dtype, device=device, entropy=entropy,
        levy_area_approximation="space-time" if space_time else "none",
    )


class BrownianPath:
    """One Brownian path of shape ``shape`` on ``[t_min, t_max]``; :meth:`increment` queries it.

    Example:
        >>> path = BrownianPath(0.0, 1.0, (4, 2), generator=torch.Generator().manual_seed(0))
        >>> dw = path.increment(0.0, 0.5) + path.increment(0.5, 1.0)
        >>> bool(torch.allclose(dw, path.increment(0.0, 1.0)))
        True
    """

    def __init__(self, t_min: float, t_max: float, shape, *, dtype=torch.float64, device="cpu",
                 generator: torch.Generator | None = None):
        if not t_min < t_max:
            raise ValueError(f"need t_min < t_max; got {t_min}, {t_max}")
        self.t_min, self.t_max, self.shape = float(t_min), float(t_max), tuple(shape)
        flat = (self.shape[0], int(torch.tensor(self.shape[1:]).prod())) if len(self.shape) > 1 else self.shape
        self._interval = brownian_interval(self.t_min, self.t_max, flat, dtype=dtype, device=device,
                                           generator=generator)

    def increment(self, t0, t1) -> Tensor:
        """:math:`W(\\max) - W(\\min)` over the interval between ``t0`` and ``t1`` (variance ``|t1 - t0|``)."""
        a, b = sorted((float(t0), float(t1)))
        if a < self.t_min - 1e-12 or b > self.t_max + 1e-12:
            raise ValueError(f"interval [{a}, {b}] leaves the path's range [{self.t_min}, {self.t_max}]")
        return self._interval(max(a, self.t_min), min(b, self.t_max)).reshape(self.shape)
