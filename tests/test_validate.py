import json

import numpy as np
import pytest
import torch

from interp import integrate
from interp.dynamics import generative_sde
from interp.interpolants import preset
from interp.solvers import EulerMaruyama
from validate import distributions
from validate.cases import exact_marginals
from validate.convergence import fitted_order
from validate.records import check, format_table, report, write_records


def test_records_follow_their_op_and_reject_nan(tmp_path):
    assert check("s", "c", "m", "x", 1.0, 2.0).passed
    assert not check("s", "c", "m", "x", 3.0, 2.0).passed
    assert check("s", "c", "m", "x", 3.0, 2.0, ">=").passed
    assert not check("s", "c", "m", "x", float("nan"), 2.0).passed
    with pytest.raises(ValueError):
        check("s", "c", "m", "x", 1.0, 2.0, "<")
    records = [check("s", "c", "m", "x", 1.0, 2.0), check("s", "c", "m", "y", 3.0, 2.0)]
    path = tmp_path / "r.json"
    write_records(records, str(path))
    loaded = json.loads(path.read_text())
    assert set(loaded[0]) == {"suite", "case", "method", "metric", "value", "tolerance", "op", "passed", "tier"}
    assert [r["passed"] for r in loaded] == [True, False]
    assert format_table(records).splitlines()[-1] == "1 passed, 1 failed"
    # a reported value is stated, never checked: it neither passes nor fails the run, and the table counts it apart
    stated = report("s", "c", "dps", "bias", 12.5)
    assert stated.op == "report" and stated.passed and np.isnan(stated.tolerance)
    assert format_table([*records, stated]).splitlines()[-1] == "1 passed, 1 failed, 1 reported"
    write_records([stated], str(path))
    assert json.loads(path.read_text())[0]["op"] == "report"


def test_fitted_order_recovers_a_known_power():
    steps = [8, 16, 32, 64]
    assert fitted_order(steps, [3.0 * (1 / n) ** 2.5 for n in steps]) == pytest.approx(2.5)


@pytest.mark.parametrize("seed", [0, 1])
def test_distribution_checks_pass_exact_and_fail_a_wrong_sde(seed):
    """The budget passes the exact sampler and catches an SDE whose score term has the wrong sign."""
    interpolant = preset("linear")
    exact = exact_marginals(interpolant, 2)
    generator = torch.Generator().manual_seed(seed)
    ref = distributions.ExactReference(exact, 1.0, 400, 2, generator)
    x0 = exact.sample(0.0, 800, generator)
    right = generative_sde(exact.velocity, exact.score, 0.5)
    wrong = generative_sde(exact.velocity, exact.score, 0.5, backward=True)  # b - eps s run forward: biased
    results = {}
    for label, sde in (("right", right), ("wrong", wrong)):
        final = integrate(
            sde, x0, distributions.time_grid(0.0, 1.0, 200), EulerMaruyama(), generator=generator, progress=False
        ).final
        results[label] = distributions.compare_samples("linear/2d", label, final, ref, generator)
    assert all(r.passed for r in results["right"])
    assert not all(r.passed for r in results["wrong"])
    assert max(r.value for r in results["wrong"] if r.metric.startswith("logrho_z")) > 10


def test_check_grid_contains_check_times():
    grid = distributions.time_grid(0.0, 0.999, 10)
    for t in distributions.CHECK_TIMES:
        assert np.isclose(grid.numpy(), t).any()
    back = distributions.time_grid(1.0, 0.0, 10)
    assert back[0] == 1.0 and (back[1:] < back[:-1]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_langevin_moment_check_passes_exact_draws_and_catches_a_small_bias(seed):
    from validate.langevin import Z, max_z

    g = torch.Generator().manual_seed(seed)
    draws = torch.randn(500, 40, 2, generator=g, dtype=torch.float64)  # independent exact draws of N(0, I)
    mean, second = torch.zeros(2), torch.ones(2)
    assert max_z(draws, mean, second) < Z
    assert max_z(draws + 0.05, mean, second) > Z  # a bias of 0.05 sd is 11 standard errors here


def test_mutation_survivors_are_sorted_by_what_they_change():
    from validate.mutation import classify

    source = "def f(x):\n    if x < 0:\n        raise ValueError('x must be >= 0')\n    return 2 * x\n"
    message = (
        "--- a\n+++ b\n-        raise ValueError('x must be >= 0')\n+        raise ValueError('XXx must be >= 0XX')\n"
    )
    guard = "--- a\n+++ b\n-    if x < 0:\n+    if x <= 0:\n"
    number = "--- a\n+++ b\n-    return 2 * x\n+    return 3 * x\n"
    assert classify(message, source) == "message"
    assert classify(guard, source) == "guard"
    assert classify(number, source) == "number"
    named = "--- a\n+++ b\n-    check_batch(x, \"x\")\n+    check_batch(x, None)\n"
    default = "--- a\n+++ b\n-    y = f(x, mode=\"mean\")\n+    y = f(x, mode=None)\n"
    assert classify(named, source) == "message"
    assert classify(default, source) == "number"
