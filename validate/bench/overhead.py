"""The driver's own cost: wall time of ``interp.integrate`` with a fixed-step solver against the same number of bare
field evaluations and against torchdiffeq's fixed-step solve, timed alternately (MLP 3 × 256, batch 4096, NFE 20).
Part of ``python -m validate.bench solvers``.

On a shared 2-core machine the direct ratio (``wall_time_s/...``) moves by ±15 % between runs — Euler, whose
overhead is a few additions, reads anywhere from 0.93× to 1.18× — which swamps a 5 % overhead. So the overhead is
also measured on its own (``overhead_ratio/...``): the same solve with a field that costs nothing (it returns a
stored zero tensor, so every solver operation still runs on full-size tensors) takes ``o`` seconds, the bare
evaluations ``b``, and the record is ``(b + o) / b``; a ±15 % error in ``o`` moves a 5 % overhead by under 1 %.
"""

from __future__ import annotations

import statistics
import time

import torch

from interp import grids, integrate
from interp.interpolants import preset
from interp.nets import MLP
from interp.records import BenchRecord, compare
from interp.solvers import RK4, DPMSolverPP, Euler, UniPC


def paired_times(ours, peer, repeats: int) -> tuple[float, float]:
    """Median wall times of ``ours`` and ``peer``, run alternately (one warm-up each) so that drifts of the
    machine's speed hit both alike."""
    ours(), peer()
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((ours, a), (peer, b)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def overhead_records(seed: int, batch: int = 4096, nfe: int = 20, repeats: int = 21) -> list[BenchRecord]:
    import torchdiffeq

    torch.manual_seed(seed)
    net = MLP((2,), hidden=256, depth=3).eval()
    interpolant = preset("vp")
    x0 = torch.randn(batch, 2)
    lo, hi = interpolant.time_range
    case = f"mlp-3x256/batch{batch}/nfe{nfe}"
    times = torch.linspace(lo, hi, nfe, dtype=torch.float32)

    def field(t, x):
        return net(t, x)

    def bare():  # the field's cost does not depend on the state's values; fed its own output it drifts
        for t in times:
            field(t, x0)

    records = []
    with torch.no_grad():
        for solver, steps in (
            (Euler(), nfe),
            (RK4(), nfe // 4),
            (DPMSolverPP(interpolant, 2), nfe),
            (UniPC(interpolant, 2), nfe),
        ):
            grid = grids.uniform(steps, lo, hi, dtype=torch.float32)
            ours, peer = paired_times(
                lambda s=solver, g=grid: integrate(field, x0, g, s, progress=False), bare, repeats
            )
            records.append(
                compare("solvers", case, f"wall_time_s/{solver.name}", ours, f"{nfe} bare evaluations", peer, "lower")
            )
        zero = torch.zeros_like(x0)

        def free(t, x):
            return zero

        for solver, steps in ((Euler(), nfe), (DPMSolverPP(interpolant, 2), nfe), (UniPC(interpolant, 2), nfe)):
            grid = grids.uniform(steps, lo, hi, dtype=torch.float32)
            overhead, bare_s = paired_times(
                lambda s=solver, g=grid: integrate(free, x0, g, s, progress=False), bare, repeats
            )
            records.append(
                compare(
                    "solvers",
                    case,
                    f"overhead_ratio/{solver.name}",
                    bare_s + overhead,
                    f"{nfe} bare evaluations",
                    bare_s,
                    "lower",
                )  # fmt: skip
            )
        for solver, method, steps in ((Euler(), "euler", nfe), (RK4(), "rk4", nfe // 4)):
            grid = grids.uniform(steps, lo, hi, dtype=torch.float32)
            ours, peer = paired_times(
                lambda s=solver, g=grid: integrate(field, x0, g, s, progress=False),
                lambda g=grid, m=method: torchdiffeq.odeint(field, x0, g, method=m),
                repeats,
            )
            records.append(
                compare("solvers", case, f"wall_time_s/{solver.name}", ours, f"torchdiffeq-{method}", peer, "lower")
            )
    return records
