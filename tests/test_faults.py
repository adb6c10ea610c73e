"""Runs that die mid-way and writes that fail mid-way (docs/design.md, "Reliability").

A training run killed by SIGKILL and rerun from its last checkpoint ends where an uninterrupted run ends, bit for
bit, and leaves no partial file; a single-cell run killed mid-computation writes nothing; a full disk or an
unwritable folder during a netCDF or checkpoint write leaves the previous file intact and no temporary file.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from interp.results import Trajectory
from interp.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]

TRAIN_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, torch
    from interp.analytic import ExactMarginals, GaussianMixture
    from interp.interpolants import preset
    from interp.losses import InterpolantLoss, Parameterisation
    from interp.nets import MLP
    from interp.train import TrainConfig, Trainer

    folder, kill_at = sys.argv[1], int(sys.argv[2])
    torch.set_default_dtype(torch.float64)
    exact = ExactMarginals(preset("flow"), GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0),
                           GaussianMixture(torch.ones(2), torch.tensor([[0.0, 2.0], [0.0, -2.0]]), 0.2))
    torch.manual_seed(0)
    config = TrainConfig(steps=30, batch_size=32, device="cpu", progress=False, checkpoint_every=10,
                         checkpoint_path=os.path.join(folder, "ck.pt"), eval_every=1)
    trainer = Trainer(MLP((2,), hidden=16, depth=2), InterpolantLoss(exact.interpolant, Parameterisation.VELOCITY),
                      exact.rho0.sample, exact.rho1.sample, config=config)
    if os.path.exists(config.checkpoint_path):
        trainer.load(config.checkpoint_path)

    def evaluate(t):
        if t.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # as an out-of-memory killer or a pre-empted node would
        return {}

    trainer.fit(evaluate)
    torch.save({k: v for k, v in trainer.model.state_dict().items()}, os.path.join(folder, "final.pt"))
    """
)


def _train(folder: Path, kill_at: int) -> int:
    script = folder / "train.py"
    script.write_text(TRAIN_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(script), str(folder), str(kill_at)], env=env, timeout=300)
    return done.returncode


def test_a_killed_training_run_resumes_to_the_same_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir()
    killed.mkdir()
    assert _train(straight, kill_at=-1) == 0
    assert _train(killed, kill_at=23) == -signal.SIGKILL  # died after the step-20 checkpoint
    assert sorted(p.name for p in killed.iterdir()) == ["ck.pt", "train.py"]  # no partial or temporary file
    assert _train(killed, kill_at=-1) == 0  # rerun: resumes from step 20
    a = torch.load(straight / "final.pt", weights_only=True)
    b = torch.load(killed / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_single_cell_run_writes_nothing_and_a_rerun_matches(tmp_path):
    out, records = tmp_path / "out", tmp_path / "records.json"
    argv = [
        sys.executable, "-m", "problems", "single-cell", "--dataset", "double-well", "--methods", "ot-cfm,nearest",
        "--steps", "300", "--seeds", "0", "--out", str(out), "--json", str(records), "--no-progress",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    long_run = [a if a != "300" else "5000" for a in argv]  # minutes of training: killed well before the end
    process = subprocess.Popen(long_run, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(6)  # imports done, training under way
    assert process.poll() is None, process.stdout.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not out.exists() and not records.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".interp-")]
    first = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, timeout=600)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    kept = json.loads(records.read_text())
    records.unlink()
    second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, timeout=600)
    assert second.returncode == 0
    again = json.loads(records.read_text())
    assert [(r["case"], r["metric"], r["ours"]) for r in kept] == [(r["case"], r["metric"], r["ours"]) for r in again]
    assert sorted(p.suffix for p in out.iterdir()) == [".h5ad", ".nc", ".png"]


def _full_disk(real):
    """A writer that gets half way and then finds the disk full."""

    def write(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def _trajectory(value: float) -> Trajectory:
    grid = torch.linspace(0, 1, 3, dtype=torch.float64)
    return Trajectory(grid, torch.full((3, 4, 2), value, dtype=torch.float64), grid, "euler", 2)


def test_a_full_disk_during_a_netcdf_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "run.nc"
    _trajectory(1.0).to_netcdf(path)
    before = path.read_bytes()
    import xarray as xr

    monkeypatch.setattr(xr.Dataset, "to_netcdf", lambda self, tmp, **kw: _full_disk(None)(self, tmp))
    with pytest.raises(OSError, match="No space left"):
        _trajectory(2.0).to_netcdf(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from interp.analytic import ExactMarginals, GaussianMixture
    from interp.interpolants import preset
    from interp.losses import InterpolantLoss, Parameterisation
    from interp.nets import MLP

    exact = ExactMarginals(
        preset("flow"),
        GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0),
        GaussianMixture(torch.ones(1), torch.ones(1, 2), 0.5),
    )
    config = TrainConfig(steps=4, batch_size=8, device="cpu", progress=False)
    trainer = Trainer(
        MLP((2,), 8, 1),
        InterpolantLoss(exact.interpolant, Parameterisation.VELOCITY),
        exact.rho0.sample,
        exact.rho1.sample,
        config=config,
    )
    trainer.fit()
    path = tmp_path / "ck.pt"
    trainer.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _full_disk(torch.save))
    with pytest.raises(OSError, match="No space left"):
        trainer.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_an_unwritable_folder_is_refused_before_a_command_runs(tmp_path, capsys):
    """As root, permission bits do not stop a write; a path under /proc/sys does, on every Linux."""
    from problems.single_cell.cli import main

    status = main(["--dataset", "double-well", "--out", str(tmp_path / "o"), "--json", "/proc/sys/kernel/x.json"])
    assert status == 2
    assert "cannot write" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_folder_that_turns_unwritable_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """The rename into place is refused (a read-only remount, a permission change): the old file stays."""
    import interp.results as results

    path = tmp_path / "run.nc"
    _trajectory(1.0).to_netcdf(path)
    before = path.read_bytes()

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(results.os, "replace", refuse)  # the os module every atomic writer renames with
    with pytest.raises(PermissionError):
        _trajectory(2.0).to_netcdf(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]
