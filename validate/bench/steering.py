"""Steering bench: reward against NFE for FK steering, SVDD and rollover budget forcing, each against best-of-N at
the same compute multiplier, on the same prior, reward and base sampler in the same run.

Prior: the 3-mode mixture of ``validate --suite feynman-kac`` with its exact VP score (so every difference is the
search method's, not a model's); base sampler: the reverse SDE with ``STEPS`` Euler–Maruyama steps. Rewards: a
linear one (unbounded: how far a method pushes) and a quadratic one ``-|x - c|²/2`` with c between the modes
(bounded: how well a method finds the good region). For each multiplier k ∈ ``MULTIPLIERS``:

* best-of-N (the baseline, "peer"): N = k independent base samples, keep the best reward;
* FK steering: ``GROUPS`` independent runs of k particles, potential "max" every 5 steps with λ = ``LAM``; the output
  of a run is a particle drawn by the final weights, so the recorded value is the weight-averaged reward;
* SVDD: k proposals per step, argmax of the reward of the data prediction;
* rollover budget forcing: a budget of k candidate steps per step (it spends less: NFE recorded as measured).

Records per reward and k: ``reward_gain`` (mean reward minus the base sampler's; higher is better) of each method
against best-of-N's, and ``nfe`` (evaluations per output; lower) against best-of-N's. No peer library implements
these samplers (the papers ship research code for image models), so best-of-N, the method every paper compares to,
is the yardstick.
"""

from __future__ import annotations

import torch

from interp.analytic import ExactMarginals
from interp.feynman_kac import BaseSampler, best_of_n, budget_forcing, final_weights, fk_steer, svdd
from interp.records import BenchRecord, compare

from ..feynman_kac import PRIOR, STANDARD, VP, linear_reward, quadratic_reward

STEPS, OUTPUTS, GROUPS, LAM = 50, 256, 64, 4.0
MULTIPLIERS = (2, 4, 8, 16)
REWARDS = {"linear": linear_reward, "quadratic": quadratic_reward}


def _grid():
    return torch.linspace(0.0, VP.time_range[1], STEPS + 1, dtype=torch.float64)


def measure(seed: int = 0, multipliers=MULTIPLIERS, outputs: int = OUTPUTS, groups: int = GROUPS) -> list[dict]:
    """Rows ``{reward, method, k, nfe, mean_reward}`` (``method`` "base" has k = 1)."""
    base = BaseSampler(VP, ExactMarginals(VP, STANDARD, PRIOR).score)
    rows = []

    def gen(offset):
        return torch.Generator().manual_seed(1000 * seed + offset)

    for name, reward in REWARDS.items():
        out = best_of_n(base, reward, _grid(), n_candidates=1, n=outputs, dim=2, generator=gen(0))
        r, nfe = out.extras["reward"][-1], out.attrs["nfe_per_output"]
        rows.append(dict(reward=name, method="base", k=1, nfe=nfe, mean_reward=float(r.mean())))
        for k in multipliers:
            out = best_of_n(base, reward, _grid(), n_candidates=k, n=outputs, dim=2, generator=gen(k))
            r, nfe = out.extras["reward"][-1], out.attrs["nfe_per_output"]
            rows.append(dict(reward=name, method="best-of-N", k=k, nfe=nfe, mean_reward=float(r.mean())))
            values, nfe = [], 0
            for g in range(groups):
                tr = fk_steer(
                    base,
                    reward,
                    _grid(),
                    lam=LAM,
                    potential="max",
                    every=5,
                    n=k,
                    dim=2,
                    generator=gen(100 * k + g),
                    progress=False,
                )
                values.append(float(final_weights(tr) @ tr.extras["reward"][-1]))
                nfe = tr.nfe * k
            rows.append(dict(reward=name, method="fk-steering", k=k, nfe=nfe, mean_reward=sum(values) / groups))
            tr = svdd(base, reward, _grid(), proposals=k, n=outputs, dim=2, generator=gen(k + 1), progress=False)
            rows.append(
                dict(reward=name, method="svdd", k=k, nfe=tr.nfe, mean_reward=float(tr.extras["reward"][-1].mean()))
            )
            out = budget_forcing(base, reward, _grid(), budget=k, n=outputs, dim=2, generator=gen(k + 2))
            r, nfe = out.extras["reward"][-1], out.attrs["nfe_per_output"]
            rows.append(dict(reward=name, method="budget-forcing", k=k, nfe=nfe, mean_reward=float(r.mean())))
    return rows


def records_from_rows(rows: list[dict]) -> list[BenchRecord]:
    out = []
    for name in sorted({r["reward"] for r in rows}):
        base = next(r for r in rows if r["reward"] == name and r["method"] == "base")
        for peer in (r for r in rows if r["reward"] == name and r["method"] == "best-of-N"):
            for row in (r for r in rows if r["reward"] == name and r["k"] == peer["k"] and r["method"] != "best-of-N"):
                case = f"{name}/x{peer['k']}/{row['method']}"
                gain, peer_gain = row["mean_reward"] - base["mean_reward"], peer["mean_reward"] - base["mean_reward"]
                out.append(compare("steering", case, "reward_gain", gain, "best-of-N", peer_gain, "higher"))
                out.append(compare("steering", case, "nfe", row["nfe"], "best-of-N", peer["nfe"], "lower"))
    return out


def run(seed: int = 0) -> list[BenchRecord]:
    return records_from_rows(measure(seed))
