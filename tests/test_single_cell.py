"""The single-cell adapter: readers, checks, embedding without leakage, baselines, the protocol and the CLI's outputs.

Data are small synthetic time courses written by the tests; the HSMM case runs where apt can fetch it.
"""

from __future__ import annotations

import json
from importlib.util import find_spec

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

anndata = pytest.importorskip("anndata", reason="the single-cell adapter needs anndata (extra 'single-cell')")

from problems.debian import FetchError, apt_available  # noqa: E402
from problems.single_cell.cli import main  # noqa: E402
from problems.single_cell.data import (  # noqa: E402
    check_time_course,
    load_hsmm,
    numeric_times,
    read_dataset,
)
from problems.single_cell.embedding import Embedding  # noqa: E402
from problems.single_cell.methods import Fold, MethodConfig, predict_mccann, predict_nearest  # noqa: E402
from problems.single_cell.protocol import run_protocol, summary  # noqa: E402
from problems.single_cell.simulated import double_well  # noqa: E402

TIMES = (0.0, 12.0, 24.0, 48.0)


def _counts(seed=0, cells=24, genes=40, times=TIMES):
    """Poisson counts whose rates follow a latent path through time: a toy expression time course."""
    rng = np.random.default_rng(seed)
    loadings = rng.gamma(2.0, 1.0, size=(3, genes))
    blocks, labels = [], []
    for t in times:
        u = t / max(times)
        latent = np.stack([np.full(cells, 1 - u), np.full(cells, u), np.full(cells, 4 * u * (1 - u))], 1)
        latent = latent + 0.1 * rng.standard_normal(latent.shape)
        blocks.append(rng.poisson(5 * np.exp(latent) @ loadings).astype(np.float32))
        labels += [t] * cells
    obs = pd.DataFrame({"day": labels}, index=[f"c{i}" for i in range(len(labels))])
    return anndata.AnnData(X=np.concatenate(blocks), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(genes)]))


def _cli(path, out, *extra):
    methods = "ot-cfm,sf2m,mmsb,nearest,mccann" + (",torchcfm" if find_spec("torchcfm") else "")
    return main(
        [
            "--dataset", str(path), "--time-key", "day", "--dims", "3", "--top-genes", "30", "--methods", methods,
            "--steps", "40", "--mmsb-iterations", "1", "--seeds", "0", "1", "--out", str(out), "--no-progress",
            *extra,
        ]
    )  # fmt: skip


def test_cli_writes_the_table_the_annotated_h5ad_the_figure_and_the_records(tmp_path, capsys):
    path = tmp_path / "course.h5ad"
    _counts().write_h5ad(path)
    out = tmp_path / "out"
    assert _cli(path, out, "--json", str(tmp_path / "records.json")) == 0
    table = xr.open_dataset(out / "course_results.nc", engine="h5netcdf").load()
    assert table["value"].dims == ("method", "held_out", "seed", "metric")
    assert table["held_out"].values.tolist() == [12.0, 24.0]
    assert table["seed"].values.tolist() == [0, 1]
    assert np.isfinite(table["value"].values).all() and (table["value"].values >= 0).all()
    assert set(table["role"].values.tolist()) >= {"interp", "baseline"}
    annotated = anndata.read_h5ad(out / "course_interp.h5ad")
    assert annotated.obsm["X_interp"].shape == (96, 3)
    paths = annotated.obsm["X_interp_trajectory"]
    times = annotated.uns["interp"]["trajectory_times"]
    assert paths.shape == (96, times.size, 3) and np.isfinite(paths).all()
    assert times[0] == 0.0 and times[-1] == 48.0
    # each cell's trajectory passes through the cell itself at its own time (the grid holds 0 and 48)
    first = np.flatnonzero(annotated.obs["day"].to_numpy() == 0.0)
    assert np.allclose(paths[first, 0], annotated.obsm["X_interp"][first], atol=1e-4)
    assert (out / "course.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = json.loads((tmp_path / "records.json").read_text())
    assert records and set(records[0]) == {"bench", "case", "metric", "ours", "peer", "peer_value", "ratio", "better"}
    assert all(r["ratio"] == pytest.approx(r["ours"] / r["peer_value"]) for r in records)
    assert {r["case"].split(":")[-1] for r in records} == {"held_out=12", "held_out=24", "mean"}
    printed = capsys.readouterr().out
    assert "best interp method by mean W1" in printed


def test_csv_and_netcdf_inputs_read_as_the_same_time_course(tmp_path):
    adata = _counts(genes=6)
    frame = pd.DataFrame(adata.X, columns=adata.var_names)
    frame.insert(0, "day", adata.obs["day"].to_numpy())
    frame.to_csv(tmp_path / "course.csv", index=False)
    xr.Dataset(
        {"X": (("cell", "gene"), adata.X), "day": ("cell", adata.obs["day"].to_numpy())},
        coords={"gene": list(adata.var_names)},
    ).to_netcdf(tmp_path / "course.nc", engine="h5netcdf")
    for name in ("course.csv", "course.nc"):
        read = read_dataset(tmp_path / name, "day")
        assert np.array_equal(read.X, adata.X.astype(np.float64))
        assert np.array_equal(numeric_times(read, "day"), adata.obs["day"].to_numpy())
        assert list(read.var_names) == list(adata.var_names)


def _bad_inputs(tmp_path):
    good = _counts()
    cases = {}
    missing = good.copy()
    missing.obs = missing.obs.rename(columns={"day": "hour"})
    cases["missing"] = (missing, "time column 'day' not in obs")
    two = good[good.obs["day"] <= 12.0].copy()
    cases["two"] = (two, "at least three time points")
    few = good[(good.obs["day"] != 24.0) | (np.arange(good.n_obs) % 24 < 2)].copy()
    cases["few"] = (few, "fewer than 4 cells")
    nan = good.copy()
    nan.X[3, 5] = np.nan
    cases["nan"] = (nan, "NaN/Inf")
    inf = good.copy()
    inf.X[7, 1] = np.inf
    cases["inf"] = (inf, "NaN/Inf")
    words = good.copy()
    words.obs["day"] = ["early"] * 24 + ["12"] * 72
    cases["words"] = (words, "must be numeric")
    paths = {}
    for name, (adata, message) in cases.items():
        paths[name] = (tmp_path / f"{name}.h5ad", message)
        adata.write_h5ad(paths[name][0])
    fake = tmp_path / "fake.h5ad"
    fake.write_text("not an hdf5 file")
    paths["fake"] = (fake, "not an AnnData .h5ad file")
    import h5py

    with h5py.File(tmp_path / "plain.h5ad", "w") as f:  # HDF5, but not AnnData's layout
        f["data"] = np.zeros((3, 3))
    paths["plain"] = (tmp_path / "plain.h5ad", "not an AnnData .h5ad file")
    (tmp_path / "short.csv").write_text("day,g1\n0,1\n1,2\n")
    paths["csv"] = (tmp_path / "short.csv", "at least three time points")
    (tmp_path / "words.csv").write_text("day,g1\n0,a\n1,2\n2,3\n")
    paths["csv-words"] = (tmp_path / "words.csv", "feature columns must be numeric")
    paths["absent"] = (tmp_path / "absent.h5ad", "no such dataset file")
    paths["format"] = (tmp_path / "course.txt", "no such dataset file")
    return paths


def _cli_error(capsys, argv) -> str:
    """Run the CLI expecting the policy's failure: exit status 2 and one stderr line ``single-cell: error: ...``."""
    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, (argv, status, err)
    assert len(err) >= 1 and err[-1].startswith("single-cell: error:"), err
    return err[-1]


def test_bad_input_ends_with_a_clear_error_and_writes_nothing(tmp_path, capsys):
    for name, (path, message) in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out_{name}"
        try:
            status = _cli(path, out, "--json", str(out / "r.json"))
        except SystemExit as stop:
            status = stop.code
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert status == 2 and message in line, (name, line)
        assert line.startswith("single-cell: error:")
        assert not out.exists(), name
    (tmp_path / "course.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown dataset format"):
        read_dataset(tmp_path / "course.txt", "day")
    with pytest.raises(TypeError, match="AnnData"):
        check_time_course(np.zeros((3, 3)), "day", 2)
    assert "unknown" in _cli_error(capsys, ["--methods", "ot-cfm,magic"])
    assert "positive integer" in _cli_error(capsys, ["--dataset", str(tmp_path / "words.csv"), "--steps", "0"])
    if not torch.cuda.is_available():
        assert "no CUDA device" in _cli_error(capsys, ["--dataset", str(tmp_path / "words.csv"), "--device", "cuda"])


def test_numeric_times_accept_numeric_strings_and_categories():
    adata = _counts(cells=3, genes=4)
    adata.obs["day"] = pd.Categorical([str(int(t)) for t in adata.obs["day"]])
    assert numeric_times(adata, "day").tolist() == [t for t in TIMES for _ in range(3)]


def test_the_embedding_is_fitted_on_training_cells_only():
    """Changing the held-out cells changes nothing the methods see: the baselines' predictions stay the same."""
    adata = _counts(seed=3)
    changed = adata.copy()
    held = changed.obs["day"].to_numpy() == 12.0
    changed.X[held] = changed.X[held][::-1] * 7 + 1
    kwargs = dict(embedding=Embedding("pca", 3, 30), methods=["nearest", "mccann"], seeds=[0], progress=False)
    first = run_protocol(adata, "day", **kwargs)
    second = run_protocol(changed, "day", **kwargs)
    for method in ("nearest", "mccann"):
        assert np.array_equal(first.predictions[(method, 12.0, 0)], second.predictions[(method, 12.0, 0)])
    # ... while the score at that time, measured on the held-out cells, does change
    assert not np.allclose(first.table["value"].sel(held_out=12.0), second.table["value"].sel(held_out=12.0))
    train = adata.obs["day"].to_numpy() != 12.0
    fitted = Embedding("pca", 3, 30).fit(np.asarray(adata.X[train], dtype=np.float64))
    explained = fitted.explained_variance_ratio
    assert len(explained) == 3 and explained == sorted(explained, reverse=True) and sum(explained) <= 1 + 1e-12


def _fold(a, b, target):
    return Fold(snapshots=[a, b], times=torch.tensor([0.0, 1.0]), target=target, previous=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mccann_interpolation_is_the_quantile_interpolation_in_one_dimension(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(40, 1, generator=g), 2 * torch.randn(40, 1, generator=g) + 3
    out = predict_mccann(_fold(a.float(), b.float(), 0.3), MethodConfig(), seed).double()
    expected = 0.7 * torch.sort(a[:, 0]).values + 0.3 * torch.sort(b[:, 0]).values  # sorted pairs: the 1-D OT map
    distance = (out - expected[None, :]).abs().min(dim=1).values
    assert out.shape == (40, 1) and distance.max() < 1e-5


def test_nearest_snapshot_takes_the_earlier_one_on_a_tie():
    a, b = torch.zeros(5, 2), torch.ones(5, 2)
    assert torch.equal(predict_nearest(_fold(a, b, 0.5), MethodConfig(), 0), a)
    assert torch.equal(predict_nearest(_fold(a, b, 0.51), MethodConfig(), 0), b)


def test_protocol_on_known_dynamics_scores_against_the_true_marginal():
    adata, truth = double_well(n_cells=40, n_truth=300, seed=0)
    assert sorted(truth) == [0.75, 1.5, 2.25] and truth[1.5].shape == (300, 2)
    config = MethodConfig(steps=30, mmsb_iterations=1)
    result = run_protocol(
        adata, "time", embedding=Embedding("raw"), methods=["ot-cfm", "nearest"], seeds=[0, 1], config=config,
        truth=truth, progress=False,
    )  # fmt: skip
    table = result.table
    assert table.attrs["target"] == "true marginal sample" and table.attrs["dimension"] == 2
    assert table["value"].shape == (2, 3, 2, 3) and np.isfinite(table["value"].values).all()
    stats = summary(table)
    assert stats["overall"].dims == ("method", "metric")
    assert np.allclose(stats["mean"].values, table["value"].values.mean(axis=2))


def test_method_config_rejects_bad_budgets():
    for bad in (dict(steps=0), dict(width=2.5), dict(learning_rate=0.0), dict(ema_decay=1.0), dict(sigma_min=-1)):
        with pytest.raises(ValueError):
            MethodConfig(**bad)


@pytest.mark.skipif(not apt_available(), reason="apt-get/dpkg unavailable: HSMM is fetched from its Debian package")
def test_hsmm_is_fetched_and_read_as_anndata(tmp_path_factory):
    import os

    cache = os.environ.get("INTERP_CACHE") or tmp_path_factory.mktemp("cache")
    try:
        adata = load_hsmm(cache)
    except FetchError as error:  # apt is here but cannot reach its mirror: a network condition, not a bug
        pytest.skip(f"HSMM could not be fetched here: {error}")
    assert adata.shape == (271, 47192)
    times, distinct = check_time_course(adata, "Hours", min_cells=6)
    assert distinct.tolist() == [0.0, 24.0, 48.0, 72.0]
    assert np.unique(times, return_counts=True)[1].tolist() == [69, 74, 79, 49]
    assert adata.X.min() >= 0
