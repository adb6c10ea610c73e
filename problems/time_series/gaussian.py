r"""The closed-form check of forecasting by guidance: windows of a stationary Gaussian process are Gaussian, so the
interpolant's fields are exact (one Gaussian component in :mod:`interp.analytic`) and so is the forecast
:math:`p(\text{future}\mid\text{context})`. A guided sampler run with the exact score can then be compared with the
exact conditional: its mean, variance and CRPS per horizon step.

The process: an AR(2) :math:`y_t = \phi_1 y_{t-1} + \phi_2 y_{t-2} + \sigma\varepsilon_t` (stationary) plus a
seasonal term :math:`a\cos(2\pi t/P) + b\sin(2\pi t/P)`, :math:`a, b \sim N(0, s^2)`, whose window covariance is
:math:`\gamma_{AR}(|i-j|) + s^2\cos(2\pi(i-j)/P)`.

Two samplers of the forecast, both on the reverse SDE of the VP interpolant with the exact score:

* *self-guidance* (Kollovieh et al. 2023, TSDiff): after each Euler–Maruyama step,
  :math:`x \leftarrow x - s\,\alpha_t^2\,\nabla_x E(\hat x_1(x))` with :math:`E` the squared error of the data
  prediction on the observed (context) positions and :math:`\alpha_t` the noise level — a heuristic whose samples
  are not, in general, the conditional law;
* *Feynman–Kac-corrected guidance*: :func:`interp.feynman_kac.posterior_sample` with the likelihood
  :math:`N(y_{obs}; x_{obs}, \sigma_y^2)`, whose weighted particles target the exact posterior of that likelihood
  (closed form: the prior tilted by it, :meth:`GaussianMixture.tilt`).

The covariance and the exact forecast are tested (``tests/test_time_series.py``); the samplers against the exact
conditional are the ``time-series`` suite of ``python -m validate`` (``validate/time_series.py``, budgets in
docs/validation.md). The FK-corrected forecast's error falls with the number of particles faster than with the
steps (2000 particles: mean error 0.14-0.15 at 200 steps, 0.10-0.11 at 800; 16000 particles, 400 steps: at most
0.12 exact standard deviations over 24 runs): the horizon is unobserved, so its spread rests on the particles'
lineage, which frequent resampling thins far below the final ESS. Self-guidance is biased (0.26-0.94 standard
deviations at scale 0.5 on the suite's cases) and diverges at scale 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from interp.analytic import ExactMarginals, GaussianMixture
from interp.feynman_kac import final_weights, linear_gaussian_start, posterior_sample
from interp.interpolants import preset

from .forecast import Contexts, SamplingConfig, conditional, guided_reverse_sde
from .model import ModelConfig, fit_windows


def ar2_seasonal_covariance(length: int, phi=(0.5, -0.3), noise: float = 1.0, period: int = 4, seasonal: float = 1.0):
    """The ``(length, length)`` covariance of a window of the AR(2) + seasonal process (float64)."""
    phi1, phi2 = phi
    if not (abs(phi2) < 1 and phi2 + phi1 < 1 and phi2 - phi1 < 1):
        raise ValueError(f"the AR(2) coefficients {phi} are not stationary")
    rho = [1.0, phi1 / (1 - phi2)]  # the autocorrelations, by the Yule-Walker recursion
    while len(rho) < max(length, 3):
        rho.append(phi1 * rho[-1] + phi2 * rho[-2])
    gamma0 = noise**2 / (1 - phi1 * rho[1] - phi2 * rho[2])
    lags = torch.arange(length, dtype=torch.float64)
    tau = (lags[:, None] - lags[None, :]).abs().long()
    ar = gamma0 * torch.tensor(rho[:length], dtype=torch.float64)[tau]
    season = seasonal**2 * torch.cos(2 * math.pi * (lags[:, None] - lags[None, :]) / period)
    return ar + season


def window_prior(context: int, horizon: int, **process) -> GaussianMixture:
    cov = ar2_seasonal_covariance(context + horizon, **process)
    return GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, context + horizon, dtype=torch.float64),
                           cov[None])  # fmt: skip


def observation(context: int, horizon: int) -> Tensor:
    """The matrix picking the context positions of a window."""
    return torch.eye(context + horizon, dtype=torch.float64)[:context]


def exact_posterior(prior: GaussianMixture, y: Tensor, context: int, sigma_y: float) -> GaussianMixture:
    """The prior tilted by :math:`N(y; x_{1:C}, \\sigma_y^2 I)`: one Gaussian, the exact target of both samplers."""
    A = observation(context, prior.dim - context)
    return prior.tilt(A.T @ A / sigma_y**2, A.T @ y / sigma_y**2)[0]


def _setup(prior: GaussianMixture):
    vp = preset("vp")
    standard = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, prior.dim, dtype=torch.float64), 1.0)
    return vp, ExactMarginals(vp, standard, prior)


def fk_forecast(prior, y, context, sigma_y, n, steps, generator) -> tuple[Tensor, Tensor]:
    """Weighted particles ``(n, window)`` and their normalised weights ``(n,)`` from the FK-corrected sampler."""
    vp, exact = _setup(prior)
    A = observation(context, prior.dim - context)
    grid = torch.linspace(0.0, vp.time_range[1], steps + 1, dtype=torch.float64)

    def log_likelihood(x):
        return -0.5 * ((x @ A.T - y) ** 2).sum(1) / sigma_y**2

    start, start_z = linear_gaussian_start(vp, 0.0, A, y, sigma_y, n, generator)
    out = posterior_sample(vp, exact.score, log_likelihood, grid, start=start, start_log_normaliser=start_z,
                           generator=generator, progress=False)  # fmt: skip
    return out.final, final_weights(out)


def self_guided_forecast(prior, y, context, scale, n, steps, generator) -> Tensor:
    """Samples ``(n, window)`` of TSDiff's self-guidance with the exact score (mean-squared-error guidance)."""
    vp, exact = _setup(prior)
    grid = torch.linspace(0.0, vp.time_range[1], steps + 1, dtype=torch.float64)

    def energy(x1: Tensor) -> Tensor:
        return ((x1[:, :context] - y) ** 2).sum()

    return guided_reverse_sde(vp, exact.score, energy, (n, prior.dim), grid, scale=scale, guide_from=0.0,
                              generator=generator, dtype=torch.float64)  # fmt: skip


def simulated_windows(prior: GaussianMixture, n: int, generator) -> tuple[Tensor, float]:
    """``n`` windows of the process as training rows ``(n, 2, window)`` float32 (values over their overall standard
    deviation, and an all-observed mask) and that standard deviation."""
    x = prior.sample(n, generator)
    spread = float(x.std())
    x = (x / spread).float()
    return torch.stack([x, torch.ones_like(x)], dim=1), spread


def trained_model(prior: GaussianMixture, context: int, config: ModelConfig, *, windows: int, seed: int):
    """The conditional window model (TSDiff-Cond, :mod:`.model`) trained on ``windows`` simulated windows of the
    process (seed ``seed``)."""
    rows, spread = simulated_windows(prior, windows, torch.Generator().manual_seed(seed))
    return fit_windows(rows, spread, context, config, conditional=True, seed=seed)


def trained_forecast(model, y: Tensor, n: int, steps: int, generator) -> Tensor:
    """Samples ``(n, horizon)`` of a :func:`trained_model` given the context ``y``: learned, not exact, so their
    distance to the exact conditional is the model's error plus Monte-Carlo error."""
    spread = model.spread
    ctx = Contexts(y[None].numpy() / spread, np.ones((1, model.context), bool), np.zeros(1), np.full(1, spread))
    paths = conditional(model, ctx, SamplingConfig(samples=n, steps=steps, chunk=n), generator)
    return torch.as_tensor(ctx.unscaled(paths)[0])
