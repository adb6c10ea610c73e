"""The image adapter (problems/images) and its parts in interp: the U-Net, the feature-space scores, the sampler
catalogue at an NFE budget."""

import gzip
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from interp.inverse import START_NODES
from interp.metrics import bures_wasserstein2, frechet_distance, kernel_distance, precision_recall
from interp.nets import UNet
from interp.solvers import MOMENTUM, STANDARD, at_budget
from problems.images.cli import main
from problems.images.data import load_dataset, load_digits, read_idx, read_images, to_pixels
from problems.images.inverse import METHODS
from problems.images.model import ImageModel, LabelledLoss
from problems.images.sampling import SAMPLERS, guided_field, initial_noise, sample, tight_solve


# ------------------------------------------------------------------------------------------------ U-Net
@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (2, 1, 28, 28), (2, 3, 7, 9), (2, 1, 5, 5)])
def test_unet_is_a_field_on_images_of_any_size(shape):
    torch.manual_seed(0)
    net = UNet(shape[1], width=16, multipliers=(1, 2, 2), attention=(1,))
    x = torch.randn(shape)
    assert net(torch.rand(shape[0]), x).shape == x.shape
    # the output layers start at zero (the field starts as 0); one optimiser step moves them
    assert float(net(0.5, x).detach().abs().max()) == 0.0
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    (net(0.5, x) - x).pow(2).mean().backward()
    optimiser.step()
    out = net(torch.rand(shape[0]), x)
    assert out.shape == x.shape and float(out.detach().abs().max()) > 0 and bool(torch.isfinite(out).all())


def test_unet_sees_time_label_and_every_pixel():
    torch.manual_seed(0)
    net = UNet(1, width=16, multipliers=(1, 2), num_classes=10)
    for p in net.parameters():  # leave the zero initialisation so that every path carries signal
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 1, 8, 8)
    labels = torch.tensor([3, 7])
    assert not torch.allclose(net(0.1, x, labels), net(0.9, x, labels))
    assert not torch.allclose(net(0.5, x, labels), net(0.5, x, torch.tensor([4, 7])))
    assert torch.equal(net(0.5, x), net(0.5, x, torch.full((2,), net.null_label)))  # None is "no class"
    # the receptive field spans the image: the corner output depends on the opposite corner's input
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(0.5, x, labels)[:, 0, 0, 0].sum(), x)
    assert float(grad[:, 0, -1, -1].abs().min()) > 0


def test_unet_bad_input():
    with pytest.raises(ValueError, match="multipliers"):
        UNet(1, multipliers=())
    with pytest.raises(ValueError, match="attention"):
        UNet(1, multipliers=(1, 2), attention=(2,))
    with pytest.raises(ValueError, match="heads"):
        UNet(1, width=12, multipliers=(1,), heads=5)
    with pytest.raises(ValueError, match="dropout"):
        UNet(1, dropout=1.0)
    net = UNet(1, width=16, multipliers=(1, 2))
    with pytest.raises(ValueError, match=r"shape \(batch, 1, height, width\)"):
        net(0.5, torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="takes no label"):
        net(0.5, torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="float16"):
        net(0.5, torch.randn(2, 1, 8, 8).half())
    conditional = UNet(1, width=16, multipliers=(1, 2), num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        conditional(0.5, torch.randn(2, 1, 8, 8), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="integer tensor"):
        conditional(0.5, torch.randn(2, 1, 8, 8), torch.tensor([0.0, 1.0]))


# ------------------------------------------------------------------------------------------------ scores
def test_frechet_distance_converges_to_the_closed_form_between_gaussians():
    generator = torch.Generator().manual_seed(0)
    dim = 4
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    cov1, cov2 = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64)
    mean1, mean2 = torch.zeros(dim, dtype=torch.float64), torch.full((dim,), 0.5, dtype=torch.float64)
    exact = bures_wasserstein2(mean1, cov1, mean2, cov2)
    errors = []
    for n in (2000, 32000):
        x = mean1 + torch.randn(n, dim, generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(cov1).T
        y = mean2 + torch.randn(n, dim, generator=generator, dtype=torch.float64)
        errors.append(abs(frechet_distance(x, y) - exact))
    assert errors[1] < 0.02 * exact and errors[1] < errors[0]
    x = torch.randn(500, dim, generator=generator, dtype=torch.float64)
    assert frechet_distance(x, x) < 1e-8


def test_kernel_distance_is_unbiased_near_zero_and_grows_with_a_shift():
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        x, y = torch.randn(600, 8, generator=generator), torch.randn(600, 8, generator=generator)
        same = kernel_distance(x, y, subsets=5, subset_size=300, generator=generator)
        shifted = kernel_distance(x, y + 0.3, subsets=5, subset_size=300, generator=generator)
        assert shifted > 10 * abs(same)


def test_precision_recall_of_covered_and_missing_modes():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    real = centres[torch.arange(1000) % 2] + 0.3 * torch.randn(1000, 2, generator=generator)
    half = centres[0] + 0.3 * torch.randn(1000, 2, generator=generator)  # one of the two modes only
    precision, recall = precision_recall(real, half)
    assert precision > 0.95 and 0.4 < recall < 0.6
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(real, half, k=0)


# ------------------------------------------------------------------------------------------------ data
def test_digits_and_mnist_are_split_stratified_and_scaled():
    digits = load_digits(seed=0)
    assert digits.train.shape == (1497, 1, 8, 8) and digits.test.shape == (300, 1, 8, 8)
    assert float(digits.train.min()) == -1.0 and float(digits.train.max()) == 1.0
    assert torch.equal(torch.bincount(digits.test_labels).clamp(max=1), torch.ones(10, dtype=torch.long))
    assert int(torch.bincount(digits.test_labels).max() - torch.bincount(digits.test_labels).min()) <= 2
    other = load_digits(seed=1)
    assert not torch.equal(other.test, digits.test)
    mnist = load_dataset("mnist")
    assert mnist.train.shape == (4000, 1, 28, 28) and mnist.test.shape == (1000, 1, 28, 28)
    assert mnist.classes == tuple("0123456789")


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_files_and_the_fashion_mnist_reader_from_a_cached_package(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 28, 28))
    (tmp_path / "plain").write_bytes(_idx_bytes(images))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    assert np.array_equal(read_idx(tmp_path / "plain"), images)
    assert np.array_equal(read_idx(tmp_path / "packed.gz"), images)
    (tmp_path / "short").write_bytes(_idx_bytes(images)[:-5])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short")
    (tmp_path / "other").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "other")
    # an unpacked package in the cache is read without fetching
    folder = tmp_path / "cache" / "fashion-mnist" / "usr/share/datasets/fashion-mnist"
    folder.mkdir(parents=True)
    labels = np.arange(6) % 10
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    data = load_dataset("fashion-mnist", cache=tmp_path / "cache")
    assert data.train.shape == (6, 1, 28, 28) and torch.equal(data.test_labels, torch.as_tensor(labels))
    assert torch.allclose(data.train[:, 0], torch.as_tensor(images / 255 * 2 - 1, dtype=torch.float32), atol=1e-6)


def test_read_images_from_a_folder_and_npy(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(10, 6, 5), dtype=np.uint8)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / f"{i:02d}.png")
    data = read_images(folder, test_fraction=0.2, seed=0)
    assert data.train.shape == (8, 1, 6, 5) and data.test.shape == (2, 1, 6, 5) and data.train_labels is None
    both = torch.cat([data.train, data.test])
    assert sorted(to_pixels(both).reshape(10, -1).tolist()) == sorted(pixels.reshape(10, -1).tolist())
    colour = rng.random((4, 5, 5, 3))
    np.save(tmp_path / "colour.npy", colour)
    data = read_images(tmp_path / "colour.npy", test_fraction=0.25)
    assert data.shape == (3, 5, 5)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((3, 4, 4), np.nan), "NaN"),
        (np.full((3, 4, 4), 2.0), r"must lie in \[0, 1\]"),
        (np.zeros((3, 4, 4), dtype=np.int64), "uint8"),
        (np.zeros((3, 4), dtype=np.uint8), "need images"),
        (np.zeros((1, 4, 4), dtype=np.uint8), "at least 2 images"),
    ],
)
def test_read_images_refuses_bad_arrays(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=message):
        read_images(tmp_path / "bad.npy")


def test_read_images_refuses_bad_folders(tmp_path):
    from PIL import Image

    with pytest.raises(ValueError, match="holds no"):
        read_images(tmp_path)
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((5, 4), dtype=np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="differ in size"):
        read_images(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar-10")


# ------------------------------------------------------------------------------------------------ training
def test_label_dropout_replaces_labels_at_its_rate():
    seen = []

    def model(t, x, labels):
        seen.append(labels.clone())
        return torch.zeros_like(x)

    loss = LabelledLoss("flow", null_label=10, label_dropout=0.25)
    rows = torch.zeros(4000, 2, 4, 4)
    rows[:, 1] = (torch.arange(4000) % 10).float()[:, None, None]
    generator = torch.Generator().manual_seed(0)
    loss(model, torch.randn(4000, 2, 4, 4, generator=generator), rows, generator, t=torch.rand(4000))
    labels = seen[0]
    dropped = labels == 10
    assert abs(float(dropped.double().mean()) - 0.25) < 0.03  # 4.4 binomial standard deviations
    assert torch.equal(labels[~dropped], (torch.arange(4000) % 10)[~dropped])


# ------------------------------------------------------------------------------------------------ sampling
class _GaussianNoisePredictor(torch.nn.Module):
    """The exact prediction of a Gaussian-data model: data N(0, s^2 I), so E[x0 | x_t] and the velocity are
    linear in x_t (the VP model predicts the noise x0, the flow model the velocity)."""

    num_classes = 0
    null_label = 0

    def __init__(self, interpolant, s: float):
        super().__init__()
        self.interpolant, self.s = interpolant, s

    def forward(self, t, x, label=None):
        from interp.analytic import ExactMarginals, GaussianMixture

        dim = x[0].numel()
        if getattr(self, "_dim", None) != dim:
            base = GaussianMixture(torch.ones(1), torch.zeros(1, dim), 1.0)
            data = GaussianMixture(torch.ones(1), torch.zeros(1, dim), self.s**2)
            self._dim, self._exact = dim, ExactMarginals(self.interpolant, base, data)
        exact = self._exact
        flat = x.reshape(x.shape[0], -1).double()
        tt = torch.as_tensor(t, dtype=torch.float64)
        out = exact.x0_mean(tt, flat) if self.interpolant.name == "vp" else exact.velocity(tt, flat)
        return out.to(x.dtype).reshape(x.shape)


@pytest.mark.parametrize("interpolant", ["vp", "flow"])
def test_samplers_reach_the_data_law_of_an_exact_model(interpolant):
    from interp.interpolants import preset

    s = 0.5
    model = ImageModel(_GaussianNoisePredictor(preset(interpolant), s), interpolant, (1, 4, 4), [])
    noise = initial_noise(model, 500, seed=0)
    reference = tight_solve(model, noise)
    assert abs(float(reference.std()) - s) < 0.02  # the law: N(0, s^2) per pixel (8000 values)

    def error(sampler, nfe):  # relative to the tight solve, on the sampler's best grid (as the protocol picks)
        runs = [sample(model, sampler, nfe, noise, grid_kind=kind) for kind in ("log_snr", "uniform", "edm")]
        assert all(used <= nfe for _, used in runs)
        return min(float((images - reference).norm() / reference.norm()) for images, _ in runs)

    for sampler in ("DPM-Solver++2M", "UniPC-2", "Heun", "iPNDM-3"):
        coarse, fine = error(sampler, 10), error(sampler, 160)
        # measured: at most 0.06 at NFE 10 (DPM-Solver++ 2M 0.004 on EDM's grid, a lucky cancellation: 0.011 at
        # NFE 40), at most 6e-4 at NFE 160 for DPM-Solver++ 2M and Heun
        assert coarse < 0.08 and fine < 0.01, (sampler, coarse, fine)


def test_classifier_free_guidance_mixes_the_two_predictions():
    class Labelled(torch.nn.Module):
        num_classes, null_label = 3, 3

        def forward(self, t, x, label):
            return x + label.to(x.dtype)[:, None, None, None]

    from interp.interpolants import preset

    model = ImageModel(Labelled(), "flow", (1, 2, 2), [])
    labels = torch.tensor([0, 1, 2])
    x = torch.randn(3, 1, 2, 2)
    field = guided_field(model, labels, 2.0)
    got = field.models[model.parameterisation](torch.tensor(0.5), x)
    expected = 3 * (x + labels[:, None, None, None]) - 2 * (x + 3)
    assert torch.allclose(got, expected)
    with pytest.raises(ValueError, match="class-conditional"):
        guided_field(ImageModel(_GaussianNoisePredictor(preset("flow"), 1.0), "flow", (1, 2, 2), []), labels, 1.0)


def test_every_sampler_keeps_to_its_budget():
    from interp.interpolants import preset

    model = ImageModel(_GaussianNoisePredictor(preset("vp"), 0.5), "vp", (1, 2, 2), [])
    noise = initial_noise(model, 8, seed=0)
    for nfe in (5, 8):
        for name in SAMPLERS:
            images, used = sample(model, name, nfe, noise, grid_kind="log_snr")
            assert used <= nfe and bool(torch.isfinite(images).all()), (name, nfe, used)
    assert set(at_budget(preset("vp"), 3, STANDARD + MOMENTUM)) == set(STANDARD + MOMENTUM) - {"RK4", "RK4-3/8"}
    with pytest.raises(ValueError, match="unknown samplers"):
        at_budget(preset("vp"), 10, ["Euler", "magic"])
    with pytest.raises(ValueError, match="nfe must be"):
        at_budget(preset("vp"), 0)


# ------------------------------------------------------------------------------------------------ command line
def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("images: error:"), err
    return err[0]


def test_cli_bad_input_ends_with_one_line_before_any_work(tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    assert "unknown dataset" in _cli_error(capsys, ["--dataset", "cifar-10"] + out)
    assert "unknown samplers ['magic']" in _cli_error(capsys, ["--samplers", "Euler,magic"] + out)
    assert "unknown grids" in _cli_error(capsys, ["--grids", "cosine"] + out)
    assert "needs --conditional" in _cli_error(capsys, ["--guidance", "2"] + out)
    assert "--attention levels" in _cli_error(capsys, ["--attention", "2", "--multipliers", "1,2"] + out)
    assert "at least 10 samples" in _cli_error(capsys, ["--samples", "5"] + out)
    inverse = ["--task", "inverse", "--interpolant", "vp"]
    assert "tweedie_steps must be an integer >= 2" in _cli_error(capsys, inverse + ["--tweedie-steps", "1"] + out)
    np.save(tmp_path / "unlabelled.npy", np.zeros((20, 4, 4), dtype=np.uint8))
    unlabelled = ["--dataset", str(tmp_path / "unlabelled.npy"), "--conditional"]
    assert "--conditional needs labels" in _cli_error(capsys, unlabelled + out)
    assert not (tmp_path / "out").exists()


def test_cli_trains_compares_and_writes_every_output(tmp_path, capsys):
    json_path = tmp_path / "records.json"
    argv = ["--dataset", "digits", "--steps", "30", "--width", "16", "--classifier-epochs", "1", "--samples", "60",
            "--pilot", "8", "--nfe", "5,8", "--samplers", "DPM-Solver++2M,Euler", "--grids", "log_snr,uniform",
            "--conditional", "--guidance", "1", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
            "--json", str(json_path), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "FD-CNN" in printed and "wrote" in printed
    table = xr.load_dataset(tmp_path / "out" / "metrics.nc")
    fd = table["value"].sel({"metric": "fd"})
    assert fd.shape == (2, 2) and bool(np.isfinite(fd).all()) and bool((fd > 0).all())
    accuracy = table["value"].sel({"metric": "accuracy"})
    assert bool(((accuracy >= 0) & (accuracy <= 1)).all())
    assert set(np.unique(table["grid"].values)) <= {"log_snr", "uniform"}
    assert table.attrs["floor_fd"] < table.attrs["gaussian_fd"]
    assert (tmp_path / "out" / "training_images.png").is_file() and (tmp_path / "out" / "model.pt").is_file()
    assert len(list((tmp_path / "out").glob("samples_nfe*.png"))) == 2
    import json

    records = json.loads(json_path.read_text())
    assert len(records) == 4 and all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in records)
    # the classifier is cached
    assert len(list((tmp_path / "cache" / "images").glob("classifier-digits-*.pt"))) == 1


def test_cli_runs_on_a_users_unlabelled_images_with_pixel_space_scores(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = (rng.random((60, 6, 6)) < 0.3).astype(np.float64)
    np.save(tmp_path / "mine.npy", images)
    argv = ["--dataset", str(tmp_path / "mine.npy"), "--steps", "10", "--width", "8", "--samples", "20", "--pilot",
            "4", "--nfe", "5", "--samplers", "Euler", "--grids", "uniform", "--out", str(tmp_path / "out"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "pixel space" in capsys.readouterr().out
    table = xr.load_dataset(tmp_path / "out" / "metrics.nc")
    assert math.isnan(table.attrs["classifier_accuracy"]) and np.isfinite(table["value"].sel({"metric": "fd"})).all()


def test_cli_under_torchrun_trains_one_model_with_ddp_and_writes_once(tmp_path):
    """Two gloo processes under torchrun train the model one process trains (the Trainer's DDP splits each global
    batch; same draws): the same losses up to float32 rounding. Only the first process samples and writes."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "mine.npy", (rng.random((60, 6, 6)) < 0.3).astype(np.float64))
    # a high learning rate: after 6 steps a gradient not averaged over both halves of the batch moves the loss by
    # ~1e-3. (The weights are not compared: a convolution's bias before a GroupNorm has a gradient of 0 up to
    # rounding, which Adam's normalised step turns into +-lr whatever its size.)
    argv = ["-m", "problems", "images", "--dataset", str(tmp_path / "mine.npy"), "--steps", "6", "--width", "8",
            "--batch", "16", "--learning-rate", "0.01", "--samples", "20", "--pilot", "4", "--nfe", "5",
            "--samplers", "Euler", "--grids", "uniform", "--no-progress"]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    runs = {}
    for name, launcher in (("two", torchrun), ("one", [sys.executable])):
        out = tmp_path / name
        done = subprocess.run([*launcher, *argv, "--out", str(out)], env=env, cwd=root, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = (done.stdout, xr.load_dataset(out / "metrics.nc").attrs["final_loss"])
    printed = runs["two"][0]
    assert printed.count("on 2 processes") == 1 and printed.count("wrote") == runs["one"][0].count("wrote") > 0
    assert abs(runs["two"][1] - runs["one"][1]) < 1e-5 * runs["one"][1], (runs["two"][1], runs["one"][1])
    # data the first process cannot load: every process says why and stops (none waits for the others)
    bad = [arg if arg != str(tmp_path / "mine.npy") else str(tmp_path / "absent") for arg in argv]
    done = subprocess.run([*torchrun, *bad, "--out", str(tmp_path / "bad")], env=env, cwd=root, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and done.stderr.count("images: error:") == 2, done.stderr[-2000:]
    assert not (tmp_path / "bad").exists()


def _gaussian_bits_per_dim(route, steps, n):
    from interp.interpolants import preset
    from problems.images.likelihood import bits_per_dim

    s, levels, dim = 0.5, 2**16, 16  # fine bins: the dequantisation noise is negligible
    model = ImageModel(_GaussianNoisePredictor(preset("vp"), s), "vp", (1, 4, 4), [])
    images = s * torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    got = bits_per_dim(model, images, levels, route=route, steps=steps, seed=0)
    log_p = torch.distributions.Normal(0.0, s).log_prob(images.double()).flatten(1).sum(1)
    exact = -(log_p + dim * math.log(2 / (levels - 1))) / (dim * math.log(2))
    assert got["seconds_per_image"] > 0
    return got["per_image"] - exact  # paired per image


def test_bits_per_dim_by_the_ode_matches_the_closed_form():
    diff = _gaussian_bits_per_dim("ode", 200, 400)
    # the error is the Hutchinson probe's (and the dequantisation and residual-noise draws'): its mean vanishes
    # within 3 standard errors plus 0.01 bits/dim (the residual noise alpha(t1) = 0.0105 shifts ~4e-4)
    assert abs(float(diff.mean())) < 3 * float(diff.std()) / math.sqrt(diff.numel()) + 0.01, float(diff.mean())


def test_bits_per_dim_by_the_ito_estimator_converges_with_the_step():
    # measured mean errors (400 images): 0.27 / 0.080 / 0.022 bits/dim at 100 / 400 / 1600 Euler-Maruyama steps,
    # standard deviations 0.37 / 0.18 / 0.09: a first-order time-step bias, no other
    coarse, fine = _gaussian_bits_per_dim("ito", 100, 200), _gaussian_bits_per_dim("ito", 800, 200)
    assert float(fine.mean().abs()) < 0.08 and float(coarse.mean()) > 3 * float(fine.mean().abs())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' schedulers under numpy 2 (__array__ copy)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy warnings inside diffusers' DEIS coefficients
def test_images_bench_runs_interp_and_diffusers_on_the_same_trained_model(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    from problems.images.model import ImageModelConfig
    from validate.bench import images as bench

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    tiny = ImageModelConfig(interpolant="vp", width=16, multipliers=(1, 2), steps=20)
    monkeypatch.setattr(bench, "MODELS", {"digits": tiny})
    monkeypatch.setattr(bench, "NFES", (5,))
    monkeypatch.setattr(bench, "SAMPLES", 40)
    monkeypatch.setattr(bench, "PILOT", 8)
    ds = bench.measure(seed=0)
    assert bool(ds["peer"].any()) and not bool(ds["peer"].all())
    assert bool(np.isfinite(ds["fd"]).all()) and bool((ds["fd"] > 0).all())  # every method ran, interp's and theirs
    records = bench.records(ds)
    assert {r.metric for r in records} == {"fd_cnn", "pathwise_error"} and all(r.ratio > 0 for r in records)
    assert len(list((tmp_path / "images").glob("bench-model-digits-*.pt"))) == 1  # cached: a rerun samples it


# ------------------------------------------------------------------------------------------------ steering
def test_steering_runs_every_method_and_counts_its_evaluations(tmp_path, capsys):
    steps, ks = 3, (1, 2)
    argv = ["--task", "steering", "--conditional", "--dataset", "digits", "--steps", "10", "--width", "8",
            "--classifier-epochs", "1", "--sde-steps", str(steps), "--compute", "1,2", "--outputs", "12",
            "--scales", "0,2", "--label", "3", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
            "--json", str(tmp_path / "records.json"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "steering toward class 3" in capsys.readouterr().out
    table = xr.load_dataset(tmp_path / "out" / "metrics.nc")
    value = table["value"]

    def nfe(method, k):
        return float(value.sel({"method": method, "k": k, "metric": "nfe"}))

    for k in ks:  # evaluations per output image, from each method's definition (steps + 1 grid times)
        assert nfe("best-of-N", k) == k * (steps + 1)
        assert nfe("fk-steering", k) == k * (steps + 1) + 1  # a population of k per output, then a data prediction
        assert nfe("svdd", k) == 1 + k * steps + 1  # k proposals per step
        assert 1 + steps <= nfe("budget-forcing", k) <= 1 + k * steps  # spends at most its budget
        assert nfe("geometric-2", k) == 2 * k * steps + 1  # two models per step
    assert nfe("cfg-0", 1) == steps + 1 and nfe("cfg-2", 1) == 2 * (steps + 1)
    assert np.isnan(nfe("cfg-2", 2))  # guidance has no compute multiplier
    ran = np.isfinite(value.sel({"metric": "nfe"}))
    scores = value.where(ran)
    assert bool(np.isfinite(scores).sum() == ran.sum() * value.sizes["metric"])
    accuracy, reward = (scores.sel({"metric": m}).values[ran.values] for m in ("accuracy", "reward"))
    assert ((accuracy >= 0) & (accuracy <= 1)).all() and (reward <= 0).all()  # reward: a log-probability
    assert table.attrs["floor_accuracy"] > 0.5 and table.attrs["floor_images"] > 0
    assert len(list((tmp_path / "out").glob("steering_*.png"))) == table.sizes["method"]
    import json

    records = json.loads((tmp_path / "records.json").read_text())
    assert {r["peer"] for r in records} == {"best-of-N x1", "best-of-N x2"}
    assert len(records) == 2 * (int(ran.sum()) - len(ks))


def test_steering_bad_input():
    """(The command line's refusals are rows of tests/test_bad_input.py.)"""
    from interp.interpolants import preset
    from problems.images.steering import Steering, class_reward, steer

    with pytest.raises(ValueError, match="steps must be"):
        Steering(steps=1)
    with pytest.raises(ValueError, match="lam must be"):
        Steering(lam=0.0)
    unconditional = ImageModel(_GaussianNoisePredictor(preset("vp"), 0.5), "vp", (1, 8, 8), [])
    with pytest.raises(ValueError, match="class-conditional"):
        steer(unconditional, None, None, load_digits(seed=0), Steering())
    from problems.images.classifier import Classifier, FeatureNet

    with pytest.raises(ValueError, match="label must be"):
        class_reward(FeatureNet(Classifier(1, 10), 0.0, None), 10)


def test_inverse_task_runs_every_method_and_counts_its_evaluations(tmp_path, capsys):
    """--task inverse end to end on a tiny digits model: every task and method scored, NFE per image from each
    method's definition, PSNR/SSIM/coverage in range, one grid per task, the records pair the best posterior method
    with the best of DPS and RED-Diff."""
    steps, images, samples, particles = 4, 3, 2, 4
    argv = ["--task", "inverse", "--dataset", "digits", "--steps", "10", "--width", "8", "--classifier-epochs", "1",
            "--sde-steps", str(steps), "--inverse-tasks", "box,sr2,deblur", "--noise", "0.05", "--images",
            str(images), "--reconstructions", str(samples), "--particles", str(particles), "--zeta", "0.5",
            "--probes", "2", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--json",
            str(tmp_path / "r.json"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    table = xr.load_dataset(tmp_path / "out" / "metrics.nc")
    value = table["value"]
    assert table.attrs["diverged"] == "none"
    nfe = value.sel({"metric": "nfe"})
    assert bool((nfe.sel({"method": "pigdm"}) == 2 * steps * samples).all())  # a forward and a backward per step
    assert bool((nfe.sel({"method": "dps"}) == 2 * steps * samples).all())
    assert bool((nfe.sel({"method": "red-diff"}) == steps * samples).all())  # one evaluation per time
    # one population per image, and the start weights' data predictions (the VP path's beta(0) is not 0)
    assert bool((nfe.sel({"method": "ensemble"}) == (steps + START_NODES) * particles).all())
    # plus a backward pass per Hutchinson probe, on as many steps as DPS's evaluations allow: 2 * 4 // (2 + 2)
    assert table.attrs["tweedie_steps"] == 2 and table.attrs["probes"] == 2
    assert bool((nfe.sel({"method": "tweedie2"}) == (2 + 2) * 2 * samples).all())
    for metric, lo, hi in (("ssim", -1, 1), ("coverage", 0, 1), ("accuracy", 0, 1)):
        v = value.sel({"metric": metric})
        assert bool(((v >= lo) & (v <= hi)).all()), metric
    assert bool(np.isfinite(value.sel({"metric": "psnr"})).all())
    assert len(list((tmp_path / "out").glob("inverse_*.png"))) == 3
    panels = table["panels"]
    assert list(panels["panel"].values) == ["measurement", *METHODS, "truth"]
    assert panels.sizes["image"] == images and bool(np.isfinite(panels).all())
    truth = load_digits(seed=0).test[:images].numpy()
    assert np.allclose(panels.sel({"task": "box", "noise": 0.05, "panel": "truth"}).values, truth, atol=1e-6)
    import json

    records = json.loads((tmp_path / "r.json").read_text())
    assert len(records) == 3 and all(r["peer"] in ("dps", "red-diff") and r["metric"] == "psnr" for r in records)


def test_inverse_records_skip_a_diverged_method():
    """A diverged method (NaN PSNR) never wins the comparison: the best *finite* method on each side is paired."""
    from problems.images.outputs import inverse_records

    methods, metrics = ["dps", "pigdm", "red-diff", "ensemble"], ["psnr", "coverage"]
    values = np.array([[[[10.0, 0.9], [np.nan, np.nan], [12.0, 0.3], [11.0, 0.8]]]])
    table = xr.Dataset({"value": (("task", "noise", "method", "metric"), values)},
                       coords={"task": ["box"], "noise": [0.0], "method": methods, "metric": metrics},
                       attrs={"dataset": "digits"})  # fmt: skip
    (record,) = inverse_records(table)
    assert record.case.endswith(":ensemble") and record.peer == "red-diff"  # no NFE in this table: no budget
    assert record.ours == 11.0 and record.peer_value == 12.0 and abs(record.ratio - 11 / 12) < 1e-12


def test_inverse_records_compare_at_equal_nfe():
    """A method of ours that spent more network evaluations than the costlier peer is left out of the pairing."""
    from problems.images.outputs import inverse_records

    methods, metrics = ["dps", "pigdm", "red-diff", "ensemble"], ["psnr", "nfe"]
    values = np.array([[[[10.0, 800], [11.0, 800], [12.0, 400], [15.0, 3200]]]])
    table = xr.Dataset({"value": (("task", "noise", "method", "metric"), values)},
                       coords={"task": ["box"], "noise": [0.05], "method": methods, "metric": metrics},
                       attrs={"dataset": "digits"})  # fmt: skip
    (record,) = inverse_records(table)
    assert record.case == "digits:box:sigma 0.05:pigdm (NFE 800 vs 400)" and record.peer == "red-diff"
    assert record.ours == 11.0 and record.peer_value == 12.0
    table["value"].loc[{"method": "pigdm", "metric": "nfe"}] = 801.0
    assert inverse_records(table) == []  # every method of ours over the budget: no record
