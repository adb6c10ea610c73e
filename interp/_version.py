"""The package version, in one place: read by ``pyproject.toml`` (setuptools' ``attr:``), ``interp.__version__``
and every result's ``interp_version`` attribute."""

__version__ = "0.1.0"
