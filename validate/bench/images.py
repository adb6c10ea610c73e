"""Images bench: interp's samplers against diffusers' schedulers on the same trained noise-prediction (VP) U-Net,
from the same initial noise, at NFE 5, 8, 10, 15, 20.

The model: ``python -m problems images``'s U-Net trained on ``DATASET`` (digits on a CPU: 8 x 8, 1497 training
images; Fashion-MNIST with ``--dataset fashion-mnist`` on a GPU), cached by its configuration so a rerun samples
the same network. The score: FD-CNN (a Fréchet distance in the features of a classifier trained on the same data,
:mod:`problems.images.classifier`) of ``SAMPLES`` images against the test split, with its floor (as many
training images) and the pixel-Gaussian ceiling; and the pathwise error (root mean square per pixel) to dopri5 at
rtol 1e-5 from the first ``PILOT`` of the same noise draws.

Each configuration is given its best grid the same way, by the pathwise error on ``PILOT`` separate noise draws:

* interp: every sampler of :data:`interp.solvers.STANDARD` on the uniform, quadratic, log-SNR and EDM grids;
* diffusers (the solvers bench's adapters, :func:`validate.bench.solvers.run_diffusers`): DPM-Solver++ 2M/3M,
  UniPC 2/3 and DEIS 2/3 under each of their time spacings, built with the trained betas of the continuous VP
  schedule and ``final_sigmas_type="sigma_min"``, fed the network's noise prediction at their own sigma.

Records per NFE: interp's best FD-CNN over diffusers' best (``fd_cnn``, lower is better; the issue's goal is 0.8 at
NFE 5 and 10 on Fashion-MNIST, 1.0 elsewhere) and the same for the pathwise error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import torch
import xarray as xr

from interp.interpolants import preset
from interp.records import BenchRecord, compare
from interp.solvers import STANDARD, DiffusionView
from problems.debian import default_cache
from problems.images.classifier import scores, train_classifier
from problems.images.data import load_dataset
from problems.images.model import ImageModel, ImageModelConfig, network, train_image_model
from problems.images.protocol import Comparison, compare_samplers
from problems.images.sampling import initial_noise, pathwise_error, tight_solve

from .solvers import DIFFUSERS, SPACINGS, Problem, run_diffusers

NFES = (5, 8, 10, 15, 20)
SAMPLES, PILOT = 1000, 64
MODELS = {  # the model trained per dataset (CPU-sized for digits)
    "digits": ImageModelConfig(interpolant="vp", width=32, multipliers=(1, 2), steps=4000, learning_rate=1e-3),
    "mnist": ImageModelConfig(interpolant="vp", width=32, multipliers=(1, 2, 2), attention=(2,), steps=8000),
    "fashion-mnist": ImageModelConfig(
        interpolant="vp", width=64, multipliers=(1, 2, 2), attention=(2,), steps=20000, batch=256, learning_rate=5e-4
    ),  # fmt: skip
}


def cached_model(dataset: str, data, config: ImageModelConfig, seed: int, device: str) -> ImageModel:
    """The bench's model of ``dataset``: trained once per configuration and seed, its EMA weights cached."""
    # "ema": the trainer's EMA recipe (warm-up since it was added), so weights averaged the old way are not reused
    recipe = {"device": None, "seed": seed, "dataset": dataset, "ema": "warmup"}
    key = json.dumps({**asdict(config), **recipe}, sort_keys=True)
    path = default_cache() / "images" / f"bench-model-{dataset}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        net = network(config, data.shape[0])
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return ImageModel(net.to(device).eval().requires_grad_(False), config.interpolant, data.shape, [])
    config = ImageModelConfig(**{**asdict(config), "device": device})
    model = train_image_model(data, config, seed=seed, progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(model.net.state_dict(), partial)
    partial.replace(path)
    return model


class _NoisePrediction:
    """The trained network as the solvers bench's ``exact`` (its ``x0_mean`` is the noise prediction)."""

    def __init__(self, model: ImageModel):
        self.model = model

    @torch.no_grad()
    def x0_mean(self, t, x):
        return self.model.predict(torch.as_tensor(t, dtype=torch.float64).reshape(()), x)


def _problem(model: ImageModel, x0: torch.Tensor) -> Problem:
    """The solvers bench's :class:`Problem` around the trained model (only what its diffusers adapter reads)."""
    interpolant = preset("vp")
    return Problem(
        "images", interpolant, _NoisePrediction(model), DiffusionView(interpolant), x0, *([None] * 5), 0, 1.0
    )


def diffusers_rows(model: ImageModel, features, data, noise, pilot, pilot_reference, scored_reference, nfes):
    """Per NFE and diffusers configuration: its best spacing (by the pilot's pathwise error), FD-CNN and pathwise
    error."""
    rows = []
    for nfe in nfes:
        for peer in DIFFUSERS:
            errors = {}
            for spacing in SPACINGS:
                run = run_diffusers(_problem(model, pilot), peer, spacing, nfe)
                if run is not None and bool(torch.isfinite(run[0]).all()):
                    errors[spacing] = pathwise_error(run[0], pilot_reference)
            if not errors:
                continue
            spacing = min(errors, key=errors.get)
            images, used = run_diffusers(_problem(model, noise), peer, spacing, nfe)
            row = scores(features, data.test, images)
            rows.append(dict(peer=peer, nfe=nfe, spacing=spacing, used=used, fd=row["fd"], kd=row["kd"],
                             pathwise=pathwise_error(images[: pilot.shape[0]], scored_reference)))  # fmt: skip
            print(f"{peer} NFE {nfe} ({spacing}): FD-CNN {row['fd']:.3f}", flush=True)
    return rows


def measure(seed: int = 0, device: str = "cpu", dataset: str = "digits") -> xr.Dataset:
    """``fd``, ``pathwise_error``, ``kd`` ``(method, nfe)`` for interp's samplers and diffusers' configurations
    (``peer`` says which, ``grid`` names the grid or spacing each took), the floor and pixel-Gaussian FD-CNN and
    the classifier's accuracy as attributes."""
    data = load_dataset(dataset, seed=seed)
    features = train_classifier(data, seed=seed, device=device, progress=True)
    model = cached_model(dataset, data, MODELS[dataset], seed, device)
    comparison = Comparison(samplers=STANDARD, nfes=NFES, samples=SAMPLES, pilot=PILOT, seed=seed)
    table = compare_samplers(model, features, data, comparison, progress=print)
    noise = initial_noise(model, SAMPLES, seed, device)
    pilot = initial_noise(model, PILOT, seed + 1, device)
    peers = diffusers_rows(model, features, data, noise, pilot, tight_solve(model, pilot),
                           tight_solve(model, noise[:PILOT]), NFES)  # fmt: skip
    methods = list(STANDARD) + list(DIFFUSERS)
    values = {k: np.full((len(methods), len(NFES)), np.nan) for k in ("fd", "kd", "pathwise_error")}
    grid = np.full((len(methods), len(NFES)), "", dtype=object)
    for i, name in enumerate(STANDARD):
        for j, nfe in enumerate(NFES):
            cell = table["value"].sel({"sampler": name, "nfe": nfe})
            for k in values:
                values[k][i, j] = float(cell.sel({"metric": k}))
            grid[i, j] = str(table["grid"].sel({"sampler": name, "nfe": nfe}).values)
    for row in peers:
        i, j = methods.index(row["peer"]), NFES.index(row["nfe"])
        values["fd"][i, j], values["kd"][i, j], values["pathwise_error"][i, j] = row["fd"], row["kd"], row["pathwise"]
        grid[i, j] = row["spacing"]
    return xr.Dataset(
        {**{k: (("method", "nfe"), v) for k, v in values.items()},
         "grid": (("method", "nfe"), grid.astype(str)),
         "peer": (("method",), np.array([m in DIFFUSERS for m in methods]))},
        coords={"method": methods, "nfe": list(NFES)},
        attrs={"dataset": dataset, "device": device, "samples": SAMPLES, "floor_fd": table.attrs["floor_fd"],
               "gaussian_fd": table.attrs["gaussian_fd"], "classifier_accuracy": features.accuracy},
    )  # fmt: skip


def records(ds: xr.Dataset) -> list[BenchRecord]:
    """Per NFE: interp's best FD-CNN and pathwise error over diffusers' best; the floor over the pixel Gaussian."""
    case = f"{ds.attrs['dataset']}/vp:{ds.attrs['device']}"
    peer = ds["peer"].values.astype(bool)
    ours, theirs = ds.isel(method=~peer), ds.isel(method=peer)
    out = []
    for nfe in ds["nfe"].values:
        for metric, label in (("fd", "fd_cnn"), ("pathwise_error", "pathwise_error")):
            mine = ours[metric].sel(nfe=nfe).to_series().dropna()
            other = theirs[metric].sel(nfe=nfe).to_series().dropna()
            if mine.empty or other.empty:
                continue
            best_peer = str(other.idxmin())
            spacing = str(ds["grid"].sel({"method": best_peer, "nfe": nfe}).values)
            out.append(compare("images", f"{case}:NFE {int(nfe)}:{mine.idxmin()}", label, float(mine.min()),
                               f"{best_peer} ({spacing})", float(other.min()), "lower"))  # fmt: skip
    out.append(compare("images", f"{case}:floor", "fd_cnn", ds.attrs["floor_fd"], "pixel Gaussian",
                       ds.attrs["gaussian_fd"], "lower"))  # fmt: skip
    return out


def run(seed: int = 0, device: str = "cpu", dataset: str = "digits", table: str | None = None) -> list[BenchRecord]:
    ds = measure(seed, device, dataset)
    print(f"FD-CNN floor {ds.attrs['floor_fd']:.3f}, pixel Gaussian {ds.attrs['gaussian_fd']:.3f}, classifier "
          f"accuracy {ds.attrs['classifier_accuracy']:.4f}", flush=True)  # fmt: skip
    if table is not None:
        from interp.results import write_atomically

        write_atomically(table, lambda path: ds.to_netcdf(path, engine="h5netcdf"))
    return records(ds)
