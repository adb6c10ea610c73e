r"""Simulation-free Schrödinger bridges: [SF]²M / SB-CFM and iterative Markovian fitting (DSBM).

**[SF]²M** (Tong et al. 2024, "Simulation-free Schrödinger bridges via score and flow matching"; docs/algorithms.md §4).
For the reference :math:`\sigma W` (:math:`\epsilon = \sigma^2`): pairs from minibatch entropic OT with entropy
weight :math:`2\sigma^2` (:class:`~interp.couplings.EntropicOTCoupling` with ``epsilon = sigma**2``), the Brownian
bridge :math:`x_t = (1-t)x_0 + tx_1 + \sigma\sqrt{t(1-t)}\,z` — the stochastic interpolant with linear schedule and
:class:`~interp.schedules.BrownianGamma` — a flow model regressed on the conditional probability-flow velocity
:math:`x_1 - x_0 + \tfrac{1-2t}{2t(1-t)}(x_t - \mu_t)` (= :math:`\dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z`) and a
score model on :math:`-z/\gamma` (loss :math:`|\gamma\hat s + z|^2`), trained together on the same draws. Sampling
runs :math:`dX = [v + \tfrac{\sigma^2}{2}s]\,dt + \sigma\,dW` (the interpolant SDE with :math:`\epsilon = \sigma^2/2`).
Training times stay ``InterpolantLoss.END_CLIP`` away from the ends, where :math:`\dot\gamma` diverges.

**DSBM / IMF** (Shi et al. 2023, "Diffusion Schrödinger bridge matching"). Alternate Markovian projections of the
current coupling onto forward and backward bridge SDEs. Each half-step fits, by bridge matching on the pairs, the
drift :math:`(E[x_1\mid x_t] - x)/(1-t)` (forward) or :math:`(E[x_0\mid x_t] - x)/t` (backward); we regress the
end-point predictions :math:`E[x_1\mid x_t]`, :math:`E[x_0\mid x_t]` (better conditioned than the divided drift,
same minimiser) and re-couple by simulating the fitted SDE from data. It needs no minibatch OT; the coupling
converges to the static bridge (Gaussian check: :math:`C \to (\sqrt5-1)/2` for :math:`A = B = I`, :math:`\epsilon = 1`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from .._checks import time_column
from ..couplings import Coupling, EntropicOTCoupling, IndependentCoupling
from ..driver import integrate
from ..dynamics import SDE, constant_noise_sde
from ..interpolants import Interpolant
from ..losses import InterpolantLoss, Parameterisation
from ..results import Trajectory
from ..schedules import BrownianGamma, LinearSchedule
from ..solvers import Euler, EulerMaruyama
from ..train import TrainConfig, Trainer, TrainResult


def brownian_bridge_interpolant(sigma: float) -> Interpolant:
    r""":math:`x_t = (1-t)x_0 + tx_1 + \sigma\sqrt{t(1-t)}\,z`, the Brownian bridge of :math:`\sigma W`."""
    return Interpolant(LinearSchedule(), BrownianGamma(sigma), name=f"brownian-bridge(sigma={sigma})")


class FlowAndScore(nn.Module):
    """Two fields trained together; ``forward(t, x)`` stacks their outputs ``(2, batch, ...)`` (DDP-friendly)."""

    def __init__(self, flow: nn.Module, score: nn.Module):
        super().__init__()
        self.flow, self.score = flow, score

    def forward(self, t, x: Tensor) -> Tensor:
        return torch.stack([self.flow(t, x), self.score(t, x)])


class FlowScoreLoss:
    """The [SF]²M objective: flow matching on the probability-flow velocity plus score matching, one draw of
    :math:`(t, z)` for both (a drop-in loss for :class:`~interp.train.Trainer`)."""

    antithetic = False

    def __init__(self, sigma: float, *, score_weight: float = 1.0, time_range: tuple[float, float] | None = None):
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be positive; got {sigma}")
        if not score_weight >= 0:
            raise ValueError(f"score_weight must be >= 0; got {score_weight}")
        self.sigma, self.score_weight = float(sigma), float(score_weight)
        self.interpolant = brownian_bridge_interpolant(self.sigma)
        self._flow = InterpolantLoss(self.interpolant, Parameterisation.VELOCITY, time_range=time_range)
        self.time_range = self._flow.time_range

    def sample_times(self, batch: int, generator, *, dtype, device) -> Tensor:
        return self._flow.sample_times(batch, generator, dtype=dtype, device=device)

    def __call__(self, model, x0: Tensor, x1: Tensor, generator=None, *, t: Tensor | None = None, z=None) -> Tensor:
        if x0.shape != x1.shape or x0.ndim < 1 or x0.shape[0] == 0:
            raise ValueError(
                f"x0 and x1 must be non-empty batches of one shape; got {tuple(x0.shape)}, {tuple(x1.shape)}"
            )
        if t is None:
            t = self.sample_times(x0.shape[0], generator, dtype=x0.dtype, device=x0.device)
        sample = self.interpolant.sample(x0, x1, t, z=z, generator=generator)
        flow, score = model(t, sample.xt)
        gamma = time_column(self.interpolant.noise.gamma(t), sample.xt)
        flow_residual = (flow - sample.velocity).pow(2).reshape(x0.shape[0], -1).mean(dim=1)
        score_residual = (gamma * score + sample.z).pow(2).reshape(x0.shape[0], -1).mean(dim=1)
        return (flow_residual + self.score_weight * score_residual).mean()


class SF2M:
    """Simulation-free score and flow matching for the Schrödinger bridge with reference :math:`\\sigma W`.

    Args:
        flow: the velocity network ``(t, x) -> Tensor`` (e.g. :class:`~interp.nets.MLP`).
        score: the score network ``(t, x) -> Tensor``.
        sigma: reference noise :math:`\\sigma > 0` (:math:`\\epsilon = \\sigma^2` in docs/algorithms.md §4).
        coupling: default entropic OT with entropy weight :math:`2\\sigma^2`; any :class:`~interp.couplings.Coupling`.
        config: training options (:class:`~interp.train.TrainConfig`).

    Example:
        >>> sf2m = SF2M(MLP((2,)), MLP((2,)), sigma=1.0, config=TrainConfig(steps=2000))  # doctest: +SKIP
        >>> sf2m.fit(rho0.sample, rho1.sample)                                           # doctest: +SKIP
        >>> x1 = sf2m.sample(x0, steps=100, generator=g).final                           # doctest: +SKIP
    """

    def __init__(
        self,
        flow: nn.Module,
        score: nn.Module,
        sigma: float,
        *,
        coupling: Coupling | None = None,
        config: TrainConfig | None = None,
        score_weight: float = 1.0,
    ):
        self.loss = FlowScoreLoss(sigma, score_weight=score_weight)
        self.sigma = self.loss.sigma
        self.coupling = coupling if coupling is not None else EntropicOTCoupling(self.sigma**2)
        self.model = FlowAndScore(flow, score)
        self.config = config or TrainConfig()
        self.trainer: Trainer | None = None

    def fit(self, x0, x1, evaluate=None) -> TrainResult:
        """Train on samplers ``(n, generator) -> Tensor`` or data tensors of the two ends."""
        self.trainer = Trainer(self.model, self.loss, x0, x1, coupling=self.coupling, config=self.config)
        return self.trainer.fit(evaluate)

    def _trained(self) -> FlowAndScore:
        if self.trainer is None:
            raise RuntimeError("call fit() first")
        return self.trainer.ema.eval()

    def velocity(self, t, x: Tensor) -> Tensor:
        """The learned probability-flow velocity (EMA weights)."""
        return self._trained().flow(t, x)

    def score(self, t, x: Tensor) -> Tensor:
        """The learned score (EMA weights)."""
        return self._trained().score(t, x)

    def drift(self, t, x: Tensor) -> Tensor:
        """:math:`v + \\tfrac{\\sigma^2}{2}s`, the bridge drift."""
        model = self._trained()
        return model.flow(t, x) + 0.5 * self.sigma**2 * model.score(t, x)

    def sde(self) -> SDE:
        """:math:`dX = [v + \\tfrac{\\sigma^2}{2}s]\\,dt + \\sigma\\,dW`."""
        return constant_noise_sde(self.drift, self.sigma)

    @torch.no_grad()
    def sample(self, x0: Tensor, steps: int = 100, *, generator=None, record=False, ode: bool = False) -> Trajectory:
        """Run the bridge SDE (or, with ``ode=True``, the probability-flow ODE) from ``x0`` over ``steps`` uniform
        Euler(-Maruyama) steps on :math:`[0, 1]`; the drift is evaluated at the left end of each step only."""
        grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        device_model = next(self.model.parameters())
        x = x0.to(device_model.device, device_model.dtype)
        if ode:
            return integrate(self.velocity, x, grid, Euler(), record=record, progress=False)
        return integrate(self.sde(), x, grid, EulerMaruyama(), generator=generator, record=record, progress=False)


class DSBM:
    """Iterative Markovian fitting with bridge matching (forward and backward end-point predictors).

    Args:
        forward_net: a network ``(t, x) -> Tensor`` predicting :math:`x_1`.
        backward_net: a network ``(t, x) -> Tensor`` predicting :math:`x_0`.
        sigma: reference noise.
        iterations: number of half-steps (alternating backward, forward, ...; the last is forward).
        n_pairs: pairs simulated per re-coupling.
        steps: Euler–Maruyama steps of each simulation.
        initial_coupling: how the first pairs are drawn from the data (default independent).
        config: training options of every half-step (networks are warm-started from their last fit).
    """

    def __init__(
        self,
        forward_net: nn.Module,
        backward_net: nn.Module,
        sigma: float,
        *,
        iterations: int = 6,
        n_pairs: int = 4096,
        steps: int = 100,
        initial_coupling: Coupling | None = None,
        config: TrainConfig | None = None,
    ):
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be positive; got {sigma}")
        if not (isinstance(iterations, int) and iterations >= 1):
            raise ValueError(f"iterations must be a positive integer; got {iterations!r}")
        self.sigma, self.iterations, self.n_pairs, self.steps = float(sigma), iterations, n_pairs, steps
        self.forward_net, self.backward_net = forward_net, backward_net
        self.initial_coupling = initial_coupling or IndependentCoupling()
        self.config = config or TrainConfig()
        self.interpolant = brownian_bridge_interpolant(self.sigma)
        self.history: list[dict] = []

    def _fit(self, net: nn.Module, target: Parameterisation, x0: Tensor, x1: Tensor, seed: int) -> nn.Module:
        loss = InterpolantLoss(self.interpolant, target)
        config = dataclasses.replace(self.config, seed=seed)
        trainer = Trainer(net, loss, x0, x1, config=config, paired=True)
        trainer.fit()
        net.load_state_dict(trainer.ema.state_dict())
        return net.eval()

    def forward_drift(self, t, x: Tensor) -> Tensor:
        """:math:`(\\hat x_1(t, x) - x)/(1 - t)` for ``t < 1``."""
        tb = time_column(torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0]), x)
        return (self.forward_net(t, x) - x) / (1 - tb)

    def backward_drift(self, t, x: Tensor) -> Tensor:
        """Drift of the time-reversed SDE run from ``t = 1`` down: :math:`(\\hat x_0(t, x) - x)/t` for ``t > 0``."""
        tb = time_column(torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0]), x)
        return (self.backward_net(t, x) - x) / tb

    @torch.no_grad()
    def simulate(self, x: Tensor, *, backward: bool = False, generator=None) -> Tensor:
        """Run the forward SDE from ``x`` at ``t = 0`` to ``t = 1`` (or the backward one from ``t = 1`` to 0)."""
        grid = torch.linspace(0.0, 1.0, self.steps + 1, dtype=torch.float64)
        if backward:
            # Reversed time u = 1 - t: dY = backward_drift(1 - u, Y) du + sigma dW, u: 0 -> 1.
            sde = constant_noise_sde(lambda u, y: self.backward_drift(1 - u, y), self.sigma)
        else:
            sde = constant_noise_sde(self.forward_drift, self.sigma)
        return integrate(sde, x, grid, EulerMaruyama(), generator=generator, progress=False).final

    def fit(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> list[dict]:
        """Fit to data tensors ``x0`` and ``x1``; returns one record per half-step (direction)."""
        for name, x in (("x0", x0), ("x1", x1)):
            if not isinstance(x, Tensor) or x.ndim < 2 or not torch.isfinite(x).all():
                raise ValueError(f"{name} must be a finite (n, ...) tensor")
        device = generator.device if generator is not None else x0.device
        i = torch.randint(x0.shape[0], (self.n_pairs,), generator=generator, device=device).to(x0.device)
        j = torch.randint(x1.shape[0], (self.n_pairs,), generator=generator, device=device).to(x1.device)
        a, b = self.initial_coupling.pair(x0[i], x1[j], generator)
        base_seed = self.config.seed
        for step in range(self.iterations):
            forward = (self.iterations - 1 - step) % 2 == 0  # the last half-step fits the forward model
            if forward:
                self._fit(self.forward_net, Parameterisation.X1, a, b, base_seed + step)
                if step < self.iterations - 1:
                    a = x0[
                        torch.randint(x0.shape[0], (self.n_pairs,), generator=generator, device=device).to(x0.device)
                    ]
                    b = self.simulate(a, generator=generator)
            else:
                self._fit(self.backward_net, Parameterisation.X0, a, b, base_seed + step)
                b = x1[torch.randint(x1.shape[0], (self.n_pairs,), generator=generator, device=device).to(x1.device)]
                a = self.simulate(b, backward=True, generator=generator)
            self.history.append({"half_step": step, "direction": "forward" if forward else "backward"})
        return self.history


__all__ = ["DSBM", "SF2M", "FlowAndScore", "FlowScoreLoss", "brownian_bridge_interpolant"]
