"""Datasets shipped in Debian packages, fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into a cache
folder (``$INTERP_CACHE`` or ``~/.cache/interp``): no root, no installation, only the package registry.

An interrupted fetch leaves nothing half-written: the package is downloaded and unpacked in a temporary folder
beside the cache entry, checked for the files it must hold, and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class FetchError(RuntimeError):
    """A dataset could not be fetched or unpacked."""


def default_cache() -> Path:
    """``$INTERP_CACHE`` or ``~/.cache/interp``."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))


def apt_available() -> bool:
    """Whether ``apt-get`` and ``dpkg`` are on this machine (needed to fetch a package the first time)."""
    return shutil.which("apt-get") is not None and shutil.which("dpkg") is not None


def fetch_package(package: str, files, entry: str, cache: str | os.PathLike | None = None) -> Path:
    """The folder ``cache/entry`` holding Debian ``package`` unpacked, fetched if any of ``files`` (paths inside
    the package) is missing."""
    root = Path(cache) if cache is not None else default_cache()
    target = root / entry
    if all((target / name).is_file() for name in files):
        return target
    if not apt_available():
        raise FetchError(
            f"{entry} is not cached in {target} and apt-get/dpkg are not available to fetch Debian's {package}; "
            f"unpack that package (dpkg -x) into {target} yourself"
        )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{entry}-") as tmp:
        run = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True, check=False)
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if run.returncode != 0 or not debs:
            raise FetchError(f"apt-get download {package} failed: {run.stderr.strip() or run.stdout.strip()}")
        unpacked = Path(tmp) / "unpacked"
        run = subprocess.run(["dpkg", "-x", str(debs[-1]), str(unpacked)], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise FetchError(f"dpkg -x {debs[-1].name} failed: {run.stderr.strip()}")
        if not all((unpacked / name).is_file() for name in files):
            raise FetchError(f"{debs[-1].name} does not hold the expected files {tuple(files)}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    return target
