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


def _public_modules():
    import importlib
    import pkgutil

    import interp

    names = ["interp"] + [
        m.name
        for m in pkgutil.walk_packages(interp.__path__, "interp.")
        if not any(part.startswith("_") for part in m.name.split(".")[1:])
    ]
    return [importlib.import_module(name) for name in names]


def test_every_public_module_class_and_function_has_a_docstring():
    import inspect

    missing = []
    for module in _public_modules():
        if not (module.__doc__ or "").strip():
            missing.append(module.__name__)
        for name in dir(module):
            obj = getattr(module, name)
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name}")
    assert not missing, missing


def test_the_results_page_is_generated_from_the_records():
    from validate import results_page

    assert results_page.PAGE.read_text() == results_page.render(), "run python -m validate.results_page"


def test_docs_cite_pages_that_exist():
    cited = set()
    for path in list((ROOT / "interp").rglob("*.py")) + list((ROOT / "validate").rglob("*.py")) + PAGES:
        cited |= set(re.findall(r"docs/([a-z_/-]+\.md)", path.read_text()))
    assert cited, "nothing cites the docs"
    assert all((ROOT / "docs" / page).exists() for page in cited), sorted(
        p for p in cited if not (ROOT / "docs" / p).exists()
    )
