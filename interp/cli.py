"""What every command line of the project does with its arguments (docs/design.md, "Command lines").

Every argument and every output path is checked before any computation; a bad one prints one line
``NAME: error: ...`` on stderr and exits with status 2; nothing is written on failure, because outputs are
assembled in a temporary folder beside their destination and moved into place only at the end
(:class:`StagedOutputs`). argparse already does most of the parsing; what it lacks — one-line errors, finite and
positive numbers, output paths probed for writability up front, all-or-nothing outputs — is here.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = [
    "Parser",
    "StagedOutputs",
    "device_name",
    "fail",
    "finite_float",
    "non_negative_float",
    "non_negative_int",
    "output_dir",
    "output_file",
    "positive_float",
    "positive_int",
]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, ``NAME: error: MESSAGE``, with exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}") from None
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds, counts that may be zero)."""
    value = _number(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {text!r}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite float (``inf`` and ``nan`` refused)."""
    value = _number(text, float, "a finite number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number; got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (learning rates, noise scales)."""
    value = _number(text, float, "a finite number > 0")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = _number(text, float, "a finite number >= 0")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0; got {text!r}")
    return value


def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` that this machine has (``auto`` resolved to one of them)."""
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return text
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: torch sees no CUDA device here")
        if ":" in text and int(text[5:]) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N; got {text!r}")


def _existing_ancestor(folder: Path) -> Path:
    folder = folder.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _probe_writable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` — or, when it does not exist yet, in the nearest existing folder
    above it, where it would be made (by trying) — or ``None`` when they can."""
    folder = _existing_ancestor(folder)
    if not folder.is_dir():
        return f"{str(folder)!r} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".interp-probe-"):
            pass
    except OSError as error:
        return f"files cannot be created in {str(folder)!r} ({error.strerror or error})"
    return None


def output_file(path: str | os.PathLike) -> Path:
    """A path a file can be written to: not a folder, in a folder where files can be created (or can be made)."""
    path = Path(path)
    if path.is_dir() or not path.name:
        raise ValueError(f"{str(path)!r} is a folder; give a file name")
    problem = _probe_writable(path.parent)
    if problem:
        raise ValueError(f"cannot write {str(path)!r}: {problem}")
    return path


def output_dir(path: str | os.PathLike) -> Path:
    """A folder outputs can go into: an existing writable folder, or a new one whose parent is writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} exists and is not a folder")
    problem = _probe_writable(path)
    if problem:
        raise ValueError(f"cannot write into {str(path)!r}: {problem}")
    return path


class StagedOutputs:
    """All-or-nothing outputs. ``stage(destination)`` gives a temporary path in a hidden folder beside the
    destination; on leaving the ``with`` block without error every staged file is moved into place
    (``os.replace``, atomic per file), on error every temporary file is removed and no destination is touched.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with StagedOutputs() as out:
        ...     _ = out.stage(folder / "a.txt").write_text("a")
        >>> (folder / "a.txt").read_text()
        'a'
    """

    def __init__(self):
        self._moves: list[tuple[Path, Path]] = []
        self._folders: dict[Path, Path] = {}
        self._made: list[Path] = []  # folders created for the outputs: removed again on failure

    def stage(self, destination: str | os.PathLike) -> Path:
        destination = Path(destination)
        parent = destination.resolve().parent
        if not parent.exists():
            top = parent
            while not top.parent.exists():
                top = top.parent
            parent.mkdir(parents=True)
            self._made.append(top)
        if parent not in self._folders:
            self._folders[parent] = Path(tempfile.mkdtemp(dir=parent, prefix=".interp-staging-"))
        staged = self._folders[parent] / destination.name
        self._moves.append((staged, destination))
        return staged

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        done = False
        try:
            if kind is None:
                for staged, destination in self._moves:
                    if not staged.exists():
                        raise FileNotFoundError(f"staged output {destination} was never written")
                for staged, destination in self._moves:
                    os.replace(staged, destination)
                done = True
        finally:
            for folder in self._folders.values():
                shutil.rmtree(folder, ignore_errors=True)
            if not done:
                for folder in self._made:
                    shutil.rmtree(folder, ignore_errors=True)

    @property
    def destinations(self) -> list[Path]:
        return [destination for _, destination in self._moves]


def fail(prog: str, message: str) -> int:
    """Print ``PROG: error: MESSAGE`` on stderr; return the exit status 2 (for errors found after parsing)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
