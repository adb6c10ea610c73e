r"""Closed-form Schrödinger bridges between Gaussians (docs/algorithms.md §4).

The bridge from :math:`N(a, A)` to :math:`N(b, B)` on :math:`[0, 1]` for the linear reference
:math:`dX = (MX + c)\,dt + \sqrt{\epsilon}\,dW` (Brownian when :math:`M = 0, c = 0`; Ornstein–Uhlenbeck when
:math:`M = -\lambda I`). Everything follows from three facts:

1. *Static plan.* The reference transition is :math:`X_1 \mid X_0 \sim N(\Phi_1 X_0 + r_1, V_1)` with
   :math:`\Phi_t = e^{Mt}`, :math:`r_t = \int_0^t \Phi_s c\,ds`, :math:`V_t = \epsilon\int_0^t \Phi_s\Phi_s^\top ds`
   (Van Loan's block exponential, exact). Whitening :math:`u = W(\Phi_1 x_0 + r_1)`, :math:`y = W x_1` with
   :math:`W = V_1^{-1/2}` turns it into the Brownian problem with :math:`\epsilon = 1`, whose plan is the
   Gaussian with cross-covariance (Janati et al. 2020; Mallasto et al. 2021)
   :math:`D = (4A^{1/2}BA^{1/2} + \epsilon^2 I)^{1/2}`, :math:`C = \tfrac12(A^{1/2}DA^{-1/2} - \epsilon I)`.
   It is the entropic-OT plan with cost :math:`|x-y|^2` and entropy weight :math:`2\epsilon` (POT
   ``ot.sinkhorn(..., reg=2 * epsilon)``). Check: the off-diagonal block of the joint precision equals the
   reference's, :math:`-\Phi_1^\top V_1^{-1}` (:math:`-I/\epsilon` for Brownian) — the product form
   :math:`\pi = \varphi(x_0)\psi(x_1)p_{ref}(x_1\mid x_0)` of a Schrödinger plan.
2. *Bridges.* Given the ends, :math:`X_t = P_t x_0 + K_t x_1 + \text{const} + \xi`, with
   :math:`K_t = V_t\Phi_{1-t}^\top V_1^{-1}`, :math:`P_t = \Phi_t - K_t\Phi_1`,
   :math:`\xi \sim N(0, V_t - K_t\Phi_{1-t}V_t)`;
   so :math:`\mu_t`, :math:`\Sigma_t` and :math:`\operatorname{Cov}(X_1, X_t)` are linear in the plan's moments.
3. *Drift* (Doob's h-transform averaged over the end given the present):
   :math:`f(t,x) = Mx + c + \epsilon\Phi_{1-t}^\top V_{1-t}^{-1}(E[X_1\mid X_t = x] - \Phi_{1-t}x - r_{1-t})`.
   For Brownian reference this equals docs/algorithms.md's :math:`(b-a) + S_t^\top\Sigma_t^{-1}(x-\mu_t)` (tested).
   The drift is defined for :math:`t < 1`.

:class:`GaussianBridge` gives the plan, the marginals, the drift (a field), the bridge SDE and exact samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import as_tensor, check_batch, check_finite, upcast_low_precision
from .._linalg import symmetric_power
from ..analytic.gaussian_mixture import cholesky_checked
from ..dynamics import SDE, constant_noise_sde


def _van_loan(drift_matrix: Tensor, offset: Tensor, epsilon: float, times: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r""":math:`\Phi_t`, :math:`r_t`, :math:`V_t` per time, shapes ``(T, d, d)``, ``(T, d)``, ``(T, d, d)``."""
    d = drift_matrix.shape[0]
    eye = torch.eye(d, dtype=drift_matrix.dtype, device=drift_matrix.device)
    block = torch.zeros(2 * d, 2 * d, dtype=drift_matrix.dtype, device=drift_matrix.device)
    block[:d, :d] = -drift_matrix
    block[:d, d:] = epsilon * eye
    block[d:, d:] = drift_matrix.T
    e = torch.linalg.matrix_exp(times[:, None, None] * block)
    phi = e[:, d:, d:].transpose(-1, -2)
    cov = phi @ e[:, :d, d:]
    aug = torch.zeros(d + 1, d + 1, dtype=drift_matrix.dtype, device=drift_matrix.device)
    aug[:d, :d] = drift_matrix
    aug[:d, d] = offset
    shift = torch.linalg.matrix_exp(times[:, None, None] * aug)[:, :d, d]
    return phi, shift, 0.5 * (cov + cov.transpose(-1, -2))


def brownian_plan_cross_covariance(cov0: Tensor, cov1: Tensor, epsilon: float) -> Tensor:
    r""":math:`C = \operatorname{Cov}(X_0, X_1) = \tfrac12(A^{1/2}DA^{-1/2} - \epsilon I)`,
    :math:`D = (4A^{1/2}BA^{1/2} + \epsilon^2I)^{1/2}`:
    the entropic-OT (static Schrödinger) plan between :math:`N(\cdot, A)` and :math:`N(\cdot, B)` for the reference
    :math:`\sqrt{\epsilon}W`. Not symmetric in general. 1D, :math:`A = B = \epsilon = 1`: :math:`(\sqrt5 - 1)/2`."""
    eye = torch.eye(cov0.shape[-1], dtype=cov0.dtype, device=cov0.device)
    root = symmetric_power(cov0, 0.5, "cov0")
    inv_root = symmetric_power(cov0, -0.5, "cov0")
    d = symmetric_power(4 * root @ cov1 @ root + epsilon**2 * eye, 0.5)
    return 0.5 * (root @ d @ inv_root - epsilon * eye)


class GaussianBridge:
    r"""The Schrödinger bridge from :math:`N(a, A)` to :math:`N(b, B)` for the reference
    :math:`dX = (MX + c)\,dt + \sqrt{\epsilon}\,dW` on :math:`t \in [0, 1]`.

    Args:
        mean0: the mean of the start Gaussian, ``(d,)``.
        cov0: its covariance, ``(d, d)`` symmetric positive definite.
        mean1: the mean of the end Gaussian, ``(d,)``.
        cov1: its covariance, ``(d, d)`` symmetric positive definite.
        epsilon: reference diffusion :math:`\epsilon > 0` (the noise variance per unit time).
        drift_matrix: :math:`M` ``(d, d)``; ``None`` for Brownian. ``float`` :math:`-\lambda` gives OU.
        drift_offset: :math:`c` ``(d,)``; ``None`` for zero.

    Example:
        >>> sb = GaussianBridge(torch.zeros(1), torch.eye(1), torch.zeros(1), torch.eye(1), epsilon=1.0)
        >>> round(float(sb.cross_covariance), 6)
        0.618034
    """

    def __init__(self, mean0, cov0, mean1, cov1, epsilon: float, *, drift_matrix=None, drift_offset=None):
        self.mean0 = check_finite(as_tensor(mean0, "mean0", dtype=torch.float64), "mean0")
        if self.mean0.ndim != 1:
            raise ValueError(f"mean0 must have shape (d,); got {tuple(self.mean0.shape)}")
        d = self.mean0.shape[0]
        like = self.mean0
        self.mean1 = self._vector(mean1, "mean1", d, like)
        self.cov0 = self._matrix(cov0, "cov0", d, like, spd=True)
        self.cov1 = self._matrix(cov1, "cov1", d, like, spd=True)
        if not float(epsilon) > 0:
            raise ValueError(f"epsilon must be positive; got {epsilon}")
        self.epsilon = float(epsilon)
        eye = torch.eye(d, dtype=like.dtype, device=like.device)
        if drift_matrix is None:
            self.drift_matrix = torch.zeros_like(eye)
        elif isinstance(drift_matrix, (int, float)):
            self.drift_matrix = float(drift_matrix) * eye
        else:
            self.drift_matrix = self._matrix(drift_matrix, "drift_matrix", d, like, spd=False)
        self.drift_offset = (
            torch.zeros_like(like) if drift_offset is None else self._vector(drift_offset, "drift_offset", d, like)
        )
        phi1, r1, v1 = _van_loan(self.drift_matrix, self.drift_offset, self.epsilon, like.new_ones(1))
        self.phi1, self.r1, self.v1 = phi1[0], r1[0], v1[0]
        # Whitened problem: u = W (Phi_1 x0 + r_1), y = W x1, reference N(y; u, I), i.e. Brownian with epsilon = 1.
        w = symmetric_power(self.v1, -0.5, "V_1")
        wphi = w @ self.phi1
        c_uy = brownian_plan_cross_covariance(wphi @ self.cov0 @ wphi.T, w @ self.cov1 @ w, 1.0)
        self.cross_covariance = torch.linalg.solve(wphi, c_uy) @ torch.linalg.inv(w)
        self.dim = d

    @staticmethod
    def _vector(value, name, d, like) -> Tensor:
        out = check_finite(as_tensor(value, name, like=like), name)
        if out.shape != (d,):
            raise ValueError(f"{name} must have shape ({d},); got {tuple(out.shape)}")
        return out

    @staticmethod
    def _matrix(value, name, d, like, *, spd: bool) -> Tensor:
        out = check_finite(as_tensor(value, name, like=like), name)
        if out.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}); got {tuple(out.shape)}")
        if spd:
            if not torch.allclose(out, out.T, rtol=1e-8, atol=1e-12):
                raise ValueError(f"{name} must be symmetric")
            cholesky_checked(out, name)
        return out

    def __repr__(self) -> str:
        return f"GaussianBridge(dim={self.dim}, epsilon={self.epsilon})"

    # ------------------------------------------------------------------ static plan
    @property
    def plan_mean(self) -> Tensor:
        """Mean of :math:`(X_0, X_1)`, shape ``(2d,)``."""
        return torch.cat([self.mean0, self.mean1])

    @property
    def plan_covariance(self) -> Tensor:
        """Covariance of :math:`(X_0, X_1)`, shape ``(2d, 2d)``: ``[[A, C], [C^T, B]]``."""
        c = self.cross_covariance
        return torch.cat([torch.cat([self.cov0, c], 1), torch.cat([c.T, self.cov1], 1)], 0)

    def sample_plan(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` exact pairs :math:`(X_0, X_1)` of the static plan."""
        joint = _gaussian_samples(n, self.plan_mean, self.plan_covariance, generator)
        return joint[:, : self.dim], joint[:, self.dim :]

    # ------------------------------------------------------------------ dynamics
    def _times(self, t) -> Tensor:
        t = as_tensor(t, "t", like=self.mean0).reshape(-1)
        if t.numel() == 0 or (t < 0).any() or (t > 1).any() or not torch.isfinite(t).all():
            raise ValueError("t must lie in [0, 1]")
        return t

    def _bridge(self, t: Tensor):
        phi_t, r_t, v_t = _van_loan(self.drift_matrix, self.drift_offset, self.epsilon, t)
        phi_rest, r_rest, v_rest = _van_loan(self.drift_matrix, self.drift_offset, self.epsilon, 1 - t)
        gain = v_t @ phi_rest.transpose(-1, -2) @ torch.linalg.inv(self.v1)  # K_t
        pull = phi_t - gain @ self.phi1  # P_t
        shift = r_t - (gain @ self.r1[:, None])[..., 0]
        noise = v_t - gain @ phi_rest @ v_t
        return pull, gain, shift, 0.5 * (noise + noise.transpose(-1, -2)), (phi_rest, r_rest, v_rest)

    def _moments(self, t: Tensor):
        pull, gain, shift, noise, rest = self._bridge(t)
        a, b, c = self.cov0, self.cov1, self.cross_covariance
        mean = pull @ self.mean0 + gain @ self.mean1 + shift
        cov = pull @ a @ pull.mT + pull @ c @ gain.mT + gain @ c.T @ pull.mT + gain @ b @ gain.mT + noise
        cross1 = c.T @ pull.mT + b @ gain.mT  # Cov(X_1, X_t)
        return mean, 0.5 * (cov + cov.mT), cross1, rest

    def marginal(self, t: float) -> tuple[Tensor, Tensor]:
        r"""Mean :math:`\mu_t` ``(d,)`` and covariance :math:`\Sigma_t` ``(d, d)`` of the bridge at time ``t``."""
        mean, cov, _, _ = self._moments(self._times(t))
        return mean[0], cov[0]

    def cross_covariance_with_end(self, t: float) -> Tensor:
        r""":math:`\operatorname{Cov}(X_t, X_1)`, shape ``(d, d)``."""
        return self._moments(self._times(t))[2][0].T

    def sample_marginal(self, t: float, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws of :math:`X_t`."""
        mean, cov = self.marginal(t)
        return _gaussian_samples(n, mean, cov, generator)

    @upcast_low_precision
    def drift(self, t, x: Tensor) -> Tensor:
        r"""The bridge drift :math:`f(t, x)` for ``t < 1`` (scalar or ``(batch,)``), ``x`` of shape ``(batch, d)``."""
        check_batch(x, "x", dim=self.dim)
        t = as_tensor(t, "t", like=self.mean0)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},); got {tuple(t.shape)}")
        if (t >= 1).any() or (t < 0).any():
            raise ValueError("the bridge drift is defined for 0 <= t < 1")
        unique, inverse = torch.unique(t, return_inverse=True)
        mean, cov, cross1, (phi_rest, r_rest, v_rest) = self._moments(unique)
        xd = x.to(self.mean0.dtype)
        centred = xd - mean[inverse]
        # E[X_1 | X_t = x] = b + Cov(X_1, X_t) Sigma_t^{-1} (x - mu_t)
        end = self.mean1 + (cross1[inverse] @ torch.linalg.solve(cov[inverse], centred[..., None]))[..., 0]
        gap = end - (phi_rest[inverse] @ xd[..., None])[..., 0] - r_rest[inverse]
        pull = phi_rest.mT @ torch.linalg.inv(v_rest)
        out = xd @ self.drift_matrix.T + self.drift_offset + self.epsilon * (pull[inverse] @ gap[..., None])[..., 0]
        return out.to(x.dtype)

    def sde(self) -> SDE:
        r"""The bridge SDE :math:`dX = f(t, X)\,dt + \sqrt{\epsilon}\,dW` (additive noise), to run from
        :math:`X_0 \sim N(a, A)` over a grid on :math:`[0, 1]`."""
        return constant_noise_sde(self.drift, self.epsilon**0.5)


def _gaussian_samples(n: int, mean: Tensor, cov: Tensor, generator: torch.Generator | None) -> Tensor:
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer; got {n!r}")
    device = generator.device if generator is not None else mean.device
    z = torch.randn(n, mean.shape[0], generator=generator, dtype=mean.dtype, device=device).to(mean.device)
    chol = cholesky_checked(cov, "covariance")
    return mean + z @ chol.T
