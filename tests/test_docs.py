"""The examples of the documentation run: every fenced ``python`` block of docs/tour/*.md and of README.md is
executed on its own (a fresh namespace, in a temporary folder), so each must be self-contained."""

import os
import pathlib
import re
import time

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "tour").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
BUDGET_SECONDS = 30.0  # a tour example should take a few seconds; this catches one that grew by mistake


def _blocks():
    for page in PAGES:
        for k, match in enumerate(FENCE.finditer(page.read_text())):
            line = page.read_text()[: match.start()].count("\n") + 1
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}:{line}#{k}")


def test_every_tour_page_has_an_example():
    for page in PAGES:
        assert FENCE.search(page.read_text()), f"{page} has no python example"


@pytest.mark.parametrize("code", list(_blocks()))
def test_example_runs_alone(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_default_dtype(torch.float32)  # as a user's session has it (conftest sets float64 for the unit tests)
    started = time.perf_counter()
    exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_SECONDS, f"the example took {elapsed:.1f} s"
    assert os.getcwd() == str(tmp_path)
