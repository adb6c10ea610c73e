r"""Superposition of diffusion models by their running Itô log-densities (Skreta et al. 2024, "SuperDiff").

Several Gaussian-base models with scores :math:`s_i` share one schedule. Along one path of the matched-noise
SDE (:math:`\epsilon = -D`, :mod:`interp.density`), each model's :math:`\ell_i = \log q^i_t(X_t)` is tracked by
the divergence-free Itô estimate :math:`d\ell_i = \langle s_i, dX\rangle + [-d f - f\langle x, s_i\rangle +
D|s_i|^2]dt`, and the path is driven by a combined score :math:`s_\kappa = \sum_i \kappa_i s_i` with
:math:`\sum_i\kappa_i = 1`:

* **OR** (mixture): :math:`\kappa = \operatorname{softmax}_i\big(T(\ell_i + \log w_i)\big)`. At :math:`T = 1` this
  is exactly the score of the mixture :math:`\sum_i w_i q^i_t`, so the samples follow the mixture.
* **AND** (equal density): the step's noise is drawn first, then :math:`\kappa` is chosen so that the step
  leaves every difference :math:`\ell_i - \ell_M` unchanged. With :math:`dX = f x h - 2Dh\,s_\kappa + n`
  (noise :math:`n`), the difference of two updates is linear in :math:`\kappa`:
  :math:`\langle s_i - s_j, s_\kappa\rangle = [\langle s_i - s_j, n\rangle + Dh(|s_i|^2 - |s_j|^2)]/(2Dh)`.
  Together with :math:`\sum\kappa = 1` this is an :math:`M\times M` system per particle, solved by
  pseudo-inverse: when the scores coincide the constraints vanish and :math:`\kappa = 1/M` (the guard of
  docs/algorithms.md §2). For two models :math:`\kappa_1 = \tfrac12 + \langle\Delta, n\rangle/(2Dh|\Delta|^2)`.

The loop is its own (Euler–Maruyama) rather than :func:`interp.integrate` because AND's drift depends
on the step's own noise, which no SDE-solver interface expresses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._checks import check_batch, log_density_value
from ._linalg import flat_dot
from ._random import seeded_generator
from .density.ito import gaussian_base_coefficients, gaussian_base_rate
from .grids import check_grid
from .interpolants import Interpolant
from .results import Trajectory
from .stepping import StepLoop, record_indices

Field = Callable[[Tensor, Tensor], Tensor]
MODES = ("or", "and")


def and_weights(scores: Tensor, noise: Tensor, d_h: Tensor) -> Tensor:
    """AND's mixing weights: solve for ``kappa`` ``(batch, M)`` from scores ``(M, batch, n)``, noise
    ``(batch, n)`` and ``D*h`` ``(batch,)``."""
    m = scores.shape[0]
    last = scores[-1]
    rows, rhs = [], []
    for i in range(m - 1):
        delta = scores[i] - last
        rows.append(torch.einsum("bn,kbn->bk", delta, scores))  # <s_i - s_M, s_k>
        squares = (scores[i] ** 2).sum(-1) - (last**2).sum(-1)
        rhs.append(((delta * noise).sum(-1) + d_h * squares) / (2 * d_h))
    rows.append(torch.ones(scores.shape[1], m, dtype=scores.dtype, device=scores.device))
    rhs.append(torch.ones(scores.shape[1], dtype=scores.dtype, device=scores.device))
    system, target = torch.stack(rows, 1), torch.stack(rhs, 1)  # (batch, M, M), (batch, M)
    # Scale each constraint row so the pseudo-inverse's cut-off is relative to the row, not to the sum row.
    scale = system.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(system.dtype).tiny)
    pinv = torch.linalg.pinv(system / scale, rtol=1e-10)
    return (pinv @ (target[..., None] / scale)).squeeze(-1)


def superpose(
    scores: Sequence[Field],
    interpolant: Interpolant,
    x: Tensor,
    grid,
    *,
    mode: str = "or",
    weights: Sequence[float] | Tensor | None = None,
    temperature: float = 1.0,
    log_density_start: Sequence | None = None,
    generator: torch.Generator | None = None,
    record: bool | Sequence[float] = False,
    progress: bool = True,
    check_finite: bool = True,
) -> Trajectory:
    r"""Sample the OR (mixture) or AND (equal-density) superposition of models given by their ``scores``.

    Args:
        scores: two or more score fields of the same Gaussian-base ``interpolant`` (exact or trained, e.g.
            ``LearnedField(...).score``).
        x: initial states at ``grid[0]`` (noise), ``(batch, ...)``.
        grid: increasing times (towards the data).
        mode: ``"or"`` or ``"and"``.
        weights: prior weights :math:`w_i` of OR (default equal); normalised here.
        temperature: :math:`T` of OR (``1`` samples the mixture exactly).
        log_density_start: per model, :math:`\log q^i` at ``grid[0]`` (callables of states); default
            :math:`N(0, (\alpha^2 + \beta^2) I)` at ``grid[0]``, the base of a unit-variance model.
        generator: drives the noise (seeded from the OS and recorded when ``None``).

    Returns:
        a :class:`~interp.results.Trajectory` with ``extras["log_density"]`` and ``extras["kappa"]``, both
        ``(n_recorded, batch, model)``.
    """
    scores = list(scores)
    if len(scores) < 2 or not all(callable(s) for s in scores):
        raise ValueError("superpose needs two or more score fields (callables (t, x) -> Tensor)")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if not isinstance(interpolant, Interpolant) or not interpolant.gaussian_base:
        raise ValueError("superposition runs the models' shared Gaussian-base interpolant (e.g. preset('vp'))")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be positive and finite; got {temperature}")
    check_batch(x, "x")
    grid = check_grid(grid)
    if not bool(grid[-1] > grid[0]):
        raise ValueError("superposition generates: the grid must increase (noise at grid[0], data at grid[-1])")
    m = len(scores)
    w = torch.full((m,), 1.0 / m, dtype=x.dtype) if weights is None else torch.as_tensor(weights, dtype=x.dtype)
    if w.shape != (m,) or not bool((w > 0).all()) or not bool(torch.isfinite(w).all()):
        raise ValueError(f"weights must be {m} positive finite numbers; got {weights}")
    log_w = torch.log(w / w.sum()).to(x.device)
    generator = seeded_generator(generator, x.device)
    times = grid.to(device=x.device, dtype=x.dtype)
    batch, dim = x.shape[0], x[0].numel()

    if log_density_start is None:
        s0 = interpolant.schedule
        t0 = times[:1]
        variance = float(s0.alpha(t0) ** 2 + s0.beta(t0) ** 2)

        def base(y):
            flat = y.reshape(y.shape[0], -1)
            return -0.5 * (flat**2).sum(-1) / variance - 0.5 * dim * math.log(2 * math.pi * variance)

        log_density_start = [base] * m
    if len(log_density_start) != m:
        raise ValueError(f"log_density_start needs one entry per model ({m}); got {len(log_density_start)}")
    ell = torch.stack(
        [log_density_value(src, x, f"log_density_start[{i}]") for i, src in enumerate(log_density_start)], -1
    )

    name = f"superpose-{mode}"
    loop = StepLoop(
        name, len(times) - 1, keep=record_indices(record, grid), progress=progress, check_finite=check_finite
    )
    nfe = 0
    kappa = torch.softmax(temperature * (ell + log_w), -1) if mode == "or" else torch.full_like(ell, 1.0 / m)
    loop.keep(0, x, {"log_density": ell, "kappa": kappa})
    noise_device = generator.device
    for i in loop.steps():
        t, h = times[i], times[i + 1] - times[i]
        with loop.naming_earlier_failures():
            s = torch.stack([score(t, x) for score in scores])  # (M, batch, ...)
        nfe += m
        if s.shape[1:] != x.shape:
            raise ValueError(f"a score returned {tuple(s.shape[1:])} for a state of shape {tuple(x.shape)}")
        f, d = gaussian_base_coefficients(interpolant, t.reshape(1))
        f, d = f[0], d[0]
        eps = (-d).clamp_min(0)
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=noise_device).to(x.device)
        noise = torch.sqrt(2 * eps * h) * xi
        flat_s = s.reshape(m, batch, -1)
        if mode == "or":
            kappa = torch.softmax(temperature * (ell + log_w), -1)
        else:
            kappa = and_weights(flat_s, noise.reshape(batch, -1), (d * h).expand(batch))
        s_kappa = torch.einsum("bk,kbn->bn", kappa, flat_s).reshape(x.shape)
        dx = f * x * h - 2 * d * h * s_kappa + noise
        rate = torch.stack([gaussian_base_rate(x, s[k], f, d) for k in range(m)], -1)
        ell = ell + torch.stack([flat_dot(s[k], dx) for k in range(m)], -1) + h * rate
        x = x + dx
        loop.defer(i, times[i + 1], x, ell)  # read every loop.check_every steps: no host sync per step
        loop.keep(i + 1, x, {"log_density": ell, "kappa": kappa})
    loop.check()
    states, extras = loop.stacked()
    return Trajectory(
        times=grid[loop.indices].clone(),
        states=states,
        grid=grid.clone(),
        solver=name,
        nfe=nfe,
        seed=generator.initial_seed(),
        attrs={"mode": mode, "temperature": float(temperature), "n_models": m, "interpolant": interpolant.name},
        extras=extras,
        extra_dims={"log_density": ("time", "particle", "model"), "kappa": ("time", "particle", "model")},
    )
