"""``python -m problems images``: train a U-Net field on an image dataset, then compare interp's samplers at a few
NFE budgets by FD-CNN (a Fréchet distance in the features of a classifier trained on the same data), kernel
distance, precision/recall and the pathwise error to a tight solve.

Examples:
    python -m problems images --dataset digits --json digits.json
    python -m problems images --dataset fashion-mnist --interpolant vp --steps 20000 --device cuda
    python -m problems images --dataset digits --conditional --guidance 2 --samplers DPM-Solver++2M,GHVB-2
    python -m problems images --dataset my_images/ --steps 5000
    python -m problems images --task steering --conditional --label 3 --steps 4000 --json steering.json
    python -m problems images --task inverse --steps 4000 --inverse-tasks box,sr2,deblur --noise 0,0.05

``--task steering`` trains a class-conditional VP model and steers it toward ``--label``: reward search and SMC
(best-of-N, FK steering, SVDD, rollover budget forcing) on the unconditional model with a classifier's
log-probability as the reward, against classifier-free guidance and its exact geometric target
(:mod:`problems.images.steering`).

``--task inverse`` trains an unconditional VP model and reconstructs test images from masked, downsampled, blurred
or noisy measurements by DPS, ΠGDM, second-order Tweedie, RED-Diff and the weighted ensemble, scored by PSNR, SSIM,
FD-CNN, classifier accuracy and pixel coverage (:mod:`problems.images.inverse`).

Under ``torchrun`` (``torchrun --standalone --nproc-per-node 2 -m problems images ...``) every process trains the
model with the Trainer's DDP (each takes its slice of every global batch of ``--batch`` rows; one process per GPU,
``cuda:LOCAL_RANK``, with ``--device cuda``; gloo on CPU), then the first process alone trains or loads the feature
network, samples, scores and writes the outputs while the others exit. The data are fetched by the first process
before the others read them from the cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import xarray as xr

from interp.cli import (
    Parser,
    device_name,
    fail,
    non_negative_float,
    non_negative_int,
    output_dir,
    output_file,
    positive_float,
    positive_int,
)
from interp.inverse import UPDATES

from ..debian import FetchError
from .classifier import PixelFeatures, train_classifier
from .data import DATASETS, load_dataset
from .inverse import COVARIANCES, METHODS, TASKS, Reconstruction, reconstruct
from .likelihood import ROUTES, bits_per_dim
from .model import INTERPOLANTS, ImageModelConfig, train_image_model
from .outputs import best_by_fd, image_grid, inverse_records, records, steering_records, write_outputs
from .protocol import Comparison, compare_samplers
from .sampling import GRIDS, SAMPLERS, initial_noise, sample
from .steering import Steering, train_and_steer

PROG = "images"
INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError, FetchError)


def _integers(text: str) -> tuple[int, ...]:
    values = tuple(positive_int(v.strip()) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"need a comma list of positive integers; got {text!r}")
    return values


def _indices(text: str) -> tuple[int, ...]:
    return tuple(non_negative_int(v.strip()) for v in text.split(",") if v.strip())


def _scales(text: str) -> tuple[float, ...]:
    values = tuple(non_negative_float(v.strip()) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"need a comma list of numbers >= 0; got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))


def parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("samplers", "steering", "inverse"), default="samplers",
                   help="what to run on the model")  # fmt: skip
    p.add_argument("--dataset", default="digits", help=f"{', '.join(DATASETS)}, a folder of PNG/JPEG or an .npy")
    p.add_argument(
        "--interpolant", choices=tuple(INTERPOLANTS), default="vp", help="vp: noise prediction; flow: velocity"
    )
    p.add_argument("--conditional", action="store_true", help="class-conditional model (label dropout 0.1)")
    p.add_argument("--width", type=positive_int, default=32)
    p.add_argument("--multipliers", type=_integers, default=(1, 2), help="channel multiplier per level (default 1,2)")
    p.add_argument("--attention", type=_indices, default=(), help="levels with self-attention, e.g. 1")
    p.add_argument("--steps", type=positive_int, default=2000, help="training steps")
    p.add_argument("--batch", type=positive_int, default=128)
    p.add_argument("--learning-rate", type=positive_float, default=1e-3)
    p.add_argument("--checkpoint", help="trainer checkpoint: resumed from when it exists, written every 500 steps")
    p.add_argument("--classifier-epochs", type=positive_int, default=10, help="epochs of the feature network")
    p.add_argument("--samplers", type=_names, default=Comparison.samplers, help=f"comma list from {','.join(SAMPLERS)}")
    p.add_argument("--nfe", type=_integers, default=Comparison.nfes, help="comma list of NFE budgets (default 5,10,20)")
    p.add_argument("--grids", type=_names, default=GRIDS, help=f"grids each sampler may take (from {','.join(GRIDS)})")
    p.add_argument("--samples", type=positive_int, default=1000, help="images scored per sampler and NFE")
    p.add_argument("--pilot", type=positive_int, default=64, help="images choosing each sampler's grid")
    p.add_argument("--guidance", type=non_negative_float, default=0.0, help="classifier-free guidance scale")
    steering = p.add_argument_group("--task steering")
    steering.add_argument("--label", type=non_negative_int, default=0, help="the class steered toward")
    steering.add_argument("--sde-steps", type=positive_int, default=50, help="Euler-Maruyama steps of the reverse SDE")
    steering.add_argument("--compute", type=_integers, default=Steering.multipliers,
                          help="compute multipliers of the search methods (default 1,2,4,8)")  # fmt: skip
    steering.add_argument("--outputs", type=positive_int, default=256, help="images per method and multiplier")
    steering.add_argument("--lam", type=positive_float, default=1.0, help="FK steering's tilt p(x) p(c|x)^lam")
    steering.add_argument("--scales", type=_scales, default=Steering.guidance,
                          help="classifier-free guidance scales (default 0,1,3)")  # fmt: skip
    inverse = p.add_argument_group("--task inverse (with --sde-steps: the steps of every method but second-order "
                                   "Tweedie's)")
    inverse.add_argument("--inverse-tasks", type=_names, default=TASKS, help=f"comma list from {','.join(TASKS)}")
    inverse.add_argument("--noise", type=_scales, default=Reconstruction.noise, help="measurement noise levels")
    inverse.add_argument("--methods", type=_names, default=METHODS, help=f"comma list from {','.join(METHODS)}")
    inverse.add_argument("--images", type=positive_int, default=Reconstruction.images, help="test images")
    inverse.add_argument("--reconstructions", type=positive_int, default=Reconstruction.samples,
                         help="reconstructions per image (coverage needs several)")  # fmt: skip
    inverse.add_argument("--particles", type=positive_int, default=Reconstruction.particles,
                         help="the ensemble's particles per image (default: DPS's NFE, about 2 x reconstructions)")
    inverse.add_argument("--update", choices=UPDATES, default=Reconstruction.update,
                         help="how PiGDM and second-order Tweedie apply their guidance (docs/algorithms.md, section 7)")
    inverse.add_argument("--covariance", choices=COVARIANCES, default=Reconstruction.covariance,
                         help="second-order Tweedie's measurement covariance: diagonal (Hutchinson) or whole (CG)")
    inverse.add_argument("--probes", type=positive_int, default=Reconstruction.probes,
                         help="second-order Tweedie's Hutchinson probes per step")  # fmt: skip
    inverse.add_argument("--tweedie-steps", type=positive_int, default=None,
                         help="second-order Tweedie's steps (default: DPS's NFE, 2 x sde-steps / (2 + probes); "
                              "with --covariance cg, / (2 + 10 iterations))")
    inverse.add_argument("--zeta", type=positive_float, default=Reconstruction.zeta, help="DPS's step size")
    p.add_argument(
        "--likelihood",
        type=non_negative_int,
        default=0,
        help="bits/dim of this many test images by the ODE and Ito routes (default 0: skipped)",
    )
    p.add_argument("--likelihood-steps", type=positive_int, default=100, help="RK4 / Euler-Maruyama steps")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--cache", help="folder of fetched data and classifiers (default $INTERP_CACHE or ~/.cache/interp)")
    p.add_argument("--out", default="images_out", help="folder for metrics.nc, the PNG grids and model.pt")
    p.add_argument("--json", metavar="PATH", help="write the bench-format records here")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Check every argument, the data and the output paths, train, compare, then write all outputs or none. A bad
    input ends with one line ``images: error: ...`` and exit status 2 before any training, nothing written."""
    args = parser().parse_args(argv)
    try:
        comparison = Comparison(samplers=args.samplers, nfes=args.nfe, samples=args.samples, pilot=args.pilot,
                                grids=args.grids, guidance=args.guidance, seed=args.seed)  # fmt: skip
        model_config = ImageModelConfig(
            interpolant=args.interpolant, width=args.width, multipliers=args.multipliers, attention=args.attention,
            conditional=args.conditional, steps=args.steps, batch=args.batch, learning_rate=args.learning_rate,
            device=args.device, checkpoint=args.checkpoint, checkpoint_every=500 if args.checkpoint else 0,
        )  # fmt: skip
        if args.guidance and not args.conditional:
            raise ValueError("--guidance needs --conditional (classifier-free guidance mixes both models)")
        steering = None
        if args.task == "steering":
            if not args.conditional or args.interpolant != "vp":
                raise ValueError("--task steering needs --conditional and --interpolant vp (it compares with "
                                 "classifier-free guidance on the reverse SDE of the VP model)")  # fmt: skip
            steering = Steering(label=args.label, steps=args.sde_steps, multipliers=args.compute,
                                outputs=args.outputs, lam=args.lam, guidance=args.scales, seed=args.seed)  # fmt: skip
        reconstruction = None
        if args.task == "inverse":
            if args.conditional or args.interpolant != "vp":
                raise ValueError("--task inverse needs an unconditional VP model (--interpolant vp, no --conditional)")
            reconstruction = Reconstruction(tasks=args.inverse_tasks, noise=args.noise, methods=args.methods,
                                            images=args.images, samples=args.reconstructions, steps=args.sde_steps,
                                            zeta=args.zeta, particles=args.particles, update=args.update,
                                            covariance=args.covariance, probes=args.probes,
                                            tweedie_steps=args.tweedie_steps,
                                            seed=args.seed)  # fmt: skip
        if any(a >= len(args.multipliers) for a in args.attention):
            raise ValueError(f"--attention levels must be below {len(args.multipliers)} (the number of multipliers)")
        output_dir(args.out)
        if args.json:
            output_file(args.json)
        if args.checkpoint:
            output_file(args.checkpoint)
        rank, processes, local = _launch()
        if processes > 1:
            if args.batch % processes:
                raise ValueError(f"--batch {args.batch} must be divisible by the {processes} processes of torchrun")
            if str(args.device).startswith("cuda"):  # one GPU per process, as torchrun numbers them
                args.device = model_config.device = f"cuda:{local}"
            data = _load_first_on_rank_zero(args)
        else:
            data = load_dataset(args.dataset, seed=args.seed, cache=args.cache)
        if args.conditional and data.train_labels is None:
            raise ValueError(f"--conditional needs labels; {args.dataset} has none")
        if steering is not None and args.label > int(data.train_labels.max()):
            raise ValueError(f"--label {args.label} is not a class of {data.name} (0..{int(data.train_labels.max())})")
        if reconstruction is not None and reconstruction.images > data.test.shape[0]:
            raise ValueError(f"--images {reconstruction.images} is more than the test split ({data.test.shape[0]})")
        if reconstruction is not None and data.train_labels is None:
            raise ValueError(f"--task inverse scores with a classifier; {data.name} has no labels")
        if args.samples > data.test.shape[0] * 10:
            raise ValueError(f"--samples {args.samples} is more than 10x the test split ({data.test.shape[0]})")
    except INPUT_ERRORS as error:
        return fail(PROG, str(error))
    try:
        model = None
        if processes > 1:
            model = _train_distributed(args, data, model_config, seed=steering.seed if steering else args.seed)
            if rank:
                return 0
        if steering is not None:
            return _steer(args, data, model_config, steering, model)
        if reconstruction is not None:
            return _inverse(args, data, model_config, reconstruction, model)
        return _run(args, data, model_config, comparison, model)
    except INPUT_ERRORS as error:
        return fail(PROG, str(error))


def _launch() -> tuple[int, int, int]:
    """``(rank, processes, local rank)`` that ``torchrun`` put in the environment; ``(0, 1, 0)`` for a plain run."""
    return tuple(int(os.environ.get(name, default)) for name, default in
                 (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")))  # fmt: skip


def _load_first_on_rank_zero(args):
    """Start the process group and load the data: the first process fetches into the cache, then tells the others
    whether it could (its error, said by every process) before they read it."""
    dist.init_process_group("nccl" if str(args.device).startswith("cuda") else "gloo")
    rank = dist.get_rank()
    error = None
    if rank == 0:
        try:
            data = load_dataset(args.dataset, seed=args.seed, cache=args.cache)
        except Exception as caught:  # any failure is told to the others, which would otherwise wait for the data
            error = caught
    message = [None if error is None else str(error)]
    dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        dist.destroy_process_group()
        if error is not None:
            raise error
        raise ValueError(message[0])
    return data if rank == 0 else load_dataset(args.dataset, seed=args.seed, cache=args.cache)


def _train_distributed(args, data, model_config, *, seed: int):
    """Every process trains (DDP through the Trainer); then the process group ends and only the first process goes
    on to the feature network, sampling and outputs (the others return)."""
    started = time.time()
    rank, processes = dist.get_rank(), dist.get_world_size()
    try:
        model = train_image_model(data, model_config, seed=seed, progress=not args.no_progress)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    if rank == 0:
        print(f"model: {model_config.steps} steps on {processes} processes in {time.time() - started:.0f} s, "
              f"final loss {model.losses[-1]:.4f}", flush=True)  # fmt: skip
    return model


def _run(args, data, model_config, comparison, model=None) -> int:
    started = time.time()
    progress = not args.no_progress
    print(f"{data.name}: {data.train.shape[0]} train / {data.test.shape[0]} test images {data.shape}", flush=True)
    if data.train_labels is None:  # no classifier without labels: the distances are taken in pixel space
        features = PixelFeatures()
        print("no labels: FD / KD / precision / recall in pixel space (no feature network)", flush=True)
    else:
        features = train_classifier(data, epochs=args.classifier_epochs, seed=args.seed, device=args.device,
                                    cache=args.cache, progress=progress)  # fmt: skip
        print(f"feature network: test accuracy {features.accuracy:.4f} ({features.path})", flush=True)
    if model is None:
        trained = time.time()
        model = train_image_model(data, model_config, seed=args.seed, progress=progress)
        print(f"model: {model_config.steps} steps in {time.time() - trained:.0f} s, final loss {model.losses[-1]:.4f}")
    table = compare_samplers(model, features, data, comparison, progress=print if progress else None)
    table.attrs.update(device=args.device, seed=args.seed, training_steps=model_config.steps,
                       final_loss=model.losses[-1])
    _print_table(table)
    if args.likelihood:
        table = table.assign(_likelihood(model, data, args))
    noise = initial_noise(model, 64, args.seed, model.device)
    labels = torch.arange(64, device=model.device) % model.net.num_classes if model.net.num_classes else None
    grids = {"training_images": image_grid(data.train[:64])}
    for nfe in comparison.nfes:
        best = best_by_fd(table, nfe)
        if best is not None:
            kind = str(table["grid"].sel({"sampler": best, "nfe": nfe}).values)
            images, _ = sample(model, best, nfe, noise, grid_kind=kind, labels=labels, guidance=comparison.guidance)
            grids[f"samples_nfe{nfe}_{best.replace('/', '-')}"] = image_grid(images)
    weights = {"net": model.net.state_dict(), "interpolant": model.interpolant_name, "shape": model.shape}
    for path in write_outputs(args.out, table, grids, weights, records(table), args.json):
        print(f"wrote {path}")
    print(f"images: {time.time() - started:.0f} s on {args.device}")
    return 0


def _steer(args, data, model_config, steering: Steering, model=None) -> int:
    started = time.time()
    table, kept, model = train_and_steer(
        data,
        model_config,
        steering,
        classifier_epochs=args.classifier_epochs,
        device=args.device,
        cache=args.cache,
        progress=not args.no_progress,
        model=model,
    )
    _print_steering(table)
    grids = {f"steering_{method}": image_grid(images) for method, images in kept.items()}
    weights = {"net": model.net.state_dict(), "interpolant": model.interpolant_name, "shape": model.shape}
    for path in write_outputs(args.out, table, grids, weights, steering_records(table), args.json):
        print(f"wrote {path}")
    print(f"images: {time.time() - started:.0f} s on {args.device}")
    return 0


def _inverse(args, data, model_config, reconstruction: Reconstruction, model=None) -> int:
    started = time.time()
    progress = not args.no_progress
    judge = train_classifier(data, epochs=args.classifier_epochs, seed=args.seed, device=args.device,
                             cache=args.cache, progress=progress)  # fmt: skip
    print(f"{data.name}: feature network test accuracy {judge.accuracy:.4f}", flush=True)
    if model is None:
        model = train_image_model(data, model_config, seed=args.seed, progress=progress)
        print(f"model: {model_config.steps} steps, final loss {model.losses[-1]:.4f}", flush=True)
    table, kept = reconstruct(model, judge, data, reconstruction, progress=print)
    table.attrs.update(device=args.device, training_steps=model_config.steps, final_loss=model.losses[-1])
    grids = {
        f"inverse_{task}": image_grid(images, columns=min(8, reconstruction.images)) for task, images in kept.items()
    }
    weights = {"net": model.net.state_dict(), "interpolant": model.interpolant_name, "shape": model.shape}
    for path in write_outputs(args.out, table, grids, weights, inverse_records(table), args.json):
        print(f"wrote {path}")
    print(f"images: {time.time() - started:.0f} s on {args.device}")
    return 0


def _print_steering(table) -> None:
    value = table["value"]
    print(f"steering toward class {table.attrs['label']}: reward = log p(c|x) of the reward classifier, accuracy = "
          f"the judge's; FD-CNN against the class's training images (its test images: "
          f"{table.attrs['floor_fd']:.3f}, accuracy {table.attrs['floor_accuracy']:.3f})")  # fmt: skip
    print(f"{'method':<16}{'k':>3}{'NFE':>6}{'reward':>9}{'accuracy':>10}{'FD-CNN':>9}{'KD-CNN':>9}{'s':>7}")
    for method in table["method"].values:
        for k in table["k"].values:
            row = value.sel({"method": method, "k": k})
            get = {m: float(row.sel({"metric": m})) for m in ("nfe", "reward", "accuracy", "fd", "kd", "seconds")}
            if np.isfinite(get["nfe"]):
                print(f"{method:<16}{int(k):>3}{get['nfe']:>6.0f}{get['reward']:>9.3f}{get['accuracy']:>10.3f}"
                      f"{get['fd']:>9.2f}{get['kd']:>9.2f}{get['seconds']:>7.1f}")  # fmt: skip


def _likelihood(model, data, args) -> dict:
    """``likelihood (route, quantity)``: bits/dim, its standard error and seconds per image, on the first
    ``--likelihood`` test images."""
    images = data.test[: args.likelihood]
    rows = []
    for route in ROUTES:
        got = bits_per_dim(model, images, data.levels, route=route, steps=args.likelihood_steps, seed=args.seed)
        print(f"bits/dim ({route}, {images.shape[0]} test images, {data.levels} levels): {got['bpd']:.4f} "
              f"± {got['bpd_se']:.4f}, {got['seconds_per_image'] * 1000:.1f} ms per image", flush=True)  # fmt: skip
        rows.append([got["bpd"], got["bpd_se"], got["seconds_per_image"]])
    quantities = ["bits_per_dim", "standard_error", "seconds_per_image"]
    array = xr.DataArray(rows, dims=("route", "quantity"), coords={"route": list(ROUTES), "quantity": quantities})
    return {"likelihood": array}


def _print_table(table) -> None:
    value = table["value"]
    nfes = [int(n) for n in table["nfe"].values]
    print(f"FD-CNN (floor: {table.attrs['floor_fd']:.3f} for training images, pixel Gaussian "
          f"{table.attrs['gaussian_fd']:.3f}); grid chosen per sampler and NFE")  # fmt: skip
    print(f"{'sampler':<20} " + " ".join(f"{'NFE ' + str(n):>22}" for n in nfes))
    for sampler in table["sampler"].values:
        cells = []
        for n in nfes:
            fd = float(value.sel({"sampler": sampler, "nfe": n, "metric": "fd"}))
            grid = str(table["grid"].sel({"sampler": sampler, "nfe": n}).values)
            cells.append(f"{fd:8.3f} ({grid or '-'})")
        print(f"{sampler:<20} " + " ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    sys.exit(main())
