"""Inverse problems with diffusion and flow priors (docs/algorithms.md §7)."""

from .ensemble import START_NODES, ensemble_sample, exact_start, fk_sample, start_log_ratio
from .guidance import COVARIANCES, GUIDANCE, UPDATES, ddim_step, guided_sample
from .measurement import Measurement, Prior
from .operators import (
    Blur,
    Downsample,
    Identity,
    LinearOperator,
    Mask,
    Matrix,
    Nonlinear,
    box_mask,
    gaussian_blur,
    random_mask,
    uniform_blur,
)
from .red_diff import red_diff

__all__ = [
    "START_NODES",
    "GUIDANCE",
    "UPDATES",
    "Blur",
    "COVARIANCES",
    "Downsample",
    "Identity",
    "LinearOperator",
    "Mask",
    "Matrix",
    "Measurement",
    "Nonlinear",
    "Prior",
    "box_mask",
    "ddim_step",
    "ensemble_sample",
    "exact_start",
    "fk_sample",
    "gaussian_blur",
    "guided_sample",
    "random_mask",
    "red_diff",
    "start_log_ratio",
    "uniform_blur",
]
