r"""Exact time-marginals of an interpolant between two Gaussian mixtures (independent coupling).

With :math:`\rho_0=\sum_i p_i N(\mu_i, C_i)`, :math:`\rho_1=\sum_j q_j N(\nu_j, D_j)`, :math:`x_0 \perp x_1 \perp z`
and :math:`x_t=\alpha x_0+\beta x_1+\gamma z`, each pair :math:`(i,j)` is one Gaussian component of
:math:`\rho_t` (docs/algorithms.md §1; ABV 2023 Sec. 2):

.. math::
    m_{ij} = \alpha\mu_i + \beta\nu_j,\quad K_{ij} = \alpha^2 C_i + \beta^2 D_j + \gamma^2 I,\quad
    \text{weight } p_i q_j.

With posterior weights :math:`w_{ij}(x)` and :math:`r = x - m_{ij}`:

* :math:`b = \sum w_{ij}[\dot m_{ij} + (\alpha\dot\alpha C_i + \beta\dot\beta D_j + \gamma\dot\gamma I)K_{ij}^{-1}r]`,
* :math:`E[x_0\mid x] = \sum w_{ij}(\mu_i + \alpha C_i K^{-1} r)`,
  :math:`E[x_1\mid x] = \sum w_{ij}(\nu_j + \beta D_j K^{-1} r)`,
  :math:`E[z\mid x] = \sum w_{ij}\gamma K^{-1} r`.

All weights are handled in log space; every method works in float64 and on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import batch_time, check_batch, check_time, time_column, upcast_low_precision
from ..interpolants import Interpolant
from .gaussian_mixture import ComponentTerms, GaussianMixture, cholesky_checked, component_terms


class ExactMarginals:
    r"""Closed-form :math:`\rho_t` and its fields for an :class:`~interp.interpolants.Interpolant` between mixtures.

    Every field method has the field signature ``(t, x) -> Tensor`` with ``t`` a scalar or ``(batch,)`` and
    ``x`` of shape ``(batch, dim)``, so they plug into :func:`interp.integrate` directly.

    Example:
        >>> from interp.interpolants import preset
        >>> rho0 = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
        >>> rho1 = GaussianMixture(torch.ones(2), torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.1)
        >>> exact = ExactMarginals(preset("flow"), rho0, rho1)
        >>> x = exact.sample(0.5, 100, generator=torch.Generator().manual_seed(0))
        >>> exact.velocity(0.5, x).shape
        torch.Size([100, 2])
    """

    def __init__(self, interpolant: Interpolant, rho0: GaussianMixture, rho1: GaussianMixture):
        if not isinstance(interpolant, Interpolant):
            raise TypeError(f"interpolant must be an Interpolant, got {type(interpolant).__name__}")
        for name, rho in (("rho0", rho0), ("rho1", rho1)):
            if not isinstance(rho, GaussianMixture):
                raise TypeError(f"{name} must be a GaussianMixture, got {type(rho).__name__}")
        if rho0.dim != rho1.dim:
            raise ValueError(f"rho0 and rho1 must share a dimension; got {rho0.dim} and {rho1.dim}")
        self.interpolant, self.rho0, self.rho1 = interpolant, rho0, rho1
        self.dim = rho0.dim
        self.log_weights = (rho0.log_weights[:, None] + rho1.log_weights[None, :]).reshape(-1)
        self._cache = None

    def __repr__(self) -> str:
        return f"ExactMarginals({self.interpolant.name}, rho0={self.rho0}, rho1={self.rho1})"

    # -------------------------------------------------------------- internals
    def _times(self, t, x: Tensor) -> Tensor:
        """``(T,)`` times: one when every particle shares its time, else ``(batch,)``."""
        tb = batch_time(t, x)
        return tb[:1] if bool((tb == tb[0]).all()) else tb

    def _coefficient(self, fn, t: Tensor) -> Tensor:
        return fn(t)[:, None, None, None]  # (T, 1, 1, 1) against (T, I, J, d)

    def _components(self, t: Tensor, like: Tensor):
        """Means ``(T, M, d)``, covariances ``(T, M, d, d)`` at times ``t`` (``M = I * J``)."""
        s, n = self.interpolant.schedule, self.interpolant.noise
        r0, r1 = self.rho0.to(like), self.rho1.to(like)
        a, b, g = (self._coefficient(f, t) for f in (s.alpha, s.beta, n.gamma))
        d = self.dim
        means = a * r0.means[None, :, None, :] + b * r1.means[None, None, :, :]
        a, b, g = a[..., None], b[..., None], g[..., None]
        eye = torch.eye(d, dtype=like.dtype, device=like.device)
        cov = a**2 * r0.covariances[None, :, None] + b**2 * r1.covariances[None, None, :] + g**2 * eye
        T = t.shape[0]
        return means.reshape(T, -1, d), cov.reshape(T, -1, d, d), r0, r1

    def _terms(self, t, x: Tensor):
        # An SDE drift asks for the velocity and the score at the same (t, x): reuse the component terms
        # (one entry, keyed on the very tensor and its in-place version counter).
        check_batch(x, "x", dim=self.dim)
        tt = self._times(t, x)
        cached = self._cache
        if cached is not None and cached[0] is x and cached[1] == x._version and torch.equal(cached[2], tt):
            return cached[3]
        means, cov, r0, r1 = self._components(tt, x)
        chol = cholesky_checked(cov, "the marginal covariance K(t)")
        terms = component_terms(x, self.log_weights.to(x), means, chol)
        self._cache = (x, x._version, tt, (tt, terms, r0, r1), chol)
        return tt, terms, r0, r1

    def _precision(self, t, x: Tensor) -> Tensor:
        """:math:`K_{ij}(t)^{-1}`, ``(T, M, d, d)``, from the Cholesky factors of the cached terms."""
        self._terms(t, x)
        return torch.cholesky_inverse(self._cache[4])

    def _rates(self, tt: Tensor, r0, r1) -> tuple[Tensor, Tensor]:
        r""":math:`\dot m_{ij}` ``(T, M, d)`` and :math:`A_{ij} = \tfrac12\dot K_{ij}` ``(T, M, d, d)``."""
        s, n = self.interpolant.schedule, self.interpolant.noise
        a_dot, b_dot = s.alpha_dot(tt), s.beta_dot(tt)
        mean_dot = a_dot[:, None, None, None] * r0.means[None, :, None, :]
        mean_dot = mean_dot + b_dot[:, None, None, None] * r1.means[None, None, :, :]
        mean_dot = mean_dot.reshape(tt.shape[0], -1, self.dim)
        return mean_dot, self._pair_matrix(s.alpha_alpha_dot(tt), s.beta(tt) * b_dot, n.gamma_gamma_dot(tt), r0, r1)

    def _expect(self, terms: ComponentTerms, matrices: Tensor, extra: Tensor | None = None) -> Tensor:
        """:math:`\\sum w_{ij}(\\text{extra}_{ij} + A_{ij} K_{ij}^{-1} r_{ij})` for ``matrices`` ``(T, M, d, d)``."""
        per = (matrices @ terms.precision_residual.unsqueeze(-1)).squeeze(-1)
        if extra is not None:
            per = per + extra
        return terms.expect(per)

    def _pair_matrix(self, c0: Tensor, c1: Tensor, g: Tensor, r0, r1) -> Tensor:
        """:math:`c_0 C_i + c_1 D_j + g I` for ``(T,)`` coefficients, shape ``(T, M, d, d)``."""
        d = self.dim
        eye = torch.eye(d, dtype=r0.means.dtype, device=r0.means.device)
        c0, c1, g = (v[:, None, None, None, None] for v in (c0, c1, g))
        out = c0 * r0.covariances[None, :, None] + c1 * r1.covariances[None, None, :] + g * eye
        return out.reshape(out.shape[0], -1, d, d)

    # -------------------------------------------------------------- densities
    @upcast_low_precision
    def log_density(self, t, x: Tensor) -> Tensor:
        r""":math:`\log\rho_t(x)`, shape ``(batch,)``."""
        return self._terms(t, x)[1].log_density

    @upcast_low_precision
    def score(self, t, x: Tensor) -> Tensor:
        r""":math:`\nabla\log\rho_t(x)`, shape ``(batch, dim)``."""
        return self._terms(t, x)[1].score

    @upcast_low_precision
    def laplacian_log_density(self, t, x: Tensor) -> Tensor:
        r""":math:`\Delta\log\rho_t(x)`, shape ``(batch,)``."""
        return self._terms(t, x)[1].laplacian_log_density

    @upcast_low_precision
    def log_density_time_derivative(self, t, x: Tensor) -> Tensor:
        r""":math:`\partial_t\log\rho_t(x)`, shape ``(batch,)``, in closed form.

        With :math:`p = K^{-1}(x - m)` and :math:`A = \tfrac12\dot K = \alpha\dot\alpha C + \beta\dot\beta D +
        \gamma\dot\gamma I` (finite at the ends, unlike :math:`\dot\gamma`),
        :math:`\partial_t\log N(x; m, K) = \langle p, \dot m\rangle + p^\top A p - \operatorname{tr}(K^{-1}A)`,
        averaged with the posterior weights :math:`w_{ij}(x)`. It equals :math:`-\nabla\cdot b - \langle b, s\rangle`
        (the transport equation), which the density estimators of :mod:`interp.density` are tested against.
        """
        tt, terms, r0, r1 = self._terms(t, x)
        mean_dot, matrices = self._rates(tt, r0, r1)
        p = terms.precision_residual  # (batch, M, d)
        trace = (self._precision(t, x) * matrices).sum((-1, -2))  # (T, M); A and K^{-1} are symmetric
        quad = torch.einsum("bki,bkij,bkj->bk", p, matrices.expand(x.shape[0], -1, -1, -1), p)
        per = (p * mean_dot).sum(-1) + quad - trace
        return (terms.responsibilities * per).sum(-1)

    @upcast_low_precision
    def velocity_divergence(self, t, x: Tensor) -> Tensor:
        r""":math:`\nabla\cdot b(t, x)`, shape ``(batch,)``, from the transport equation:
        :math:`-\partial_t\log\rho_t - \langle b, \nabla\log\rho_t\rangle`."""
        return -self.log_density_time_derivative(t, x) - (self.velocity(t, x) * self.score(t, x)).sum(-1)

    # -------------------------------------------------------------- fields
    @upcast_low_precision
    def velocity(self, t, x: Tensor) -> Tensor:
        r"""The velocity :math:`b(t, x)` whose flow carries :math:`\rho_0` to :math:`\rho_1`."""
        tt, terms, r0, r1 = self._terms(t, x)
        mean_dot, matrices = self._rates(tt, r0, r1)
        out = self._expect(terms, matrices, mean_dot)
        if not torch.isfinite(out).all():
            raise ValueError(f"the exact velocity is not finite; stay inside time_range {self.interpolant.time_range}")
        return out

    @upcast_low_precision
    def x0_mean(self, t, x: Tensor) -> Tensor:
        r""":math:`E[x_0 \mid x_t = x]`."""
        tt, terms, r0, r1 = self._terms(t, x)
        zero = torch.zeros_like(tt)
        matrices = self._pair_matrix(self.interpolant.schedule.alpha(tt), zero, zero, r0, r1)
        mu = r0.means[None, :, None, :].expand(1, -1, r1.n_components, -1).reshape(1, -1, self.dim)
        return self._expect(terms, matrices, mu)

    @upcast_low_precision
    def x1_mean(self, t, x: Tensor) -> Tensor:
        r""":math:`E[x_1 \mid x_t = x]`."""
        tt, terms, r0, r1 = self._terms(t, x)
        zero = torch.zeros_like(tt)
        matrices = self._pair_matrix(zero, self.interpolant.schedule.beta(tt), zero, r0, r1)
        nu = r1.means[None, None, :, :].expand(1, r0.n_components, -1, -1).reshape(1, -1, self.dim)
        return self._expect(terms, matrices, nu)

    @upcast_low_precision
    def denoiser(self, t, x: Tensor) -> Tensor:
        r""":math:`\eta = E[z \mid x_t = x] = \gamma \sum w_{ij} K_{ij}^{-1}(x - m_{ij})`."""
        tt, terms, _, _ = self._terms(t, x)
        gamma = time_column(self.interpolant.noise.gamma(tt), x)
        return gamma * terms.expect(terms.precision_residual)

    @upcast_low_precision
    def mean_velocity(self, t, x: Tensor) -> Tensor:
        r""":math:`v = E[\dot\alpha x_0 + \dot\beta x_1 \mid x]`."""
        tt = batch_time(t, x)
        s = self.interpolant.schedule
        return time_column(s.alpha_dot(tt), x) * self.x0_mean(t, x) + time_column(s.beta_dot(tt), x) * self.x1_mean(
            t, x
        )

    # -------------------------------------------------------------- marginals and samples
    def marginal(self, t: float) -> GaussianMixture:
        r""":math:`\rho_t` as a :class:`GaussianMixture` (scalar ``t``)."""
        tt = check_time(torch.as_tensor([float(t)], dtype=self.rho0.means.dtype, device=self.rho0.means.device))
        means, cov, _, _ = self._components(tt, self.rho0.means)
        return GaussianMixture(torch.exp(self.log_weights), means[0], cov[0], dtype=means.dtype)

    def sample(self, t: float, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""``n`` exact draws of :math:`\rho_t`, shape ``(n, dim)``."""
        return self.marginal(t).sample(n, generator)
