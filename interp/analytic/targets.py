r"""Test targets with exact, normalised densities and exact samplers (2D unless stated).

* :class:`Banana`: :math:`x_1\sim N(0,\sigma_1^2)`, :math:`x_2\mid x_1 \sim N(c(x_1^2-\sigma_1^2), \sigma_2^2)`
  (Haario, Saksman & Tamminen 1999).
* :class:`Funnel`: Neal's funnel (Neal 2003), :math:`v\sim N(0, s^2)`, :math:`x_{2..d}\mid v \sim N(0, e^{v} I)`.
* :func:`ring_mixture`: equal-weight Gaussians evenly spaced on a circle.
* :class:`Checkerboard`: uniform on the dark cells of a board; :math:`\log\rho` is :math:`-\infty` off them.

Every target has ``dim``, ``log_density(x)``, ``score(x)`` and ``sample(n, generator)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .._checks import check_batch
from .._grad import autograd_on, grad_leaf
from .gaussian_mixture import GaussianMixture


def _normal_log_density(x: Tensor, mean, variance) -> Tensor:
    return -0.5 * ((x - mean) ** 2 / variance + torch.log(2 * math.pi * variance))


def _randn(shape, generator, like_dtype) -> Tensor:
    device = generator.device if generator is not None else "cpu"
    return torch.randn(shape, generator=generator, dtype=like_dtype, device=device)


class Target(ABC):
    """A density with an exact normalised log-density and an exact sampler."""

    dim: int = 2

    @abstractmethod
    def log_density(self, x: Tensor) -> Tensor:
        """Normalised :math:`\\log\\rho(x)`, shape ``(batch,)``."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws, shape ``(n, dim)`` (float64 unless stated)."""

    def score(self, x: Tensor) -> Tensor:
        """:math:`\\nabla\\log\\rho(x)` by autograd, shape ``(batch, dim)``; differentiable in ``x`` when ``x``
        requires grad (a Jacobian or divergence of the score is then exact, never a detached zero)."""
        check_batch(x, "x", dim=self.dim)
        if torch.compiler.is_compiling():  # compiled steps: torch.func traces in one graph, autograd.grad does not
            return torch.func.grad(lambda y: self.log_density(y).sum())(x)
        outer = x.requires_grad and torch.is_grad_enabled()
        with autograd_on():
            xx = grad_leaf(x, keep=outer)
            (grad,) = torch.autograd.grad(self.log_density(xx).sum(), xx, create_graph=outer)
        return grad

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


def _check_n(n) -> None:
    if not (isinstance(n, int) and n > 0):
        raise ValueError(f"n must be a positive integer; got {n!r}")


class Banana(Target):
    r"""Banana-shaped density :math:`N(x_1; 0, \sigma_1^2)\,N(x_2; c(x_1^2-\sigma_1^2), \sigma_2^2)`."""

    def __init__(self, sigma1: float = 2.0, sigma2: float = 1.0, curvature: float = 0.25):
        if not (sigma1 > 0 and sigma2 > 0):
            raise ValueError(f"sigma1 and sigma2 must be positive; got {sigma1}, {sigma2}")
        self.sigma1, self.sigma2, self.curvature = float(sigma1), float(sigma2), float(curvature)

    def log_density(self, x):
        check_batch(x, "x", dim=2)
        v1 = torch.as_tensor(self.sigma1**2, dtype=x.dtype, device=x.device)
        v2 = torch.as_tensor(self.sigma2**2, dtype=x.dtype, device=x.device)
        shift = self.curvature * (x[:, 0] ** 2 - self.sigma1**2)
        return _normal_log_density(x[:, 0], 0.0, v1) + _normal_log_density(x[:, 1], shift, v2)

    def sample(self, n, generator=None):
        _check_n(n)
        xi = _randn((n, 2), generator, torch.float64)
        x1 = self.sigma1 * xi[:, 0]
        x2 = self.curvature * (x1**2 - self.sigma1**2) + self.sigma2 * xi[:, 1]
        return torch.stack([x1, x2], dim=1)


class Funnel(Target):
    r"""Neal's funnel in ``dim`` dimensions: :math:`v = x_1 \sim N(0, s^2)`, :math:`x_{2..d} \sim N(0, e^{v})`."""

    def __init__(self, dim: int = 2, scale: float = 3.0):
        if dim < 2:
            raise ValueError(f"dim must be at least 2; got {dim}")
        if not scale > 0:
            raise ValueError(f"scale must be positive; got {scale}")
        self.dim, self.scale = int(dim), float(scale)

    def log_density(self, x):
        check_batch(x, "x", dim=self.dim)
        v = x[:, 0]
        variance = torch.as_tensor(self.scale**2, dtype=x.dtype, device=x.device)
        rest = _normal_log_density(x[:, 1:], 0.0, torch.exp(v)[:, None]).sum(-1)
        return _normal_log_density(v, 0.0, variance) + rest

    def sample(self, n, generator=None):
        _check_n(n)
        xi = _randn((n, self.dim), generator, torch.float64)
        v = self.scale * xi[:, :1]
        return torch.cat([v, torch.exp(0.5 * v) * xi[:, 1:]], dim=1)


def ring_mixture(n_modes: int = 8, radius: float = 4.0, std: float = 0.5, dtype=torch.float64) -> GaussianMixture:
    """Equal-weight isotropic Gaussians with standard deviation ``std`` at ``n_modes`` points of a circle."""
    if n_modes < 1:
        raise ValueError(f"n_modes must be at least 1; got {n_modes}")
    if not (radius > 0 and std > 0):
        raise ValueError(f"radius and std must be positive; got {radius}, {std}")
    angles = torch.arange(n_modes, dtype=dtype) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(torch.ones(n_modes, dtype=dtype), means, std**2, dtype=dtype)


class Checkerboard(Target):
    r"""Uniform density on the dark cells of an ``n_cells`` × ``n_cells`` board of side ``cell`` centred at 0.

    A cell :math:`(i, j)` is dark when :math:`i + j` is even; the density there is :math:`1/(\text{area of dark
    cells})` and :math:`\log\rho = -\infty` elsewhere. :meth:`score` is zero on dark cells (the density is flat)
    and raises off them, where it does not exist.
    """

    def __init__(self, n_cells: int = 4, cell: float = 1.0):
        if n_cells < 2 or n_cells % 2:
            raise ValueError(f"n_cells must be an even integer >= 2; got {n_cells}")
        if not cell > 0:
            raise ValueError(f"cell must be positive; got {cell}")
        self.n_cells, self.cell = int(n_cells), float(cell)
        self.half_width = 0.5 * n_cells * cell
        self.log_normaliser = math.log(0.5 * n_cells**2 * cell**2)

    def _dark(self, x: Tensor) -> Tensor:
        index = torch.floor((x + self.half_width) / self.cell)
        inside = ((index >= 0) & (index < self.n_cells)).all(dim=1)
        return inside & (index.sum(dim=1) % 2 == 0)

    def log_density(self, x):
        check_batch(x, "x", dim=2)
        dark = self._dark(x)
        return torch.where(dark, -self.log_normaliser, -math.inf).to(x.dtype)

    def score(self, x):
        check_batch(x, "x", dim=2)
        if not self._dark(x).all():
            raise ValueError("the checkerboard score exists only on its dark cells")
        return torch.zeros_like(x)

    def sample(self, n, generator=None):
        _check_n(n)
        device = generator.device if generator is not None else "cpu"
        k = self.n_cells
        cells = torch.tensor([(i, j) for i in range(k) for j in range(k) if (i + j) % 2 == 0], dtype=torch.float64)
        pick = torch.randint(len(cells), (n,), generator=generator, device=device).cpu()
        offset = torch.rand((n, 2), generator=generator, dtype=torch.float64, device=device).cpu()
        return (cells[pick] + offset) * self.cell - self.half_width
