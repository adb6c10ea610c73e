"""``python -m validate.bench gpu [--device cuda] --json PATH``: the benches whose work a GPU changes, on one device,
in one command (a few minutes on one GPU; the budget is 8), every record's case prefixed with the device's name:

* ``driver`` — compiled against eager sampling throughput of :func:`interp.integrate` on an MLP field, batch 4096
  and 64 (:mod:`validate.bench.driver`);
* ``density`` — the Itô density's cost on the MLP field against plain sampling (:mod:`validate.bench.density`);
* ``training`` — steps/s, device memory and W2 against TorchCFM on the same device (:mod:`validate.bench.training`);
* ``langevin`` — MALA ESS/s eager and compiled at 1024 chains against BlackJAX (which runs where jax finds its
  backend; the label names it), without the 10⁴-step runs timed with compilation (:mod:`validate.bench.langevin`).

Each part's wall time is printed as it finishes; a part that fails is reported and the others still run, and the
command then exits non-zero (records of the parts that ran are still written).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback

import torch

from interp.records import BenchRecord

from . import density, driver, langevin, training


def device_label(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} {torch.cuda.get_device_name(torch.device(device))}"
    return device


def parts(seed: int, device: str) -> dict:
    return {
        "driver": lambda: driver.run(seed, device=device),
        "density": lambda: density.run(seed, device=device),
        "training": lambda: training.run(seed=seed, device=device),
        "langevin": lambda: langevin.run(seed, device=device, chain_counts=(1024,), long=False),
    }


class PartialRun(RuntimeError):
    """Some parts failed; ``records`` holds those of the parts that ran."""

    def __init__(self, failed: list[str], records: list[BenchRecord]):
        super().__init__(f"gpu bench: {', '.join(failed)} failed (see above)")
        self.failed, self.records = failed, records


def run(seed: int = 0, device: str = "cuda") -> list[BenchRecord]:
    label = device_label(device)
    records: list[BenchRecord] = []
    failed = []
    for name, part in parts(seed, device).items():
        started = time.perf_counter()
        try:
            found = part()
        except Exception:  # noqa: BLE001 - reported, the other parts still run
            traceback.print_exc()
            failed.append(name)
            continue
        print(f"gpu bench: {name} on {label}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        records += [dataclasses.replace(r, case=f"[{label}] {r.case}") for r in found]
    if failed:
        raise PartialRun(failed, records)
    return records
