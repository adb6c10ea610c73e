r"""Multi-marginal Schrödinger bridges with iterative reference refinement (Shen, Berlinghieri & Broderick 2024;
docs/algorithms.md §4).

Snapshots :math:`X_0, \dots, X_K` at times :math:`t_0 < \dots < t_K` and a reference
:math:`dX = b_\theta(X)\,dt + \sigma\,dW`. Each outer iteration

(a) solves a two-marginal bridge on every interval :math:`[t_k, t_{k+1}]` against the current reference: the
    static plan is entropic OT (POT, Sinkhorn with epsilon scaling) with the reference's Gaussian transition cost
    :math:`|y - \varphi_{\Delta}(x)|^2` and entropy weight :math:`2\sigma^2\Delta` — :math:`\varphi_\Delta` the flow
    of :math:`b_\theta` over :math:`\Delta = t_{k+1} - t_k` (exact for Brownian references, the small-noise
    linearisation otherwise) — and paths between the paired points are reference bridges, simulated with
    interp's Euler–Maruyama as the guided SDE :math:`dX = [b_\theta(X) + (y - X)/(t_{k+1} - t)]\,dt + \sigma\,dW`
    (Delyon & Hu 2006; the exact Brownian bridge when :math:`b = 0`);
(b) stitches particle paths across all intervals: a particle that ends an interval on the data point
    :math:`y_j` starts the next one there, pairing by the next plan's row :math:`j`;
(c) refits :math:`\theta` by least squares of :math:`b_\theta(x_n)` on :math:`(x_{n+1} - x_n)/dt` over all stitched
    transitions (the Euler–Maruyama maximum likelihood for constant :math:`\sigma`;
    :func:`~interp.bridges.references.fit_reference`).

The first iteration uses the zero drift whatever the reference's starting parameters ("vanilla SB", the
baseline refinement must beat). :meth:`MultiMarginalBridge.fit` returns a :class:`MultiMarginalResult` whose
``iterates`` hold every iteration's particles at the snapshot times and at any extra ``record_times`` (e.g.
held-out times), and whose :meth:`~MultiMarginalResult.to_xarray` keeps the fitted parameters per iteration.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import ot
import torch
import xarray as xr
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._random import seeded_generator
from ..driver import integrate
from ..dynamics import constant_noise_sde
from ..results import NetCDFResult, result_attrs, to_numpy
from ..solvers import RK4, EulerMaruyama
from .references import Brownian, fit_reference
from .snapshots import check_snapshots, interval_grid


@dataclass
class MultiMarginalResult(NetCDFResult):
    """Output of :meth:`MultiMarginalBridge.fit` (real time units throughout).

    Attributes:
        snapshot_times: ``(K+1,)`` observation times.
        record_times: ``(R,)`` times at which ``iterates`` are kept (snapshot times and the requested ones).
        iterates: ``(iterations, R, particles, d)`` stitched particles of every outer iteration.
        times: ``(G,)`` the fine grid of the last iteration's ``trajectories`` ``(G, particles, d)``.
        parameters: per iteration, the reference parameters fitted after it (``{}`` for networks).
        residuals: per iteration, the mean squared residual of the least-squares fit.
        costs: per iteration, the mean transport cost of the interval plans.
        reference: the refined reference (after the last fit).
    """

    snapshot_times: Tensor
    record_times: Tensor
    iterates: Tensor
    times: Tensor
    trajectories: Tensor
    reference: nn.Module
    parameters: list[dict[str, float]] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)

    def at(self, t: float, iteration: int = -1) -> Tensor:
        """Particles at record time ``t`` after outer iteration ``iteration`` (``0`` = vanilla SB)."""
        match = torch.nonzero((self.record_times - float(t)).abs() <= 1e-9 * max(1.0, abs(float(t)))).reshape(-1)
        if match.numel() == 0:
            raise ValueError(
                f"time {t} was not recorded; pass it in record_times (recorded: {self.record_times.tolist()})"
            )
        return self.iterates[iteration, int(match[0])]

    def to_xarray(self) -> xr.Dataset:
        n_iter = self.iterates.shape[0]
        data = {
            "iterates": (("iteration", "record_time", "particle", "dim"), to_numpy(self.iterates)),
            "trajectories": (("time", "particle", "dim"), to_numpy(self.trajectories)),
            "residual": (("iteration",), list(self.residuals)),
            "transport_cost": (("iteration",), list(self.costs)),
        }
        names = sorted({name for p in self.parameters for name in p})
        coords = {
            "iteration": list(range(n_iter)),
            "record_time": to_numpy(self.record_times),
            "time": to_numpy(self.times),
        }
        if names:
            values = [[p.get(name, float("nan")) for name in names] for p in self.parameters]
            data["parameters"] = (("iteration", "parameter"), values)
            coords["parameter"] = names
        settings = {k: v for k, v in self.attrs.items() if k != "seed"}
        attrs = result_attrs(
            "multi-marginal-sb", self.attrs.get("seed"), snapshot_times=to_numpy(self.snapshot_times), **settings
        )
        return xr.Dataset(data, coords=coords, attrs=attrs)


class MultiMarginalBridge:
    """Multi-marginal Schrödinger bridge with iterative reference refinement.

    Args:
        reference: the reference class to refine, an ``nn.Module`` drift ``x -> b(x)`` (see
            :mod:`interp.bridges.references`; any module with parameters works). ``None``: Brownian, no refinement.
        sigma: reference diffusion :math:`\\sigma > 0` (the paper's default 0.1).
        iterations: outer iterations (the paper's default 10); the first uses the zero drift.
        steps_per_unit: Euler–Maruyama steps per unit of time for the bridges (and RK4 steps for the flow map).
        n_particles: stitched particles (default: the largest snapshot).
        sinkhorn_iterations: POT Sinkhorn's iteration cap.
        sinkhorn_threshold: POT Sinkhorn's stopping threshold.
        fit_steps: L-BFGS iterations of the reference fit for classes without an exact least-squares solve.
        progress: tqdm bar over outer iterations.

    Example:
        >>> mmsb = MultiMarginalBridge(LotkaVolterra(), sigma=0.05)              # doctest: +SKIP
        >>> result = mmsb.fit(snapshots, times, generator=torch.Generator())     # doctest: +SKIP
        >>> result.parameters[-1]                                                # doctest: +SKIP
    """

    MARGINAL_TOLERANCE = 1e-2
    """Relative marginal error of an interval plan above which a warning is raised."""

    def __init__(
        self,
        reference: nn.Module | None = None,
        sigma: float = 0.1,
        *,
        iterations: int = 10,
        steps_per_unit: float = 20.0,
        n_particles: int | None = None,
        sinkhorn_iterations: int = 20_000,
        sinkhorn_threshold: float = 1e-6,
        fit_steps: int = 100,
        progress: bool = True,
    ):
        if reference is not None and not isinstance(reference, nn.Module):
            raise TypeError(f"reference must be an nn.Module drift x -> b(x) or None; got {type(reference).__name__}")
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be positive; got {sigma}")
        if not (isinstance(iterations, int) and iterations >= 1):
            raise ValueError(f"iterations must be a positive integer; got {iterations!r}")
        if not steps_per_unit > 0:
            raise ValueError(f"steps_per_unit must be positive; got {steps_per_unit}")
        if n_particles is not None and not (isinstance(n_particles, int) and n_particles >= 1):
            raise ValueError(f"n_particles must be a positive integer; got {n_particles!r}")
        self.reference, self.sigma, self.iterations = reference, float(sigma), iterations
        self.steps_per_unit, self.n_particles = float(steps_per_unit), n_particles
        self.sinkhorn_iterations, self.sinkhorn_threshold = sinkhorn_iterations, sinkhorn_threshold
        self.fit_steps, self.progress = fit_steps, progress

    # ------------------------------------------------------------------ one interval
    def _plan(self, flowed: Tensor, y: Tensor, delta: float) -> tuple[Tensor, float]:
        cost = torch.cdist(flowed, y) ** 2
        a = torch.full((flowed.shape[0],), 1.0 / flowed.shape[0], dtype=cost.dtype, device=cost.device)
        b = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=cost.dtype, device=cost.device)
        with warnings.catch_warnings():
            # POT warns whenever its absolute threshold is missed; we judge the marginals ourselves below.
            warnings.simplefilter("ignore", UserWarning)
            plan = ot.sinkhorn(
                a,
                b,
                cost,
                reg=2 * self.sigma**2 * delta,
                method="sinkhorn_epsilon_scaling",  # small entropy weights: scaling converges where Sinkhorn stalls
                numItermax=self.sinkhorn_iterations,
                stopThr=self.sinkhorn_threshold,
            )
        if not torch.isfinite(plan).all() or plan.sum() <= 0:
            raise FloatingPointError("the interval plan is degenerate (non-finite or zero); check the snapshot scales")
        error = max(float((plan.sum(1) / a - 1).abs().max()), float((plan.sum(0) / b - 1).abs().max()))
        if error > self.MARGINAL_TOLERANCE:
            warnings.warn(
                f"interval plan marginals are off by {error:.2g} (relative); raise sinkhorn_iterations or sigma",
                RuntimeWarning,
                stacklevel=3,
            )
        return plan, float((plan * cost).sum() / plan.sum())

    def _bridges(self, flow: Tensor, end: Tensor, grid: Tensor, span: float, generator) -> Tensor:
        r"""Paths from ``flow[0]`` to ``end``: the reference flow ``flow`` ``(G, n, d)`` plus a Brownian bridge
        (:math:`\sigma`) from 0 to the residual ``end - flow[-1]`` — the small-noise linearisation of the reference
        bridge, exact for a Brownian reference."""
        s1 = grid[-1]
        residual = end - flow[-1]

        def pull(s, z):
            return (residual - z) / (s1 - s)

        with torch.no_grad():
            noise = integrate(
                constant_noise_sde(pull, self.sigma * span**0.5),
                torch.zeros_like(end),
                grid,
                EulerMaruyama(),
                generator=generator,
                record=True,
                progress=False,
            ).states.clone()
        noise[-1] = residual  # the bridge ends on its data point (the pull is singular only at the end time)
        return flow + noise

    # ------------------------------------------------------------------ outer loop
    def fit(
        self, snapshots, times, *, record_times=(), generator: torch.Generator | None = None
    ) -> MultiMarginalResult:
        """Fit to ``snapshots`` (a list of ``(n_k, d)`` tensors) observed at increasing ``times``.

        ``record_times``: extra times (inside ``[t_0, t_K]``) at which every iteration's particles are kept, e.g.
        held-out snapshot times.
        """
        snapshots, times = check_snapshots(snapshots, times)
        generator = seeded_generator(generator, snapshots[0].device)
        dim = snapshots[0].shape[1]
        reference = copy.deepcopy(self.reference) if self.reference is not None else Brownian(dim)
        if getattr(reference, "dim", dim) != dim:
            raise ValueError(f"the reference has dimension {reference.dim}; the snapshots have {dim}")
        extra = torch.as_tensor(list(record_times), dtype=torch.float64).reshape(-1)
        if extra.numel() and ((extra < times[0]).any() or (extra > times[-1]).any()):
            raise ValueError(f"record_times must lie in [{float(times[0])}, {float(times[-1])}]")
        span = float(times[-1] - times[0])
        normalised = (times - times[0]) / span
        extra_normalised = (extra - times[0]) / span
        grids = []
        for k in range(len(snapshots) - 1):
            grid = interval_grid(float(normalised[k]), float(normalised[k + 1]), span, self.steps_per_unit)
            inside = extra_normalised[(extra_normalised > grid[0]) & (extra_normalised < grid[-1])]
            grids.append(torch.unique(torch.cat([grid, inside])))
        full = torch.cat([g[:-1] for g in grids] + [grids[-1][-1:]])
        record_norm = torch.unique(torch.cat([normalised, extra_normalised]))
        keep = [int(torch.argmin((full - s).abs())) for s in record_norm]
        like = snapshots[0]
        n = self.n_particles or max(x.shape[0] for x in snapshots)
        device = generator.device if generator is not None else like.device
        if n == snapshots[0].shape[0]:
            start = torch.arange(n, device=like.device)
        else:
            start = torch.randint(snapshots[0].shape[0], (n,), generator=generator, device=device).to(like.device)
        dt = torch.diff(full).to(like) * span
        zero = Brownian(dim)

        iterates, parameters, residuals, costs = [], [], [], []
        bar = tqdm(range(self.iterations), desc="multi-marginal SB", disable=None if self.progress else True)
        for iteration in bar:
            drift = zero if iteration == 0 else reference
            index, pieces, cost_total = start, [], 0.0
            for k, grid in enumerate(grids):
                x, y, grid = snapshots[k], snapshots[k + 1], grid.to(like)
                with torch.no_grad():  # the reference flow from every point of X_k, kept on the interval grid
                    flow = integrate(
                        lambda s, z, b=drift: span * b(z), x, grid, RK4(), record=True, progress=False
                    ).states
                plan, cost = self._plan(flow[-1], y, float(grid[-1] - grid[0]) * span)
                cost_total += cost
                nxt = torch.multinomial(plan[index].to(device), 1, generator=generator).reshape(-1).to(like.device)
                path = self._bridges(flow[:, index], y[nxt], grid, span, generator)
                pieces.append(path if k == len(grids) - 1 else path[:-1])
                index = nxt
            paths = torch.cat(pieces)  # (G, n, d)
            iterates.append(paths[keep])
            velocity = (paths[1:] - paths[:-1]) / dt[:, None, None]
            residual = fit_reference(
                reference,
                paths[:-1].reshape(-1, dim),
                velocity.reshape(-1, dim),
                steps=self.fit_steps,
                generator=generator,
            )
            values = reference.parameter_values() if hasattr(reference, "parameter_values") else {}
            parameters.append(values)
            residuals.append(residual)
            costs.append(cost_total / len(grids))
            bar.set_postfix(cost=f"{costs[-1]:.3g}")
        bar.close()
        return MultiMarginalResult(
            snapshot_times=times,
            record_times=full[keep] * span + times[0],
            iterates=torch.stack(iterates),
            times=full * span + times[0],
            trajectories=paths,
            reference=reference,
            parameters=parameters,
            residuals=residuals,
            costs=costs,
            attrs={
                "sigma": self.sigma,
                "iterations": self.iterations,
                "reference": type(reference).__name__,
                "seed": generator.initial_seed(),
            },
        )
