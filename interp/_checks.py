"""Input checks shared by every module.

Bad input raises ``ValueError``/``TypeError`` naming the argument and what was expected, so that nothing
downstream ever sees a silent NaN (docs/design.md, "Errors").
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor


def as_tensor(value, name: str, *, like: Tensor | None = None, dtype=None) -> Tensor:
    """Return ``value`` as a tensor, on ``like``'s device/dtype when given."""
    if isinstance(value, Tensor):
        out = value
    elif isinstance(value, (int, float)) or hasattr(value, "__array__") or isinstance(value, (list, tuple)):
        # A Python or numpy number takes the state's dtype directly (docs/design.md, "Dtypes"): going through the
        # default dtype first would round a float64 run's times to float32.
        if dtype is None and like is not None and like.is_floating_point():
            dtype = like.dtype
        out = torch.as_tensor(value, dtype=dtype or torch.get_default_dtype())
    else:
        raise TypeError(f"{name} must be a tensor or a number, got {type(value).__name__}")
    if like is not None:
        out = out.to(device=like.device, dtype=like.dtype if out.is_floating_point() or dtype is None else dtype)
    elif dtype is not None:
        out = out.to(dtype)
    return out


def check_finite(x: Tensor, name: str) -> Tensor:
    """``x``, or a ``ValueError`` counting its non-finite entries. Skipped inside :func:`torch.compile` (a value
    test cannot be traced): compiled loops check their states once per block instead (docs/design.md,
    "Compiled stepping")."""
    if torch.compiler.is_compiling():
        return x
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} must be finite; it has {bad} non-finite entries")
    return x


def check_time(t: Tensor, name: str = "t") -> Tensor:
    """Check that every time lies in [0, 1] and is finite (skipped inside :func:`torch.compile`, like
    :func:`check_finite`: compiled loops take their times from a checked grid). On a CUDA device the check is a
    device-side assertion (``torch._assert_async``): no host synchronisation per call, and a bad time stops the run
    with a CUDA assertion error instead of this ``ValueError``."""
    if torch.compiler.is_compiling():
        return t
    if t.device.type == "cuda":  # a value read would stop the host once per field call: assert on the device
        torch._assert_async(torch.isfinite(t).all() & (t >= 0).all() & (t <= 1).all(), f"{name} must lie in [0, 1]")
        return t
    check_finite(t, name)
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{float(t.min())}, {float(t.max())}]")
    return t


def batch_time(t, x: Tensor, name: str = "t") -> Tensor:
    """Broadcast a time (scalar or ``(batch,)``) to shape ``(batch,)`` matching ``x``.

    Fields take ``t`` as a scalar tensor or a ``(batch,)`` tensor (docs/design.md, "Fields").
    """
    t = as_tensor(t, name, like=x)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    elif t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"{name} must be a scalar or have shape (batch,) = ({x.shape[0]},); got {tuple(t.shape)}")
    return check_time(t, name)


def time_column(t: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``(batch,)`` time so it broadcasts against ``x`` of shape ``(batch, ...)``."""
    return t.reshape(t.shape + (1,) * (x.ndim - 1))


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")


def check_batch(x: Tensor, name: str, *, dim: int | None = None) -> Tensor:
    """Check ``x`` is a floating tensor of shape ``(batch, ...)`` (``(batch, dim)`` when ``dim`` is given)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension, got a scalar")
    if dim is not None and (x.ndim != 2 or x.shape[1] != dim):
        raise ValueError(f"{name} must have shape (batch, {dim}); got {tuple(x.shape)}")
    return check_finite(x, name)


def check_matrix(x, name: str, rows: str = "batch") -> Tensor:
    """A finite 2-D tensor ``(rows, dim)``: chains, particles or points."""
    if not isinstance(x, Tensor) or x.ndim != 2:
        raise ValueError(f"{name} must be a ({rows}, dim) tensor; got {getattr(x, 'shape', type(x).__name__)}")
    return check_finite(x, name)


def log_density_value(source, x: Tensor, what: str) -> Tensor:
    """``source(x)`` (a callable) or ``source`` (a number or tensor) as one log-density per particle, ``(batch,)``,
    in ``x``'s dtype; a ``ValueError`` naming ``what`` otherwise."""
    value = source(x) if callable(source) else torch.as_tensor(source, dtype=x.dtype, device=x.device)
    if not isinstance(value, Tensor) or value.shape != (x.shape[0],):
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{what} must give one log-density per particle, shape ({x.shape[0]},); got {shape}")
    return value.to(x.dtype)


LOW_PRECISION = (torch.float16, torch.bfloat16)


def upcast_low_precision(method):
    """Run a linear-algebra method in float32 when given half-precision tensors, and cast the results back.

    torch has no Cholesky or triangular solve in float16/bfloat16; rather than fail deep inside torch, the
    closed-form modules compute in float32 and return the caller's dtype (docs/design.md, "Dtypes")."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        low = next((a.dtype for a in args if isinstance(a, Tensor) and a.dtype in LOW_PRECISION), None)
        if low is None:
            return method(self, *args, **kwargs)
        up = [a.float() if isinstance(a, Tensor) and a.dtype in LOW_PRECISION else a for a in args]
        out = method(self, *up, **kwargs)

        def back(value):
            if isinstance(value, Tensor) and value.is_floating_point():
                return value.to(low)
            if isinstance(value, tuple):
                return tuple(back(v) for v in value)
            return value

        return back(out)

    return wrapper


def check_count(value, name: str, *, minimum: int = 1) -> int:
    """An ``int`` (not a bool) of at least ``minimum``: steps, iterations, caps, seeds."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {kind}; got {value!r}")
    return value


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (``>= 0`` with ``allow_zero``): rates, tolerances, noise scales, bandwidths."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative (>= 0)" if allow_zero else "positive (> 0)"
        raise ValueError(f"{name} must be a finite {kind} number; got {value!r}")
    return float(value)
