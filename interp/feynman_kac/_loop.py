"""The weighted-particle loop shared by the correctors, FK steering and the posterior sampler.

One step at grid index ``i``: the method evaluates its fields at :math:`(t_i, X_i)` and returns a log-weight
increment and a move; the particles are reweighted, resampled when the policy says so (before the move, so that
copies of one particle receive different noise), then moved to :math:`t_{i+1}`. The loop records what
docs/design.md promises for weighted particles: log-weights and lineage at the recorded times (``extras``), and the
ESS, resampling events and running :math:`\\log\\hat Z` at every grid time (``series``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_batch, time_column
from .._random import randn_like
from .._shards import current as current_shard_group
from ..grids import check_grid
from ..results import Trajectory
from ..smc import SCHEMES, DegenerateWeightsError, Particles, ResamplePolicy, resample_indices
from ..stepping import NonFiniteStateError, StepLoop, record_indices


@dataclass
class Move:
    """What one step of a method returns: a log-weight increment ``(n,)`` (or ``None``) and ``advance(take)``,
    which moves the particles to the next grid time and returns the new states. When the particles were resampled,
    ``take`` maps any per-particle tensor of the step ``(n, ...)`` (states, drifts, running sums) to the rows of
    the resampled particles — an index in one process, a gather across shards in a sharded run — else it is
    ``None``. ``values`` are per-particle quantities at :math:`(t_i, X_i)` to record (e.g. reward)."""

    log_increment: Tensor | None
    advance: Callable[[Tensor | None], Tensor]
    values: dict[str, Tensor] | None = None


def _taker(index: Tensor, rows: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The rows ``index`` (global particle numbers) of a per-particle tensor of this shard."""
    return lambda tensor: rows(tensor)[index.to(tensor.device)]


def euler_maruyama(x: Tensor, drift: Tensor, epsilon: Tensor, h: Tensor, generator) -> Tensor:
    r"""One step :math:`x + h\,u + \sqrt{2\epsilon h}\,\xi` (``epsilon`` a one-element tensor)."""
    scale = torch.sqrt(2 * epsilon * h).expand(x.shape[0])
    return x + h * drift + time_column(scale, x) * randn_like(x, generator)


def check_start(x: Tensor, log_weights: Tensor | None) -> tuple[Tensor, Tensor]:
    check_batch(x, "start")
    if not torch.isfinite(x).all():
        raise ValueError("the start particles must be finite")
    if log_weights is None:
        return x, torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    if log_weights.shape != (x.shape[0],):
        raise ValueError(f"start log-weights must have shape ({x.shape[0]},); got {tuple(log_weights.shape)}")
    return x, log_weights.to(dtype=torch.float64, device=x.device)


def check_policy(policy: ResamplePolicy, scheme: str) -> None:
    if not isinstance(policy, ResamplePolicy):
        raise TypeError(f"policy must be an interp.smc.ResamplePolicy, got {type(policy).__name__}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose from {sorted(SCHEMES)}")


def run_weighted(
    step: Callable[[int, Tensor, Tensor, Tensor], Move],
    x: Tensor,
    log_weights: Tensor | None,
    grid,
    *,
    name: str,
    policy: ResamplePolicy,
    scheme: str,
    generator: torch.Generator,
    record,
    progress: bool,
    finish: Callable[[Tensor, Tensor], tuple[Tensor | None, dict[str, Tensor]]] | None = None,
    log_normaliser: float = 0.0,
    nfe: Callable[[], int],
    attrs: dict | None = None,
) -> Trajectory:
    """Run ``step`` over ``grid`` with weighted particles; ``finish(t_end, x)`` may add a last log-weight
    increment (FK steering's final correction) and values to record at the end."""
    grid = check_grid(grid)
    if not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError("weighted samplers run forward in time (data at t = 1): the grid must increase")
    check_policy(policy, scheme)
    keep = record_indices(record, grid)
    times = grid.to(device=x.device, dtype=x.dtype)
    x, log_weights = check_start(x, log_weights)
    # Inside a sharded run the weights, their normaliser and the resampling are global: every shard holds the
    # log-weights of all particles (all-gathered), draws the one resampling from a generator seeded alike on every
    # shard, and takes its new particles' rows from the gathered ones (docs/design.md, "Scale").
    group = current_shard_group()
    if group is not None and group.sizes[group.index] != x.shape[0]:
        raise ValueError(f"shard {group.index} holds {x.shape[0]} particles; its group expects {group.sizes}")
    rows = group.rows if group is not None else (lambda t: t)
    mine = group.mine if group is not None else slice(None)
    resampling = group.resampling(x.device) if group is not None else generator
    log_weights = rows(log_weights)
    # the particles' bookkeeping runs on the global weights; its "states" are the global labels of the particles'
    # origins, which resampling re-indexes as it would the states
    particles = Particles(torch.arange(log_weights.shape[0], device=x.device), log_weights.clone(),
                          log_normaliser=float(log_normaliser))  # fmt: skip
    n_steps = grid.shape[0] - 1
    ess = torch.empty(n_steps + 1, dtype=torch.float64)
    log_z = torch.empty(n_steps + 1, dtype=torch.float64)
    resampled = torch.zeros(n_steps + 1, dtype=torch.int8)
    loop = StepLoop(name, n_steps, keep=keep, progress=progress)
    values: dict[str, dict[int, Tensor]] = {}

    def keep_state(i: int, extra: dict[str, Tensor] | None):
        if loop.wants(i):
            loop.keep(i, x, {"log_weight": particles.log_weights[mine], "origin": particles.x[mine]})
            for key, value in (extra or {}).items():
                values.setdefault(key, {})[i] = value.detach()

    def reweight(increment: Tensor):
        if increment.shape != (x.shape[0],):
            raise ValueError(f"a log-weight increment must have shape ({x.shape[0]},); got {tuple(increment.shape)}")
        particles.reweight(rows(increment))

    ess[0], log_z[0] = particles.ess, particles.log_normaliser
    pending: dict[str, Tensor] = {}
    for i in loop.steps():
        move = step(i, times[i], times[i + 1], x)
        keep_state(i, {**pending, **(move.values or {})})
        pending = {}
        if move.log_increment is not None:
            reweight(move.log_increment)
        ess[i + 1] = particles.ess  # before resampling: how degenerate the weights became over the step
        take = None
        if particles.maybe_resample(policy, i, scheme, resampling):
            take = _taker(particles.ancestry[-1][mine], rows)
            resampled[i] = 1
        x = move.advance(take)
        if group is not None:  # every shard raises together, or none does: a lone raise would leave the rest waiting
            if group.any(not bool(torch.isfinite(x).all()), x.device):
                raise NonFiniteStateError(i, float(grid[i + 1]), name)
        else:
            loop.guard(i, grid[i + 1], x)
        log_z[i + 1] = particles.log_normaliser
    if finish is not None:
        increment, pending = finish(times[-1], x)
        if increment is not None:
            reweight(increment)
            ess[-1], log_z[-1] = particles.ess, particles.log_normaliser
    keep_state(n_steps, pending)
    states, extras = loop.stacked()
    for key, by_index in values.items():
        if set(by_index) == set(keep):  # only quantities known at every recorded time
            extras[key] = torch.stack([by_index[i] for i in keep])
    out_attrs = {
        "log_normaliser": particles.log_normaliser,
        "resampling_scheme": scheme,
        "resampling_policy": policy.kind,
        "n_resampled": int(resampled.sum()),
        # how many of the start particles the final ones descend from: few means the resampled copies never
        # became distinct, and the estimates rest on those few (docs/algorithms.md §7)
        "distinct_ancestors": int(torch.unique(particles.x).numel()),
    }
    out_attrs.update(attrs or {})
    if group is not None:
        out_attrs["coupled_shards"] = group.shards
    return Trajectory(
        times=grid[keep].clone(),
        states=states,
        grid=grid.clone(),
        solver=name,
        nfe=nfe(),
        seed=generator.initial_seed(),
        attrs=out_attrs,
        extras=extras,
        series={"ess": ess, "log_normaliser": log_z, "resampled": resampled},
    )


def final_weights(trajectory: Trajectory) -> Tensor:
    """Normalised weights ``(n,)`` of the last recorded particles of a weighted run."""
    if "log_weight" not in trajectory.extras:
        raise KeyError("this trajectory carries no particle weights")
    lw = trajectory.extras["log_weight"][-1]
    if torch.isnan(lw).any() or (lw == -torch.inf).all():
        raise DegenerateWeightsError("the final log-weights are degenerate")
    return torch.softmax(lw, 0)


def weighted_resample(trajectory: Trajectory, n: int | None = None, scheme: str = "systematic", generator=None):
    """Equally weighted draws ``(n, ...)`` from the last recorded particles of a weighted run."""
    if not isinstance(trajectory, Trajectory) or "log_weight" not in trajectory.extras:
        got = sorted(trajectory.extras) if isinstance(trajectory, Trajectory) else type(trajectory).__name__
        raise ValueError(
            "weighted_resample needs the trajectory of a weighted run (fk_correct, fk_steer, posterior_sample), "
            f"which records log_weight; this one has {got}"
        )
    index = resample_indices(trajectory.extras["log_weight"][-1], scheme, n=n, generator=generator)
    return trajectory.final[index.to(trajectory.final.device)]
