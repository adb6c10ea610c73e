"""The figure scripts run from a saved table and write the PNG and the netCDF they promise."""

import math

import pytest

from paper_figs import FIGURES
from paper_figs.__main__ import main as paper_figs_main
from paper_figs.figure import figure_module
from validate.bench import solvers as bench


def _script(name):
    return figure_module(name)


def test_the_command_lists_every_figure_and_refuses_an_unknown_one(capsys):
    assert paper_figs_main(["list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(FIGURES)
    assert paper_figs_main(["no_such_figure", "--out", "x"]) == 2
    assert "unknown figure" in capsys.readouterr().err
    with pytest.raises(ValueError):
        figure_module("no_such_figure")


def test_solvers_error_vs_nfe_from_a_table(tmp_path):
    xr = pytest.importorskip("xarray")
    rows = [
        bench.Row(case, method, nfe, "log_snr", nfe, peer, error / nfe, 0.2 + error / nfe, 0.03)
        for case in ("gmm-2d", "gmm-64d")
        for method, peer, error in (("UniPC-2", False, 1.0), ("UniPC-2/searched", False, 0.3), ("p", True, 2.0))
        for nfe in (5, 10, 20)
    ]
    rows.append(bench.Row("gmm-2d", "q", 20, "x", 20, True, math.inf, math.inf, math.inf))  # failed peer
    floor = {case: {"sliced_w2": 0.15, "mmd": 0.02} for case in ("gmm-2d", "gmm-64d")}
    table = tmp_path / "in.nc"
    bench.to_dataset(rows, floor).to_netcdf(table, engine="h5netcdf")
    out = tmp_path / "figs"
    assert _script("solvers_error_vs_nfe").main(["--out", str(out), "--table", str(table)]) == 0
    png, nc = out / "solvers_error_vs_nfe.png", out / "solvers_error_vs_nfe.nc"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = xr.load_dataset(nc, engine="h5netcdf")
    assert float(back.pathwise_error.sel(case="gmm-64d", solver="p", nfe=10)) == pytest.approx(0.2)


def test_solvers_error_vs_nfe_refuses_a_missing_table(tmp_path):
    with pytest.raises(SystemExit):
        _script("solvers_error_vs_nfe").main(["--out", str(tmp_path), "--table", str(tmp_path / "none.nc")])


def test_steering_reward_vs_nfe_from_bench_records(tmp_path):
    xr = pytest.importorskip("xarray")
    import json
    from dataclasses import asdict

    from validate.bench.steering import records_from_rows

    rows = [dict(reward="linear", method="base", k=1, nfe=51, mean_reward=0.0)]
    for k in (2, 4):
        rows.append(dict(reward="linear", method="best-of-N", k=k, nfe=51 * k, mean_reward=0.5 * k))
        rows.append(dict(reward="linear", method="svdd", k=k, nfe=50 * k, mean_reward=1.0 * k))
    records = tmp_path / "steering.json"
    records.write_text(json.dumps([asdict(r) for r in records_from_rows(rows)]))
    out = tmp_path / "figs"
    assert _script("steering_reward_vs_nfe").main(["--out", str(out), "--json", str(records)]) == 0
    assert (out / "steering_reward_vs_nfe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = xr.load_dataset(out / "steering_reward_vs_nfe.nc", engine="h5netcdf")
    assert float(back.reward_gain.sel(reward="linear", sampler="svdd", k=4)) == pytest.approx(4.0)
    assert float(back.reward_gain.sel(reward="linear", sampler="best-of-N", k=2)) == pytest.approx(1.0)
    assert float(back.nfe.sel(reward="linear", sampler="svdd", k=2)) == pytest.approx(100)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"bench": "solvers"}]))
    with pytest.raises(SystemExit):
        _script("steering_reward_vs_nfe").main(["--out", str(out), "--json", str(bad)])


def _images_table():
    import numpy as np
    import xarray as xr

    methods, nfes = ["DPM-Solver++2M", "UniPC-2", "diffusers-UniPC-2"], [5, 10]
    fd = np.array([[3.0, 1.0], [4.0, 1.5], [5.0, 2.0]])
    return xr.Dataset(
        {"fd": (("method", "nfe"), fd), "kd": (("method", "nfe"), fd / 10),
         "pathwise_error": (("method", "nfe"), fd / 100),
         "grid": (("method", "nfe"), np.array([["edm"] * 2, ["log_snr"] * 2, ["karras"] * 2])),
         "peer": (("method",), np.array([False, False, True]))},
        coords={"method": methods, "nfe": nfes},
        attrs={"dataset": "digits", "device": "cpu", "samples": 1000, "floor_fd": 0.3, "gaussian_fd": 3.0,
               "classifier_accuracy": 0.96},
    )  # fmt: skip


def test_images_fd_vs_nfe_from_a_table_and_the_bench_records(tmp_path):
    xr = pytest.importorskip("xarray")
    from validate.bench.images import records

    table = tmp_path / "images.nc"
    _images_table().to_netcdf(table, engine="h5netcdf")
    out = tmp_path / "figs"
    assert _script("images_fd_vs_nfe").main(["--out", str(out), "--table", str(table)]) == 0
    assert (out / "images_fd_vs_nfe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = xr.load_dataset(out / "images_fd_vs_nfe.nc", engine="h5netcdf")
    assert float(back.fd.sel({"method": "UniPC-2", "nfe": 10})) == 1.5
    got = {(r.case, r.metric): r for r in records(_images_table())}
    nfe5 = got[("digits/vp:cpu:NFE 5:DPM-Solver++2M", "fd_cnn")]
    assert nfe5.ratio == pytest.approx(3.0 / 5.0) and nfe5.peer == "diffusers-UniPC-2 (karras)"
    assert got[("digits/vp:cpu:floor", "fd_cnn")].ratio == pytest.approx(0.1)
    with pytest.raises(SystemExit):
        _script("images_fd_vs_nfe").main(["--out", str(out), "--table", str(tmp_path / "none.nc")])


def test_images_steering_figure_from_a_steering_table(tmp_path):
    xr = pytest.importorskip("xarray")
    import numpy as np

    from problems.images.steering import METRICS

    methods, ks = ["best-of-N", "fk-steering", "cfg-0"], [1, 2, 4]
    value = np.full((3, 3, len(METRICS)), np.nan)
    for i in range(2):
        for j, k in enumerate(ks):
            value[i, j] = [-1.0 / k, 0.5 + 0.1 * k, 0.1, 5.0 * k, 1.0, 10.0 * k, 1.0]
    value[2, 0] = [-0.2, 0.9, 0.8, 3.0, 1.0, 10.0, 1.0]
    table = xr.Dataset(
        {"value": (("method", "k", "metric"), value)},
        coords={"method": methods, "k": ks, "metric": list(METRICS)},
        attrs={"dataset": "digits", "label": 3, "steps": 10, "floor_reward": -0.05, "floor_accuracy": 0.97,
               "floor_fd": 2.0},
    )  # fmt: skip
    path = tmp_path / "metrics.nc"
    table.to_netcdf(path, engine="h5netcdf")
    out = tmp_path / "figs"
    name = "images_steering_reward_vs_nfe"
    assert _script(name).main(["--out", str(out), "--table", str(path)]) == 0
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = xr.load_dataset(out / f"{name}.nc", engine="h5netcdf")
    assert float(back["value"].sel({"method": "fk-steering", "k": 4, "metric": "fd"})) == 20.0
    xr.Dataset({"x": ("a", [1.0])}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    with pytest.raises(SystemExit):
        _script(name).main(["--out", str(out), "--table", str(tmp_path / "other.nc")])


def test_images_inverse_grid_from_an_inverse_table(tmp_path):
    xr = pytest.importorskip("xarray")
    import numpy as np

    from problems.images.inverse import METRICS

    tasks, noise, methods = ["box", "sr2"], [0.0, 0.05], ["dps", "pigdm"]
    columns = ["measurement", *methods, "truth"]
    value = np.full((2, 2, 2, len(METRICS)), 20.0)
    value[1, 1, 1] = np.nan  # pigdm diverged on sr2 at 0.05
    panels = np.random.default_rng(0).uniform(-1, 1, (2, 2, len(columns), 6, 1, 8, 8)).astype(np.float32)
    panels[1, 1, 2] = np.nan
    table = xr.Dataset(
        {"value": (("task", "noise", "method", "metric"), value),
         "panels": (("task", "noise", "panel", "image", "channel", "height", "width"), panels)},
        coords={"task": tasks, "noise": noise, "method": methods, "metric": list(METRICS), "panel": columns},
        attrs={"dataset": "digits", "steps": 50, "samples": 8},
    )  # fmt: skip
    path = tmp_path / "metrics.nc"
    table.to_netcdf(path, engine="h5netcdf")
    out = tmp_path / "figs"
    name = "images_inverse_grid"
    assert _script(name).main(["--out", str(out), "--table", str(path), "--images", "3"]) == 0
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = xr.load_dataset(out / f"{name}.nc", engine="h5netcdf")
    assert back.sizes["image"] == 3
    assert np.allclose(back["panels"].values, panels[:, :, :, :3], equal_nan=True)
    xr.Dataset({"x": ("a", [1.0])}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    with pytest.raises(SystemExit):
        _script(name).main(["--out", str(out), "--table", str(tmp_path / "other.nc")])
