"""``python -m validate.bench NAME [--json PATH] [--device DEVICE]``: this package against a peer on the same work,
same run. ``gpu`` runs the benches whose work a GPU changes (the driver compiled and eager, the Itô density on a
network field, training against TorchCFM, Langevin chains) on ``--device`` (default ``cuda``), with the device's
name in every record's case, in a few minutes."""

from __future__ import annotations

import inspect
import sys

from interp.cli import Parser, StagedOutputs, device_name, non_negative_int, output_file
from interp.records import write_records

from . import density, driver, gpu, images, langevin, solvers, steering, training

BENCHES = {
    "training": training.run,
    "density": density.run,
    "solvers": solvers.run,
    "langevin": langevin.run,
    "steering": steering.run,
    "driver": driver.run,
    "gpu": gpu.run,
    "images": images.run,
}
TABLES = {"solvers", "images"}  # benches that can also write their full table as netCDF (--table)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m validate.bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHES))
    parser.add_argument("--json", metavar="PATH", help="write the bench records as JSON")
    parser.add_argument("--table", metavar="PATH", help="also write the full table as netCDF (solvers, images)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument(
        "--device", type=device_name, default=None, help="cpu (default; gpu: cuda), cuda, cuda:N or auto"
    )
    parser.add_argument("--dataset", help="images: digits (default), mnist or fashion-mnist")
    args = parser.parse_args(argv)
    bench = BENCHES[args.name]
    takes_device = "device" in inspect.signature(bench).parameters
    if args.device not in (None, "cpu") and not takes_device:
        parser.error(f"--device: the {args.name} bench runs on the CPU only (its closed-form fields and peers do)")
    if args.table and args.name not in TABLES:
        parser.error(f"--table: the {args.name} bench writes no table (only {sorted(TABLES)})")
    for flag, path in (("--json", args.json), ("--table", args.table)):  # checked before the bench runs
        try:
            if path:
                output_file(path)
        except ValueError as error:
            parser.error(f"{flag}: {error}")
    if args.dataset is not None:
        if "dataset" not in inspect.signature(bench).parameters:
            parser.error(f"--dataset: the {args.name} bench takes no dataset")
        if args.dataset not in images.MODELS:
            parser.error(f"--dataset: choose from {', '.join(images.MODELS)}; got {args.dataset!r}")
    options = {"table": args.table} if args.table else {}
    if args.dataset is not None:
        options["dataset"] = args.dataset
    if args.device is not None and takes_device:
        options["device"] = args.device
    if args.name == "gpu" and "device" not in options:
        try:
            options["device"] = device_name("cuda")
        except Exception as error:  # noqa: BLE001 - argparse's type error, as a one-line message
            parser.error(f"--device: the gpu bench needs a GPU ({error}); give --device cpu to run its parts here")
    status = 0
    try:
        records = bench(seed=args.seed, **options)
    except gpu.PartialRun as partial:
        print(partial, file=sys.stderr)
        records, status = partial.records, 1
    for r in records:
        print(
            f"{r.bench:<9} {r.case:<36} {r.metric:<18} ours {r.ours:<10.4g} {r.peer} {r.peer_value:<10.4g} "
            f"ratio {r.ratio:.3g} ({r.better} is better)"
        )
    if args.json:
        with StagedOutputs() as staging:
            write_records(records, staging.stage(args.json))
    return status


if __name__ == "__main__":
    sys.exit(main())
