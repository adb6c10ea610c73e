"""Atomic file writes (docs/design.md: results and checkpoints are written to a temporary file, then renamed)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    A crash mid-write leaves any previous file at ``path`` intact; the new file gets the permissions of an
    ordinary new file (``mkstemp`` would make it private).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".tmp", prefix=os.path.basename(path) + ".", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
