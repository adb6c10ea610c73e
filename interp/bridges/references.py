r"""Reference dynamics for Schrödinger bridges and simulators: time-homogeneous drifts :math:`b_\theta(x)` as
``nn.Module``\ s whose parameters can be refitted to transitions (docs/algorithms.md §4, Shen et al. 2024).

Every reference is called as ``reference(x) -> (batch, d)`` and refitted by least squares,
:math:`\min_\theta \sum_n |b_\theta(x_n) - v_n|^2` with :math:`v_n = (x_{n+1} - x_n)/dt` — the Euler–Maruyama
maximum-likelihood estimate for a constant diffusion. Classes whose drift is linear in :math:`\theta`
(:class:`Linear`, :class:`LotkaVolterra`) solve it exactly (``torch.linalg.lstsq``); the others, and any
user ``nn.Module`` with parameters, are fitted by L-BFGS (:func:`fit_reference`).

* :class:`Brownian` — :math:`b = 0` (no parameters).
* :class:`Linear` — :math:`b = Mx + c` (Ornstein–Uhlenbeck when :math:`M = -\lambda I`).
* :class:`LotkaVolterra` — :math:`\dot x = \alpha x - \beta xy`, :math:`\dot y = \delta xy - \gamma y`.
* :class:`Repressilator` — :math:`\dot x_i = \beta/(1 + (x_{i-1}/k)^n) - \gamma x_i` on a ring of genes
  (Elowitz & Leibler 2000); concentrations are clamped at 0 inside the Hill term so noise cannot make a
  fractional power of a negative number.
* :class:`DoubleWell` — the bifurcating field :math:`\dot x_1 = a x_1 - x_1^3`, :math:`\dot x_2 = c`: a
  population started near :math:`x_1 = 0` splits into the wells :math:`\pm\sqrt a` while moving along :math:`x_2`.
* :class:`GradientField` — :math:`b = -\nabla U_\theta`, :math:`U_\theta` an MLP.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_batch
from .._grad import autograd_on, grad_leaf


class Reference(nn.Module):
    """Base class: a drift ``forward(x)`` with a dimension check and a readable parameter record."""

    dim: int

    def _check(self, x: Tensor) -> Tensor:
        return check_batch(x, "x", dim=self.dim)

    def parameter_values(self) -> dict[str, float]:
        """Scalar parameters by name (the natural parameters where a class reparameterises)."""
        return {
            f"{name}[{i}]" if p.numel() > 1 else name: float(v)
            for name, p in self.named_parameters()
            for i, v in enumerate(p.detach().reshape(-1))
        }


class Brownian(Reference):
    """The zero drift: the bridge is the Brownian (vanilla) Schrödinger bridge."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(self._check(x))


class _LinearInParameters(Reference):
    """A drift :math:`b(x) = \\Psi(x)\\theta` fitted exactly by least squares."""

    def design(self, x: Tensor) -> Tensor:
        """:math:`\\Psi(x)`, shape ``(batch, d, p)``."""
        raise NotImplementedError

    def theta(self) -> Tensor:
        raise NotImplementedError

    def set_theta(self, theta: Tensor) -> None:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.design(self._check(x)) @ self.theta().to(x.dtype)

    @torch.no_grad()
    def least_squares(self, x: Tensor, velocity: Tensor) -> None:
        psi = self.design(x).reshape(-1, self.theta().shape[0])
        solution = torch.linalg.lstsq(psi.double(), velocity.reshape(-1, 1).double()).solution[:, 0]
        self.set_theta(solution)


class Linear(_LinearInParameters):
    """:math:`b(x) = Mx + c`, ``M`` ``(d, d)``, ``c`` ``(d,)`` (zero at start unless given)."""

    def __init__(self, dim: int, matrix: Tensor | None = None, offset: Tensor | None = None):
        super().__init__()
        self.dim = int(dim)
        self.matrix = nn.Parameter(torch.zeros(dim, dim) if matrix is None else torch.as_tensor(matrix).clone())
        self.offset = nn.Parameter(torch.zeros(dim) if offset is None else torch.as_tensor(offset).clone())

    def forward(self, x: Tensor) -> Tensor:
        return self._check(x) @ self.matrix.T.to(x.dtype) + self.offset.to(x.dtype)

    def design(self, x: Tensor) -> Tensor:
        d = self.dim
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        # b_i = sum_j M_ij x_j + c_i: theta = (M row-major, c)
        rows = torch.einsum("ik,nj->nikj", eye, x).reshape(x.shape[0], d, d * d)
        return torch.cat([rows, eye.expand(x.shape[0], d, d)], dim=2)

    def theta(self) -> Tensor:
        return torch.cat([self.matrix.reshape(-1), self.offset])

    @torch.no_grad()
    def set_theta(self, theta: Tensor) -> None:
        d = self.dim
        self.matrix.copy_(theta[: d * d].reshape(d, d))
        self.offset.copy_(theta[d * d :])


class LotkaVolterra(_LinearInParameters):
    """Predator–prey drift with parameters ``alpha, beta, delta, gamma`` (prey ``x``, predator ``y``)."""

    names = ("alpha", "beta", "delta", "gamma")

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, delta: float = 1.0, gamma: float = 1.0):
        super().__init__()
        self.dim = 2
        self.params = nn.Parameter(torch.tensor([alpha, beta, delta, gamma], dtype=torch.float64))

    def design(self, x: Tensor) -> Tensor:
        prey, predator = x[:, 0], x[:, 1]
        zero = torch.zeros_like(prey)
        row_x = torch.stack([prey, -prey * predator, zero, zero], dim=1)
        row_y = torch.stack([zero, zero, prey * predator, -predator], dim=1)
        return torch.stack([row_x, row_y], dim=1)

    def theta(self) -> Tensor:
        return self.params

    @torch.no_grad()
    def set_theta(self, theta: Tensor) -> None:
        self.params.copy_(theta)

    def parameter_values(self) -> dict[str, float]:
        return dict(zip(self.names, (float(v) for v in self.params.detach()), strict=True))


class Repressilator(Reference):
    """Ring of ``dim`` repressing genes; positive parameters stored as logarithms."""

    names = ("beta", "k", "n", "gamma")

    def __init__(self, beta: float = 10.0, k: float = 1.0, n: float = 3.0, gamma: float = 1.0, dim: int = 3):
        super().__init__()
        if min(beta, k, n, gamma) <= 0:
            raise ValueError(f"repressilator parameters must be positive; got {beta, k, n, gamma}")
        self.dim = int(dim)
        self.log_params = nn.Parameter(torch.log(torch.tensor([beta, k, n, gamma], dtype=torch.float64)))

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        beta, k, n, gamma = torch.exp(self.log_params).to(x.dtype)
        previous = torch.roll(x, shifts=1, dims=1).clamp(min=0)
        return beta / (1 + (previous / k) ** n) - gamma * x

    def parameter_values(self) -> dict[str, float]:
        return dict(zip(self.names, (float(v) for v in torch.exp(self.log_params.detach())), strict=True))


class DoubleWell(Reference):
    """Bifurcating 2D drift :math:`(a x_1 - x_1^3,\\ c)` (pitchfork in :math:`x_1`, drift ``c`` along :math:`x_2`)."""

    names = ("a", "c")

    def __init__(self, a: float = 1.0, c: float = 1.0):
        super().__init__()
        self.dim = 2
        self.params = nn.Parameter(torch.tensor([a, c], dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        a, c = self.params.to(x.dtype)
        return torch.stack([a * x[:, 0] - x[:, 0] ** 3, c.expand(x.shape[0])], dim=1)

    def parameter_values(self) -> dict[str, float]:
        return dict(zip(self.names, (float(v) for v in self.params.detach()), strict=True))


class GradientField(Reference):
    """:math:`b = -\\nabla U_\\theta(x)` with :math:`U_\\theta` an MLP (a conservative reference)."""

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2):
        super().__init__()
        self.dim = int(dim)
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.potential = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        outer = torch.is_grad_enabled()  # keep the graph to the parameters only when the caller wants gradients
        with autograd_on():
            xg = grad_leaf(x, keep=True)
            energy = self.potential(xg.to(next(self.potential.parameters()).dtype)).sum()
            (grad,) = torch.autograd.grad(energy, xg, create_graph=outer)
        return -grad.to(x.dtype)

    def parameter_values(self) -> dict[str, float]:
        return {}


def fit_reference(
    reference: nn.Module, x: Tensor, velocity: Tensor, *, steps: int = 100, max_points: int = 50_000, generator=None
) -> float:
    """Refit ``reference`` to ``velocity`` :math:`\\approx b_\\theta(x)` by least squares; returns the mean squared
    residual per coordinate after the fit. Exact for linear-in-parameter classes, L-BFGS (``steps`` iterations,
    strong-Wolfe line search) otherwise, on at most ``max_points`` transitions drawn without replacement."""
    check_batch(x, "x")
    if velocity.shape != x.shape:
        raise ValueError(f"velocity must have the shape of x {tuple(x.shape)}; got {tuple(velocity.shape)}")
    if x.shape[0] > max_points:
        device = generator.device if generator is not None else x.device
        keep = torch.randperm(x.shape[0], generator=generator, device=device)[:max_points].to(x.device)
        x, velocity = x[keep], velocity[keep]
    params = [p for p in reference.parameters() if p.requires_grad]
    if hasattr(reference, "least_squares"):
        reference.least_squares(x, velocity)
    elif params:
        dtype = params[0].dtype
        xs, vs = x.to(dtype), velocity.to(dtype)
        optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            loss = ((reference(xs) - vs) ** 2).mean()
            loss.backward()
            return loss

        reference.train()
        optimiser.step(closure)
        reference.eval()
    with torch.no_grad():
        residual = float(((reference(x.to(x.dtype)) - velocity) ** 2).mean())
    if not math.isfinite(residual):
        raise FloatingPointError("the reference fit diverged (non-finite residual)")
    return residual
