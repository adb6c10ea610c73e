"""Problem adapters: real data in (time series, single-cell time courses, images), the core run on it, metrics
against baselines out (``python -m problems NAME --json PATH``). Run from the repository root; not installed.

| adapter | run as |
|---|---|
| ``single_cell`` | ``python -m problems single-cell --dataset hsmm --json out.json`` |
"""
