"""One result contract (docs/design.md): every result is a record with ``to_xarray()`` / ``to_netcdf()`` whose
attributes name the method, the seed of the generator that drove it and the package version under one key, and
whose netCDF file reads back as the same dataset."""

import numpy as np
import pytest
import torch
import xarray as xr

import interp
from interp.analytic import ExactMarginals, GaussianMixture
from interp.bridges import LotkaVolterra, MultiMarginalBridge, simulate_snapshots
from interp.feynman_kac import BaseSampler, best_of_n, budget_forcing
from interp.langevin import MALA, DenoisingMCMC, run_chains
from interp.results import NetCDFResult
from interp.solvers import EulerMaruyama
from interp.wgf import svgd

pytest.importorskip("h5netcdf")

STANDARD = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
TARGET = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.3)


def _results():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    vp = interp.preset("vp")
    exact = ExactMarginals(vp, STANDARD, TARGET)
    sde = interp.generative_sde(exact.velocity, exact.score, 1.0)
    grid = torch.linspace(0.0, 0.99, 11, dtype=torch.float64)
    yield "integrate", interp.integrate(sde, torch.zeros(5, 2), grid, EulerMaruyama(), generator=g(), progress=False)
    yield "run_chains", run_chains(MALA(0.2), TARGET, torch.zeros(4, 2), 20, generator=g(), progress=False)
    denoise = DenoisingMCMC([0.5, 0.7], 0.01, 5, steps_per_unit=10)
    yield "DenoisingMCMC", denoise.sample(
        exact.score, exact.velocity, torch.zeros(4, 2), log_density=exact.log_density, t_end=0.99, generator=g(),
        progress=False,
    )
    yield "svgd", svgd(TARGET, torch.randn(10, 2, generator=g()), step_size=0.1, n_steps=5, progress=False)
    base = BaseSampler(vp, exact.score)
    yield "best_of_n", best_of_n(base, lambda x: x[:, 0], grid, n_candidates=2, n=4, dim=2, generator=g())
    yield "budget_forcing", budget_forcing(base, lambda x: x[:, 0], grid, budget=2, n=4, dim=2, generator=g())
    times = torch.arange(3, dtype=torch.float64)

    def start(n, gen):
        return torch.tensor([1.6, 1.0], dtype=torch.float64) + 0.1 * torch.randn(n, 2, generator=gen)

    snaps = simulate_snapshots(LotkaVolterra(), start, times, 0.05, 30, generator=g())
    bridge = MultiMarginalBridge(LotkaVolterra(0.5, 0.5, 0.5, 0.5), sigma=0.05, iterations=2, progress=False)
    yield "MultiMarginalBridge", bridge.fit(snaps, times, generator=g())


@pytest.mark.parametrize("name,result", list(_results()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_result_writes_the_same_attributes_and_reads_back(name, result, tmp_path):
    assert isinstance(result, NetCDFResult), name
    ds = result.to_xarray()
    assert ds.attrs["interp_version"] == interp.__version__
    assert isinstance(ds.attrs["method"], str) and ds.attrs["method"]
    if name != "svgd":  # a deterministic flow draws no noise, so it has no seed
        assert ds.attrs["seed"] == torch.Generator().manual_seed(3).initial_seed()
    path = tmp_path / f"{name}.nc"
    result.to_netcdf(path)
    back = xr.load_dataset(path, engine="h5netcdf")
    assert set(back.data_vars) == set(ds.data_vars) and set(back.attrs) == set(ds.attrs)
    for var in ds.data_vars:
        np.testing.assert_array_equal(back[var].values, ds[var].values)
    for key, value in ds.attrs.items():
        np.testing.assert_array_equal(np.asarray(back.attrs[key]), np.asarray(value))


def test_search_samplers_count_their_evaluations():
    vp = interp.preset("vp")
    base = BaseSampler(vp, ExactMarginals(vp, STANDARD, TARGET).score)
    grid = torch.linspace(0.0, 0.99, 11, dtype=torch.float64)
    out = best_of_n(base, lambda x: x[:, 0], grid, n_candidates=3, n=5, dim=2, generator=torch.Generator())
    assert out.final.shape == (5, 2) and out.extras["reward"].shape == (1, 5)
    assert out.nfe == 3 * 5 * 11 and out.attrs["nfe_per_output"] == 3 * 11
    assert torch.equal(out.extras["reward"][-1], out.final[:, 0])
    assert out.to_xarray().attrs["method"] == "best-of-3"
