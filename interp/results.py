"""Results: :class:`Trajectory` and its round trip through :class:`xarray.Dataset` and netCDF.

A trajectory's states become the data variable ``x`` with dims ``(time, particle, dim)``; states of any
trailing shape are flattened into ``dim`` and the shape is kept in the attribute ``state_shape``. Attributes
carry the solver, NFE, the grid, the seed and the package version (docs/design.md, "Results").

Quantities tracked along the path (log-densities, mixing weights, ...) live in ``Trajectory.extras``: tensors
whose first two axes are ``(time, particle)``; they become data variables with dims ``(time, particle, ...)``
(named in ``extra_dims``; a third axis defaults to ``<name>_index``).

Quantities with one value per grid step (the effective sample size of weighted particles, resampling events, the
running log normalising-constant estimate) live in ``Trajectory.series``: 1-D tensors of length ``len(grid)``,
written as data variables with dims ``(step,)``; the coordinate ``step_time`` holds the grid.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from ._files import write_atomically
from ._version import __version__

__all__ = [
    "NetCDFResult",
    "Trajectory",
    "netcdf_engine",
    "result_attrs",
    "to_numpy",
    "write_atomically",
    "write_netcdf",
]


def to_numpy(value: Tensor, *, float64: bool = False) -> np.ndarray:
    """A tensor as a numpy array for xarray/netCDF: detached, on the CPU; bfloat16 (which numpy lacks) becomes
    float32 exactly, and ``float64=True`` widens times and grids so they read back exactly."""
    value = value.detach().cpu()
    if float64 and value.is_floating_point():
        value = value.double()
    elif value.dtype == torch.bfloat16:
        value = value.float()
    return value.numpy()


def result_attrs(method: str, seed: int | None = None, **settings) -> dict:
    """The attributes every result carries (docs/design.md, "One result contract"): ``method``, ``seed`` (the initial
    seed of the generator that drove the noise, when one did), ``interp_version``, then the result's settings
    (numbers and strings; booleans written as 0/1)."""
    attrs: dict = {"method": method, "interp_version": __version__}
    if seed is not None:
        attrs["seed"] = int(seed)
    for key, value in settings.items():
        attrs[key] = int(value) if isinstance(value, bool) else value
    return attrs


class NetCDFResult:
    """Mixin of the result records: :meth:`to_netcdf` writes :meth:`to_xarray` atomically, :meth:`load_dataset`
    reads it back as an :class:`xarray.Dataset`."""

    def to_xarray(self) -> xr.Dataset:  # pragma: no cover - each result defines it
        raise NotImplementedError

    def to_netcdf(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_xarray` to netCDF atomically (temp file + rename)."""
        write_netcdf(self.to_xarray(), path)

    @staticmethod
    def load_dataset(path: str | os.PathLike) -> xr.Dataset:
        """The dataset a result wrote with :meth:`to_netcdf`."""
        with xr.open_dataset(path, engine=netcdf_engine()) as ds:
            return ds.load()


@dataclass
class Trajectory(NetCDFResult):
    """States recorded along an integration.

    Attributes:
        times: ``(n_recorded,)`` times at which states were recorded (always the first and last grid time).
        states: ``(n_recorded, batch, ...)``.
        grid: the full integration grid ``(n_steps + 1,)``.
        solver: the solver's name.
        nfe: number of field evaluations (each a batched call).
        seed: initial seed of the generator that drove the noise, or ``None`` for a deterministic solve.
        attrs: further metadata (strings, numbers) kept in the xarray attributes.
        extras: per-particle quantities recorded with the states, each ``(n_recorded, batch, ...)``
            (e.g. ``"log_density"``: :math:`\\log\rho_t(X_t)` from :mod:`interp.density`).
        extra_dims: xarray dimension names of each extra (default ``("time", "particle", "<name>_index")``).
        series: per-step quantities, each ``(len(grid),)`` (e.g. ``"ess"`` of weighted particles).
    """

    times: Tensor
    states: Tensor
    grid: Tensor
    solver: str
    nfe: int
    seed: int | None = None
    attrs: dict = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)
    extra_dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    series: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self):
        n_times, batch = self.states.shape[:2]
        for name, value in self.extras.items():
            if value.ndim < 2 or tuple(value.shape[:2]) != (n_times, batch):
                raise ValueError(
                    f"extra {name!r} must have leading shape (time, particle) = ({n_times}, {batch}); "
                    f"got {tuple(value.shape)}"
                )
        for name, value in self.series.items():
            if tuple(value.shape) != (self.grid.shape[0],):
                raise ValueError(
                    f"series {name!r} must have one value per grid time ({self.grid.shape[0]},); "
                    f"got {tuple(value.shape)}"
                )

    def dims_of(self, name: str) -> tuple[str, ...]:
        """The xarray dimensions of the extra ``name``."""
        ndim = self.extras[name].ndim
        dims = self.extra_dims.get(name) or ("time", "particle") + tuple(
            f"{name}_index" if i == 0 else f"{name}_index{i}" for i in range(ndim - 2)
        )
        if len(dims) != ndim:
            raise ValueError(f"extra_dims[{name!r}] names {len(dims)} dims for a {ndim}-d tensor")
        return tuple(dims)

    @property
    def log_density(self) -> Tensor:
        r"""The tracked :math:`\log\rho_t(X_t)`, ``(n_recorded, batch)``; raises if none was tracked."""
        if "log_density" not in self.extras:
            raise KeyError("this trajectory tracked no log-density; use interp.density to compute one")
        return self.extras["log_density"]

    @property
    def final(self) -> Tensor:
        """The state at the last grid time, ``(batch, ...)``."""
        return self.states[-1]

    def at(self, t: float, atol: float = 1e-9) -> Tensor:
        """The recorded state at time ``t``; raises if ``t`` was not recorded."""
        match = torch.nonzero((self.times - t).abs() <= atol).reshape(-1)
        if match.numel() == 0:
            raise ValueError(f"time {t} was not recorded; recorded times are {self.times.tolist()}")
        return self.states[int(match[0])]

    # ------------------------------------------------------------ xarray
    def to_xarray(self) -> xr.Dataset:
        """The trajectory as a Dataset with dims ``time``, ``particle``, ``dim``."""
        n_times, batch = self.states.shape[:2]
        values = to_numpy(self.states.reshape(n_times, batch, -1))
        attrs = {
            "method": self.solver,
            "solver": self.solver,
            "nfe": int(self.nfe),
            "grid": to_numpy(self.grid, float64=True),
            "state_shape": np.asarray(self.states.shape[2:], dtype=np.int64),
            "dtype": str(self.states.dtype).replace("torch.", ""),
            "interp_version": __version__,
        }
        if self.seed is not None:
            attrs["seed"] = int(self.seed)
        for key, value in self.attrs.items():
            attrs[key] = int(value) if isinstance(value, bool) else value
        variables = {"x": (("time", "particle", "dim"), values)}
        for name, value in self.extras.items():
            if name in variables or name in ("time", "particle", "dim"):
                raise ValueError(f"extra name {name!r} clashes with a trajectory variable")
            variables[name] = (self.dims_of(name), to_numpy(value))
        coords = {
            "time": to_numpy(self.times, float64=True),
            "particle": np.arange(batch),
            "dim": np.arange(values.shape[-1]),
        }
        for name, value in self.series.items():
            if name in variables:
                raise ValueError(f"series name {name!r} clashes with a trajectory variable")
            variables[name] = (("step",), to_numpy(value))
        if self.series:
            coords["step_time"] = ("step", to_numpy(self.grid, float64=True))
        return xr.Dataset(
            variables,
            coords=coords,
            attrs=attrs,
        )

    @classmethod
    def from_xarray(cls, ds: xr.Dataset) -> Trajectory:
        """Rebuild a trajectory written by :meth:`to_xarray`."""
        missing = ({"x"} - set(ds.data_vars)) | ({"solver", "nfe", "grid", "state_shape", "dtype"} - set(ds.attrs))
        if missing:
            raise ValueError(f"dataset is not a trajectory: missing {sorted(missing)}")
        dtype = getattr(torch, str(ds.attrs["dtype"]))
        shape = tuple(int(s) for s in np.atleast_1d(ds.attrs["state_shape"]))
        values = torch.tensor(np.array(ds["x"].values), dtype=dtype)
        states = values.reshape(values.shape[:2] + shape)
        reserved = {"method", "solver", "nfe", "grid", "state_shape", "dtype", "interp_version", "seed"}
        extras, extra_dims, series = {}, {}, {}
        for name, variable in ds.data_vars.items():
            if name != "x" and variable.dims[:2] == ("time", "particle"):
                extras[str(name)] = torch.tensor(np.array(variable.values))
                extra_dims[str(name)] = tuple(str(d) for d in variable.dims)
            elif variable.dims == ("step",):
                series[str(name)] = torch.tensor(np.array(variable.values))
        return cls(
            times=torch.tensor(np.array(ds["time"].values), dtype=torch.float64),
            states=states,
            grid=torch.tensor(np.array(np.atleast_1d(ds.attrs["grid"])), dtype=torch.float64),
            solver=str(ds.attrs["solver"]),
            nfe=int(ds.attrs["nfe"]),
            seed=int(ds.attrs["seed"]) if "seed" in ds.attrs else None,
            attrs={k: v for k, v in ds.attrs.items() if k not in reserved},
            extras=extras,
            extra_dims=extra_dims,
            series=series,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trajectory:
        """Read a trajectory written by :meth:`to_netcdf`."""
        return cls.from_xarray(cls.load_dataset(path))


def netcdf_engine() -> str:
    """The netCDF-4 engine available here (h5netcdf preferred, as in the ``netcdf`` extra)."""
    for engine, module in (("h5netcdf", "h5netcdf"), ("netcdf4", "netCDF4")):
        if importlib.util.find_spec(module) is not None:
            return engine
    raise ImportError("writing netCDF needs h5netcdf: pip install 'interp[netcdf]'")


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write ``ds`` to ``path`` through a temporary file and an atomic rename."""
    engine = netcdf_engine()
    write_atomically(path, lambda tmp: ds.to_netcdf(tmp, engine=engine))
