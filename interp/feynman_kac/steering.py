r"""Reward steering of a generative SDE at inference time (docs/algorithms.md §5): FK steering (Singhal et al. 2025),
SVDD (Li et al. 2024), rollover budget forcing (Kim et al. 2025) and best-of-N, on one base model.

The base model is the interpolant SDE :math:`dX = [b + \epsilon s]\,dt + \sqrt{2\epsilon}\,dW` (t: 0 → 1, data at
t = 1) of a score field (and, off a Gaussian base, a velocity field); a flow model's velocity gives the score on a
Gaussian base (:func:`~interp.feynman_kac.score_from_velocity`), so a flow ODE becomes an SDE with the same
marginals, and :func:`interp.interpolants.rescheduled_score` moves it to a VP schedule by SNR matching (budget
forcing's optional conversion). The reward :math:`r` is evaluated on the data prediction :math:`\hat x_1(t, X_t)`.

NFE counts model evaluations per particle: one batched call on ``n`` states counts 1, on ``m * n`` candidate
states counts ``m``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._random import seeded_generator
from ..interpolants import Interpolant
from ..results import Trajectory
from ..smc import DegenerateWeightsError, ResamplePolicy
from ._loop import Move, check_start, euler_maruyama, run_weighted
from .correctors import gaussian_base_rates

Field = Callable[[Tensor, Tensor], Tensor]
Reward = Callable[[Tensor], Tensor]

POTENTIALS = ("diff", "max", "sum", "current")

__all__ = ["POTENTIALS", "BaseSampler", "best_of_n", "budget_forcing", "fk_steer", "svdd"]


class BaseSampler:
    r"""The base generative SDE of a model: drift :math:`b + \epsilon s`, noise :math:`\sqrt{2\epsilon}` and the data
    prediction :math:`\hat x_1`, all from one model evaluation per state.

    Args:
        interpolant: the model's interpolant.
        score: score field ``(t, x)``.
        velocity: velocity field; needed off a Gaussian base.
        noise: :math:`\epsilon(t)`: ``"diffusion"`` (:math:`\eta(t)` of the Gaussian base, the reverse SDE of
            diffusion models), a float, or a callable of ``t``.
    """

    def __init__(self, interpolant: Interpolant, score: Field, *, velocity: Field | None = None, noise="diffusion"):
        if not isinstance(interpolant, Interpolant):
            raise TypeError(f"interpolant must be an Interpolant, got {type(interpolant).__name__}")
        if not interpolant.gaussian_base and velocity is None:
            raise ValueError("off a Gaussian base the base sampler needs the velocity field too")
        if noise == "diffusion" and not interpolant.gaussian_base:
            raise ValueError("noise='diffusion' needs a Gaussian base; give a number or a callable of t")
        if not (noise == "diffusion" or callable(noise) or (isinstance(noise, (int, float)) and noise >= 0)):
            raise ValueError(f"noise must be 'diffusion', a number >= 0 or a callable of t; got {noise!r}")
        self.interpolant, self.score, self.velocity, self.noise = interpolant, score, velocity, noise
        self.evaluations = 0

    def epsilon(self, t: Tensor) -> Tensor:
        tt = t.reshape(1).double()
        if self.noise == "diffusion":
            return gaussian_base_rates(self.interpolant, tt)[1]
        if callable(self.noise):
            return torch.as_tensor(self.noise(tt), dtype=torch.float64).reshape(1)
        return torch.full_like(tt, float(self.noise))

    def evaluate(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``(n, ...)`` and data prediction ``(n, ...)`` at ``(t, x)``; counts one evaluation per state."""
        self.evaluations += x.shape[0]
        s = self.score(t, x)
        if self.velocity is None:
            post = self.interpolant.posterior(t, x, score=s)
        else:
            post = self.interpolant.posterior(t, x, score=s, velocity=self.velocity(t, x))
        return post.velocity + self.epsilon(t).to(x) * s, post.x1

    def move(self, x: Tensor, drift: Tensor, t0: Tensor, t1: Tensor, generator) -> Tensor:
        return euler_maruyama(x, drift, self.epsilon(t0).to(x), t1 - t0, generator)

    def start(self, n: int, dim: int, t0: Tensor, generator, dtype, device) -> Tensor:
        if not self.interpolant.gaussian_base:
            raise ValueError("off a Gaussian base give start particles")
        if not (isinstance(n, int) and n >= 1 and isinstance(dim, int) and dim >= 1):
            raise ValueError(f"the default start needs positive integers n and dim; got n={n!r}, dim={dim!r}")
        alpha0 = float(self.interpolant.schedule.alpha(t0.double().reshape(1)))
        return torch.randn(n, dim, generator=generator, dtype=dtype, device=generator.device).to(device) * alpha0


def _rewards(reward: Reward, x: Tensor) -> Tensor:
    r = reward(x)
    if not isinstance(r, Tensor) or r.shape != (x.shape[0],):
        raise ValueError(f"the reward must return a ({x.shape[0]},) tensor; got {getattr(r, 'shape', type(r))}")
    if torch.isnan(r).any():
        raise DegenerateWeightsError(f"the reward returned NaN for {int(torch.isnan(r).sum())} particles")
    return r.double()


def _setup(base, grid, start, n, dim, generator, dtype, device):
    if not isinstance(base, BaseSampler):
        raise TypeError(f"base must be a BaseSampler, got {type(base).__name__}")
    grid = torch.as_tensor(grid, dtype=torch.float64)
    device = torch.device(device) if device is not None else (generator.device if generator is not None else "cpu")
    generator = seeded_generator(generator, device)
    if start is None:
        start = base.start(n, dim, grid[:1], generator, dtype, device)
    x, _ = check_start(start, None)
    base.evaluations = 0
    return grid, generator, x


def _search_result(name: str, grid: Tensor, x1: Tensor, rewards: Tensor, base, generator, outputs: int, **attrs):
    """The record of a search sampler: the outputs at the last grid time, their rewards (``extras["reward"]``),
    the evaluations in all (``nfe``) and per output (``attrs["nfe_per_output"]``)."""
    return Trajectory(
        times=grid[-1:].clone(),
        states=x1[None],
        grid=grid.clone(),
        solver=name,
        nfe=int(base.evaluations),
        seed=generator.initial_seed(),
        attrs={"nfe_per_output": base.evaluations / outputs, **attrs},
        extras={"reward": rewards.detach()[None]},
    )


def fk_steer(
    base: BaseSampler,
    reward: Reward,
    grid,
    *,
    lam: float,
    potential: str = "diff",
    every: int = 1,
    window: tuple[int, int] | None = None,
    final_correction: bool = True,
    n: int | None = None,
    dim: int | None = None,
    start: Tensor | None = None,
    scheme: str = "systematic",
    generator: torch.Generator | None = None,
    record=False,
    progress: bool = True,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> Trajectory:
    r"""FK steering: weighted particles whose final law is :math:`p(x)e^{\lambda r(x)}/Z`.

    At the potential steps (every ``every`` steps inside ``window``) each particle is weighted by a potential of its
    reward history on :math:`\hat x_1` — ``"diff"`` :math:`\lambda(r_k - r_{k'})` (the last potential step
    :math:`k'`), ``"max"`` :math:`\lambda\max_{j\le k} r_j`, ``"sum"`` :math:`\lambda\sum_{j\le k} r_j`,
    ``"current"`` :math:`\lambda r_k` — and the particles are resampled. With ``final_correction`` the weight is
    at the end multiplied by :math:`e^{\lambda r(x)}` over the product of the potentials applied along the
    particle's ancestry, so every potential is exact in the limit of many particles (``"diff"`` telescopes and has
    the lowest variance; ``"sum"`` and ``"max"`` tilt the path far more than :math:`e^{\lambda r}` and their final
    weights degenerate; without the correction they are reward-seeking heuristics, as in the paper); the final
    weights (``extras["log_weight"]``) target :math:`p\,e^{\lambda r}` and
    ``attrs["log_normaliser"]`` estimates :math:`\log E_p[e^{\lambda r}]`. ``extras["reward"]`` is the reward of
    :math:`\hat x_1` at each recorded time (of the final state at the end).
    """
    if potential not in POTENTIALS:
        raise ValueError(f"potential must be one of {POTENTIALS}; got {potential!r}")
    if not (isinstance(every, int) and every >= 1):
        raise ValueError(f"every must be a positive integer; got {every!r}")
    if not math.isfinite(lam):
        raise ValueError(f"lam must be finite; got {lam}")
    grid, generator, x = _setup(base, grid, start, n, dim, generator, dtype, device)
    n_steps = grid.shape[0] - 1
    lo, hi = window if window is not None else (0, n_steps - 1)
    steps = tuple(i for i in range(n_steps) if i % every == 0 and lo <= i <= hi)
    state = {
        "last": torch.zeros(x.shape[0], dtype=torch.float64, device=x.device),
        "max": torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device),
        "sum": torch.zeros(x.shape[0], dtype=torch.float64, device=x.device),
        "applied": torch.zeros(x.shape[0], dtype=torch.float64, device=x.device),
    }

    def step(i: int, t0: Tensor, t1: Tensor, x: Tensor) -> Move:
        drift, x1 = base.evaluate(t0, x)
        r = _rewards(reward, x1)
        increment = None
        if i in steps:
            state["max"] = torch.maximum(state["max"], r)
            state["sum"] = state["sum"] + r
            log_g = lam * {"diff": r - state["last"], "max": state["max"], "sum": state["sum"], "current": r}[potential]
            state["last"] = r
            state["applied"] = state["applied"] + log_g
            increment = log_g

        def advance(take) -> Tensor:
            y, d = x, drift
            if take is not None:
                y, d = take(x), take(drift)
                for key in state:
                    state[key] = take(state[key])
            return base.move(y, d, t0, t1, generator)

        return Move(increment, advance, {"reward": r})

    def finish(t_end: Tensor, x: Tensor):
        _, x1 = base.evaluate(t_end, x)
        r = _rewards(reward, x1)
        return (lam * r - state["applied"]) if final_correction else None, {"reward": r}

    return run_weighted(
        step,
        x,
        None,
        grid,
        name=f"fk-steer-{potential}",
        policy=ResamplePolicy("schedule", steps=steps),
        scheme=scheme,
        generator=generator,
        record=record,
        progress=progress,
        finish=finish,
        nfe=lambda: math.ceil(base.evaluations / x.shape[0]),
        attrs={"lam": float(lam), "potential": potential, "every": every, "final_correction": final_correction},
    )


def svdd(
    base: BaseSampler,
    reward: Reward,
    grid,
    *,
    proposals: int,
    alpha: float = 0.0,
    n: int | None = None,
    dim: int | None = None,
    start: Tensor | None = None,
    generator: torch.Generator | None = None,
    record=False,
    progress: bool = True,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> Trajectory:
    r"""SVDD: at every step draw ``proposals`` candidates from the base transition for each particle, value each by
    the reward of its :math:`\hat x_1` (the posterior-mean soft value of SVDD-PM), and keep one drawn from
    :math:`\mathrm{softmax}(v/\alpha)` (``alpha = 0``: the argmax). The selected candidate's evaluation supplies the
    next drift, so a step costs ``proposals`` evaluations per particle. ``extras["reward"]`` is the kept value."""
    if not (isinstance(proposals, int) and proposals >= 1):
        raise ValueError(f"proposals must be a positive integer; got {proposals!r}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be >= 0; got {alpha}")
    grid, generator, x = _setup(base, grid, start, n, dim, generator, dtype, device)
    times = grid.to(x)
    cache = {"at": base.evaluate(times[0], x)}

    def step(i: int, t0: Tensor, t1: Tensor, x: Tensor) -> Move:
        drift, x1 = cache["at"]
        r_here = _rewards(reward, x1)

        def advance(take) -> Tensor:  # never resampled (policy "never"): take is None
            m, size = proposals, x.shape[0]
            cand = base.move(
                x.repeat(m, *([1] * (x.ndim - 1))), drift.repeat(m, *([1] * (x.ndim - 1))), t0, t1, generator
            )
            c_drift, c_x1 = base.evaluate(t1, cand)
            values = _rewards(reward, c_x1).reshape(m, size)
            if alpha == 0:
                pick = values.argmax(0)
            else:
                probs = torch.softmax(values / alpha, 0).T
                pick = torch.multinomial(probs.to(generator.device), 1, generator=generator).reshape(-1).to(x.device)
            rows = pick * size + torch.arange(size, device=x.device)
            cache["at"] = (c_drift[rows], c_x1[rows])
            return cand[rows]

        return Move(None, advance, {"reward": r_here})

    def finish(t_end: Tensor, x: Tensor):
        return None, {"reward": _rewards(reward, cache["at"][1])}

    return run_weighted(
        step,
        x,
        None,
        grid,
        name="svdd",
        policy=ResamplePolicy("never"),
        scheme="systematic",
        generator=generator,
        record=record,
        progress=progress,
        finish=finish,
        nfe=lambda: math.ceil(base.evaluations / x.shape[0]),
        attrs={"proposals": proposals, "alpha": float(alpha)},
    )


def budget_forcing(
    base: BaseSampler,
    reward: Reward,
    grid,
    *,
    budget: int,
    n: int | None = None,
    dim: int | None = None,
    start: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> Trajectory:
    r"""Rollover budget forcing: each particle is an independent search. At every step it may spend its budget
    (``budget`` new candidates per step plus what earlier steps left unused) drawing candidates from the base
    transition one at a time; it takes the first whose :math:`r(\hat x_1)` beats its best so far and rolls the rest
    of the budget over, or, having spent it all, the best candidate seen.

    Returns:
        a :class:`~interp.results.Trajectory` holding the final data predictions (``final``), their rewards
        (``extras["reward"][-1]``) and the mean evaluations per particle (``attrs["nfe_per_output"]``).
    """
    if not (isinstance(budget, int) and budget >= 1):
        raise ValueError(f"budget must be a positive integer; got {budget!r}")
    grid, generator, x = _setup(base, grid, start, n, dim, generator, dtype, device)
    times = grid.to(x)
    size = x.shape[0]
    drift, x1 = base.evaluate(times[0], x)
    best = _rewards(reward, x1)
    carry = torch.zeros(size, dtype=torch.long, device=x.device)
    for i in range(grid.shape[0] - 1):
        t0, t1 = times[i], times[i + 1]
        available = carry + budget
        used = torch.zeros_like(carry)
        done = torch.zeros(size, dtype=torch.bool, device=x.device)
        keep_x, keep_drift, keep_x1 = x.clone(), drift.clone(), x1.clone()
        keep_r = torch.full((size,), -math.inf, dtype=torch.float64, device=x.device)
        for k in range(int(available.max())):
            active = torch.nonzero(~done & (k < available)).reshape(-1)
            if active.numel() == 0:
                break
            cand = base.move(x[active], drift[active], t0, t1, generator)
            c_drift, c_x1 = base.evaluate(t1, cand)
            r = _rewards(reward, c_x1)
            used[active] += 1
            better = r > keep_r[active]  # an accepted candidate beats every earlier one (they lost to best)
            rows = active[better]
            keep_x[rows], keep_drift[rows], keep_x1[rows], keep_r[rows] = (
                cand[better],
                c_drift[better],
                c_x1[better],
                r[better],
            )
            done[active[r > best[active]]] = True
        carry = available - used
        x, drift, x1 = keep_x, keep_drift, keep_x1
        best = torch.maximum(best, keep_r)
    rewards = _rewards(reward, x1)
    return _search_result(f"budget-forcing-{budget}", grid, x1, rewards, base, generator, size, budget=budget)


def best_of_n(
    base: BaseSampler,
    reward: Reward,
    grid,
    *,
    n_candidates: int,
    n: int | None = None,
    dim: int | None = None,
    start: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> Trajectory:
    """Best-of-N: ``n_candidates`` independent base samples for each of ``n`` outputs, keep the highest reward.
    ``start``: the ``n_candidates * n`` initial states (candidate-major: rows ``j * n + i`` are output ``i``'s),
    any shape ``(n_candidates * n, ...)``; default Gaussian of dimension ``dim``.

    Returns:
        a :class:`~interp.results.Trajectory` holding the kept samples (``final``), their rewards
        (``extras["reward"][-1]``) and the evaluations per output (``attrs["nfe_per_output"]``).
    """
    if not (isinstance(n_candidates, int) and n_candidates >= 1):
        raise ValueError(f"n_candidates must be a positive integer; got {n_candidates!r}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer (the number of outputs); got {n!r}")
    if start is not None and (not isinstance(start, Tensor) or start.ndim < 1 or start.shape[0] != n * n_candidates):
        got = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
        raise ValueError(f"start must hold n_candidates * n = {n * n_candidates} states; got {got}")
    grid, generator, x = _setup(base, grid, start, n * n_candidates, dim, generator, dtype, device)
    times = grid.to(x)
    for i in range(grid.shape[0] - 1):
        drift, _ = base.evaluate(times[i], x)
        x = base.move(x, drift, times[i], times[i + 1], generator)
    _, x1 = base.evaluate(times[-1], x)
    r = _rewards(reward, x1).reshape(n_candidates, n)
    pick = r.argmax(0)
    rows = pick * n + torch.arange(n, device=x.device)
    return _search_result(
        f"best-of-{n_candidates}", grid, x1[rows], r.max(0).values, base, generator, n, n_candidates=n_candidates
    )
