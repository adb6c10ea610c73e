"""Trajectory inference on snapshots of known dynamics: the single-cell adapter's protocol on a simulated time course.

Cells in a bifurcating double well (``problems.single_cell.simulated.double_well``: 200 cells at each of 5 times,
every cell observed once); each interior time is held out in turn and every method predicts its population from
the others. Because the dynamics are known, the prediction is scored against 2000 fresh cells of the true
marginal, not the few held-out cells.

Budget (stated): for each of interp's methods (OT-CFM, [SF]²M, multi-marginal SB with a gradient-field reference)
W1 averaged over the held-out times and two seeds at most ``RATIO`` × the better baseline's (nearest snapshot,
McCann interpolation with POT). Calibrated like the other suites: 1.25x the largest value over the quick tier's
seed pairs 0-15 (OT-CFM 0.85-1.08, median 0.94; better than the better baseline on 11 of 16). The methods are on
par with the baselines on this small problem, not reliably better: the former budget 1.0 ("beats both
baselines"), set on seeds 0-1, failed 5 of 16 seed pairs, and [SF]²M sat at 0.9986 on seed 0 of the full tier.
"""

from __future__ import annotations

import torch

from interp.records import Record, check

SUITE = "trajectories"
RATIO = 1.35
METHODS = ("ot-cfm", "sf2m", "mmsb")
BASELINES = ("nearest", "mccann")


def run(seed: int = 0, tier: str = "full") -> list[Record]:
    """OT-CFM, [SF]²M and the multi-marginal SB against both baselines on two seeds; the quick tier: OT-CFM
    alone, on the same two seeds and at the same size (one seed at 1500 steps scored 0.95 and 1.02 on seeds 0 and 1:
    the budget holds for the two-seed mean it was set on, not for one seed)."""
    from problems.single_cell.embedding import Embedding
    from problems.single_cell.methods import MethodConfig
    from problems.single_cell.protocol import run_protocol
    from problems.single_cell.simulated import double_well

    quick = tier == "quick"
    methods = ("ot-cfm",) if quick else METHODS
    torch.manual_seed(seed)
    adata, truth = double_well(seed=seed)
    table = run_protocol(
        adata,
        "time",
        embedding=Embedding("raw"),
        methods=list(methods + BASELINES),
        seeds=[seed, seed + 1],
        config=MethodConfig(),
        truth=truth,
        progress=False,
    ).table
    w1 = table["value"].sel(metric="W1").mean("held_out")  # (method, seed)
    baseline = w1.sel({"method": list(BASELINES)}).min("method")  # per seed
    case = "double well, each interior time held out"
    return [
        check(
            SUITE,
            case,
            method,
            "W1 / better baseline's",
            float(w1.sel({"method": method}).mean() / baseline.mean()),
            RATIO,
        )
        for method in methods
    ]
