"""Inverse problems against exact posteriors (docs/algorithms.md §7). The prior is the exact VP field of the
validation target mixture (an 8-mode ring in 2D, four full-covariance components in 16 and 64 dimensions), the
measurement y = Hx + σ n of a fixed draw x from it, and ``GaussianMixture.condition`` gives the exact posterior
and evidence, so every error is the method's.

Operators: a random mask observing half the coordinates, average pooling ×2 and (16D as 1×4×4, 64D as 1×8×8) a
Gaussian blur of one pixel; σ_y ∈ {0.05, 0.5}.

Metrics, each method, each case (``N`` samples, ``STEPS`` steps):
* ``mode_tv``: total variation between the samples' mode masses (weighted for the ensemble and FK steering) and
  the posterior's;
* ``sliced_w2_over_floor``: sliced W2 to exact posterior draws over the Monte-Carlo floor (as in the Feynman–Kac
  suite: the floor uses the final ESS for weighted particles);
* ``log_density_gap``: the mean exact posterior log-density of exact draws minus that of the samples (0 for an
  exact sampler; large and positive when samples sit where the posterior is thin, negative when they collapse onto
  its modes);
* ``coverage_90``: the fraction of exact posterior draws inside the samples' central 90 % interval, per coordinate,
  averaged (0.90 for an exact sampler);
* ``evidence_error``: |log p̂(y) − log p(y)| where the method estimates it.

Budgets: only the approximation-free ensemble is checked (``TV``, ``SW2_FLOOR``, ``COVERAGE``, ``LOG_Z``; it
runs at ``ENSEMBLE``'s mixing and steps, and reports how many start particles its final ones descend from). DPS,
ΠGDM (with the exact-score update, and ``pigdm-state`` with its authors' state update), second-order Tweedie,
RED-Diff and FK steering approximate the posterior (or, for FK steering, are exact only
in the limit of many particles) and their values are *reported*, with the unconditioned prior as a reference row:
docs/validation.md tabulates them.
"""

from __future__ import annotations

import torch

from interp import grids
from interp.analytic import GaussianMixture
from interp.interpolants import preset
from interp.inverse import (
    Downsample,
    Measurement,
    Prior,
    ensemble_sample,
    fk_sample,
    gaussian_blur,
    guided_sample,
    random_mask,
    red_diff,
)
from interp.records import Record, check, report

from .cases import exact_marginals
from .feynman_kac import mode_masses, sw2_over_floor, total_variation

SUITE = "inverse"
N, QUICK_N, STEPS = 2000, 1000, 200
# The ensemble's (mixing, steps) by dimension: in 16D and 64D the weights resample every few steps and, at the plain
# diffusion rate, the final particles descended from few start particles (2-15 of 1000 in 64D), the evidence
# scattering from seed to seed whatever the particle count (64D: 1-2 nats; 16D blur at sigma_y 0.05: 0.29 nats);
# three times the Langevin rate keeps many more lineages (by 0.05 there), and more steps keep the Euler-Maruyama
# bias that grows with the rate small: +0.3 nats on the 64D mask at 600 steps, +0.05 at 1200 (docs/algorithms.md
# §7).
ENSEMBLE = {2: (1.0, STEPS), 16: (3.0, 3 * STEPS), 64: (3.0, 6 * STEPS)}
TV, SW2_FLOOR, COVERAGE, LOG_Z = 0.1, 4.5, 0.05, 0.3
VP = preset("vp")
SHAPES = {2: (2,), 16: (1, 4, 4), 64: (1, 8, 8)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _operators(dim: int) -> dict:
    shape = SHAPES[dim]
    ops = {"mask": random_mask(shape, 0.5, _gen(3000 + dim)), "pool2": Downsample(shape, 2)}
    if dim > 2:
        ops["blur"] = gaussian_blur(shape, 1.0)
    return ops


class _Flat:
    """The exact data prediction on flat vectors, called with states of the operator's signal shape."""

    def __init__(self, exact, shape):
        self.exact, self.shape = exact, shape

    def __call__(self, t, x):
        return self.exact.x1_mean(t, x.reshape(x.shape[0], -1)).reshape(x.shape)


def _case(dim: int, op_name: str, sigma: float):
    exact = exact_marginals(VP, dim)
    prior_mixture = exact.rho1
    op = _operators(dim)[op_name]
    truth = prior_mixture.sample(1, _gen(4000 + dim)).reshape(1, *op.shape)
    measurement = Measurement.simulate(op, truth, sigma, _gen(5000 + dim))
    posterior, evidence = prior_mixture.condition(op, measurement.y[0].reshape(-1), sigma)
    return Prior(VP, _Flat(exact, op.shape)), measurement, prior_mixture, posterior, evidence


def _metrics(x, log_weights, posterior: GaussianMixture, seed: int) -> dict:
    x = x.reshape(x.shape[0], -1)
    n = x.shape[0]
    w = torch.full((n,), 1.0 / n, dtype=x.dtype) if log_weights is None else torch.softmax(log_weights, 0)
    draws = x if log_weights is None else x[torch.multinomial(w, n, replacement=True, generator=_gen(seed + 11))]
    effective = None if log_weights is None else float(1.0 / (w**2).sum())
    sw2 = sw2_over_floor(draws, posterior, seed, effective=effective)
    exact = posterior.sample(n, _gen(seed + 12))  # the reference sw2_over_floor measured against
    tv = total_variation(mode_masses(x, w, posterior), posterior.weights)
    gap = float(posterior.log_density(exact).mean() - (w * posterior.log_density(x)).sum())
    lo, hi = torch.quantile(draws, 0.05, dim=0), torch.quantile(draws, 0.95, dim=0)
    coverage = float(((exact >= lo) & (exact <= hi)).double().mean())
    return {"mode_tv": tv, "sliced_w2_over_floor": sw2, "log_density_gap": gap, "coverage_90": coverage}


def _methods(dim: int, n: int) -> dict:
    covariance = "full" if dim <= 16 else "diagonal"
    return {
        "ensemble": lambda p, m, g, s: ensemble_sample(
            p, m, grids.uniform(ENSEMBLE[dim][1], *VP.time_range), n, mixing=ENSEMBLE[dim][0], generator=_gen(s),
            progress=False,
        ),  # fmt: skip
        "fk-steering": lambda p, m, g, s: fk_sample(p, m, g, n, generator=_gen(s), progress=False),
        "pigdm": lambda p, m, g, s: guided_sample(p, m, g, n, method="pigdm", generator=_gen(s), progress=False),
        "pigdm-state": lambda p, m, g, s: guided_sample(
            p, m, g, n, method="pigdm", update="state", generator=_gen(s), progress=False
        ),  # fmt: skip
        "tweedie2": lambda p, m, g, s: guided_sample(
            p, m, g, n, method="tweedie2", covariance=covariance, generator=_gen(s), progress=False
        ),  # fmt: skip
        "dps": lambda p, m, g, s: guided_sample(
            p, m, g, n, method="dps", zeta=0.1, generator=_gen(s), progress=False
        ),  # fmt: skip
        "red-diff": lambda p, m, g, s: red_diff(p, m, g, n, generator=_gen(s), progress=False),
    }


def _run_case(dim: int, op_name: str, sigma: float, seed: int, methods, n: int) -> list[Record]:
    prior, measurement, prior_mixture, posterior, evidence = _case(dim, op_name, sigma)
    case = f"{dim}d-{op_name}-s{sigma:g}"
    grid = grids.uniform(STEPS, *VP.time_range)
    reference = _metrics(prior_mixture.sample(n, _gen(seed + 7)), None, posterior, seed)
    records = [report(SUITE, case, "prior", k, v) for k, v in reference.items()]
    for name, fn in _methods(dim, n).items():
        if name not in methods:
            continue
        try:
            out = fn(prior, measurement, grid, seed)
        except FloatingPointError:  # the method blew up: a failed check for the exact method, a report otherwise
            if name == "ensemble":
                records.append(check(SUITE, case, name, "finished", 0.0, 1.0, op=">="))
            else:
                records.append(report(SUITE, case, name, "finished", 0.0))
            continue
        log_w = out.extras["log_weight"][-1] if "log_weight" in out.extras else None
        values = _metrics(out.states[-1], log_w, posterior, seed)
        if "log_normaliser" in out.attrs:
            values["evidence_error"] = abs(out.attrs["log_normaliser"] - evidence)
        if name == "ensemble":
            records += [
                check(SUITE, case, name, "mode_tv", values["mode_tv"], TV),
                check(SUITE, case, name, "sliced_w2_over_floor", values["sliced_w2_over_floor"], SW2_FLOOR),
                check(SUITE, case, name, "coverage_90_error", abs(values["coverage_90"] - 0.9), COVERAGE),
                check(SUITE, case, name, "evidence_error", values["evidence_error"], LOG_Z),
                report(SUITE, case, name, "distinct_ancestors", out.attrs["distinct_ancestors"]),
                report(SUITE, case, name, "log_density_gap", values["log_density_gap"]),
            ]
        else:
            records += [report(SUITE, case, name, k, v) for k, v in values.items()]
    return records


def run(seed: int = 0, tier: str = "full", methods=None) -> list[Record]:
    """The quick tier: 16 dimensions, the blur, σ_y = 0.5 (``QUICK_N`` samples); the full tier: 2, 16 and 64
    dimensions, every operator, σ_y ∈ {0.05, 0.5}."""
    methods = set(methods or _methods(2, 1))
    if tier == "quick":
        cases = [(16, "blur", 0.5)]
    else:
        cases = [(d, op, s) for d in SHAPES for op in _operators(d) for s in (0.05, 0.5)]
    n = QUICK_N if tier == "quick" else N
    return [r for case in cases for r in _run_case(*case, seed, methods, n)]
