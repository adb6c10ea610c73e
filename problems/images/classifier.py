"""The feature network of the image scores ("FD-CNN"): no Inception weights can be fetched here, so each dataset
gets its own small CNN classifier, trained once (seeded) on its training split and cached; its penultimate
features stand where FID's Inception pool features stand.

A score computed with these features compares samples *of the same dataset with the same classifier* (same data,
same seed, same cached weights): FD-CNN numbers are not FID numbers and do not transfer between datasets. The scale
of each dataset is given by two references (:func:`reference_scores`): the test split against the training split
(the floor a perfect sampler reaches with that many images) and a Gaussian fitted to the training pixels (a
ceiling: a model that learnt only the pixel means and covariances). Samples are scored against the *test* split,
which no model saw, and the floor is the same number of training images scored the same way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from interp.metrics import frechet_distance, kernel_distance, precision_recall

from ..debian import default_cache
from .data import Images

FEATURES = 128


class Classifier(nn.Module):
    """Two convolution stages (32 and 64 channels, each two 3x3 convolutions with GroupNorm and SiLU, then 2x2
    average pooling), global average pooling, a ``FEATURES``-wide layer (the features) and the class logits."""

    def __init__(self, channels: int, classes: int):
        super().__init__()

        def stage(inputs: int, outputs: int) -> list[nn.Module]:
            return [nn.Conv2d(inputs, outputs, 3, padding=1), nn.GroupNorm(8, outputs), nn.SiLU(),
                    nn.Conv2d(outputs, outputs, 3, padding=1), nn.GroupNorm(8, outputs), nn.SiLU()]  # fmt: skip

        self.body = nn.Sequential(*stage(channels, 32), nn.AvgPool2d(2), *stage(32, 64), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(64, FEATURES), nn.SiLU())  # fmt: skip
        self.logits = nn.Linear(FEATURES, classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self.body(x))


@dataclass
class FeatureNet:
    """A trained classifier, its test accuracy, and where its weights are cached."""

    net: Classifier
    accuracy: float
    path: Path | None

    @torch.no_grad()
    def features(self, images: Tensor, batch: int = 1000) -> Tensor:
        """Penultimate features ``(n, FEATURES)`` float64 of images in ``[-1, 1]`` (clipped first, as samples may
        leave the range)."""
        device = next(self.net.parameters()).device
        parts = [self.net.features(images[a : a + batch].to(device, torch.float32).clamp(-1, 1)).double().cpu()
                 for a in range(0, images.shape[0], batch)]  # fmt: skip
        return torch.cat(parts)

    @torch.no_grad()
    def probabilities(self, images: Tensor, batch: int = 1000) -> Tensor:
        """Class probabilities ``(n, classes)`` of images in ``[-1, 1]``."""
        device = next(self.net.parameters()).device
        parts = [self.net(images[a : a + batch].to(device, torch.float32).clamp(-1, 1)).softmax(1).cpu()
                 for a in range(0, images.shape[0], batch)]  # fmt: skip
        return torch.cat(parts)


class PixelFeatures:
    """The stand-in feature network of data without labels (no classifier can be trained): the pixels themselves,
    so the scores are Fréchet and kernel distances in pixel space (``accuracy`` is NaN)."""

    accuracy = float("nan")
    path = None

    def features(self, images: Tensor, batch: int = 1000) -> Tensor:
        return images.detach().flatten(1).clamp(-1, 1).double().cpu()


def _fingerprint(data: Images, epochs: int, seed: int) -> str:
    digest = hashlib.sha256()
    for tensor in (data.train, data.train_labels):
        digest.update(tensor.numpy().tobytes())
    digest.update(f"{epochs}-{seed}-{FEATURES}".encode())
    return digest.hexdigest()[:16]


def train_classifier(data: Images, *, epochs: int = 10, seed: int = 0, device: str = "cpu", cache=None,
                     batch: int = 128, progress: bool = False) -> FeatureNet:  # fmt: skip
    """The feature network of ``data``: loaded from the cache if this data, epoch count and seed were trained
    before, else trained (Adam, cosine learning rate, small random shifts of ±1 pixel) and cached atomically."""
    if data.train_labels is None:
        raise ValueError(f"{data.name} has no labels: the feature network is a classifier and needs them")
    classes = int(data.train_labels.max()) + 1
    root = Path(cache) if cache is not None else default_cache()
    path = root / "images" / f"classifier-{data.name}-{_fingerprint(data, epochs, seed)}.pt"
    net = Classifier(data.shape[0], classes).float()
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["weights"])
        return FeatureNet(net.to(device).eval(), float(state["accuracy"]), path)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = Classifier(data.shape[0], classes).float().to(device)
    steps = epochs * -(-data.train.shape[0] // batch)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=f"classifier {data.name}", disable=None if progress else True, leave=False)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(data.train.shape[0], generator=generator)
        for a in range(0, order.shape[0], batch):
            rows = order[a : a + batch]
            x = data.train[rows]
            dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).to(device)
            loss = nn.functional.cross_entropy(net(x), data.train_labels[rows].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.update(1)
    bar.close()
    result = FeatureNet(net.eval(), 0.0, path)
    result.accuracy = float((result.probabilities(data.test).argmax(1) == data.test_labels).double().mean())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    torch.save({"weights": net.state_dict(), "accuracy": result.accuracy}, partial)
    os.replace(partial, path)
    return result


def scores(feature_net: FeatureNet, reference: Tensor, samples: Tensor, *, seed: int = 0, k: int = 3) -> dict:
    """FD-CNN, KD-CNN (×1000), precision and recall of ``samples`` against ``reference`` images."""
    real, fake = feature_net.features(reference), feature_net.features(samples)
    generator = torch.Generator().manual_seed(seed)
    precision, recall = precision_recall(real, fake, k=k)
    return {
        "fd": frechet_distance(real, fake),
        "kd": 1000 * kernel_distance(real, fake, generator=generator),
        "precision": precision,
        "recall": recall,
    }


def reference_scores(feature_net: FeatureNet, data: Images, n: int, *, seed: int = 0) -> dict[str, dict]:
    """The scale of the scores of ``n`` samples against the test split: ``n`` training images (``floor``: what a
    sampler drawing from the data itself scores) and ``n`` draws from a Gaussian fitted to the training pixels
    (``gaussian``)."""
    generator = torch.Generator().manual_seed(seed)
    train = data.train[torch.randperm(data.train.shape[0], generator=generator)[:n]]
    flat = data.train.reshape(data.train.shape[0], -1).double()
    mean, cov = flat.mean(0), torch.cov(flat.T)
    values, vectors = torch.linalg.eigh(cov)
    root = vectors * values.clamp(min=0).sqrt()
    gaussian = mean + torch.randn(n, flat.shape[1], generator=generator, dtype=torch.float64) @ root.T
    gaussian = gaussian.float().reshape(n, *data.shape)
    return {"floor": scores(feature_net, data.test, train, seed=seed),
            "gaussian": scores(feature_net, data.test, gaussian, seed=seed)}  # fmt: skip
