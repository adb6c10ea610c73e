r"""Measurement operators :math:`H` for :math:`y = Hx + \sigma_y n` (docs/algorithms.md §7).

An operator acts on a batch ``(n, *shape)`` and returns ``(n, *out_shape)``. Besides the forward map each linear
operator gives what the posterior methods need, computed in its own structure rather than through a dense matrix
(a 28×28 blur is a 784×784 matrix; its FFT is 784 numbers):

* ``adjoint`` :math:`H^\top`, ``pinv`` :math:`H^+` (the minimum-norm least-squares inverse),
* ``gram_solve(v, scale, shift)``: :math:`(s\,HH^\top + c\,I)^{-1}v` — ΠGDM's likelihood step, the exact start of
  the weighted posterior sampler (Matheron's rule) and the evidence,
* ``gram_eigenvalues()``: the spectrum of :math:`HH^\top` (log-determinants),
* ``squared(v)``: :math:`(H\circ H)v`, the entrywise-squared operator, which maps a diagonal covariance
  :math:`D` to the diagonal of :math:`HDH^\top` (the diagonal second-order Tweedie step),
* ``matrix()``: the dense :math:`H` (small dimensions: the closed-form posterior, tests).

:class:`Nonlinear` wraps any differentiable callable for the methods that only need :math:`\nabla_x\|y - H(x)\|`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "Blur",
    "Downsample",
    "Identity",
    "LinearOperator",
    "Mask",
    "Matrix",
    "Nonlinear",
    "box_mask",
    "gaussian_blur",
    "random_mask",
    "uniform_blur",
]


def _shape(shape, name: str = "shape") -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(
            f"{name} must be a non-empty tuple of positive ints (the signal without the batch); got {shape}"
        )
    return shape


def _scalars(value, v: Tensor) -> Tensor:
    """A float or a ``(n,)`` tensor as a column broadcasting against ``v`` ``(n, ...)``."""
    value = torch.as_tensor(value, dtype=v.dtype, device=v.device)
    return value.reshape(-1, *([1] * (v.ndim - 1))) if value.ndim else value


class Operator:
    """What every measurement operator has: the signal ``shape``, the measurement ``out_shape`` and a forward map
    that checks its input."""

    linear = False
    shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def _forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _check(self, value: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
        if not isinstance(value, Tensor) or tuple(value.shape[1:]) != shape:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, shape))}) for {self!r}; got {got}")
        return value

    def check_signal(self, x: Tensor, name: str = "x") -> Tensor:
        """``x`` of shape ``(batch, *shape)``, else a ``ValueError`` naming both shapes."""
        return self._check(x, self.shape, name)

    def check_measurement(self, y: Tensor, name: str = "y") -> Tensor:
        """``y`` of shape ``(batch, *out_shape)``, else a ``ValueError`` naming both shapes."""
        return self._check(y, self.out_shape, name)

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def forward(self, x: Tensor) -> Tensor:
        """:math:`Hx`, ``(n, *shape) -> (n, *out_shape)``."""
        return self._forward(self.check_signal(x))

    @property
    def in_dim(self) -> int:
        return math.prod(self.shape)

    @property
    def out_dim(self) -> int:
        return math.prod(self.out_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, out_shape={self.out_shape})"


class LinearOperator(Operator):
    """A linear :math:`H`; subclasses give the forward map, its adjoint and the spectrum of :math:`HH^\\top`."""

    linear = True

    def _adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:
        """:math:`H^\\top y`, ``(n, *out_shape) -> (n, *shape)``."""
        return self._adjoint(self.check_measurement(y))

    def gram_solve(self, v: Tensor, scale=1.0, shift=0.0) -> Tensor:
        """:math:`(\\text{scale}\\,HH^\\top + \\text{shift}\\,I)^{-1} v` (``scale``, ``shift``: floats or ``(n,)``);
        where the system is singular (``shift = 0`` and a zero eigenvalue), the pseudo-inverse."""
        raise NotImplementedError

    def gram_eigenvalues(self) -> Tensor:
        """The ``out_dim`` eigenvalues of :math:`HH^\\top` (float64)."""
        raise NotImplementedError

    def squared(self, v: Tensor) -> Tensor:
        """:math:`(H\\circ H)v`: with ``v`` the diagonal of :math:`D`, the diagonal of :math:`HDH^\\top`."""
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        """:math:`H^+y`, the minimum-norm least-squares solution (directions :math:`H` does not see stay 0)."""
        raise NotImplementedError

    def matrix(self) -> Tensor:
        """The dense ``(out_dim, in_dim)`` matrix (float64), by applying :math:`H` to the standard basis."""
        basis = torch.eye(self.in_dim, dtype=torch.float64).reshape(self.in_dim, *self.shape)
        return self._forward(basis).reshape(self.in_dim, self.out_dim).T.contiguous()

    def log_det_gram(self, scale=1.0, shift=0.0) -> Tensor:
        """:math:`\\log\\det(\\text{scale}\\,HH^\\top + \\text{shift}\\,I)`."""
        return torch.log(scale * self.gram_eigenvalues() + shift).sum()


class Identity(LinearOperator):
    """:math:`H = I`: denoising."""

    def __init__(self, shape):
        self.shape = self.out_shape = _shape(shape)

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y

    def gram_solve(self, v, scale=1.0, shift=0.0):
        return v / (_scalars(scale, v) + _scalars(shift, v))

    def gram_eigenvalues(self):
        return torch.ones(self.out_dim, dtype=torch.float64)

    def squared(self, v):
        return v

    def pinv(self, y):
        return self.check_measurement(y)


class Mask(LinearOperator):
    """Keep the entries where ``mask`` is 1: ``y`` holds the observed entries, ``(n, m)`` in row-major order
    (inpainting; :func:`box_mask`, :func:`random_mask`). :math:`HH^\\top = I_m`."""

    def __init__(self, mask):
        mask = torch.as_tensor(mask)
        if mask.ndim == 0:
            raise ValueError("mask must have the signal's shape (without the batch); got a scalar")
        values = mask.double()
        if not torch.isfinite(values).all() or not ((values == 0) | (values == 1)).all():
            raise ValueError("mask must hold only 0 and 1 (or booleans): 1 where observed")
        self.mask = mask.bool()
        self.shape = tuple(mask.shape)
        self.index = torch.nonzero(self.mask.reshape(-1)).squeeze(1)
        if self.index.numel() == 0:
            raise ValueError("mask observes nothing (all zeros)")
        self.out_shape = (self.index.numel(),)

    def _forward(self, x):
        return x.reshape(x.shape[0], -1)[:, self.index.to(x.device)]

    def _adjoint(self, y):
        out = y.new_zeros(y.shape[0], self.in_dim)
        out[:, self.index.to(y.device)] = y
        return out.reshape(y.shape[0], *self.shape)

    def gram_solve(self, v, scale=1.0, shift=0.0):
        return v / (_scalars(scale, v) + _scalars(shift, v))

    def gram_eigenvalues(self):
        return torch.ones(self.out_dim, dtype=torch.float64)

    def squared(self, v):
        return self.forward(v)

    def pinv(self, y):
        return self.adjoint(y)

    def __repr__(self):
        return f"Mask(shape={self.shape}, observed={self.out_dim})"


def box_mask(shape, size: int | tuple[int, int], *, top: int | None = None, left: int | None = None) -> Mask:
    """A mask hiding a ``size`` box of the last two dimensions (centred unless ``top``/``left`` are given), the same
    box in every leading channel: box inpainting."""
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"a box mask needs an image shape (..., H, W); got {shape}")
    height, width = shape[-2:]
    bh, bw = (size, size) if isinstance(size, int) else size
    if not (1 <= bh <= height and 1 <= bw <= width):
        raise ValueError(f"box size {(bh, bw)} must fit inside the image {(height, width)}")
    top = (height - bh) // 2 if top is None else top
    left = (width - bw) // 2 if left is None else left
    if not (0 <= top <= height - bh and 0 <= left <= width - bw):
        raise ValueError(f"the box at (top={top}, left={left}) of size {(bh, bw)} leaves the image {(height, width)}")
    mask = torch.ones(shape, dtype=torch.bool)
    mask[..., top : top + bh, left : left + bw] = False
    return Mask(mask)


def random_mask(shape, observed: float, generator: torch.Generator | None = None) -> Mask:
    """Observe a random ``observed`` fraction of the entries (exactly ``round(observed * size)``, at least one)."""
    shape = _shape(shape)
    if not (isinstance(observed, (int, float)) and 0 < observed <= 1):
        raise ValueError(f"observed must be a fraction in (0, 1]; got {observed!r}")
    size = math.prod(shape)
    keep = torch.randperm(size, generator=generator, device=generator.device if generator else "cpu")
    mask = torch.zeros(size, dtype=torch.bool)
    mask[keep[: max(1, round(observed * size))].cpu()] = True
    return Mask(mask.reshape(shape))


class Downsample(LinearOperator):
    """Average pooling by ``factor`` over the last two dimensions (the last one for a vector signal):
    super-resolution. :math:`HH^\\top = I/f^k` (``k`` pooled dimensions); :math:`H^+` repeats each value."""

    def __init__(self, shape, factor: int):
        self.shape = _shape(shape)
        if not (isinstance(factor, int) and not isinstance(factor, bool) and factor >= 1):
            raise ValueError(f"factor must be a positive int; got {factor!r}")
        self.pooled = 1 if len(self.shape) == 1 else 2
        sizes = self.shape[-self.pooled :]
        if any(s % factor for s in sizes):
            raise ValueError(f"the pooled sizes {sizes} must be divisible by the factor {factor}")
        self.factor = factor
        self.out_shape = (*self.shape[: -self.pooled], *(s // factor for s in sizes))
        self.cells = factor**self.pooled

    def _forward(self, x):
        f, lead = self.factor, x.shape[: x.ndim - self.pooled]
        if self.pooled == 1:
            return x.reshape(*lead, -1, f).mean(-1)
        h, w = x.shape[-2:]
        return x.reshape(*lead, h // f, f, w // f, f).mean((-1, -3))

    def _repeat(self, y):
        for axis in range(y.ndim - self.pooled, y.ndim):
            y = y.repeat_interleave(self.factor, dim=axis)
        return y

    def _adjoint(self, y):
        return self._repeat(y) / self.cells

    def gram_solve(self, v, scale=1.0, shift=0.0):
        return v / (_scalars(scale, v) / self.cells + _scalars(shift, v))

    def gram_eigenvalues(self):
        return torch.full((self.out_dim,), 1.0 / self.cells, dtype=torch.float64)

    def squared(self, v):
        return self.forward(v) / self.cells

    def pinv(self, y):
        return self._repeat(self.check_measurement(y))

    def __repr__(self):
        return f"Downsample(shape={self.shape}, factor={self.factor})"


class Blur(LinearOperator):
    """Circular convolution with ``kernel`` (1-D for vector signals, 2-D over the last two dimensions of images,
    each channel alike), applied and inverted in the Fourier domain. The kernel is centred: its middle entry
    weighs the pixel itself. ``pinv`` drops frequencies whose gain :math:`|\\hat k|` is below ``rcond`` times the
    largest (a Gaussian blur's high frequencies are numerically zero)."""

    def __init__(self, shape, kernel, *, rcond: float = 1e-6):
        self.shape = self.out_shape = _shape(shape)
        kernel = torch.as_tensor(kernel, dtype=torch.float64)
        if kernel.ndim not in (1, 2) or kernel.ndim > len(self.shape):
            raise ValueError(f"kernel must be 1-D or 2-D and fit the signal {self.shape}; got {tuple(kernel.shape)}")
        if not torch.isfinite(kernel).all():
            raise ValueError("kernel must be finite")
        sizes = self.shape[-kernel.ndim :]
        if any(k > s for k, s in zip(kernel.shape, sizes, strict=True)):
            raise ValueError(f"kernel {tuple(kernel.shape)} is larger than the signal {sizes}")
        self.kernel, self.dims = kernel, tuple(range(-kernel.ndim, 0))
        self.gain = self._transfer(kernel)
        self.gain_squared = self._transfer(kernel**2)
        power = self.gain.abs() ** 2
        kept = power > rcond**2 * power.max()
        self.inverse = torch.where(kept, self.gain.conj() / torch.where(kept, power, 1.0), 0)

    def _transfer(self, kernel: Tensor) -> Tensor:
        """The kernel embedded at the origin of a signal-sized array (centre at index 0), transformed."""
        sizes = self.shape[-kernel.ndim :]
        padded = torch.zeros(sizes, dtype=torch.float64)
        padded[tuple(slice(0, k) for k in kernel.shape)] = kernel
        padded = torch.roll(padded, [-(k // 2) for k in kernel.shape], dims=tuple(range(kernel.ndim)))
        return torch.fft.fftn(padded)

    def _apply(self, x: Tensor, transfer: Tensor) -> Tensor:
        spectrum = torch.fft.fftn(x, dim=self.dims) * transfer.to(x.device)
        return torch.fft.ifftn(spectrum, dim=self.dims).real.to(x.dtype)

    def _forward(self, x):
        return self._apply(x, self.gain)

    def _adjoint(self, y):
        return self._apply(y, self.gain.conj())

    def gram_solve(self, v, scale=1.0, shift=0.0):
        v = self.check_measurement(v, "v")
        power = self.gain.abs().to(v.device) ** 2
        # one division per frequency; scale and shift may differ per row
        sc = _scalars(scale, v).to(torch.float64)
        sh = _scalars(shift, v).to(torch.float64)
        spectrum = torch.fft.fftn(v.double(), dim=self.dims)
        denominator = sc * power + sh
        # a frequency the blur removes, with no shift, is singular: solved in the least-squares sense (0)
        spectrum = torch.where(denominator > 0, spectrum / torch.where(denominator > 0, denominator, 1.0), 0)
        return torch.fft.ifftn(spectrum, dim=self.dims).real.to(v.dtype)

    def gram_eigenvalues(self):
        power = (self.gain.abs() ** 2).reshape(-1)
        return power.repeat(self.out_dim // power.numel())

    def squared(self, v):
        return self._apply(self.check_signal(v, "v"), self.gain_squared)

    def pinv(self, y):
        return self._apply(self.check_measurement(y), self.inverse)

    def __repr__(self):
        return f"Blur(shape={self.shape}, kernel={tuple(self.kernel.shape)})"


def _odd(size: int) -> int:
    if not (isinstance(size, int) and size >= 1 and size % 2):
        raise ValueError(f"kernel size must be a positive odd int; got {size!r}")
    return size


def gaussian_blur(shape, std: float, size: int | None = None) -> Blur:
    """A normalised Gaussian blur of standard deviation ``std`` pixels (``size`` default: ``2 * ceil(3 std) + 1``,
    capped at the signal)."""
    shape = _shape(shape)
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a positive number; got {std!r}")
    ndim = 1 if len(shape) == 1 else 2
    if size is None:
        size = min(2 * math.ceil(3 * std) + 1, *(s - 1 + s % 2 for s in shape[-ndim:]))
    offsets = torch.arange(_odd(size), dtype=torch.float64) - size // 2
    profile = torch.exp(-0.5 * (offsets / std) ** 2)
    kernel = profile if ndim == 1 else profile[:, None] * profile[None, :]
    return Blur(shape, kernel / kernel.sum())


def uniform_blur(shape, size: int) -> Blur:
    """A ``size``-wide box (uniform) blur."""
    shape = _shape(shape)
    ndim = 1 if len(shape) == 1 else 2
    kernel = torch.ones((_odd(size),) * ndim, dtype=torch.float64)
    return Blur(shape, kernel / kernel.sum())


class Matrix(LinearOperator):
    """Any ``(m, d)`` matrix acting on flattened signals of ``shape`` (default ``(d,)``); its Gram matrix is
    diagonalised once (``eigh`` of :math:`AA^\\top`)."""

    def __init__(self, A, shape=None):
        A = torch.as_tensor(A, dtype=torch.float64)
        if A.ndim != 2 or not torch.isfinite(A).all():
            raise ValueError(f"A must be a finite (m, d) matrix; got shape {tuple(A.shape)}")
        self.A = A
        self.shape = _shape(shape if shape is not None else (A.shape[1],))
        if math.prod(self.shape) != A.shape[1]:
            raise ValueError(
                f"A has {A.shape[1]} columns but the signal shape {self.shape} has {math.prod(self.shape)}"
            )
        self.out_shape = (A.shape[0],)
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(A @ A.T)
        self.eigenvalues = self.eigenvalues.clamp_min(0)
        self.A_pinv = torch.linalg.pinv(A)

    def _flat(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def _forward(self, x):
        return self._flat(x) @ self.A.to(x).T

    def _adjoint(self, y):
        return (y @ self.A.to(y)).reshape(y.shape[0], *self.shape)

    def gram_solve(self, v, scale=1.0, shift=0.0):
        v = self.check_measurement(v, "v")
        q = self.eigenvectors.to(v)
        denominator = _scalars(scale, v) * self.eigenvalues.to(v) + _scalars(shift, v)
        # a direction A does not reach, with no shift, is singular: solved in the least-squares sense (0)
        coefficients = torch.where(denominator > 0, (v @ q) / torch.where(denominator > 0, denominator, 1.0), 0)
        return coefficients @ q.T

    def gram_eigenvalues(self):
        return self.eigenvalues

    def squared(self, v):
        return self._flat(self.check_signal(v, "v")) @ (self.A**2).to(v).T

    def pinv(self, y):
        return (self.check_measurement(y) @ self.A_pinv.to(y).T).reshape(y.shape[0], *self.shape)

    def matrix(self):
        return self.A

    def __repr__(self):
        return f"Matrix({self.out_dim}x{self.in_dim}, shape={self.shape})"


class Nonlinear(Operator):
    """A differentiable measurement ``fn`` ``(n, *shape) -> (n, *out_shape)`` (e.g. phase retrieval
    :math:`|Fx|`). Only gradient-based methods (DPS, RED-Diff) accept it; the others need :math:`H^\\top` and
    :math:`HH^\\top`."""

    def __init__(self, fn: Callable[[Tensor], Tensor], shape, out_shape):
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        self.fn, self.shape, self.out_shape = fn, _shape(shape), _shape(out_shape, "out_shape")

    def _forward(self, x):
        out = self.fn(x)
        if not isinstance(out, Tensor) or tuple(out.shape) != (x.shape[0], *self.out_shape):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the nonlinear operator returned {got}; expected ({x.shape[0]}, {self.out_shape})")
        return out
