r"""Gaussian mixtures with full covariances, evaluated in log space.

:math:`\rho(x) = \sum_k w_k N(x; \mu_k, \Sigma_k)`. With :math:`L_k L_k^\top = \Sigma_k`,
:math:`P_k = \Sigma_k^{-1}`, :math:`r_k = x - \mu_k` and responsibilities
:math:`\pi_k(x) = w_k N(x;\mu_k,\Sigma_k)/\rho(x)` (a softmax of log terms, never a ratio of exponentials):

* :math:`\nabla\log\rho = -\sum_k \pi_k P_k r_k`,
* :math:`\Delta\log\rho = \sum_k \pi_k(|P_k r_k|^2 - \operatorname{tr} P_k) - |\nabla\log\rho|^2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import as_tensor, check_batch, check_finite, upcast_low_precision


@dataclass(frozen=True)
class ComponentTerms:
    """Per-component quantities at a batch of points ``x`` of shape ``(batch, dim)``.

    ``log_joint`` is :math:`\\log w_k + \\log N(x; \\mu_k, \\Sigma_k)`, shape ``(batch, K)``;
    ``precision_residual`` is :math:`P_k (x - \\mu_k)`, shape ``(batch, K, dim)``;
    ``precision_trace`` is :math:`\\operatorname{tr} P_k`, shape ``(T, K)`` with ``T`` 1 or ``batch``.
    """

    log_joint: Tensor
    precision_residual: Tensor
    precision_trace: Tensor

    @property
    def log_density(self) -> Tensor:
        return torch.logsumexp(self.log_joint, dim=-1)

    @property
    def responsibilities(self) -> Tensor:
        return torch.softmax(self.log_joint, dim=-1)

    def expect(self, per_component: Tensor) -> Tensor:
        """:math:`\\sum_k \\pi_k(x) f_k(x)` for ``per_component`` of shape ``(batch, K, dim)``."""
        return torch.einsum("bk,bkd->bd", self.responsibilities, per_component)

    @property
    def score(self) -> Tensor:
        return -self.expect(self.precision_residual)

    @property
    def laplacian_log_density(self) -> Tensor:
        resp = self.responsibilities
        quadratic = (self.precision_residual**2).sum(-1) - self.precision_trace
        return (resp * quadratic).sum(-1) - (self.score**2).sum(-1)


def component_terms(x: Tensor, log_weights: Tensor, means: Tensor, chol: Tensor) -> ComponentTerms:
    """Evaluate Gaussian components at ``x``.

    Args:
        x: ``(batch, dim)``.
        log_weights: ``(K,)``, normalised.
        means: ``(T, K, dim)`` with ``T`` 1 or ``batch``.
        chol: lower Cholesky factors of the covariances, ``(T, K, dim, dim)``.
    """
    dim = x.shape[-1]
    residual = x[:, None, :] - means  # (batch, K, dim)
    eye = torch.eye(dim, dtype=chol.dtype, device=chol.device)
    # Invert the (few, small) triangular factors once and apply them by batched matmul: far faster than a
    # triangular solve broadcast over every point, and exact enough for well-conditioned factors.
    inverse_chol = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)  # (T, K, d, d)
    y = torch.einsum("tkij,tbkj->tbki", inverse_chol, _lead(residual, chol.shape[0]))  # L^{-1} r
    precision_residual = torch.einsum("tkji,tbkj->tbki", inverse_chol, y)  # L^{-T} L^{-1} r = K^{-1} r
    y, precision_residual = _unlead(y, x.shape[0]), _unlead(precision_residual, x.shape[0])
    mahalanobis = (y**2).sum(-1)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_normal = -0.5 * (mahalanobis + log_det + dim * math.log(2 * math.pi))
    precision_trace = (inverse_chol**2).sum((-1, -2))
    return ComponentTerms(log_weights + log_normal, precision_residual, precision_trace)


def _lead(residual: Tensor, n_times: int) -> Tensor:
    """``(batch, K, d)`` -> ``(T, batch / T, K, d)``: one shared time (T = 1) or one time per point (T = batch)."""
    return residual.unsqueeze(0) if n_times == 1 else residual.unsqueeze(1)


def _unlead(value: Tensor, batch: int) -> Tensor:
    return value.reshape(batch, *value.shape[2:])


def cholesky_checked(covariances: Tensor, name: str) -> Tensor:
    """Cholesky factors, raising a ``ValueError`` naming the first non-positive-definite matrix."""
    chol, info = torch.linalg.cholesky_ex(covariances)
    if (info != 0).any():
        bad = torch.nonzero(info.reshape(-1))[0].item()
        raise ValueError(f"{name} must be symmetric positive definite; matrix {bad} is not")
    return chol


class GaussianMixture:
    r"""A mixture :math:`\sum_k w_k N(\mu_k, \Sigma_k)` in any dimension.

    Args:
        weights: ``(K,)`` positive (normalised here).
        means: ``(K, dim)``.
        covariances: ``(K, dim, dim)`` full, ``(K, dim)`` diagonal, ``(K,)`` isotropic variances, or a float.

    Example:
        >>> gm = GaussianMixture(torch.ones(2), torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.25)
        >>> x = gm.sample(1000, generator=torch.Generator().manual_seed(0))
        >>> gm.log_density(x).shape
        torch.Size([1000])
    """

    def __init__(self, weights, means, covariances, *, dtype: torch.dtype = torch.float64):
        means = as_tensor(means, "means", dtype=dtype)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, dim); got {tuple(means.shape)}")
        check_finite(means, "means")
        n_components, dim = means.shape
        weights = as_tensor(weights, "weights", dtype=dtype).to(means.device)
        if weights.shape != (n_components,):
            raise ValueError(f"weights must have shape ({n_components},) to match means; got {tuple(weights.shape)}")
        check_finite(weights, "weights")
        if (weights <= 0).any():
            raise ValueError(f"weights must be positive; got {weights.tolist()}")
        covariances = self._full_covariances(as_tensor(covariances, "covariances", dtype=dtype), n_components, dim)
        check_finite(covariances, "covariances")
        if not torch.allclose(covariances, covariances.transpose(-1, -2), rtol=1e-6, atol=1e-12):
            raise ValueError("covariances must be symmetric")
        self.means = means
        self.weights = weights / weights.sum()
        self.log_weights = torch.log(self.weights)
        self.covariances = covariances.to(means.device)
        self.chol = cholesky_checked(self.covariances, "covariances")

    @staticmethod
    def _full_covariances(cov: Tensor, n_components: int, dim: int) -> Tensor:
        eye = torch.eye(dim, dtype=cov.dtype, device=cov.device)
        if cov.ndim == 0:
            return cov * eye.expand(n_components, dim, dim).clone()
        if cov.shape == (n_components,):
            return cov[:, None, None] * eye
        if cov.shape == (n_components, dim):
            return torch.diag_embed(cov)
        if cov.shape == (n_components, dim, dim):
            return cov
        raise ValueError(
            f"covariances must be a float, ({n_components},), ({n_components}, {dim}) or "
            f"({n_components}, {dim}, {dim}); got {tuple(cov.shape)}"
        )

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def __repr__(self) -> str:
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim})"

    def _terms(self, x: Tensor) -> ComponentTerms:
        check_batch(x, "x", dim=self.dim)
        p = self.to(x)
        return component_terms(x, p.log_weights, p.means[None], p.chol[None])

    def to(self, like: Tensor) -> GaussianMixture:
        """This mixture with parameters on ``like``'s dtype and device (returns ``self`` if they match)."""
        if self.means.dtype == like.dtype and self.means.device == like.device:
            return self
        out = object.__new__(GaussianMixture)
        for name in ("means", "weights", "log_weights", "covariances", "chol"):
            setattr(out, name, getattr(self, name).to(dtype=like.dtype, device=like.device))
        return out

    @upcast_low_precision
    def log_density(self, x: Tensor) -> Tensor:
        """:math:`\\log\\rho(x)`, shape ``(batch,)``."""
        return self._terms(x).log_density

    @upcast_low_precision
    def score(self, x: Tensor) -> Tensor:
        """:math:`\\nabla\\log\\rho(x)`, shape ``(batch, dim)``."""
        return self._terms(x).score

    @upcast_low_precision
    def log_density_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both, from one evaluation of the components (what a Metropolis step needs)."""
        terms = self._terms(x)
        return terms.log_density, terms.score

    @upcast_low_precision
    def laplacian_log_density(self, x: Tensor) -> Tensor:
        """:math:`\\Delta\\log\\rho(x)`, shape ``(batch,)``."""
        return self._terms(x).laplacian_log_density

    @upcast_low_precision
    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities, shape ``(batch, K)``."""
        return self._terms(x).responsibilities

    def component_of(self, x: Tensor) -> Tensor:
        """Most probable component of each point, shape ``(batch,)`` (for mode-mass checks)."""
        return self.responsibilities(x).argmax(dim=-1)

    def mean(self) -> Tensor:
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        mu = self.mean()
        centred = self.means - mu
        second = self.covariances + centred[:, :, None] * centred[:, None, :]
        return torch.einsum("k,kij->ij", self.weights, second)

    def product(self, other: GaussianMixture) -> tuple[GaussianMixture, float]:
        r"""The normalised product :math:`p\,q/Z` of two mixtures and :math:`\log Z = \log\int p\,q`.

        Each pair :math:`(k, l)` gives :math:`N(\mu_k;\nu_l, \Sigma_k + \Lambda_l)\,N(x; m_{kl}, C_{kl})` with
        :math:`C_{kl} = (\Sigma_k^{-1} + \Lambda_l^{-1})^{-1}`, :math:`m_{kl} = C_{kl}(\Sigma_k^{-1}\mu_k +
        \Lambda_l^{-1}\nu_l)` (the exact targets of product-of-experts samplers).
        """
        if not isinstance(other, GaussianMixture) or other.dim != self.dim:
            raise ValueError("the product needs another GaussianMixture of the same dimension")
        other = other.to(self.means)
        p1, p2 = torch.cholesky_inverse(self.chol), torch.cholesky_inverse(other.chol)
        cov = torch.linalg.inv(p1[:, None] + p2[None, :])  # (K, L, d, d)
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        h = (p1 @ self.means[..., None])[:, None] + (p2 @ other.means[..., None])[None, :]
        means = (cov @ h).squeeze(-1)
        pair = GaussianMixture._gaussian_log_pdf(
            self.means[:, None].expand_as(means),
            other.means[None, :].expand_as(means),
            self.covariances[:, None] + other.covariances[None, :],
        )
        log_w = self.log_weights[:, None] + other.log_weights[None, :] + pair
        return GaussianMixture._from_log_weights(
            log_w.reshape(-1), means.reshape(-1, self.dim), cov.reshape(-1, self.dim, self.dim)
        )

    def tilt(self, precision: Tensor | None = None, shift: Tensor | None = None) -> tuple[GaussianMixture, float]:
        r"""The normalised tilt :math:`p(x)\exp(-\tfrac12 x^\top P x + h^\top x)/Z` and :math:`\log Z`.

        A Gaussian mixture again: component :math:`k` becomes :math:`N(m_k, C_k)` with
        :math:`C_k = (\Sigma_k^{-1} + P)^{-1}`, :math:`m_k = C_k(\Sigma_k^{-1}\mu_k + h)` and weight
        :math:`w_k\sqrt{|C_k|/|\Sigma_k|}\exp(\tfrac12 m_k^\top C_k^{-1} m_k - \tfrac12\mu_k^\top\Sigma_k^{-1}\mu_k)`.
        It covers a linear reward :math:`\lambda a^\top x` (``shift`` :math:`\lambda a`), a quadratic one
        :math:`-\tfrac\lambda2|x - c|^2` (``precision`` :math:`\lambda I`, ``shift`` :math:`\lambda c`) and a
        linear-Gaussian likelihood :math:`N(y; Ax, \sigma^2 I)` (``precision`` :math:`A^\top A/\sigma^2`,
        ``shift`` :math:`A^\top y/\sigma^2`).
        """
        d = self.dim
        P = (
            torch.zeros(d, d, dtype=self.means.dtype)
            if precision is None
            else torch.as_tensor(precision).to(self.means)
        )
        h = torch.zeros(d, dtype=self.means.dtype) if shift is None else torch.as_tensor(shift).to(self.means)
        if P.shape != (d, d) or h.shape != (d,):
            raise ValueError(f"precision must be ({d}, {d}) and shift ({d},); got {tuple(P.shape)}, {tuple(h.shape)}")
        inv = torch.cholesky_inverse(self.chol)
        cov = torch.linalg.inv(inv + P)
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        chol = cholesky_checked(cov, "the tilted covariances (the precision must keep them positive definite)")
        lin = (inv @ self.means[..., None]).squeeze(-1) + h
        means = (cov @ lin[..., None]).squeeze(-1)
        log_w = (
            self.log_weights
            + 0.5 * (means * lin).sum(-1)
            - 0.5 * (self.means * (inv @ self.means[..., None]).squeeze(-1)).sum(-1)
            + torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            - torch.log(torch.diagonal(self.chol, dim1=-2, dim2=-1)).sum(-1)
        )
        return GaussianMixture._from_log_weights(log_w, means, cov)

    def condition(self, A, y, noise_std: float) -> tuple[GaussianMixture, float]:
        r"""The exact posterior of this prior given :math:`y = Ax + \sigma n`, :math:`n\sim N(0, I)`, and the
        evidence :math:`\log p(y)` (docs/algorithms.md §7).

        Component :math:`k` is conditioned like a Kalman update: :math:`S_k = A\Sigma_kA^\top + \sigma^2I`,
        :math:`K_k = \Sigma_kA^\top S_k^{-1}`, mean :math:`\mu_k + K_k(y - A\mu_k)`, covariance
        :math:`\Sigma_k - K_kA\Sigma_k`, weight :math:`\propto w_kN(y; A\mu_k, S_k)`; :math:`\log p(y) =
        \operatorname{logsumexp}_k[\log w_k + \log N(y; A\mu_k, S_k)]`.

        Args:
            A: ``(m, dim)`` matrix, or an operator of :mod:`interp.inverse` (its ``matrix()`` is used).
            y: ``(m,)`` one measurement.
            noise_std: :math:`\sigma > 0` (with :math:`\sigma = 0` the posterior is singular: it lives on
                :math:`Ax = y`).
        """
        A = A.matrix() if hasattr(A, "matrix") else A
        A = as_tensor(A, "A", dtype=self.means.dtype).to(self.means.device)
        y = as_tensor(y, "y", dtype=self.means.dtype).to(self.means.device)
        if A.ndim != 2 or A.shape[1] != self.dim or y.shape != (A.shape[0],):
            raise ValueError(f"A must be (m, {self.dim}) and y (m,); got {tuple(A.shape)} and {tuple(y.shape)}")
        check_finite(A, "A")
        check_finite(y, "y")
        if not (isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std > 0):
            raise ValueError(f"noise_std must be a positive number (the posterior is singular at 0); got {noise_std!r}")
        m = A.shape[0]
        cov_a = self.covariances @ A.T  # (K, d, m): Sigma_k A^T
        innovation = A @ cov_a + noise_std**2 * torch.eye(m, dtype=A.dtype, device=A.device)
        innovation = 0.5 * (innovation + innovation.transpose(-1, -2))
        predicted = self.means @ A.T  # (K, m)
        gain = torch.linalg.solve(innovation, cov_a.transpose(-1, -2)).transpose(-1, -2)  # Sigma A^T S^{-1}
        means = self.means + (gain @ (y - predicted)[..., None]).squeeze(-1)
        cov = self.covariances - gain @ cov_a.transpose(-1, -2)
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        log_w = self.log_weights + GaussianMixture._gaussian_log_pdf(y.expand_as(predicted), predicted, innovation)
        return GaussianMixture._from_log_weights(log_w, means, cov)

    @staticmethod
    def _gaussian_log_pdf(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
        chol = cholesky_checked(cov, "covariances")
        r = torch.linalg.solve_triangular(chol, (x - mean)[..., None], upper=False).squeeze(-1)
        half_log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        return -0.5 * (r**2).sum(-1) - half_log_det - 0.5 * x.shape[-1] * math.log(2 * math.pi)

    @staticmethod
    def _from_log_weights(log_w: Tensor, means: Tensor, cov: Tensor) -> tuple[GaussianMixture, float]:
        log_z = torch.logsumexp(log_w, 0)
        keep = (log_w - log_z) > -700  # components whose weight underflows carry nothing
        mixture = GaussianMixture(torch.exp(log_w[keep] - log_z), means[keep], cov[keep], dtype=means.dtype)
        return mixture, float(log_z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws, shape ``(n, dim)``, from ``generator`` (on the generator's device)."""
        return sample_components(n, self.weights, self.means, self.chol, generator)


def sample_components(
    n: int, weights: Tensor, means: Tensor, chol: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Draw ``n`` points: a component by its weight, then ``mean + L xi``."""
    if not (isinstance(n, int) and n > 0):
        raise ValueError(f"n must be a positive integer; got {n!r}")
    device = generator.device if generator is not None else means.device
    index = torch.multinomial(weights.to(device), n, replacement=True, generator=generator).to(means.device)
    xi = torch.randn((n, means.shape[-1]), generator=generator, dtype=means.dtype, device=device).to(means.device)
    return means[index] + (chol[index] @ xi.unsqueeze(-1)).squeeze(-1)
