"""Single-cell snapshot trajectory inference: cells measured at a few time points (each destroyed when measured),
dynamics inferred and the population predicted at a held-out time point (``python -m problems single-cell``).

| module | holds |
|---|---|
| ``data`` | readers (``.h5ad``, CSV, netCDF), the HSMM fetch from Debian, :func:`check_time_course` |
| ``embedding`` | :class:`Embedding`: normalise, log1p, top-variance genes, PCA, fitted on training cells only |
| ``methods`` | interp's OT-CFM, [SF]²M, multi-marginal SB; TorchCFM's OT-CFM; nearest-snapshot and McCann baselines |
| ``protocol`` | :func:`run_protocol`: leave-one-time-point-out over seeds, W1/W2/MMD, an xarray table |
| ``simulated`` | :func:`double_well`: a bifurcating time course with known dynamics and true held-out marginals |
| ``outputs`` | per-cell trajectories, the figure, bench-format records, atomic writes |
| ``cli`` | the command line |
"""
