"""Problem adapters: real data in (time series, single-cell time courses, images), the core run on it, metrics
against baselines out (``python -m problems NAME --json PATH``). Run from the repository root; not installed.

No adapter is registered yet: the single-cell adapter is the first (see the project's issues).
"""
