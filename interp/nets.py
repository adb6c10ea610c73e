r"""Small networks that are fields: ``net(t, x) -> Tensor`` with the shape of ``x``.

:class:`MLP` flattens a state of any shape ``(batch, ...)``, concatenates a sinusoidal embedding of the time
(Vaswani et al. 2017; as in DDPM, Ho et al. 2020) and maps back to the state's shape. Sized so that a 2D model
trains in seconds on a CPU.

:class:`TemporalConvNet` is a field on sequences ``(batch, length)`` or ``(batch, channels, length)``: residual
blocks of dilated 1-D convolutions (dilations 1, 2, 4, ... as in WaveNet, van den Oord et al. 2016; non-causal,
since a denoiser sees the whole window), each shifted by a projection of the time embedding, with optional
conditioning channels (e.g. an observed context and its mask) concatenated to the input. The temporal backbone
of the time-series adapter (TSDiff, Kollovieh et al. 2023, uses S4 layers in the same place).

:class:`UNet` is a field on images ``(batch, channels, height, width)``: the DDPM U-Net (Ho et al. 2020) — residual
blocks shifted and scaled by the time (and optional class) embedding, down- and up-sampling with skip connections,
self-attention at the chosen resolutions — with optional class conditioning whose extra "no class" label is the
unconditional model of classifier-free guidance (Ho & Salimans 2022). Any height and width: the image is padded
to a multiple of the total down-sampling and cropped back.
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


def _groups(channels: int, wanted: int = 8) -> int:
    return math.gcd(channels, wanted)


class _ImageBlock(nn.Module):
    """Residual block: GroupNorm, SiLU, 3x3 conv, scale-shift by the embedding, GroupNorm, SiLU, dropout, 3x3 conv
    (zero-initialised, so the block starts as the identity)."""

    def __init__(self, inputs: int, outputs: int, embedding_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(inputs), inputs)
        self.conv1 = nn.Conv2d(inputs, outputs, 3, padding=1)
        self.embed = nn.Linear(embedding_dim, 2 * outputs)
        self.norm2 = nn.GroupNorm(_groups(outputs), outputs)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(inputs, outputs, 1) if inputs != outputs else nn.Identity()

    def forward(self, h: Tensor, embedding: Tensor) -> Tensor:
        u = self.conv1(nn.functional.silu(self.norm1(h)))
        scale, shift = self.embed(embedding)[:, :, None, None].chunk(2, dim=1)
        u = self.norm2(u) * (1 + scale) + shift
        u = self.conv2(self.dropout(nn.functional.silu(u)))
        return self.skip(h) + u


class _ImageAttention(nn.Module):
    """Multi-head self-attention over the pixels, residual (output projection zero-initialised)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention heads ({heads}) must divide the channels ({channels})")
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor, embedding: Tensor | None = None) -> Tensor:
        b, c, height, width = h.shape
        q, k, v = self.qkv(self.norm(h)).reshape(b, 3, self.heads, c // self.heads, height * width).unbind(1)
        attended = nn.functional.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return h + self.out(attended.transpose(-1, -2).reshape(b, c, height, width))


class UNet(nn.Module):
    """Time-conditioned U-Net: a field on images ``(batch, channels, height, width)``.

    Args:
        channels: image channels (1 for grey, 3 for colour).
        width: channels of the first level; level ``i`` has ``width * multipliers[i]``.
        multipliers: one per resolution level; each level after the first halves the resolution.
        blocks: residual blocks per level (the decoder has one more, taking the last skip).
        attention: the levels (indices into ``multipliers``) with self-attention after each block; the middle
            always has one.
        heads: attention heads.
        num_classes: 0 for an unconditional net; otherwise labels ``0 .. num_classes - 1`` are passed as
            ``net(t, x, label)`` and the extra label ``num_classes`` (:attr:`null_label`, also what ``label=None``
            means) is "no class", the unconditional model of classifier-free guidance.
        dropout: dropout inside the residual blocks.
        time_dim: size of the sinusoidal time embedding (the blocks see ``4 * width`` features).

    Example:
        >>> net = UNet(1, width=16, multipliers=(1, 2), attention=())
        >>> net(torch.rand(3), torch.randn(3, 1, 8, 8)).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(
        self,
        channels: int = 1,
        *,
        width: int = 32,
        multipliers: Sequence[int] = (1, 2, 2),
        blocks: int = 1,
        attention: Sequence[int] = (),
        heads: int = 4,
        num_classes: int = 0,
        dropout: float = 0.0,
        time_dim: int = 64,
    ):
        super().__init__()
        for name, value in (("channels", channels), ("width", width), ("blocks", blocks), ("heads", heads)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        multipliers = tuple(multipliers)
        if not multipliers or not all(isinstance(m, int) and m >= 1 for m in multipliers):
            raise ValueError(f"multipliers must be a non-empty sequence of positive integers; got {multipliers!r}")
        attention = tuple(attention)
        if not all(isinstance(a, int) and 0 <= a < len(multipliers) for a in attention):
            raise ValueError(f"attention must list level indices in [0, {len(multipliers)}); got {attention!r}")
        if not (isinstance(num_classes, int) and num_classes >= 0):
            raise ValueError(f"num_classes must be a non-negative integer; got {num_classes!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
        self.channels, self.num_classes, self.levels = channels, num_classes, len(multipliers)
        embedding_dim = 4 * width
        self.time_embedding = SinusoidalTimeEmbedding(time_dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim)
        )
        self.label_embedding = nn.Embedding(num_classes + 1, embedding_dim) if num_classes else None
        self.inp = nn.Conv2d(channels, width, 3, padding=1)

        def block(inputs: int, outputs: int, level: int) -> nn.ModuleList:
            parts = [_ImageBlock(inputs, outputs, embedding_dim, dropout)]
            if level in attention:
                parts.append(_ImageAttention(outputs, heads))
            return nn.ModuleList(parts)

        self.down = nn.ModuleList()
        skips, current = [width], width
        for level, multiplier in enumerate(multipliers):
            for _ in range(blocks):
                self.down.append(block(current, width * multiplier, level))
                current = width * multiplier
                skips.append(current)
            if level < self.levels - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(current, current, 3, stride=2, padding=1)]))
                skips.append(current)
        self.middle = nn.ModuleList(
            [_ImageBlock(current, current, embedding_dim, dropout), _ImageAttention(current, heads),
             _ImageBlock(current, current, embedding_dim, dropout)]
        )  # fmt: skip
        self.up = nn.ModuleList()
        for level in reversed(range(self.levels)):
            for _ in range(blocks + 1):
                self.up.append(block(current + skips.pop(), width * multipliers[level], level))
                current = width * multipliers[level]
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(current, current, 3, padding=1)]))  # fmt: skip
        self.head = nn.Sequential(
            nn.GroupNorm(_groups(current), current), nn.SiLU(), nn.Conv2d(current, channels, 3, padding=1)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @property
    def null_label(self) -> int:
        """The "no class" label (classifier-free guidance's unconditional model)."""
        return self.num_classes

    def forward(self, t, x: Tensor, label: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must have shape (batch, {self.channels}, height, width); got {tuple(x.shape)}")
        _check_dtype(x, self.inp.weight)
        embedding = self.time_mlp(self.time_embedding(batch_time(t, x)))
        if self.label_embedding is not None:
            if label is None:
                label = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
            if label.shape != (x.shape[0],) or label.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"label must be an integer tensor of shape ({x.shape[0]},); got {label.dtype} "
                                 f"{tuple(label.shape)}")  # fmt: skip
            # checked on the CPU only: on a GPU this read would stop the host every call, and the embedding's own
            # device-side index assertion stops an out-of-range label there
            if label.device.type == "cpu" and bool(((label < 0) | (label > self.null_label)).any()):
                raise ValueError(f"labels must lie in [0, {self.null_label}] ({self.null_label} = no class)")
            embedding = embedding + self.label_embedding(label)
        elif label is not None:
            raise ValueError("this network takes no label (num_classes=0)")
        height, width = x.shape[2:]
        multiple = 2 ** (self.levels - 1)
        pad_h, pad_w = -height % multiple, -width % multiple
        h = nn.functional.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x
        h = self.inp(h)
        skips = [h]
        for parts in self.down:
            for part in parts:
                h = part(h, embedding) if isinstance(part, (_ImageBlock, _ImageAttention)) else part(h)
            skips.append(h)
        for part in self.middle:
            h = part(h, embedding)
        for parts in self.up:
            if isinstance(parts[0], _ImageBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            for part in parts:
                h = part(h, embedding) if isinstance(part, (_ImageBlock, _ImageAttention)) else part(h)
        return self.head(h)[:, :, :height, :width]
