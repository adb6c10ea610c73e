r"""Particle Wasserstein gradient flows of :math:`\mathrm{KL}(\rho\,\|\,\pi)`: the deterministic (probability-flow)
form of Langevin dynamics with a kernel estimate of :math:`\nabla\log\rho`, and SVGD, its kernelised variant.

* **WGF** (Jordan, Kinderlehrer & Otto 1998; the particle form of Vuong et al. 2025's view, docs/algorithms.md §6):
  :math:`\dot x_i = \nabla\log\pi(x_i) - \nabla\log\hat\rho(x_i)`, :math:`\hat\rho = \frac1n\sum_j
  N(x_j, h^2 I)` (so :math:`\nabla\log\hat\rho(x_i) = \sum_j w_{ij}(x_j - x_i)/h^2`, :math:`w_{i\cdot}` the
  softmax of :math:`-|x_i - x_j|^2/2h^2`), or with any estimate ``log_density_score`` of
  :math:`\nabla\log\rho` (a trained score); explicit Euler steps. At rest :math:`\hat\rho = \pi`, so the
  particles are :math:`\pi` deconvolved by :math:`N(0, h^2 I)` (a Gaussian target's variance minus :math:`h^2`);
  particles plus :math:`h\xi` sample the kernel estimate itself.
* **SVGD** (Liu & Wang 2016, Algorithm 1): :math:`x_i \mathrel{+}= \epsilon\,\frac1n\sum_j[k(x_j, x_i)
  \nabla\log\pi(x_j) + \nabla_{x_j}k(x_j, x_i)]`, RBF kernel :math:`k = e^{-|x - y|^2/h}` with
  :math:`h = \mathrm{med}^2/\log(n + 1)`.

Per recorded step: the particles, the energy :math:`\mathbb E[-\log\pi]`, and (with a log-density) the kernel
estimate of :math:`\mathrm{KL}(\rho\,\|\,\pi) = \mathbb E_\rho[\log\hat\rho - \log\pi]` (biased by the kernel
width; exact for a normalised :math:`\pi` only as :math:`n\to\infty`, :math:`h\to0`). Neither flow has a
maintained torch implementation that takes an arbitrary score field, so both are written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import xarray as xr
from torch import Tensor

from ._checks import check_positive
from .langevin import LangevinTarget, as_target
from .results import NetCDFResult, result_attrs, to_numpy
from .stepping import StepLoop

__all__ = ["FlowResult", "kde_log_density", "kde_score", "local_bandwidth", "svgd", "wgf"]


def _pairwise(x: Tensor) -> Tensor:
    return torch.cdist(x, x).pow(2)


def local_bandwidth(x: Tensor) -> float:
    r"""The median over particles of the distance to the :math:`\lceil\sqrt n\,\rceil`-th nearest neighbour: a
    local scale that does not grow with the distance between modes, as the median pairwise distance does."""
    n = x.shape[0]
    k = min(n - 1, math.ceil(math.sqrt(n)))
    distances = torch.cdist(x, x).topk(k + 1, dim=1, largest=False).values[:, k]  # column 0 is the point itself
    value = float(distances.median())
    return value if value > 0 else 1.0


def kde_score(x: Tensor, bandwidth: float) -> Tensor:
    """:math:`\\nabla\\log\\hat\\rho(x_i)` of the Gaussian kernel estimate of the particles ``x`` ``(n, dim)``."""
    weights = torch.softmax(-_pairwise(x) / (2 * bandwidth**2), dim=1)
    return (weights @ x - x) / bandwidth**2


def kde_log_density(x: Tensor, bandwidth: float) -> Tensor:
    """:math:`\\log\\hat\\rho(x_i)` of the Gaussian kernel estimate, ``(n,)`` (normalised)."""
    n, d = x.shape
    log_k = -_pairwise(x) / (2 * bandwidth**2)
    return torch.logsumexp(log_k, dim=1) - math.log(n) - 0.5 * d * math.log(2 * math.pi * bandwidth**2)


@dataclass
class FlowResult(NetCDFResult):
    """Particles at recorded steps ``(step, particle, dim)``, energy and KL estimate per recorded step."""

    steps: Tensor
    particles: Tensor
    energy: Tensor | None
    kl: Tensor | None
    method: str
    settings: dict = field(default_factory=dict)

    @property
    def final(self) -> Tensor:
        return self.particles[-1]

    def to_xarray(self) -> xr.Dataset:
        data = {"x": (("step", "particle", "dim"), to_numpy(self.particles))}
        if self.energy is not None:
            data["energy"] = (("step",), to_numpy(self.energy))
        if self.kl is not None:
            data["kl"] = (("step",), to_numpy(self.kl))
        return xr.Dataset(data, coords={"step": to_numpy(self.steps)}, attrs=result_attrs(self.method, **self.settings))


def _check(x0: Tensor, step_size: float, n_steps: int, record_every: int, bandwidth: float | None = None) -> Tensor:
    if not isinstance(x0, Tensor) or x0.ndim != 2 or x0.shape[0] < 2:
        raise ValueError(f"particles must be (n >= 2, dim); got {getattr(x0, 'shape', type(x0).__name__)}")
    if not torch.isfinite(x0).all():
        raise ValueError("the initial particles are not finite")
    if not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be positive and finite; got {step_size}")
    for name, value in (("n_steps", n_steps), ("record_every", record_every)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if bandwidth is not None:
        check_positive(bandwidth, "bandwidth (None for adaptive)")
    return x0


def _run(name, update, target: LangevinTarget, x, n_steps, record_every, bandwidth, progress, settings):
    steps, kept, energies, kls = [], [], [], []

    def record(k, x):
        steps.append(k)
        kept.append(x)
        if target.log_density is not None:
            log_pi = target.log_density(x)
            if not torch.isfinite(log_pi).all():
                raise ValueError(f"{name}: the log-density is not finite at some particles (step {k})")
            h = bandwidth if bandwidth is not None else local_bandwidth(x)
            energies.append(-log_pi.mean())
            kls.append((kde_log_density(x, h) - log_pi).mean())

    record(0, x)
    loop = StepLoop(name, n_steps, progress=progress, start=1, advice="reduce step_size")
    for k in loop.steps():
        x = update(x)
        loop.guard(k, k * settings["step_size"], x)
        if k % record_every == 0 or k == n_steps:
            record(k, x)
    has = target.log_density is not None
    return FlowResult(
        torch.tensor(steps),
        torch.stack(kept),
        torch.stack(energies) if has else None,
        torch.stack(kls) if has else None,
        name,
        settings,
    )


def wgf(
    target,
    x0: Tensor,
    *,
    step_size: float,
    n_steps: int,
    bandwidth: float | None = None,
    log_density_score: Callable[[Tensor], Tensor] | None = None,
    record_every: int = 1,
    progress: bool = True,
) -> FlowResult:
    """The particle gradient flow of KL(ρ‖π): Euler steps of :math:`\\nabla\\log\\pi - \\nabla\\log\\hat\\rho`.

    ``bandwidth`` of the kernel estimate defaults to the median distance × :math:`n^{-1/(d+4)}` (recomputed each
    step); ``log_density_score(x)`` replaces the kernel estimate of :math:`\\nabla\\log\\rho` when given.
    """
    target = as_target(target)
    x = _check(x0, step_size, n_steps, record_every, bandwidth)

    def update(x):
        _, grad = target.value_and_score(x, need_value=False)
        if log_density_score is not None:
            rho_score = log_density_score(x)
            if rho_score.shape != x.shape:
                raise ValueError(f"log_density_score must return {tuple(x.shape)}; got {tuple(rho_score.shape)}")
        else:
            h = bandwidth if bandwidth is not None else local_bandwidth(x)
            rho_score = kde_score(x, h)
        return x + step_size * (grad - rho_score)

    settings = {"step_size": step_size, "n_steps": n_steps, "bandwidth": bandwidth if bandwidth else "adaptive"}
    return _run("WGF", update, target, x, n_steps, record_every, bandwidth, progress, settings)


def svgd(
    target,
    x0: Tensor,
    *,
    step_size: float,
    n_steps: int,
    bandwidth: float | None = None,
    record_every: int = 1,
    progress: bool = True,
) -> FlowResult:
    """Stein variational gradient descent with an RBF kernel :math:`e^{-|x-y|^2/h}`; ``bandwidth`` = h defaults
    to med²/log(n + 1) of the current particles (Liu & Wang 2016)."""
    target = as_target(target)
    x = _check(x0, step_size, n_steps, record_every, bandwidth)

    def update(x):
        _, grad = target.value_and_score(x, need_value=False)
        d2 = _pairwise(x)
        h = bandwidth if bandwidth is not None else max(float(d2.median()) / math.log(x.shape[0] + 1), 1e-12)
        k = torch.exp(-d2 / h)  # k[j, i] = k(x_j, x_i), symmetric
        repulsion = (2 / h) * (x * k.sum(dim=0)[:, None] - k.T @ x)  # sum_j grad_{x_j} k(x_j, x_i)
        return x + step_size * (k.T @ grad + repulsion) / x.shape[0]

    settings = {"step_size": step_size, "n_steps": n_steps, "bandwidth": bandwidth if bandwidth else "median"}
    return _run("SVGD", update, target, x, n_steps, record_every, None, progress, settings)
