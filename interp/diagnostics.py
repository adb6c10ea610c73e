r"""Diagnostics of fields: conservativity, the Fokker–Planck residual of a log-density model, the ODE–SDE gap.

A learned "score" need not be a gradient (Vuong et al. 2025, docs/algorithms.md §6); these measure how far it is:

* :func:`jacobian_asymmetry` — :math:`\|J - J^\top\|_F / \|J\|_F` per point (0 for any gradient field);
* :func:`curl_2d` — :math:`\partial_1 f_2 - \partial_2 f_1` in two dimensions;
* :func:`circulation` — :math:`\oint f\cdot dl` around circles (trapezoid rule in the angle: spectrally accurate
  on a periodic integrand); by Stokes, the curl integrated over the disc;
* :func:`path_dependence` — the line integral from ``a`` to ``b`` along the straight path minus along a detour
  (0 for a gradient field, whose line integrals depend on the end points only);
* :func:`fokker_planck_residual` — for a log-density model :math:`u(t, x)` and the dynamics
  :math:`dX = b\,dt + \sqrt{2\epsilon}\,dW`: :math:`R = \partial_t u + \nabla\cdot b + b\cdot\nabla u
  - \epsilon(\Delta u + |\nabla u|^2)`, zero when :math:`e^u` solves the Fokker–Planck equation (Deveney et al.
  2023, who regularise with mean :math:`R^2` to close the ODE–SDE gap; :math:`\epsilon = 0` is the continuity
  equation of the probability-flow ODE);
* :func:`ode_sde_gap` — W2 between the probability-flow ODE's and the SDE's samples from the same start and model.

No library computes these for torch fields (they are a few autograd calls each), so they are written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ._checks import check_matrix
from ._grad import autograd_on, check_graph, grad_leaf
from .density import field_divergence
from .driver import integrate
from .dynamics import generative_sde
from .metrics import wasserstein
from .solvers import RK4, EulerMaruyama

__all__ = [
    "circulation",
    "curl_2d",
    "fokker_planck_residual",
    "jacobian",
    "jacobian_asymmetry",
    "ode_sde_gap",
    "path_dependence",
]


def _call(field: Callable, t, x: Tensor) -> Tensor:
    out = field(x) if t is None else field(t, x)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the field returned {shape} for points of shape {tuple(x.shape)}")
    return out


def _points(x: Tensor) -> Tensor:
    return check_matrix(x, "points")


def jacobian(field: Callable, x: Tensor, t=None) -> Tensor:
    """The Jacobian :math:`J_{ij} = \\partial f_i/\\partial x_j` at each point, ``(batch, dim, dim)``; ``field(x)``
    or, with ``t``, ``field(t, x)``. The field must treat points independently."""
    x = _points(x)
    with autograd_on():
        xg = grad_leaf(x)
        out = _call(field, t, xg)
        if not check_graph(out, lambda z: _call(field, t, z), xg, "the field"):
            return torch.zeros(x.shape[0], x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
        rows = [
            torch.autograd.grad(out[:, i].sum(), xg, retain_graph=True, allow_unused=True)[0] for i in range(x.shape[1])
        ]
    rows = [torch.zeros_like(x) if r is None else r for r in rows]
    return torch.stack(rows, dim=1).detach()


def jacobian_asymmetry(field: Callable, x: Tensor, t=None) -> Tensor:
    """:math:`\\|J - J^\\top\\|_F / \\|J\\|_F` at each point, ``(batch,)`` (0 where ``J`` vanishes)."""
    j = jacobian(field, x, t)
    norm = torch.linalg.matrix_norm(j)
    asym = torch.linalg.matrix_norm(j - j.transpose(1, 2))
    return torch.where(norm > 0, asym / norm.clamp_min(torch.finfo(j.dtype).tiny), torch.zeros_like(norm))


def curl_2d(field: Callable, x: Tensor, t=None) -> Tensor:
    """:math:`\\partial_1 f_2 - \\partial_2 f_1` at each point of a 2-D field, ``(batch,)``."""
    if _points(x).shape[1] != 2:
        raise ValueError(f"curl_2d needs 2-D points; got dimension {x.shape[1]}")
    j = jacobian(field, x, t)
    return j[:, 1, 0] - j[:, 0, 1]


def _gauss_legendre(n: int, like: Tensor) -> tuple[Tensor, Tensor]:
    nodes, weights = np.polynomial.legendre.leggauss(n)
    as_tensor = lambda v: torch.as_tensor((v + 1) / 2, dtype=like.dtype, device=like.device)  # noqa: E731
    return as_tensor(nodes), torch.as_tensor(weights / 2, dtype=like.dtype, device=like.device)


def _integrate_path(field: Callable, points: Tensor, tangents: Tensor, weights: Tensor, t=None) -> Tensor:
    r""":math:`\sum_k w_k f(\gamma_k)\cdot\gamma'_k` for paths sampled as ``(loops, nodes, dim)``."""
    loops, n, dim = points.shape
    values = _call(field, t, points.reshape(-1, dim)).reshape(loops, n, dim)
    return ((values * tangents).sum(dim=2) * weights).sum(dim=1)


def circulation(
    field: Callable,
    centres: Tensor,
    radius: float,
    *,
    plane: tuple[int, int] = (0, 1),
    n_points: int = 128,
    t=None,
) -> Tensor:
    r""":math:`\oint f\cdot dl` counter-clockwise around circles of ``radius`` about ``centres`` ``(loops, dim)``
    in the coordinate ``plane``, ``(loops,)``: the trapezoid rule in the angle (spectrally accurate for a smooth
    field). For a linear field :math:`f = Ax` it is :math:`\pi r^2 (A_{ji} - A_{ij})` for ``plane = (i, j)``."""
    centres = _points(centres)
    i, j = plane
    if not (0 <= i < centres.shape[1] and 0 <= j < centres.shape[1] and i != j):
        raise ValueError(f"plane must name two different coordinates of {centres.shape[1]}; got {plane}")
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"radius must be positive; got {radius}")
    if n_points < 8:
        raise ValueError(f"n_points must be at least 8; got {n_points}")
    angle = torch.arange(n_points, dtype=centres.dtype, device=centres.device) * (2 * math.pi / n_points)
    points = centres[:, None, :].repeat(1, n_points, 1)
    points[:, :, i] += radius * torch.cos(angle)
    points[:, :, j] += radius * torch.sin(angle)
    tangents = torch.zeros_like(points)
    tangents[:, :, i] = -radius * torch.sin(angle)
    tangents[:, :, j] = radius * torch.cos(angle)
    weights = torch.full((n_points,), 2 * math.pi / n_points, dtype=centres.dtype, device=centres.device)
    return _integrate_path(field, points, tangents, weights, t)


def path_dependence(
    field: Callable, a: Tensor, b: Tensor, *, detour: float = 1.0, n_points: int = 64, t=None
) -> Tensor:
    r"""Line integral from ``a`` to ``b`` (``(loops, dim)``) along the straight segment minus along the half-sine
    arc :math:`a + s(b - a) + \sin(\pi s)\,n`, :math:`|n|` = ``detour`` × |b − a|, ``n`` perpendicular to
    ``b - a`` (in the plane of the first two coordinates, or along the first axis when ``b - a`` has none there);
    ``(loops,)``, by ``n_points``-node Gauss–Legendre quadrature. Zero for a gradient field."""
    a, b = _points(a), _points(b)
    if a.shape != b.shape or a.shape[1] < 2:
        raise ValueError(f"a and b must be (loops, dim >= 2) of one shape; got {tuple(a.shape)}, {tuple(b.shape)}")
    d = b - a
    length = d.norm(dim=1, keepdim=True)
    if not (length > 0).all():
        raise ValueError("a and b must differ")
    normal = torch.zeros_like(d)
    normal[:, 0], normal[:, 1] = -d[:, 1], d[:, 0]
    flat = normal.norm(dim=1, keepdim=True) == 0
    if flat.any():
        alt = torch.zeros_like(d)
        alt[:, 0] = 1.0
        normal = torch.where(flat, alt, normal)
    normal = normal / normal.norm(dim=1, keepdim=True) * length * detour
    s, weights = _gauss_legendre(n_points, a)
    s = s[None, :, None]
    straight = a[:, None] + s * d[:, None]
    bent = straight + torch.sin(math.pi * s) * normal[:, None]
    bent_tangent = d[:, None] + math.pi * torch.cos(math.pi * s) * normal[:, None]
    along = _integrate_path(field, straight, d[:, None].expand_as(straight), weights, t)
    return along - _integrate_path(field, bent, bent_tangent, weights, t)


def fokker_planck_residual(
    log_density: Callable[[Tensor, Tensor], Tensor],
    drift: Callable,
    t: float,
    x: Tensor,
    *,
    noise_scale: float = 0.0,
    dt: float = 1e-4,
) -> Tensor:
    """:math:`R = \\partial_t u + \\nabla\\cdot b + b\\cdot\\nabla u - \\epsilon(\\Delta u + |\\nabla u|^2)` at
    ``(t, x)``, ``(batch,)``, for a log-density model ``u = log_density(t, x)`` ``(batch,)`` and the dynamics
    :math:`dX = b\\,dt + \\sqrt{2\\epsilon}\\,dW` (``noise_scale`` = ε ≥ 0). :math:`\\partial_t u` by a central
    difference of step ``dt`` (error :math:`O(dt^2)`); the space derivatives by autograd (exact trace)."""
    x = _points(x)
    if not (noise_scale >= 0 and math.isfinite(noise_scale)):
        raise ValueError(f"noise_scale must be finite and >= 0; got {noise_scale}")
    if not dt > 0:
        raise ValueError(f"dt must be positive; got {dt}")
    t = float(t)

    def u(time, points):
        value = log_density(torch.as_tensor(time, dtype=points.dtype, device=points.device), points)
        if value.shape != points.shape[:1]:
            raise ValueError(f"log_density must return (batch,); got {tuple(value.shape)}")
        return value

    with torch.no_grad():
        du_dt = (u(t + dt, x) - u(t - dt, x)) / (2 * dt)
    laplacian = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with autograd_on():
        xg = grad_leaf(x)
        value = u(t, xg)
        if check_graph(value, lambda z: u(t, z), xg, "log_density"):
            (grad,) = torch.autograd.grad(value.sum(), xg, create_graph=True)
            for i in range(x.shape[1]):
                (row,) = torch.autograd.grad(grad[:, i].sum(), xg, retain_graph=True, allow_unused=True)
                laplacian = laplacian + (0 if row is None else row[:, i])
        else:
            grad = torch.zeros_like(x)
    grad = grad.detach()
    b, div = field_divergence(drift, torch.as_tensor(t, dtype=x.dtype, device=x.device), x)
    return du_dt + div[0] + (b * grad).sum(dim=1) - noise_scale * (laplacian + grad.pow(2).sum(dim=1))


def ode_sde_gap(
    velocity: Callable,
    score: Callable,
    x0: Tensor,
    grid: Tensor,
    noise_scale: float,
    *,
    generator: torch.Generator | None = None,
) -> float:
    """W2 (POT, exact) between the probability-flow ODE's samples (RK4) and the generative SDE's
    (Euler–Maruyama, drift :math:`b + \\epsilon s`, noise :math:`\\sqrt{2\\epsilon}`) from the same ``x0`` on
    ``grid``: zero in law for exact fields up to discretisation and sampling error; a model whose velocity and
    score disagree shows a gap."""
    x0 = _points(x0)
    ode = integrate(velocity, x0, grid, RK4(), progress=False).final
    sde = integrate(generative_sde(velocity, score, noise_scale), x0, grid, EulerMaruyama(), generator=generator,
                    progress=False).final  # fmt: skip
    return wasserstein(ode, sde, p=2)
