r"""Log-densities along SDE trajectories: the Itô density estimator.

**Itô density estimator** (Skreta, Atanackovic, Bose, Tong & Neklyudov 2024, "SuperDiff"). Let
:math:`\ell = \log\rho_t`, :math:`s = \nabla\ell`. The interpolant's marginals solve the transport equation
:math:`\partial_t\rho + \nabla\cdot(b\rho) = 0`, so :math:`\partial_t\ell = -\nabla\cdot b - \langle b, s\rangle`.
Along the SDE :math:`dX = [b + \sigma\epsilon s]\,dt + \sqrt{2\epsilon}\,dW` (forward, :math:`\sigma = +1`,
``t`` increasing; backward, :math:`\sigma = -1`, ``t`` decreasing, whose quadratic variation enters with the
opposite sign of :math:`dt`), Itô's formula gives, pathwise,

.. math::
    d\ell(t, X_t) = \langle s, dX\rangle + \big[\partial_t\ell + \sigma\epsilon\,\Delta\ell\big]\,dt.

For a Gaussian base (:math:`x_t = \alpha x_0 + \beta x_1`, :math:`x_0 \sim N(0, I)`) the velocity is
:math:`b = f x - D s` with :math:`f = \dot\beta/\beta`, :math:`D = \alpha\dot\alpha - f\alpha^2`, so
:math:`\nabla\cdot b = d f - D\Delta\ell` and

.. math::
    \partial_t\ell + \sigma\epsilon\Delta\ell = -d f - f\langle x, s\rangle + D|s|^2 + (D + \sigma\epsilon)\Delta\ell.

With the *matched* noise :math:`\epsilon = -D` run forward (the reverse SDE of a diffusion model) the Laplacian
cancels: the estimate needs the score only, no divergence, at no extra field evaluation. Backward (the noising
SDE) the term :math:`2D\Delta\ell` stays (docs/algorithms.md §2). For a two-sided interpolant the bracket is
:math:`-\nabla\cdot(b - \sigma\epsilon s) - \langle b, s\rangle`: one divergence per step.

Two discretisations of :math:`\int d\ell` are offered on any fixed-step SDE solver:

* ``scheme="ito"`` — :math:`\langle s_n, \Delta X\rangle + h\,[\partial_t\ell + \sigma\epsilon\Delta\ell]_n`
  (SuperDiff). Its error is a martingale: the step replaces :math:`\tfrac12\Delta X^\top\nabla^2\ell\,\Delta X`
  by its mean :math:`\epsilon h\Delta\ell`, so the mean absolute error falls like :math:`h^{1/2}` with constant
  :math:`(2\int\epsilon^2\|\nabla^2\ell\|_F^2dt)^{1/2}` — large for the stiff noise of VP diffusions.
* ``scheme="trapezoid"`` — :math:`\tfrac12\langle s_n + s_{n+1}, \Delta X\rangle + \tfrac h2
  (\partial_t\ell_n + \partial_t\ell_{n+1})` (Stratonovich form: the trapezoid carries the quadratic term
  pathwise). Error :math:`O(h)`, but :math:`\partial_t\ell` needs :math:`\nabla\cdot b` (or, for a Gaussian base,
  :math:`\Delta\ell`) at every step, unless a closed form ``time_derivative`` is given. The score at the new
  point is the next step's own evaluation, so it costs no extra field evaluation.

Both run in the same pass as sampling: the solver is wrapped, the SDE is unchanged, and the tracked
:math:`\log\rho_t(X_t)` is recorded in ``Trajectory.extras["log_density"]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import batch_time, check_batch, time_column
from .._linalg import flat_dot
from .._random import seeded_generator
from ..brownian import BrownianPath
from ..driver import integrate
from ..dynamics import SDE, noise_scale_fn
from ..interpolants import Interpolant
from ..results import Trajectory
from ..solvers.base import SDESolver
from ..solvers.sde import EulerMaruyama
from ._shared import FirstCallErrors, anchor, check_divergence_options
from .ode import Field, draw_probes, field_divergence

SCHEMES = ("ito", "trapezoid")


# ---------------------------------------------------------------------- Itô route
def gaussian_base_coefficients(interpolant: Interpolant, t: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`f = \dot\beta/\beta` and :math:`D = \alpha\dot\alpha - f\alpha^2` of a Gaussian-base interpolant, for
    which :math:`b = f x - D s`. The matched noise :math:`\epsilon = -D` makes the Itô estimate divergence-free."""
    if not interpolant.gaussian_base:
        raise ValueError(f"{interpolant.name} is not a Gaussian-base interpolant")
    s = interpolant.schedule
    beta = s.beta(t)
    if (beta <= 0).any():
        raise ValueError(
            f"{interpolant.name}: beta(t) = 0 at t = {float(t.reshape(-1)[0]):g}, where b = f x - D s divides by "
            "beta; start the grid at t > 0 (or pass interpolant=None to use the velocity's divergence)"
        )
    f = s.beta_dot(t) / beta
    d = s.alpha_alpha_dot(t) - f * s.alpha(t) ** 2
    if not (torch.isfinite(f).all() and torch.isfinite(d).all()):
        raise ValueError(f"{interpolant.name}: f or D is not finite at some t; stay inside {interpolant.time_range}")
    return f, d


def gaussian_base_rate(x: Tensor, s: Tensor, f: Tensor, d: Tensor) -> Tensor:
    r""":math:`-d f - f\langle x, s\rangle + D|s|^2`, ``(batch,)``: the Itô rate of a Gaussian base with matched noise
    (the Laplacian cancelled), for ``f``, ``D`` of shape ``(1,)`` or ``(batch,)``."""
    return -x[0].numel() * f - f * flat_dot(x, s) + d * flat_dot(s, s)


class _ItoFields:
    """Score, velocity and the rate term of the estimator at ``(t, x)``, cached for the last two points so the
    solver's drift evaluation and the estimator share one field evaluation."""

    def __init__(
        self, score, velocity, interpolant, epsilon, sign, time_derivative, laplacian, divergence, probe_source
    ):
        self.score_fn, self.velocity_fn, self.interpolant = score, velocity, interpolant
        self.epsilon, self.sign = epsilon, sign
        self.time_derivative, self.laplacian_fn, self.divergence = time_derivative, laplacian, divergence
        self.probe_source = probe_source
        self.cache: list = []
        self.evaluations = 0
        self.first_call = None

    @staticmethod
    def _times(t, x: Tensor) -> Tensor:
        """``(1,)`` for a shared time (schedules evaluated once, broadcast), else ``(batch,)``."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return t.reshape(1) if t.ndim == 0 else batch_time(t, x)

    def _gaussian(self, tt: Tensor, x) -> tuple[Tensor, Tensor] | None:
        if self.interpolant is None or not self.interpolant.gaussian_base:
            return None
        f, d = gaussian_base_coefficients(self.interpolant, tt)
        return time_column(f, x[: f.shape[0]]), time_column(d, x[: d.shape[0]])

    def at(self, t, x: Tensor) -> dict:
        key = (id(x), x._version, float(t) if torch.as_tensor(t).ndim == 0 else None)
        for entry_key, entry_x, entry in self.cache:
            if entry_key == key and entry_x is x:
                return entry
        if self.first_call is None:
            self.first_call = FirstCallErrors(x.shape)
        with self.first_call("score field"):
            s = self.score_fn(t, x)
            if not isinstance(s, Tensor) or s.shape != x.shape:
                raise ValueError(f"the score returned {getattr(s, 'shape', type(s).__name__)} for x {tuple(x.shape)}")
        self.evaluations += 1
        tt = self._times(t, x)
        gaussian = self._gaussian(tt, x)
        if self.velocity_fn is not None:
            b = self.velocity_fn(t, x)
        elif gaussian is not None:
            b = gaussian[0] * x - gaussian[1] * s
        else:
            raise ValueError("a two-sided interpolant needs velocity= as well as the score")
        eps = self.epsilon(tt).to(x.dtype)
        if not (torch.isfinite(eps).all() and (eps >= 0).all()):
            raise ValueError(f"noise_scale epsilon(t) must be finite and >= 0; got {eps.min().item()} at some t")
        eps = time_column(eps, x[: eps.shape[0]])
        entry = {"s": s, "b": b, "eps": eps, "gaussian": gaussian, "rate": {}}
        self.cache = [(key, x, entry)] + self.cache[:1]
        return entry

    def drift(self, t, x: Tensor) -> Tensor:
        p = self.at(t, x)
        return p["b"] + self.sign * p["eps"] * p["s"]

    def diffusion(self, t, x: Tensor) -> Tensor:
        return torch.sqrt(2 * self.at(t, x)["eps"])

    def _divergence(self, field, t, x) -> Tensor:
        probes = None if self.divergence == "exact" else self.probe_source(x)
        return field_divergence(field, t, x, probes=probes)[1].mean(0)

    def _laplacian(self, t, x) -> Tensor:
        if self.laplacian_fn is not None:
            return self.laplacian_fn(t, x)
        return self._divergence(self.score_fn, t, x)

    def rate(self, t, x: Tensor, c: float) -> Tensor:
        r""":math:`\partial_t\ell + c\,\epsilon\,\Delta\ell` at ``(t, x)``; ``c`` is ``sign`` (Itô) or 0 (trapezoid)."""
        p = self.at(t, x)
        if c in p["rate"]:
            return p["rate"][c]
        s, b, eps = p["s"], p["b"], p["eps"]
        coefficient = c * eps.reshape(eps.shape[0], -1)[:, 0]  # of the Laplacian, (1,) or (batch,)
        if self.time_derivative is not None:
            value = self.time_derivative(t, x)
            if bool((coefficient != 0).any()):
                value = value + coefficient * self._laplacian(t, x)
        elif p["gaussian"] is not None:
            f, d = p["gaussian"]
            f, d = f.reshape(f.shape[0], -1)[:, 0], d.reshape(d.shape[0], -1)[:, 0]
            value = gaussian_base_rate(x, s, f, d)
            lap = d + coefficient
            if bool((lap.abs() > 1e-12 * (d.abs() + coefficient.abs())).any()):
                value = value + lap * self._laplacian(t, x)
        else:  # -div(b - c eps s) - <b, s>: one divergence of the combined field
            cc = c * eps

            def combined(tt, xx):
                return self.velocity_fn(tt, xx) - cc * self.score_fn(tt, xx)

            value = -self._divergence(combined, t, x) - flat_dot(b, s)
        p["rate"][c] = value
        return value


class _TrackState:
    def __init__(self, base, change: Tensor):
        self.base, self.change = base, change

    def tracked(self) -> dict[str, Tensor]:
        return {"log_density_change": self.change}


class _ItoTracking(SDESolver):
    """Wraps a fixed-step SDE solver; after each step adds the increment of :math:`\\log\\rho_t(X_t)`."""

    def __init__(self, solver: SDESolver, fields: _ItoFields, scheme: str):
        self.solver, self.fields, self.scheme = solver, fields, scheme
        self.name = f"{solver.name}+{scheme}_density"
        self.strong_order, self.weak_order = solver.strong_order, solver.weak_order
        self.nfe_per_step, self.needs_additive_noise = solver.nfe_per_step, solver.needs_additive_noise

    def init(self, sde, t0, x0):
        return _TrackState(self.solver.init(sde, t0, x0), torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device))

    def step(self, sde, t0, t1, x, dw, state):
        fields, h = self.fields, t1 - t0
        p0 = fields.at(t0, x)
        if self.scheme == "ito":
            increment_rate = fields.rate(t0, x, fields.sign)
        else:
            rate0 = fields.rate(t0, x, 0.0)
        x_new, base = self.solver.step(sde, t0, t1, x, dw, state.base)
        dx = x_new - x
        if self.scheme == "ito":
            increment = flat_dot(p0["s"], dx) + h * increment_rate
        else:
            p1 = fields.at(t1, x_new)
            increment = 0.5 * flat_dot(p0["s"] + p1["s"], dx) + 0.5 * h * (rate0 + fields.rate(t1, x_new, 0.0))
        return x_new, _TrackState(base, state.change + increment)


def ito_log_density(
    score: Field | None,
    x: Tensor,
    grid,
    solver: SDESolver | None = None,
    *,
    velocity: Field | None = None,
    interpolant: Interpolant | None = None,
    noise_scale="matched",
    log_density_start=None,
    log_density_end=None,
    scheme: str = "ito",
    time_derivative: Field | None = None,
    laplacian: Field | None = None,
    divergence: str = "exact",
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    brownian: BrownianPath | None = None,
    record: bool = False,
    progress: bool = True,
) -> Trajectory:
    r"""Sample the interpolant SDE from ``x`` at ``grid[0]`` and track :math:`\log\rho_t(X_t)` in the same pass.

    An increasing grid runs the forward SDE :math:`dX = [b + \epsilon s]dt + \sqrt{2\epsilon}dW`, a decreasing one
    the backward SDE :math:`dX = [b - \epsilon s]dt + \sqrt{2\epsilon}d\bar W` (see the module docstring).

    Args:
        score: :math:`s = \nabla\log\rho_t` (exact, or e.g. :meth:`~interp.fields.LearnedField.score`). Required.
        x: initial states ``(batch, ...)``, distributed as :math:`\rho_{\text{grid}[0]}`.
        grid: times; see :mod:`interp.grids`.
        solver: a fixed-step SDE solver (default Euler–Maruyama).
        velocity: :math:`b`. Optional for a Gaussian-base ``interpolant`` (then :math:`b = f x - D s`, one field
            evaluation per step); required otherwise.
        interpolant: enables the Gaussian-base identities (divergence-free with matched noise) and
            ``noise_scale="matched"``.
        noise_scale: :math:`\epsilon(t)` (float or callable of ``t``) or ``"matched"`` (:math:`\epsilon = -D`, the
            diffusion model's own SDE; needs a Gaussian-base ``interpolant``).
        log_density_start: :math:`\log\rho` at ``grid[0]`` (callable of states or tensor); without it or
            ``log_density_end``, ``extras["log_density_change"]`` is returned.
        log_density_end: :math:`\log\rho` at ``grid[-1]`` (callable of states), instead of ``log_density_start``.
        scheme: ``"ito"`` (order 1/2, divergence-free where the identities allow) or ``"trapezoid"`` (order 1;
            needs :math:`\partial_t\log\rho_t`: ``time_derivative`` or a divergence per step).
        time_derivative: closed-form :math:`\partial_t\log\rho_t(x)` (e.g.
            :meth:`~interp.analytic.ExactMarginals.log_density_time_derivative`), used instead of divergences.
        laplacian: closed-form :math:`\Delta\log\rho_t`; otherwise the divergence of ``score`` when needed.
        divergence: how divergences are taken when needed: ``"exact"`` or ``"hutchinson"`` (fresh probes per step
            from a generator seeded from ``generator``'s seed).
        probe: the Hutchinson probe, ``"rademacher"`` or ``"gaussian"``.

    Returns:
        a :class:`~interp.results.Trajectory` with ``extras["log_density"]`` ``(n_recorded, batch)`` and
        ``attrs["score_evaluations"]``.
    """
    if score is None or not callable(score):
        raise ValueError(
            "the Itô density estimator needs the score (grad log rho_t) of the model: pass score=, e.g. "
            "LearnedField(...).score or ExactMarginals.score"
        )
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}; got {scheme!r}")
    check_divergence_options(divergence, 1, probe)
    if velocity is None and (interpolant is None or not interpolant.gaussian_base):
        raise ValueError("give velocity=, or a Gaussian-base interpolant= from which b = f x - D s follows")
    solver = EulerMaruyama() if solver is None else solver
    if not isinstance(solver, SDESolver):
        raise TypeError(f"the Itô route needs a fixed-step SDE solver (EulerMaruyama, StochasticHeun); got {solver!r}")
    check_batch(x, "x")
    grid_t = torch.as_tensor(grid, dtype=torch.float64)
    sign = 1.0 if bool(grid_t[-1] > grid_t[0]) else -1.0
    if isinstance(noise_scale, str):
        if noise_scale != "matched":
            raise ValueError(f"noise_scale must be a float, a callable or 'matched'; got {noise_scale!r}")
        if interpolant is None or not interpolant.gaussian_base:
            raise ValueError("noise_scale='matched' (epsilon = -D) needs a Gaussian-base interpolant=")

        def epsilon(t):
            return (-gaussian_base_coefficients(interpolant, t)[1]).clamp_min(0)
    else:
        epsilon = noise_scale_fn(noise_scale)
    if brownian is None:
        generator = seeded_generator(generator, x.device)
    probe_generator = torch.Generator(device=x.device)
    probe_generator.manual_seed((generator.initial_seed() if generator is not None else 0) + 7919)

    def probe_source(state):
        return draw_probes(state, 1, probe, probe_generator)

    fields = _ItoFields(
        score, velocity, interpolant, epsilon, sign, time_derivative, laplacian, divergence, probe_source
    )
    sde = SDE(fields.drift, fields.diffusion, additive=True)
    with torch.no_grad():
        traj = integrate(
            sde,
            x,
            grid,
            _ItoTracking(solver, fields, scheme),
            generator=generator,
            brownian=brownian,
            record=record,
            progress=progress,
        )
    change = traj.extras.pop("log_density_change")
    name, value = anchor(change, traj.states, log_density_start, log_density_end)
    traj.extras[name] = value
    traj.attrs.update(
        route="ito",
        scheme=scheme,
        direction="forward" if sign > 0 else "backward",
        score_evaluations=fields.evaluations,
    )
    if not isinstance(noise_scale, str):
        traj.attrs["noise_scale"] = str(noise_scale) if callable(noise_scale) else float(noise_scale)
    else:
        traj.attrs["noise_scale"] = "matched"
    return traj
