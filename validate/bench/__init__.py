"""Benchmarks against peer libraries on the same work in the same run: ``python -m validate.bench NAME``."""
