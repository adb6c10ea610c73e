"""Benchmarks against peer libraries on the same work in the same run: ``python -m validate.bench NAME``."""


def synchronise(device) -> None:
    """Wait for a CUDA device's queued work, so that a wall-clock time covers it (nothing on the CPU)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
