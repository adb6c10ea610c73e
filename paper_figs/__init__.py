"""Figures of the papers behind interp's methods, reproduced on closed forms (``python -m paper_figs list``).

Each figure is a module of this package with ``NAME``, ``describe`` (its docstring), ``add_arguments(parser)``,
``load(args, parser) -> xarray.Dataset`` (from saved bench output, or by running the bench) and
``plot(ds, path)``; :mod:`paper_figs.figure` holds the plumbing they share (arguments, atomic PNG + netCDF).
"""

FIGURES = (
    "solvers_error_vs_nfe",
    "steering_reward_vs_nfe",
    "images_fd_vs_nfe",
    "images_steering_reward_vs_nfe",
    "images_inverse_grid",
)
