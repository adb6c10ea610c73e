r"""Schrödinger bridges with a known solution between a Gaussian mixture and a non-Gaussian target
(Gushchin et al. 2023, "Building the bridge of Schrödinger: a continuous entropic OT benchmark"; docs/algorithms.md §4).

Pick a source :math:`p_0` and a positive function :math:`f(y) = \sum_k w_k N(y; m_k, S_k)`. The plan
:math:`\pi(x, y) = p_0(x)\,N(y; x, \epsilon I) f(y) / Z(x)`, :math:`Z(x) = \sum_k w_k N(x; m_k, S_k + \epsilon I)`,
has the product form :math:`\varphi(x)\psi(y)e^{-|x-y|^2/2\epsilon}`, so it is the entropic-OT plan (and the static
Schrödinger bridge for the reference :math:`\sqrt\epsilon W`) between :math:`p_0` and its own :math:`y`-marginal
:math:`p_1` — the target, known through exact samples. Given :math:`x`, :math:`y` is a Gaussian mixture with
weights :math:`\propto w_k N(x; m_k, S_k + \epsilon I)`, covariances :math:`\Lambda_k = (I/\epsilon + S_k^{-1})^{-1}`
and means :math:`\Lambda_k(S_k^{-1}m_k + x/\epsilon)`. The bridge drift is
:math:`\epsilon\nabla_x\log\sum_k w_k N(x; m_k, S_k + \epsilon(1-t)I)`.

:func:`mixture_benchmark` builds the cases used by the validation suite and the bench (dimension 2-128,
any :math:`\epsilon`), with :math:`p_0 = N(0, I)` as in the published benchmark.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import as_tensor, check_batch
from ..analytic.gaussian_mixture import GaussianMixture, cholesky_checked
from ..dynamics import SDE, constant_noise_sde


class MixtureBridge:
    """The bridge from ``source`` to the target defined by ``potential`` :math:`f` and ``epsilon``.

    Args:
        source: :math:`p_0`, a :class:`~interp.analytic.GaussianMixture`.
        potential: :math:`f`, a :class:`~interp.analytic.GaussianMixture` (its normalisation does not matter).
        epsilon: reference noise :math:`\\epsilon > 0`.
    """

    def __init__(self, source: GaussianMixture, potential: GaussianMixture, epsilon: float):
        if not isinstance(source, GaussianMixture) or not isinstance(potential, GaussianMixture):
            raise TypeError("source and potential must be GaussianMixture instances")
        if source.dim != potential.dim:
            raise ValueError(f"source and potential dimensions differ: {source.dim} and {potential.dim}")
        if not float(epsilon) > 0:
            raise ValueError(f"epsilon must be positive; got {epsilon}")
        self.source, self.potential, self.epsilon, self.dim = source, potential, float(epsilon), source.dim
        eye = torch.eye(self.dim, dtype=potential.means.dtype, device=potential.means.device)
        precision = torch.linalg.inv(potential.covariances)
        self._cond_cov = torch.linalg.inv(eye / self.epsilon + precision)  # Lambda_k
        self._cond_chol = cholesky_checked(self._cond_cov, "conditional covariance")
        self._cond_offset = (self._cond_cov @ (precision @ potential.means[..., None]))[..., 0]  # Lambda_k S_k^-1 m_k
        self._moments: tuple[Tensor, Tensor] | None = None
        self._plan_weights = self._smoothed(self.epsilon)  # Z(x) as a mixture: the component weights given x

    def __repr__(self) -> str:
        return f"MixtureBridge(dim={self.dim}, epsilon={self.epsilon}, components={self.potential.n_components})"

    def _smoothed(self, s: float) -> GaussianMixture:
        """:math:`\\sum_k w_k N(\\cdot; m_k, S_k + s I)`."""
        eye = torch.eye(self.dim, dtype=self.potential.means.dtype, device=self.potential.means.device)
        return GaussianMixture(self.potential.weights, self.potential.means, self.potential.covariances + s * eye)

    def conditional_sample(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw of :math:`y \\sim \\pi(\\cdot \\mid x)` for each row of ``x``."""
        check_batch(x, "x", dim=self.dim)
        xd = x.to(self.potential.means.dtype)
        weights = self._plan_weights.responsibilities(xd)
        device = generator.device if generator is not None else x.device
        k = torch.multinomial(weights.to(device), 1, generator=generator).reshape(-1).to(x.device)
        means = self._cond_offset[k] + (self._cond_cov[k] @ xd[..., None])[..., 0] / self.epsilon
        z = torch.randn(xd.shape, generator=generator, dtype=xd.dtype, device=device).to(x.device)
        return (means + (self._cond_chol[k] @ z[..., None])[..., 0]).to(x.dtype)

    def sample_plan(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` exact pairs :math:`(x, y) \\sim \\pi`."""
        x = self.source.sample(n, generator)
        return x, self.conditional_sample(x, generator)

    def sample_target(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws of the target :math:`p_1`."""
        return self.sample_plan(n, generator)[1]

    def target_moments(self, n: int = 400_000, seed: int = 12345) -> tuple[Tensor, Tensor]:
        """Mean and covariance of :math:`p_1`, estimated once from ``n`` exact draws (Rao-Blackwellised over the
        component and the conditional noise), and cached. The relative error is :math:`O(n^{-1/2})`."""
        if self._moments is None:
            generator = torch.Generator(device=self.potential.means.device).manual_seed(seed)
            total_mean = torch.zeros(self.dim, dtype=self.potential.means.dtype)
            total_second = torch.zeros(self.dim, self.dim, dtype=self.potential.means.dtype)
            done = 0
            while done < n:
                m = min(50_000, n - done)
                x = self.source.sample(m, generator)
                weights = self._plan_weights.responsibilities(x)  # (m, K)
                means = self._cond_offset + torch.einsum("kij,mj->mki", self._cond_cov, x) / self.epsilon
                total_mean += torch.einsum("mk,mki->i", weights, means)
                second = torch.einsum("mk,mki,mkj->ij", weights, means, means)
                total_second += second + torch.einsum("mk,kij->ij", weights, self._cond_cov)
                done += m
            mean = total_mean / n
            self._moments = (mean, total_second / n - torch.outer(mean, mean))
        return self._moments

    def drift(self, t, x: Tensor) -> Tensor:
        """:math:`\\epsilon\\nabla_x\\log\\sum_k w_k N(x; m_k, S_k + \\epsilon(1-t)I)`, ``t`` scalar or ``(batch,)``."""
        check_batch(x, "x", dim=self.dim)
        t = as_tensor(t, "t", like=x)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],) or (t < 0).any() or (t > 1).any():
            raise ValueError(f"t must be a scalar or a ({x.shape[0]},) tensor in [0, 1]")
        out = torch.empty_like(x)
        for value in torch.unique(t):
            rows = t == value
            mixture = self._smoothed(self.epsilon * (1 - float(value)))
            out[rows] = (self.epsilon * mixture.score(x[rows].to(mixture.means.dtype))).to(x.dtype)
        return out

    def sde(self) -> SDE:
        """The bridge SDE :math:`dX = f(t, X)\\,dt + \\sqrt{\\epsilon}\\,dW`, from :math:`X_0 \\sim p_0`."""
        return constant_noise_sde(self.drift, math.sqrt(self.epsilon))


def mixture_benchmark(dim: int, epsilon: float, *, n_components: int = 5, seed: int = 0) -> MixtureBridge:
    """A benchmark bridge from :math:`N(0, I_d)`: :math:`f` has ``n_components`` components with means uniform in
    :math:`[-2, 2]^d`, weights uniform in :math:`[0.5, 1.5]` (normalised), and covariances
    :math:`Q\\,\\mathrm{diag}(u)\\,Q^\\top` with random rotations :math:`Q` and :math:`u` uniform in
    :math:`[0.1, 1]`. Fixed by ``(dim, epsilon, n_components, seed)``."""
    if not (isinstance(dim, int) and dim >= 1):
        raise ValueError(f"dim must be a positive integer; got {dim!r}")
    g = torch.Generator().manual_seed(seed * 1000 + dim)
    means = 2.0 * (torch.rand(n_components, dim, generator=g, dtype=torch.float64) - 0.5) * 2.0
    q, _ = torch.linalg.qr(torch.randn(n_components, dim, dim, generator=g, dtype=torch.float64))
    scales = 0.1 + 0.9 * torch.rand(n_components, dim, generator=g, dtype=torch.float64)
    covariances = q @ torch.diag_embed(scales) @ q.mT
    covariances = 0.5 * (covariances + covariances.mT)
    weights = 0.5 + torch.rand(n_components, generator=g, dtype=torch.float64)
    potential = GaussianMixture(weights, means, covariances)
    source = GaussianMixture(torch.ones(1), torch.zeros(1, dim, dtype=torch.float64), 1.0)
    return MixtureBridge(source, potential, epsilon)
