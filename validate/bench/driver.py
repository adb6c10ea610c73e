"""``python -m validate.bench driver``: the sampling throughput of :func:`interp.integrate` compiled
(``compile=True``, docs/design.md "Compiled stepping") against the same solve eager, on the same MLP field
(3 × 256, float32) at batch 4096 and 64, timed alternately after one warm-up each.

Solvers: Euler and RK4 (fused blocks of 8 steps; 33 and 9 steps, so that after the first, eager step the rest are
whole blocks), Euler–Maruyama (blocks, same Brownian increments from the same seed), and DPM-Solver++(2M), a
stateful multistep solver, which has its field compiled. Two records per cell: steady-state samples per second
(compiled / eager, higher is better) and the first compiled call, compilation included, against one eager run
(lower is better; inductor's on-disk cache makes a rerun's compilation much cheaper than a cold one).
"""

from __future__ import annotations

import time

import torch

from interp import grids, integrate
from interp.dynamics import SDE
from interp.interpolants import preset
from interp.nets import MLP
from interp.records import BenchRecord, compare
from interp.solvers import RK4, DPMSolverPP, Euler, EulerMaruyama

from . import synchronise
from .overhead import paired_times


def run(seed: int = 0, device: str = "cpu", batches=(4096, 64), repeats: int = 15) -> list[BenchRecord]:
    torch.manual_seed(seed)
    net = MLP((2,), hidden=256, depth=3).eval().to(device)
    interpolant = preset("vp")
    lo, hi = interpolant.time_range

    def field(t, x):
        return net(t, x)

    sde = SDE(field, lambda t, x: 0.1 * torch.ones_like(x), additive=True)
    cells = (
        ("euler", field, Euler(), grids.uniform(33, lo, hi, dtype=torch.float32)),
        ("rk4", field, RK4(), grids.uniform(9, lo, hi, dtype=torch.float32)),
        ("euler_maruyama", sde, EulerMaruyama(), grids.uniform(33, lo, hi, dtype=torch.float32)),
        ("dpmsolver++2M", field, DPMSolverPP(interpolant, 2), grids.uniform(20, lo, hi, dtype=torch.float32)),
    )
    records = []
    with torch.no_grad():
        for batch in batches:
            x0 = torch.randn(batch, 2, device=device)
            for name, dynamics, solver, grid in cells:
                case = f"mlp-3x256/batch{batch}/{name}/steps{grid.shape[0] - 1}"

                def solve(compile, dynamics=dynamics, solver=solver, grid=grid, x0=x0):
                    generator = torch.Generator(device=device).manual_seed(seed)
                    out = integrate(dynamics, x0, grid, solver, generator=generator, progress=False, compile=compile)
                    synchronise(device)
                    return out

                started = time.perf_counter()
                first = solve(True)
                first_seconds = time.perf_counter() - started
                eager = solve(False)
                if not torch.allclose(first.states, eager.states, rtol=1e-4, atol=1e-4):
                    raise AssertionError(f"{case}: the compiled solve differs from the eager one")
                compiled_s, eager_s = paired_times(lambda s=solve: s(True), lambda s=solve: s(False), repeats)
                mode = first.attrs.get("compiled", "none")
                records.append(
                    compare(
                        "driver", case, f"samples_per_s/{mode}", batch / compiled_s, "eager", batch / eager_s, "higher"
                    )
                )
                records.append(
                    compare("driver", case, "first_call_s", first_seconds, "one eager run", eager_s, "lower")
                )
    return records
