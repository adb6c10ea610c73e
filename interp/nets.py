r"""Small networks that are fields: ``net(t, x) -> Tensor`` with the shape of ``x``.

:class:`MLP` flattens a state of any shape ``(batch, ...)``, concatenates a sinusoidal embedding of the time
(Vaswani et al. 2017; as in DDPM, Ho et al. 2020) and maps back to the state's shape. Sized so that a 2D model
trains in seconds on a CPU.

:class:`TemporalConvNet` is a field on sequences ``(batch, length)`` or ``(batch, channels, length)``: residual
blocks of dilated 1-D convolutions (dilations 1, 2, 4, ... as in WaveNet, van den Oord et al. 2016; non-causal,
since a denoiser sees the whole window), each shifted by a projection of the time embedding, with optional
conditioning channels (e.g. an observed context and its mask) concatenated to the input. The temporal backbone
of the time-series adapter (TSDiff, Kollovieh et al. 2023, uses S4 layers in the same place).
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
        _check_dtype(x, self.layers[0].weight)
        tb = batch_time(t, x)
        features = torch.cat([x.reshape(x.shape[0], -1), self.time_embedding(tb)], dim=1)
        return self.layers(features).reshape(x.shape)


def _check_dtype(x: Tensor, weight: Tensor) -> None:
    if x.dtype != weight.dtype:  # refused here rather than as a matmul error deep inside torch
        raise TypeError(
            f"x is {x.dtype} but the network's parameters are {weight.dtype}: convert one to the other "
            f"(net.to({x.dtype}) or x.to({weight.dtype}))"
        )


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, dilation: int, time_dim: int):
        super().__init__()
        self.time = nn.Linear(time_dim, width)
        self.norm = nn.GroupNorm(1, width)
        self.conv = nn.Conv1d(width, 2 * width, kernel_size=3, padding=dilation, dilation=dilation)
        self.out = nn.Conv1d(width, width, kernel_size=1)

    def forward(self, h: Tensor, embedding: Tensor) -> Tensor:
        u = self.norm(h) + self.time(embedding)[:, :, None]
        gate, value = self.conv(u).chunk(2, dim=1)
        return h + self.out(torch.sigmoid(gate) * torch.tanh(value))


class TemporalConvNet(nn.Module):
    """Time-conditioned residual network of dilated 1-D convolutions: a field on sequences of ``length``.

    Args:
        length: the sequence length (the window).
        channels: channels of the state; ``None`` for states ``(batch, length)``.
        width: channels of the hidden layers.
        depth: number of residual blocks; block ``k`` has dilation ``2 ** (k % cycle)``.
        cycle: dilations repeat every ``cycle`` blocks (default: enough to span ``length``).
        condition_channels: channels of an optional condition ``(batch, condition_channels, length)`` passed as
            ``net(t, x, condition)`` (required when set).
        time_dim: size of the time embedding.

    Example:
        >>> net = TemporalConvNet(24, width=16, depth=3)
        >>> net(torch.rand(5), torch.randn(5, 24)).shape
        torch.Size([5, 24])
    """

    def __init__(
        self,
        length: int,
        *,
        channels: int | None = None,
        width: int = 64,
        depth: int = 6,
        cycle: int | None = None,
        condition_channels: int = 0,
        time_dim: int = 64,
    ):
        super().__init__()
        for name, value in (("length", length), ("width", width), ("depth", depth)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if channels is not None and not (isinstance(channels, int) and channels >= 1):
            raise ValueError(f"channels must be None or a positive integer; got {channels!r}")
        if not (isinstance(condition_channels, int) and condition_channels >= 0):
            raise ValueError(f"condition_channels must be a non-negative integer; got {condition_channels!r}")
        cycle = cycle if cycle is not None else max(1, math.ceil(math.log2(length)))
        if not (isinstance(cycle, int) and cycle >= 1):
            raise ValueError(f"cycle must be a positive integer; got {cycle!r}")
        self.length, self.channels, self.condition_channels = length, channels, condition_channels
        inputs = (channels or 1) + condition_channels
        self.time_embedding = SinusoidalTimeEmbedding(time_dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU())
        self.inp = nn.Conv1d(inputs, width, kernel_size=1)
        self.blocks = nn.ModuleList(_ResidualBlock(width, 2 ** (k % cycle), time_dim) for k in range(depth))
        self.head = nn.Sequential(nn.GroupNorm(1, width), nn.SiLU(), nn.Conv1d(width, channels or 1, kernel_size=1))

    def forward(self, t, x: Tensor, condition: Tensor | None = None) -> Tensor:
        shape = (self.length,) if self.channels is None else (self.channels, self.length)
        if tuple(x.shape[1:]) != shape or x.ndim < 2:
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, shape))}); got {tuple(x.shape)}")
        _check_dtype(x, self.inp.weight)
        h = x[:, None] if self.channels is None else x
        if self.condition_channels:
            want = (x.shape[0], self.condition_channels, self.length)
            if condition is None or tuple(condition.shape) != want:
                got = None if condition is None else tuple(condition.shape)
                raise ValueError(f"the network needs a condition of shape {want}; got {got}")
            h = torch.cat([h, condition.to(x.dtype)], dim=1)
        elif condition is not None:
            raise ValueError("this network takes no condition (condition_channels=0)")
        embedding = self.time_mlp(self.time_embedding(batch_time(t, x)))
        h = self.inp(h)
        for block in self.blocks:
            h = block(h, embedding)
        out = self.head(h)
        return out[:, 0] if self.channels is None else out
