"""The GPU bench command's orchestration, run here on the CPU with stand-in parts: the device's name in every
record's case, a failing part reported while the others run, the records of those written and a non-zero exit."""

import json

from interp.records import compare
from validate.bench import __main__ as bench_main
from validate.bench import gpu


def _fake_parts(seed, device):
    def fails():
        raise RuntimeError("out of device memory")

    return {
        "driver": lambda: [compare("driver", "mlp/batch64", "samples_per_s", 2.0, "eager", 1.0, "higher")],
        "training": fails,
        "langevin": lambda: [compare("langevin", "funnel", "ESS/s", 1.0, "blackjax", 2.0, "higher")],
    }


def test_gpu_bench_labels_records_and_reports_a_failed_part(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu, "parts", _fake_parts)
    out = tmp_path / "gpu.json"
    status = bench_main.main(["gpu", "--device", "cpu", "--json", str(out)])
    err = capsys.readouterr().err
    assert status == 1 and "training failed" in err and "out of device memory" in err
    rows = json.loads(out.read_text())
    assert [r["case"] for r in rows] == ["[cpu] mlp/batch64", "[cpu] funnel"]
    assert [r["ratio"] for r in rows] == [2.0, 0.5]


def test_gpu_bench_exits_zero_when_every_part_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu, "parts", lambda seed, device: {k: v for k, v in _fake_parts(seed, device).items()
                                                            if k != "training"})  # fmt: skip
    assert bench_main.main(["gpu", "--device", "cpu", "--json", str(tmp_path / "gpu.json")]) == 0
    assert len(json.loads((tmp_path / "gpu.json").read_text())) == 2
