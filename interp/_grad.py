"""Autograd through a user's function, whatever context the caller is in (docs/design.md, "Gradients").

Anything in interp that needs a derivative of a user field (a divergence, a score from a log-density, a Jacobian,
a guidance gradient) takes it here: autograd is switched on locally — also under ``torch.no_grad()`` and
``torch.inference_mode()`` — and an output that carries no graph back to the input is never read as "derivative
zero" unless the function is verified constant in its input; otherwise a ``GradientError`` says what happened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["GradientError", "autograd_on", "grad_leaf", "check_graph"]


class GradientError(TypeError):
    """A derivative was needed but the function's output carries no autograd graph back to its input."""


@contextlib.contextmanager
def autograd_on() -> Iterator[None]:
    """Record gradients inside, even when the caller is under ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def grad_leaf(x: Tensor, *, keep: bool = False) -> Tensor:
    """``x`` as a tensor that records gradients; a plain tensor also when ``x`` was made under inference mode.

    ``keep=True`` returns ``x`` itself when it already requires grad (the caller wants the graph to continue)."""
    if keep and x.requires_grad:
        return x
    # An inference tensor cannot enter a recorded graph; a clone made outside inference mode can.
    return (x.clone() if x.is_inference() else x.detach()).requires_grad_(True)


def _probe_direction(x: Tensor) -> Tensor:
    """A fixed, input-independent direction (no random draw: a check must not move the caller's generator)."""
    pattern = torch.linspace(-1.0, 1.0, x.numel(), dtype=x.dtype, device=x.device).reshape(x.shape)
    return pattern + 0.5 * torch.sign(pattern + 0.25)


def check_graph(out: Tensor, fn: Callable[[Tensor], Tensor], x: Tensor, what: str) -> bool:
    """``True`` when ``out`` carries a graph (differentiate it). ``False`` when it does not and ``fn`` is constant
    in ``x`` (the derivative is truly zero). Raises ``GradientError`` when it does not and ``fn`` varies with ``x``:
    the function was evaluated without gradient (``torch.no_grad``, ``.detach()``, a numpy round trip), and
    reading that as a zero derivative would be a silently wrong answer."""
    if out.requires_grad:
        return True
    with torch.no_grad():
        shifted = fn(x.detach() + 1e-2 * (1 + x.detach().abs()) * _probe_direction(x))
    if isinstance(shifted, Tensor) and torch.equal(shifted, out.detach()):
        return False
    raise GradientError(
        f"{what} changes with x but its output carries no gradient (computed under torch.no_grad(), "
        "torch.inference_mode(), .detach() or outside torch); interp needs autograd through it here and will not "
        "assume a zero derivative: evaluate it with gradients enabled (interp enables them itself), or pass the "
        "derivative explicitly where the function takes one"
    )
