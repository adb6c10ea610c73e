"""Draws with an explicit generator on the generator's device, moved to the tensor's device (docs/design.md,
"Randomness": same seed, same device, same numbers)."""

from __future__ import annotations

import torch
from torch import Tensor


def seeded_generator(generator: torch.Generator | None, device) -> torch.Generator:
    """``generator``, or a fresh one on ``device`` seeded from the OS (its ``initial_seed()`` is recorded in results,
    so the run can be repeated)."""
    if generator is None:
        generator = torch.Generator(device=device)
        generator.seed()
    return generator


def randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of ``x``'s shape and dtype."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)


def rand(n: int, generator: torch.Generator | None, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``n`` uniforms on [0, 1) in ``dtype`` (default ``like``'s) on ``like``'s device."""
    device = generator.device if generator is not None else like.device
    return torch.rand(n, generator=generator, dtype=dtype or like.dtype, device=device).to(like.device)
