r"""Flow and bridge matching through several snapshots: one time-dependent field fitted across every interval.

Snapshots :math:`X_0, \dots, X_K` at times :math:`t_0 < \dots < t_K` (any units). Time is normalised to
:math:`s = (t - t_0)/T \in [0, 1]`, :math:`T = t_K - t_0` (docs/design.md, "Time"). For each interval
:math:`[s_k, s_{k+1}]` (length :math:`\ell_k`) the two snapshots are coupled by a transport plan solved on the
whole snapshots (:class:`~interp.couplings.ExactOTCoupling` by default, the full-batch version of minibatch OT:
single-cell snapshots hold hundreds to thousands of cells), pairs are drawn from the plan, and one field is
regressed at local time :math:`\tau \in [0, 1]`, global time :math:`s = s_k + \tau\ell_k`:

* **OT-CFM** (Tong et al. 2023, "Improving and generalizing flow-based generative models with minibatch optimal
  transport", §5 trajectory inference): :math:`x = (1-\tau)a + \tau b + \sigma_{\min} z`, target velocity
  :math:`(b - a)/\ell_k`.
* **[SF]²M** (Tong et al. 2024): reference :math:`\sigma W_t` in real time, plan entropic with weight
  :math:`2\sigma^2\Delta_k` (:math:`\Delta_k = T\ell_k`), the Brownian bridge
  :math:`x = \mu + \gamma z`, :math:`\gamma = \sigma\sqrt{\Delta_k\tau(1-\tau)}`; the flow regresses
  :math:`[(b - a) + \dot\gamma z]/\ell_k` and the score :math:`-z/\gamma` (loss :math:`|\gamma\hat s + z|^2`).
  Sampling in :math:`s` runs :math:`dX = [v + \tfrac{\sigma^2T}{2}\hat s]\,ds + \sigma\sqrt T\,dW_s`.

No library fits one field across several snapshot intervals with a pluggable coupling on torch (TorchCFM's
notebooks loop over intervals by hand), so the loss is written here; training runs on
:class:`~interp.train.Trainer` with ``paired=True``: each pair row carries its interval's start and end time in
an extra last column.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._random import randn_like
from ..couplings import Coupling, EntropicOTCoupling, ExactOTCoupling, IndependentCoupling
from ..driver import integrate
from ..dynamics import constant_noise_sde
from ..losses import InterpolantLoss, sample_times
from ..results import Trajectory
from ..solvers import RK4, EulerMaruyama
from ..train import TrainConfig, Trainer, TrainResult
from .matching import FlowAndScore
from .snapshots import check_snapshots


class SnapshotMatchingLoss:
    """Loss on pair rows ``(state, s_start)`` / ``(state, s_end)`` (a drop-in loss for ``Trainer(paired=True)``).

    ``bridge=False``: OT-CFM with constant noise ``sigma``; ``bridge=True``: [SF]²M with reference noise ``sigma``
    per unit of real time, ``span`` real time units per unit of ``s``; the model then returns ``(flow, score)``.
    """

    antithetic = False
    needs_noise = True

    def __init__(self, sigma: float, *, bridge: bool, span: float = 1.0):
        if not float(sigma) >= 0 or (bridge and not float(sigma) > 0):
            raise ValueError(f"sigma must be {'positive' if bridge else '>= 0'}; got {sigma}")
        if not span > 0:
            raise ValueError(f"span must be positive; got {span}")
        self.sigma, self.bridge, self.span = float(sigma), bool(bridge), float(span)
        clip = InterpolantLoss.END_CLIP if bridge else 0.0  # the bridge's gamma-dot diverges at the ends
        self.time_range = (clip, 1.0 - clip)

    def sample_times(self, batch: int, generator, *, dtype, device) -> Tensor:
        return sample_times(batch, generator, *self.time_range, dtype=dtype, device=device)

    def __call__(self, model, x0: Tensor, x1: Tensor, generator=None, *, t: Tensor | None = None, z=None) -> Tensor:
        if x0.shape != x1.shape or x0.ndim != 2 or x0.shape[1] < 2:
            raise ValueError(
                f"pair rows must be (batch, dim + 1) of one shape; got {tuple(x0.shape)}, {tuple(x1.shape)}"
            )
        a, b, s0, s1 = x0[:, :-1], x1[:, :-1], x0[:, -1], x1[:, -1]
        n = a.shape[0]
        tau = self.sample_times(n, generator, dtype=a.dtype, device=a.device) if t is None else t
        z = (randn_like(x0, generator) if z is None else z)[:, :-1]
        length = (s1 - s0)[:, None]
        s = s0 + tau * (s1 - s0)
        tc = tau[:, None]
        mean = a + tc * (b - a)
        if not self.bridge:
            flow = model(s, mean + self.sigma * z)
            return (flow - (b - a) / length).pow(2).mean()
        scale = self.sigma * torch.sqrt(self.span * length)
        gamma = scale * torch.sqrt(tc * (1 - tc))
        gamma_dot = scale * (1 - 2 * tc) / (2 * torch.sqrt(tc * (1 - tc)))
        flow, score = model(s, mean + gamma * z)
        flow_residual = (flow - (b - a + gamma_dot * z) / length).pow(2).mean(dim=1)
        score_residual = (gamma * score + z).pow(2).mean(dim=1)
        return (flow_residual + score_residual).mean()


class SnapshotMatching:
    r"""One field through several snapshots by OT-CFM (``score=None``) or [SF]²M (``score`` a second network).

    Args:
        flow: velocity network ``(s, x) -> Tensor`` on normalised time :math:`s \in [0, 1]`.
        score: score network for [SF]²M, or ``None`` for OT-CFM.
        sigma: OT-CFM: the constant noise :math:`\sigma_{\min}` (default 0); [SF]²M: the reference noise per unit of
            real time (required, > 0).
        coupling: per-interval coupling; default exact OT (OT-CFM) or entropic OT with weight
            :math:`2\sigma^2\Delta_k` ([SF]²M). :class:`~interp.couplings.IndependentCoupling` gives I-CFM.
        pairs_per_interval: pairs drawn from each interval's plan (every interval weighs the same).
        config: training options (:class:`~interp.train.TrainConfig`).

    Example:
        >>> fm = SnapshotMatching(MLP((5,)), config=TrainConfig(steps=2000))       # doctest: +SKIP
        >>> fm.fit(snapshots, times=[0.0, 24.0, 72.0], generator=g)                 # doctest: +SKIP
        >>> x24 = fm.transport(snapshots[0], 0.0, 24.0).final                       # doctest: +SKIP
    """

    def __init__(
        self,
        flow: nn.Module,
        score: nn.Module | None = None,
        *,
        sigma: float | None = None,
        coupling: Coupling | None = None,
        pairs_per_interval: int = 4096,
        config: TrainConfig | None = None,
    ):
        self.bridge = score is not None
        if self.bridge and sigma is None:
            raise ValueError("[SF]²M (a score network) needs the reference noise sigma")
        self.sigma = float(sigma) if sigma is not None else 0.0
        if not self.sigma >= 0 or (self.bridge and not self.sigma > 0):
            raise ValueError(f"sigma must be {'positive' if self.bridge else '>= 0'}; got {sigma}")
        if not (isinstance(pairs_per_interval, int) and pairs_per_interval >= 1):
            raise ValueError(f"pairs_per_interval must be a positive integer; got {pairs_per_interval!r}")
        self.model = FlowAndScore(flow, score) if self.bridge else flow
        self.coupling, self.pairs_per_interval = coupling, pairs_per_interval
        self.config = config or TrainConfig()
        self.trainer: Trainer | None = None
        self.times: Tensor | None = None

    @property
    def method(self) -> str:
        return "sf2m" if self.bridge else "ot-cfm"

    def _coupling(self, delta: float) -> Coupling:
        if self.coupling is not None:
            return self.coupling
        return EntropicOTCoupling(self.sigma**2 * delta) if self.bridge else ExactOTCoupling()

    def pairs(self, snapshots, times, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The training rows: ``pairs_per_interval`` pairs per interval drawn from its plan, each row
        ``(state, s)`` with the interval's normalised start (first tensor) and end (second) time."""
        snapshots, times = check_snapshots(snapshots, times)
        span = float(times[-1] - times[0])
        s = (times - times[0]) / span
        rows0, rows1 = [], []
        for k in range(len(snapshots) - 1):
            a, b = snapshots[k], snapshots[k + 1].to(snapshots[k])
            coupling = self._coupling(float(times[k + 1] - times[k]))
            if isinstance(coupling, IndependentCoupling):
                plan = torch.full((a.shape[0], b.shape[0]), 1.0 / (a.shape[0] * b.shape[0]), dtype=a.dtype)
            else:
                plan = coupling.plan(a, b)
            if not torch.isfinite(plan).all() or plan.sum() <= 0:
                raise ValueError(f"the plan of interval {k} is degenerate (non-finite or zero)")
            device = generator.device if generator is not None else plan.device
            flat = plan.reshape(-1).clamp(min=0).to(device, torch.float64)
            index = torch.multinomial(flat, self.pairs_per_interval, replacement=True, generator=generator)
            i, j = (index // plan.shape[1]).to(a.device), (index % plan.shape[1]).to(a.device)
            ones = torch.ones(self.pairs_per_interval, 1, dtype=a.dtype, device=a.device)
            rows0.append(torch.cat([a[i], float(s[k]) * ones], dim=1))
            rows1.append(torch.cat([b[j], float(s[k + 1]) * ones], dim=1))
        return torch.cat(rows0), torch.cat(rows1)

    def fit(self, snapshots, times, *, generator: torch.Generator | None = None, evaluate=None) -> TrainResult:
        """Fit on ``snapshots`` (``(n_k, d)`` tensors) at increasing ``times``; ``generator`` draws the pairs."""
        snapshots, times = check_snapshots(snapshots, times)
        x0, x1 = self.pairs(snapshots, times, generator)
        span = float(times[-1] - times[0])
        loss = SnapshotMatchingLoss(self.sigma, bridge=self.bridge, span=span)
        self.trainer = Trainer(self.model, loss, x0, x1, config=self.config, paired=True)
        self.times = times
        return self.trainer.fit(evaluate)

    def _trained(self) -> nn.Module:
        if self.trainer is None:
            raise RuntimeError("call fit() first")
        return self.trainer.ema.eval()

    def velocity(self, s, x: Tensor) -> Tensor:
        """The learned velocity in normalised time (EMA weights)."""
        model = self._trained()
        return model.flow(s, x) if self.bridge else model(s, x)

    def drift(self, s, x: Tensor) -> Tensor:
        """[SF]²M: :math:`v + \\tfrac{\\sigma^2 T}{2}\\hat s` in normalised time; OT-CFM: the velocity."""
        if not self.bridge:
            return self.velocity(s, x)
        model = self._trained()
        return model.flow(s, x) + 0.5 * self.sigma**2 * self.span * model.score(s, x)

    @property
    def span(self) -> float:
        if self.times is None:
            raise RuntimeError("call fit() first")
        return float(self.times[-1] - self.times[0])

    def normalise(self, t: float) -> float:
        """Real time ``t`` (inside the fitted horizon) to normalised :math:`s`."""
        if self.times is None:
            raise RuntimeError("call fit() first")
        lo, hi = float(self.times[0]), float(self.times[-1])
        if not lo - 1e-9 * abs(hi - lo) <= float(t) <= hi + 1e-9 * abs(hi - lo):
            raise ValueError(f"time {t} lies outside the fitted horizon [{lo}, {hi}]")
        return min(max((float(t) - lo) / (hi - lo), 0.0), 1.0)

    @torch.no_grad()
    def transport(
        self,
        x: Tensor,
        t_from: float,
        t_to: float,
        *,
        steps_per_unit: int = 100,
        sde: bool = False,
        generator: torch.Generator | None = None,
        record: bool | list[float] = False,
    ) -> Trajectory:
        """Carry ``x`` from real time ``t_from`` to ``t_to`` (either direction for the ODE) with RK4 on the learned
        velocity, or (``sde=True``, [SF]²M, forward only) Euler–Maruyama on the bridge SDE; ``steps_per_unit``
        steps per unit of normalised time (at least one). The trajectory's times are normalised."""
        s0, s1 = self.normalise(t_from), self.normalise(t_to)
        if s0 == s1:
            raise ValueError(f"t_from and t_to must differ; got {t_from}")
        n = max(1, math.ceil(abs(s1 - s0) * steps_per_unit))
        grid = torch.linspace(s0, s1, n + 1, dtype=torch.float64)
        param = next(self.model.parameters())
        x = x.to(param.device, param.dtype)
        if not sde:
            return integrate(self.velocity, x, grid, RK4(), record=record, progress=False)
        if not self.bridge:
            raise ValueError("sde=True needs the [SF]²M model (a score network)")
        if s1 < s0:
            raise ValueError("the bridge SDE runs forward in time only")
        dynamics = constant_noise_sde(self.drift, self.sigma * self.span**0.5)
        return integrate(dynamics, x, grid, EulerMaruyama(), generator=generator, record=record, progress=False)
