r"""Small networks that are fields: ``net(t, x) -> Tensor`` with the shape of ``x``.

:class:`MLP` flattens a state of any shape ``(batch, ...)``, concatenates a sinusoidal embedding of the time
(Vaswani et al. 2017; as in DDPM, Ho et al. 2020) and maps back to the state's shape. Sized so that a 2D model
trains in seconds on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._checks import batch_time


class SinusoidalTimeEmbedding(nn.Module):
    r""":math:`t \mapsto [\sin(\omega_k t), \cos(\omega_k t)]_k` with frequencies :math:`\omega_k` geometric in
    :math:`[1, \omega_{max}]`; ``dim`` must be even."""

    def __init__(self, dim: int = 64, max_frequency: float = 1000.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2; got {dim}")
        frequencies = torch.exp(torch.linspace(0.0, math.log(max_frequency), dim // 2))
        self.register_buffer("frequencies", frequencies, persistent=False)
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        angles = t[:, None] * self.frequencies.to(t.dtype)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class MLP(nn.Module):
    """Time-conditioned MLP field for states of shape ``state_shape``.

    Args:
        state_shape: the shape of one state (without the batch), e.g. ``(2,)`` or ``(1, 8, 8)``.
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        time_dim: size of the time embedding.

    Example:
        >>> net = MLP((2,), hidden=64, depth=2)
        >>> net(torch.rand(5), torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """

    def __init__(self, state_shape: Sequence[int], hidden: int = 128, depth: int = 3, time_dim: int = 32):
        super().__init__()
        self.state_shape = tuple(int(s) for s in state_shape)
        if not self.state_shape or any(s < 1 for s in self.state_shape):
            raise ValueError(f"state_shape must be a non-empty tuple of positive sizes; got {state_shape}")
        if hidden < 1 or depth < 1:
            raise ValueError(f"hidden and depth must be positive; got {hidden}, {depth}")
        features = math.prod(self.state_shape)
        self.time_embedding = SinusoidalTimeEmbedding(time_dim)
        layers: list[nn.Module] = []
        width = features + time_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, features))
        self.layers = nn.Sequential(*layers)

    def forward(self, t, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.state_shape:
            raise ValueError(f"x must have shape (batch, {self.state_shape}); got {tuple(x.shape)}")
        weight = self.layers[0].weight
        if x.dtype != weight.dtype:  # refused here rather than as a matmul error deep inside torch
            raise TypeError(
                f"x is {x.dtype} but the network's parameters are {weight.dtype}: convert one to the other "
                f"(net.to({x.dtype}) or x.to({weight.dtype}))"
            )
        tb = batch_time(t, x)
        features = torch.cat([x.reshape(x.shape[0], -1), self.time_embedding(tb)], dim=1)
        return self.layers(features).reshape(x.shape)
