"""The layering rules of docs/design.md, checked on the source: imports point down, no private name crosses a
module, every subsystem is an attribute of ``import interp``, one version string."""

import ast
import importlib
import pathlib

import pytest

import interp

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = {"interp": 0, "problems": 1, "validate": 2, "paper_figs": 3}  # a folder imports only lower layers


def _sources(*folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _imports(path):
    """(module imported, names, line) for every import in ``path``, relative imports resolved."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)
    if package[-1] == "__init__":
        package = package[:-1]
    else:
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module, [a.name for a in node.names], node.lineno


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def test_imports_point_down_the_layers():
    upward = []
    for path in _sources(*LAYERS):
        own = LAYERS[path.relative_to(ROOT).parts[0]]
        for module, _, line in _imports(path):
            top = module.split(".")[0]
            if top in LAYERS and LAYERS[top] > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not upward, upward


def test_no_private_name_is_imported_across_modules():
    found = []
    for path in _sources("interp", "problems", "validate", "paper_figs", "tests"):
        inside_interp = path.relative_to(ROOT).parts[0] == "interp"
        for module, names, line in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            found += [f"{where} imports {module}.{n}" for n in names if _private(n)]
            parts = module.split(".")
            if any(_private(p) for p in parts):
                # underscore modules are the package's own helpers: used inside interp only, and a subpackage's
                # (interp/density/_shared.py) only inside that subpackage
                private_at = next(i for i, p in enumerate(parts) if _private(p))
                owner = ".".join(parts[:private_at])
                here = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                if not (inside_interp and parts[0] == "interp" and here.startswith(owner)):
                    found.append(f"{where} imports the private module {module}")
    assert not found, found


def test_no_version_import_from_the_package_init():
    for path in _sources("interp"):
        text = path.read_text()
        assert "from . import __version__" not in text and "from .. import __version__" not in text, path


@pytest.mark.parametrize(
    "name",
    ["density", "feynman_kac", "langevin", "smc", "wgf", "diagnostics", "superposition", "stepping", "records"],
)
def test_import_interp_exposes_every_subsystem(name):
    assert getattr(interp, name) is importlib.import_module(f"interp.{name}")


def test_integrate_is_the_function_and_the_driver_its_module():
    assert callable(interp.integrate) and interp.integrate.__module__ == "interp.driver"


def test_one_version_everywhere(tmp_path):
    namespace: dict = {}
    exec((ROOT / "interp" / "_version.py").read_text(), namespace)
    __version__ = namespace["__version__"]
    assert interp.__version__ == __version__
    traj = interp.integrate(
        lambda t, x: -x,
        interp.grids.uniform(2).new_ones(3, 2),
        interp.grids.uniform(2),
        interp.solvers.Euler(),
        progress=False,
    )
    assert traj.to_xarray().attrs["interp_version"] == __version__
