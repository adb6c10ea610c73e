"""Brownian increments for the SDE solvers: the noise is a control (after diffrax), drawn per step.

By default the driver draws :math:`\\Delta W = \\sqrt{|h|}\\,\\xi` from the caller's generator. A
:class:`BrownianPath` instead answers :math:`W(t_1) - W(t_0)` on one fixed path, so solutions with different
step sizes can be compared pathwise (strong convergence checks). :func:`brownian_interval` seeds torchsde's
Brownian-bridge interval for the torchsde solvers.
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
        t0=t0,
        t1=t1,
        size=tuple(shape),
        dtype=dtype,
        device=device,
        entropy=entropy,
        levy_area_approximation="space-time" if space_time else "none",
    )


class BrownianPath:
    """One Brownian path of shape ``shape`` sampled on a uniform grid of ``n_steps`` steps over ``[t_min, t_max]``.

    :meth:`increment` answers :math:`W(t_1) - W(t_0)` for any two times of that grid, so solvers with step
    sizes that divide it see the same path (pathwise convergence checks). We store the path instead of using
    :class:`torchsde.BrownianInterval` for this: the interval draws every node with its own seeded generator,
    which was ~100x slower for the thousands of queries of a dense convergence study, where all query times
    sit on one grid anyway.

    Example:
        >>> path = BrownianPath(0.0, 1.0, (4, 2), n_steps=64, generator=torch.Generator().manual_seed(0))
        >>> dw = path.increment(0.0, 0.5) + path.increment(0.5, 1.0)
        >>> bool(torch.allclose(dw, path.increment(0.0, 1.0)))
        True
    """

    def __init__(
        self,
        t_min: float,
        t_max: float,
        shape,
        *,
        n_steps: int = 4096,
        dtype=torch.float64,
        device="cpu",
        generator: torch.Generator | None = None,
    ):
        if not t_min < t_max:
            raise ValueError(f"need t_min < t_max; got {t_min}, {t_max}")
        if not (isinstance(n_steps, int) and n_steps >= 1):
            raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}")
        self.t_min, self.t_max, self.shape, self.n_steps = float(t_min), float(t_max), tuple(shape), n_steps
        self.dt = (self.t_max - self.t_min) / n_steps
        noise_device = generator.device if generator is not None else device
        steps = torch.randn((n_steps,) + self.shape, generator=generator, dtype=dtype, device=noise_device)
        self._values = torch.cat(
            [
                torch.zeros((1,) + self.shape, dtype=dtype, device=noise_device),
                torch.cumsum(steps * self.dt**0.5, dim=0),
            ]
        ).to(device)

    def _index(self, t) -> int:
        position = (float(t) - self.t_min) / self.dt
        index = round(position)
        if abs(position - index) > 1e-6 or not 0 <= index <= self.n_steps:
            raise ValueError(
                f"time {float(t)} is not on the path's grid ({self.n_steps} steps on [{self.t_min}, {self.t_max}])"
            )
        return index

    def increment(self, t0, t1) -> Tensor:
        """:math:`W(\\max) - W(\\min)` between two grid times (variance ``|t1 - t0|``)."""
        a, b = sorted((self._index(t0), self._index(t1)))
        return self._values[b] - self._values[a]
