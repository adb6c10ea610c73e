"""The loop kit: what every stepping loop of interp shares (docs/design.md, "One loop kit").

A stepping loop — the ODE/SDE driver :func:`interp.integrate`, the weighted Feynman–Kac loop, superposition,
the Langevin chains, Denoising MCMC and the particle gradient flows — does five things besides its update:

* shows a progress bar over its steps (:meth:`StepLoop.steps`; tqdm, off with ``progress=False`` and when the
  output is not a terminal);
* refuses to carry a non-finite state forward (:meth:`StepLoop.guard` raises :class:`NonFiniteStateError`
  naming the step index and the time reached);
* records the state at chosen step indices (:func:`record_indices` turns ``record=`` into indices;
  :meth:`StepLoop.keep` and :meth:`StepLoop.stacked`), with per-particle extras tracked beside it;
* draws its noise from an explicit generator, or from a fresh one whose seed is recorded
  (:func:`seeded_generator`).

The kit never draws random numbers itself, so a loop moved onto it keeps the same draws for the same seed.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._random import seeded_generator

__all__ = [
    "ConvergenceError",
    "FusedSteps",
    "NonFiniteStateError",
    "StepLoop",
    "compile_fallback",
    "record_indices",
    "seeded_generator",
]


class ConvergenceError(RuntimeError):
    """An iterative solver (Sinkhorn, an adaptive ODE/SDE solver, a fit) reached its cap without meeting its own
    convergence test; the message names the solver, the cap, what was reached and what to change
    (docs/design.md, "Iterative solvers")."""


class NonFiniteStateError(FloatingPointError):
    """A state became NaN or infinite during a loop; names the step index and the time reached.

    Attributes:
        step: the index of the step that produced the non-finite state.
        time: the time (or, for a chain, the step count in units of its step size) reached by that step.
    """

    def __init__(self, step: int, time: float, solver: str):
        self.step, self.time = step, time
        super().__init__(f"{solver}: the state became non-finite at step {step} (t = {time:.6g})")


def record_indices(record: bool | Sequence[float] | Tensor | None, grid: Tensor) -> list[int]:
    """The grid indices to record, sorted: ``False``/``None`` the first and last, ``True`` all, or the indices of
    the given grid times (each must be a grid point; the first and last are always kept).

    Example:
        >>> record_indices([0.5], torch.linspace(0, 1, 5))
        [0, 2, 4]
    """
    n = grid.shape[0]
    if record is True:
        return list(range(n))
    if record is False or record is None:
        return [0, n - 1]
    if (isinstance(record, Sequence) and not isinstance(record, str)) or isinstance(record, Tensor):
        indices = {0, n - 1}
        for t in record.tolist() if isinstance(record, Tensor) else record:
            match = torch.nonzero((grid - float(t)).abs() <= 1e-9 * max(1.0, abs(float(t)))).reshape(-1)
            if match.numel() == 0:
                raise ValueError(f"record time {t} is not a point of the grid; add it to the grid")
            indices.add(int(match[0]))
        return sorted(indices)
    raise TypeError(f"record must be True, False/None or a sequence of grid times; got {record!r}")


class StepLoop:
    """Progress, non-finite guard and recording for one run of ``n_steps`` steps.

    Args:
        name: shown on the progress bar and in :class:`NonFiniteStateError`.
        n_steps: the number of steps.
        keep: the indices (0 … ``n_steps``) whose states :meth:`keep` stores; ``None`` stores every call.
        progress: show a tqdm bar.
        check_finite: whether :meth:`guard` checks.
        start: the index of the first step (Markov chains count their steps from 1).
        advice: appended to the error message, e.g. ``"reduce step_size"``.

    Example:
        >>> loop = StepLoop("decay", 4, keep=[0, 4], progress=False)
        >>> x = torch.ones(3)
        >>> loop.keep(0, x)
        >>> for i in loop.steps():
        ...     x = x / 2
        ...     loop.guard(i, (i + 1) / 4, x)
        ...     loop.keep(i + 1, x)
        >>> loop.stacked()[0].shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        name: str,
        n_steps: int,
        *,
        keep: Iterable[int] | None = None,
        progress: bool = True,
        check_finite: bool = True,
        start: int = 0,
        advice: str | None = None,
    ):
        self.name, self.n_steps, self.start = name, int(n_steps), int(start)
        self.kept_indices = None if keep is None else set(keep)
        self.progress, self.check_finite, self.advice = progress, check_finite, advice
        self.check_every = 32
        self._pending: list[tuple[int, float | Tensor, Tensor]] = []
        self.indices: list[int] = []
        self.states: list[Tensor] = []
        self.extras: dict[str, list[Tensor]] = {}

    def steps(self) -> Iterator[int]:
        """The step indices ``start … start + n_steps − 1`` under a progress bar."""
        return iter(
            tqdm(
                range(self.start, self.start + self.n_steps),
                desc=self.name,
                disable=None if self.progress else True,
                leave=False,
            )
        )

    def guard(self, step: int, time: float | Tensor, *tensors: Tensor) -> None:
        """Raise :class:`NonFiniteStateError` (step, time) if any of ``tensors`` holds a NaN or an infinity."""
        if self.check_finite and not all(bool(torch.isfinite(t).all()) for t in tensors):
            raise NonFiniteStateError(step, float(time), f"{self.name} ({self.advice})" if self.advice else self.name)

    def defer(self, step: int, time: float | Tensor, *tensors: Tensor) -> None:
        """:meth:`guard` without a host synchronisation: the step's finiteness flag stays on the device and is read
        with the others by :meth:`check`, every :attr:`check_every` steps (and whenever the caller calls it: at the
        end, or when a later step raised, since a field fed a NaN state may raise its own error first)."""
        if not self.check_finite:
            return
        ok = torch.isfinite(tensors[0]).all()
        for t in tensors[1:]:
            ok = ok & torch.isfinite(t).all()
        self._pending.append((step, time, ok))
        if len(self._pending) >= self.check_every:
            self.check()

    @contextlib.contextmanager
    def naming_earlier_failures(self):
        """Run one step: if it raises while a deferred flag is pending, a field was probably fed an earlier
        non-finite state, so that state's :class:`NonFiniteStateError` is raised instead (chained to the error)."""
        try:
            yield
        except Exception as error:
            try:
                self.check()
            except NonFiniteStateError as non_finite:
                raise non_finite from error
            raise

    def check(self) -> None:
        """Read the deferred flags (one host synchronisation) and raise :class:`NonFiniteStateError` for the first
        step whose state was non-finite."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        oks = torch.stack([ok for _, _, ok in pending])
        if not bool(oks.all()):
            step, time, _ = pending[int(torch.nonzero(~oks)[0])]
            raise NonFiniteStateError(step, float(time), f"{self.name} ({self.advice})" if self.advice else self.name)

    def wants(self, index: int) -> bool:
        """Whether the state at ``index`` is to be recorded."""
        return self.kept_indices is None or index in self.kept_indices

    def keep(self, index: int, state: Tensor, extras: dict[str, Tensor] | None = None) -> None:
        """Store ``state`` (and per-particle ``extras``) if ``index`` is one to record."""
        if not self.wants(index):
            return
        self.indices.append(index)
        self.states.append(state)
        for name, value in (extras or {}).items():
            self.extras.setdefault(name, []).append(value)

    def stacked(self) -> tuple[Tensor, dict[str, Tensor]]:
        """The recorded states ``(n_recorded, ...)`` and each extra stacked the same way."""
        if not self.states:
            raise ValueError(f"{self.name}: nothing was recorded")
        return torch.stack(self.states), {name: torch.stack(values) for name, values in self.extras.items()}


def compile_fallback(name: str, error: Exception, stacklevel: int = 3) -> str:
    """Warn (``RuntimeWarning``) that compilation failed and the steps run eagerly; return the one-line reason
    recorded as ``compile_fallback``."""
    text = str(error).strip()
    reason = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    warnings.warn(
        f"{name}: torch.compile is unavailable here ({reason[:300]}); running the steps eagerly (same numbers, slower)",
        RuntimeWarning,
        stacklevel=stacklevel,
    )
    return reason


class FusedSteps:
    """``block`` steps of a tensor-only step function in one call, compiled with :func:`torch.compile` when asked
    (docs/design.md, "Compiled stepping").

    ``step(carry, noise_k) -> (carry, flags)`` must do tensor arithmetic only (no ``.item()``, no Python branch on a
    value); ``carry`` is a tuple of tensors (``None`` allowed), ``noise_k`` the step's noise (a tuple of tensors,
    each sliced from a ``(block, ...)`` stack), ``flags`` a boolean tensor that is true where the step must not be
    taken. One call returns ``(carry, states, bad)``: the carry after the block, the first component of the carry
    after every step stacked ``(block, ...)``, and one boolean scalar, true when a step raised a flag or made
    the first component non-finite. The caller reads ``bad`` once per block (the only host synchronisation) and,
    when it is true, replays the block eagerly to name the step.

    The first compiled call compiles (its time is reported by :attr:`first_call_seconds`); where compilation is
    unavailable (no C compiler, an operation dynamo cannot trace in one graph) the block runs eagerly from then on,
    with a :class:`RuntimeWarning` naming the reason, and :attr:`fallback` holds it.
    """

    def __init__(self, step, block: int, *, compile: bool = False, name: str = "loop"):
        if not (isinstance(block, int) and block >= 1):
            raise ValueError(f"block must be a positive integer; got {block!r}")
        self.step, self.block, self.name = step, block, name
        self.compiled: bool = bool(compile)
        self.fallback: str | None = None
        self.first_call_seconds: float | None = None
        self._compiled_fn = torch.compile(self._run, fullgraph=True, dynamic=False) if compile else None

    def _run(self, carry, noise):
        firsts, bad = [], None
        for k in range(self.block):
            carry, flags = self.step(carry, tuple(n[k] for n in noise))
            step_bad = flags.any() | ~torch.isfinite(carry[0]).all()
            bad = step_bad if bad is None else bad | step_bad
            firsts.append(carry[0])
        return carry, torch.stack(firsts), bad

    def __call__(self, carry, noise):
        if self._compiled_fn is None:
            return self._run(carry, noise)
        if self.first_call_seconds is not None:
            return self._compiled_fn(carry, noise)
        started = time.perf_counter()
        try:
            out = self._compiled_fn(carry, noise)
        except Exception as error:  # compilation failed; an error of the step itself recurs eagerly below
            out = self._run(carry, noise)
            self.compiled, self._compiled_fn = False, None
            self.fallback = compile_fallback(self.name, error, stacklevel=4)
        self.first_call_seconds = time.perf_counter() - started
        return out
