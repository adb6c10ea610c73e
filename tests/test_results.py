import pytest
import torch
import xarray as xr

from interp import __version__, grids, integrate
from interp.dynamics import SDE
from interp.results import Trajectory
from interp.solvers import EulerMaruyama


def _trajectory(shape=(5, 2)):
    sde = SDE(lambda t, x: -x, lambda t, x: torch.ones_like(x), additive=True)
    return integrate(
        sde,
        torch.ones(shape),
        grids.uniform(4),
        EulerMaruyama(),
        generator=torch.Generator().manual_seed(3),
        record=True,
        progress=False,
    )


def test_to_xarray_dims_and_attrs():
    ds = _trajectory().to_xarray()
    assert ds["x"].dims == ("time", "particle", "dim")
    assert ds.sizes == {"time": 5, "particle": 5, "dim": 2}
    assert ds.attrs["solver"] == "euler_maruyama" and ds.attrs["nfe"] == 4 and ds.attrs["seed"] == 3
    assert ds.attrs["interp_version"] == __version__
    assert list(ds.attrs["grid"]) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize("shape", [(5, 2), (3, 2, 4, 4)])
def test_netcdf_round_trip(tmp_path, shape):
    traj = _trajectory(shape)
    path = tmp_path / "sub" / "traj.nc"
    traj.to_netcdf(path)
    back = Trajectory.load(path)
    assert torch.equal(back.states, traj.states) and back.states.shape == traj.states.shape
    assert torch.equal(back.times, traj.times) and torch.equal(back.grid, traj.grid)
    assert (back.solver, back.nfe, back.seed) == (traj.solver, traj.nfe, traj.seed)
    assert not list(path.parent.glob("*.tmp"))


def test_from_xarray_rejects_other_datasets():
    with pytest.raises(ValueError, match="not a trajectory"):
        Trajectory.from_xarray(xr.Dataset({"y": ("a", [1.0])}))


def test_series_round_trip_and_shape_check(tmp_path):
    traj = _trajectory()
    n = traj.grid.shape[0]
    traj.series["ess"] = torch.linspace(5, 2, n, dtype=torch.float64)
    traj.series["resampled"] = torch.tensor([0, 1, 0, 1, 0][:n], dtype=torch.int8)
    ds = traj.to_xarray()
    assert ds["ess"].dims == ("step",) and list(ds["step_time"].values) == pytest.approx(traj.grid.tolist())
    path = tmp_path / "t.nc"
    traj.to_netcdf(path)
    back = Trajectory.load(path)
    assert torch.equal(back.series["ess"], traj.series["ess"])
    assert torch.equal(back.series["resampled"], traj.series["resampled"])
    with pytest.raises(ValueError, match="one value per grid time"):
        Trajectory(traj.times, traj.states, traj.grid, "x", 0, series={"ess": torch.ones(n + 1)})
