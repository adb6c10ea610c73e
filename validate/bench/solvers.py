"""Solvers bench: error per function evaluation against diffusers, k-diffusion and torchdiffeq, and driver overhead.

**Accuracy.** One exact field, the VP interpolant (``preset("vp")``, flow time t in [0, 0.999]) from N(0, I) to a
Gaussian mixture (the 2D 8-mode ring and the 64D four-component mixture of :mod:`validate.cases`), float64; the
same initial points x(0) for every method; NFE in :data:`NFES`. Per method and NFE:

* ``pathwise_error``: mean over particles of ``|x(0.999) - x_ref(0.999)|``, ``x_ref`` a dopri8 solution at
  rtol = atol = 1e-12 from the same points;
* ``sliced_w2`` and ``mmd`` to fresh exact samples of rho(0.999) (fixed projections and bandwidth per case), with
  their Monte-Carlo floor (the same metric between two exact samples of the same size).

interp's methods (DPM-Solver 2/3 singlestep with the NFE-exact order mix, DPM-Solver++ 2M/3M, UniPC-2/3 bh2 and
2 bh1, DEIS tAB3, iPNDM-3, each at its defaults, and the Runge-Kutta Heun, RK4 and RK4's 3/8 rule with the most
whole steps that fit; the 3/8 rule is the method torchdiffeq's ``rk4`` runs)
run on four standard grids (time-uniform, quadratic, log-SNR uniform, EDM rho = 7); a method's line takes its best
grid (lowest pathwise error), "ours" the best line. Searched grids (:func:`interp.grid_search.search_grid`, 100
Adam steps on pilot points drawn apart from the evaluation points, from the standard grid best on the pilot points)
are run for DPM-Solver++ 2M, UniPC-2 and iPNDM-3. Points per case (:data:`CASES`): 2000 evaluation / 256 pilot in
2D, 1000 / 192 in 64D.

Peers, each given its best configuration in the same way:

* diffusers ``DPMSolverMultistepScheduler`` (orders 2, 3), ``UniPCMultistepScheduler`` (bh2, orders 2, 3),
  ``DEISMultistepScheduler`` (orders 2, 3), built with ``trained_betas`` taken from the continuous schedule
  (``alphas_cumprod[i] = beta(1 - (i + 1) / 1000)^2``, so their sigma range is exactly t in [0, 0.999]) and
  ``final_sigmas_type="sigma_min"``, under each of their time spacings (linspace, Karras, exponential, and
  Lu's log-SNR for DPM-Solver). The model is the exact noise prediction E[x0 | x_t] evaluated at the scheduler's
  own sigma (mapped to flow time in closed form), not at its rounded integer timestep. diffusers computes its
  updates in float32. With ``final_sigmas_type="sigma_min"`` its Karras/exponential/Lu spacings end with a
  zero-length step (sigma_min twice), so one of their NFE is spent on nothing; the linspace spacing is not.
  On the scheduler's own grid with the same final-order rule, interp's DPM-Solver++ 2M and UniPC-2 reproduce
  its samples to float32 rounding (``tests/test_bench_solvers.py``).
* k-diffusion ``sample_dpmpp_2m`` and ``sample_heun`` (two evaluations a step) on its Karras, exponential and
  VP sigma sequences ending at sigma_min (no appended zero), with the exact denoiser E[x1 | x_t] in the
  variance-exploding frame x / beta(t).
* torchdiffeq ``rk4`` (four evaluations a step) on the same four grids, and ``dopri5`` over a sweep of
  tolerances, keeping for each NFE budget the most accurate run that spent no more.

Each adapter is checked before it is used: at NFE 200 at least one configuration of each peer must reach the
tight reference (else the bench stops); configurations that do not are named on stderr.

**Overhead.** A 3 x 256 MLP velocity field (untrained, float32, batch 4096, 2D), NFE 20, no gradient: wall time
of interp's driver (Euler, RK4, DPM-Solver++ 2M, UniPC-2; median of repeated runs) against the same number of bare
field evaluations, and interp's Euler/RK4 against torchdiffeq's fixed-step ``euler``/``rk4`` on the same grid
(:mod:`validate.bench.overhead`).

k-diffusion's package ``__init__`` imports its training stack (torchvision, scikit-image); only its ``sampling``
module is loaded here (:func:`k_diffusion_sampling`). Install the peers with
``pip install diffusers && pip install --no-deps k-diffusion``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from dataclasses import dataclass

import torch

from interp import grids, integrate
from interp.grid_search import search_grid
from interp.interpolants import preset
from interp.metrics import median_bandwidth, mmd, sliced_wasserstein2
from interp.records import BenchRecord, compare
from interp.solvers import DiffusionView, at_budget

from ..cases import exact_marginals
from ..fast_solvers import tight
from .overhead import overhead_records

NFES = (5, 8, 10, 15, 20)
# case -> (dimension, evaluation points, pilot points); the exact 64D field costs ~0.1 s per 2000-point evaluation.
CASES = {"gmm-2d": (2, 2000, 256), "gmm-64d": (64, 1000, 192)}
T_START, T_END = 0.0, 1.0 - 1e-3
TRAIN_STEPS = 1000
GRIDS = grids.STANDARD
SEARCHED = ("DPM-Solver++2M", "UniPC-2", "iPNDM-3")
CHECK_NFE = 200


# ----------------------------------------------------------------------------------------------- problem


@dataclass
class Problem:
    """The exact field, fresh evaluation points with their tight reference, pilot points, target samples."""

    name: str
    interpolant: object
    exact: object
    view: DiffusionView
    x0: torch.Tensor
    reference: torch.Tensor
    pilot: torch.Tensor
    pilot_reference: torch.Tensor
    target: torch.Tensor
    target_b: torch.Tensor
    directions_seed: int
    bandwidth: float

    def time_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Flow time of the diffusion noise level sigma = alpha / beta (lambda = -log sigma); clamped into [0, 1]
        against the float32 rounding of the peers' sigma tables (sigma_max maps to t = -3e-8)."""
        t = self.view.time_of(-torch.log(torch.as_tensor(sigma, dtype=torch.float64)))
        return t.clamp(0.0, 1.0)

    def sigma_of_time(self, t: float) -> float:
        tt = torch.tensor(t, dtype=torch.float64)
        return float(self.interpolant.schedule.alpha(tt) / self.interpolant.schedule.beta(tt))

    def beta(self, t) -> torch.Tensor:
        return self.interpolant.schedule.beta(torch.as_tensor(t, dtype=torch.float64))


def make_problem(name: str, dim: int, n: int, pilot: int, seed: int) -> Problem:
    generator = torch.Generator().manual_seed(seed)
    interpolant = preset("vp")
    exact = exact_marginals(interpolant, dim)
    x0 = exact.sample(T_START, n, generator)
    x_pilot = exact.sample(T_START, pilot, generator)
    target, target_b = exact.sample(T_END, n, generator), exact.sample(T_END, n, generator)
    return Problem(
        name,
        interpolant,
        exact,
        DiffusionView(interpolant),
        x0,
        tight(exact, x0, T_START, T_END),
        x_pilot,
        tight(exact, x_pilot, T_START, T_END),
        target,
        target_b,
        seed + 7,
        median_bandwidth(target, target_b),
    )


def metrics(problem: Problem, final: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, float]:
    """Pathwise error to the tight reference, and sliced W2 / MMD to exact target samples."""
    reference = problem.reference if reference is None else reference
    directions = torch.Generator().manual_seed(problem.directions_seed)
    return {
        "pathwise_error": float((final - reference).norm(dim=-1).mean()),
        "sliced_w2": sliced_wasserstein2(final, problem.target, generator=directions),
        "mmd": mmd(final, problem.target, problem.bandwidth),
    }


def floors(problem: Problem) -> dict[str, float]:
    directions = torch.Generator().manual_seed(problem.directions_seed)
    return {
        "sliced_w2": sliced_wasserstein2(problem.target_b, problem.target, generator=directions),
        "mmd": mmd(problem.target_b, problem.target, problem.bandwidth),
    }


class Counted:
    """A field that counts its calls (the NFE a method really spent)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


# ----------------------------------------------------------------------------------------------- interp


def standard_grid(problem: Problem, kind: str, n_steps: int) -> torch.Tensor:
    return grids.standard(kind, problem.interpolant.schedule, n_steps, T_START, T_END)


def interp_methods(interpolant, nfe: int) -> dict[str, tuple[object, int]]:
    """``name -> (solver, steps)`` spending ``nfe`` evaluations (Heun and RK4: the most whole steps that fit)."""
    return at_budget(interpolant, nfe)


def run_interp(
    problem: Problem, solver, grid: torch.Tensor, x0: torch.Tensor | None = None
) -> tuple[torch.Tensor, int]:
    x0 = problem.x0 if x0 is None else x0
    traj = integrate(problem.exact.velocity, x0, grid, solver, progress=False)
    return traj.final, traj.nfe


# ----------------------------------------------------------------------------------------------- peers


def k_diffusion_sampling():
    """k-diffusion's ``sampling`` module without its package ``__init__`` (which imports torchvision and
    scikit-image for training); the samplers need only ``utils.append_dims``, provided here."""
    name = "k_diffusion.sampling"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed: pip install --no-deps k-diffusion")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType("k_diffusion.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    package.utils = utils
    sys.modules.setdefault("k_diffusion", package)
    sys.modules.setdefault("k_diffusion.utils", utils)
    location = spec.submodule_search_locations[0] + "/sampling.py"
    module_spec = importlib.util.spec_from_file_location(name, location)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def trained_betas(problem: Problem) -> list[float]:
    """Discrete betas whose cumulative product is beta(t_i)^2 at t_i = 1 - (i + 1) / 1000 (i = 0 is data)."""
    t = 1.0 - torch.arange(1, TRAIN_STEPS + 1, dtype=torch.float64) / TRAIN_STEPS
    alphas_cumprod = problem.beta(t) ** 2
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    return (1 - alphas_cumprod / previous).tolist()


DIFFUSERS = {
    "diffusers-DPMSolver++-2": ("DPMSolverMultistepScheduler", {"solver_order": 2}),
    "diffusers-DPMSolver++-3": ("DPMSolverMultistepScheduler", {"solver_order": 3}),
    "diffusers-UniPC-2": ("UniPCMultistepScheduler", {"solver_order": 2}),
    "diffusers-UniPC-3": ("UniPCMultistepScheduler", {"solver_order": 3}),
    "diffusers-DEIS-2": ("DEISMultistepScheduler", {"solver_order": 2}),
    "diffusers-DEIS-3": ("DEISMultistepScheduler", {"solver_order": 3}),
}
SPACINGS = {
    "linspace": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "lu_lambdas": {"use_lu_lambdas": True},
}


def run_diffusers(problem: Problem, peer: str, spacing: str, nfe: int, x0=None) -> tuple[torch.Tensor, int] | None:
    import diffusers

    class_name, options = DIFFUSERS[peer]
    if spacing == "lu_lambdas" and class_name != "DPMSolverMultistepScheduler":
        return None
    config = dict(
        num_train_timesteps=TRAIN_STEPS,
        trained_betas=trained_betas(problem),
        prediction_type="epsilon",
        **options,
        **SPACINGS[spacing],
    )
    if class_name != "DEISMultistepScheduler":
        config["final_sigmas_type"] = "sigma_min"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # diffusers builds some coefficient tensors in the default dtype
    try:
        scheduler = getattr(diffusers, class_name)(**config)
        scheduler.set_timesteps(nfe)
        sigmas = scheduler.sigmas.to(torch.float64)
        x = problem.x0 if x0 is None else x0
        # The scheduler starts at sigmas[0]; the run starts at T_START. Both are sigma(0) to float32 rounding.
        field = Counted(lambda k, x: problem.exact.x0_mean(problem.time_of_sigma(sigmas[k]), x))
        for k, timestep in enumerate(scheduler.timesteps):
            x = scheduler.step(field(k, x), timestep, x).prev_sample
    finally:
        torch.set_default_dtype(previous)
    return x, field.calls


K_SIGMAS = ("karras", "exponential", "vp")
K_DIFFUSION = {"k-diffusion-dpmpp_2m": ("sample_dpmpp_2m", 1), "k-diffusion-heun": ("sample_heun", 2)}


def run_k_diffusion(problem: Problem, peer: str, spacing: str, nfe: int, x0=None) -> tuple[torch.Tensor, int] | None:
    sampling = k_diffusion_sampling()
    sampler_name, per_step = K_DIFFUSION[peer]
    steps = nfe // per_step
    if steps < 1:
        return None
    sigma_min, sigma_max = problem.sigma_of_time(T_END), problem.sigma_of_time(T_START)
    # steps + 1 noise levels, then the appended zero dropped: the run ends at sigma_min after ``steps`` steps.
    if spacing == "karras":
        sigmas = sampling.get_sigmas_karras(steps + 1, sigma_min, sigma_max)
    elif spacing == "exponential":
        sigmas = sampling.get_sigmas_exponential(steps + 1, sigma_min, sigma_max)
    else:  # time-uniform in diffusion time: the same VP schedule (beta_d = beta_max - beta_min)
        s = problem.interpolant.schedule
        sigmas = sampling.get_sigmas_vp(steps + 1, beta_d=s.beta_max - s.beta_min, beta_min=s.beta_min, eps_s=1 - T_END)
    sigmas = sigmas[:-1].to(torch.float64)
    x = problem.x0 if x0 is None else x0

    def denoiser(x_ve, sigma):
        t = problem.time_of_sigma(sigma[0])
        beta = problem.beta(t)
        return problem.exact.x1_mean(t, beta * x_ve)

    field = Counted(denoiser)
    out = getattr(sampling, sampler_name)(field, x / problem.beta(T_START), sigmas, disable=True)
    return problem.beta(T_END) * out, field.calls


def run_rk4(problem: Problem, spacing: str, nfe: int, x0=None) -> tuple[torch.Tensor, int] | None:
    import torchdiffeq

    steps = nfe // 4
    if steps < 1:
        return None
    grid = standard_grid(problem, spacing, steps)
    field = Counted(problem.exact.velocity)
    x = problem.x0 if x0 is None else x0
    return torchdiffeq.odeint(field, x, grid, method="rk4")[-1], field.calls


DOPRI_TOLERANCES = tuple(10.0**-k for k in (1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6))


def run_dopri5(problem: Problem, rtol: float, x0=None) -> tuple[torch.Tensor, int]:
    import torchdiffeq

    # At loose tolerances torchdiffeq's initial-step probe evaluates past the end of the span, where the exact
    # field is not defined; the probe only sizes the first step, so its time is clamped into the span.
    field = Counted(lambda t, x: problem.exact.velocity(t.clamp(T_START, T_END), x))
    x = problem.x0 if x0 is None else x0
    grid = torch.tensor([T_START, T_END], dtype=torch.float64)
    out = torchdiffeq.odeint(field, x, grid, method="dopri5", rtol=rtol, atol=rtol)[-1]
    return out, field.calls


def peer_runs(problem: Problem, nfe: int, x0=None):
    """``(peer, configuration, runner)`` for every fixed-NFE peer configuration."""
    for peer in DIFFUSERS:
        for spacing in SPACINGS:
            yield peer, spacing, lambda p=peer, s=spacing: run_diffusers(problem, p, s, nfe, x0)
    for peer in K_DIFFUSION:
        for spacing in K_SIGMAS:
            yield peer, spacing, lambda p=peer, s=spacing: run_k_diffusion(problem, p, s, nfe, x0)
    for spacing in GRIDS:
        yield "torchdiffeq-rk4", spacing, lambda s=spacing: run_rk4(problem, s, nfe, x0)


ADAPTER_TOLERANCE = 2e-3
"""Largest relative error a peer adapter may have against the reference solution at ``CHECK_NFE``."""


def check_adapters(problem: Problem, tolerance: float = ADAPTER_TOLERANCE) -> dict[str, float]:
    """Each peer adapter must converge to the tight reference at a large NFE in at least one of its configurations
    (a wrong schedule mapping or model convention would fail them all); raises ``RuntimeError`` naming the peer
    otherwise. Returns the relative error of every configuration: some fail on their own (diffusers' Karras and
    exponential spacings end with a zero-length step, which its third-order updates do not survive)."""
    x0, reference = problem.pilot[:64], problem.pilot_reference[:64]
    scale = float(reference.norm(dim=-1).mean())
    errors: dict[str, float] = {}
    best: dict[str, float] = {}
    runs = [(peer, spacing, runner) for peer, spacing, runner in peer_runs(problem, CHECK_NFE, x0)]
    runs.append(("torchdiffeq-dopri5", "rtol=1e-8", lambda: run_dopri5(problem, 1e-8, x0)))
    for peer, spacing, runner in runs:
        out = runner()
        if out is None:
            continue
        finite = bool(torch.isfinite(out[0]).all())
        error = float((out[0] - reference).norm(dim=-1).mean()) / scale if finite else math.inf
        errors[f"{peer}@{spacing}"] = error
        best[peer] = min(best.get(peer, math.inf), error)
    failed = {peer: error for peer, error in best.items() if not error < tolerance}
    if failed:
        raise RuntimeError(f"peer adapters off the reference at NFE {CHECK_NFE} (relative error): {failed}")
    return errors


# ----------------------------------------------------------------------------------------------- tables


@dataclass
class Row:
    case: str
    method: str
    nfe: int
    config: str
    nfe_used: int
    peer: bool
    pathwise_error: float
    sliced_w2: float
    mmd: float


def _row(problem: Problem, method: str, nfe: int, config: str, used: int, peer: bool, final: torch.Tensor) -> Row:
    """Metrics of one run; a run that produced non-finite samples gets infinite errors (never chosen as a best
    configuration, visible in the table if every configuration of a method fails)."""
    if torch.isfinite(final).all():
        values = metrics(problem, final)
    else:
        values = dict.fromkeys(("pathwise_error", "sliced_w2", "mmd"), math.inf)
    return Row(problem.name, method, nfe, config, used, peer, **values)


def _best(rows: list[Row]) -> Row | None:
    return min(rows, key=lambda r: r.pathwise_error) if rows else None


def measure(problem: Problem, nfes=NFES, search_iterations: int = 100) -> list[Row]:
    """One row per (method, NFE): the method's best configuration by pathwise error."""
    rows: list[Row] = []

    def add(candidates: list[Row]) -> None:
        best = _best(candidates)
        if best is not None:
            rows.append(best)

    for nfe in nfes:
        print(f"solvers bench: {problem.name}, NFE {nfe}", file=sys.stderr, flush=True)
        for name, (solver, steps) in interp_methods(problem.interpolant, nfe).items():
            candidates = []
            for kind in GRIDS:
                final, used = run_interp(problem, solver, standard_grid(problem, kind, steps))
                candidates.append(_row(problem, name, nfe, kind, used, False, final))
            add(candidates)
            if name in SEARCHED:
                # Start from the standard grid that is best on the pilot points (the evaluation points stay unseen).
                def pilot_error(kind, solver=solver, steps=steps):
                    final = run_interp(problem, solver, standard_grid(problem, kind, steps), problem.pilot)[0]
                    return float((final - problem.pilot_reference).norm(dim=-1).mean())

                start = standard_grid(problem, min(GRIDS, key=pilot_error), steps)
                searched = search_grid(
                    problem.exact.velocity,
                    solver,
                    problem.pilot,
                    problem.pilot_reference,
                    start,
                    iterations=search_iterations,
                )
                final, used = run_interp(problem, solver, searched.tensor())
                rows.append(_row(problem, f"{name}/searched", nfe, "searched", used, False, final))
        by_peer: dict[str, list[Row]] = {}
        for peer, spacing, runner in peer_runs(problem, nfe):
            out = runner()
            if out is None:
                continue
            final, used = out
            by_peer.setdefault(peer, []).append(_row(problem, peer, nfe, spacing, used, True, final))
        for candidates in by_peer.values():
            add(candidates)
    rows += dopri5_rows(problem, nfes)
    return rows


def dopri5_rows(problem: Problem, nfes) -> list[Row]:
    """For each NFE budget, the most accurate dopri5 run (over :data:`DOPRI_TOLERANCES`) that spent no more."""
    runs = []
    for rtol in DOPRI_TOLERANCES:
        final, used = run_dopri5(problem, rtol)
        runs.append(_row(problem, "torchdiffeq-dopri5", 0, f"rtol={rtol:.1e}", used, True, final))
    rows = []
    for nfe in nfes:
        fitting = [r for r in runs if r.nfe_used <= nfe]
        best = _best(fitting)
        if best is not None:
            rows.append(Row(**{**best.__dict__, "nfe": nfe}))
    return rows


def to_dataset(rows: list[Row], floor: dict[str, dict[str, float]]):
    """The table as an xarray Dataset (case x solver x nfe; solver = interp method or peer, ``peer`` says which);
    NaN where a method cannot spend that few NFE, inf where every configuration gave non-finite samples."""
    import numpy as np
    import xarray as xr

    cases = sorted({r.case for r in rows})
    methods = list(dict.fromkeys(r.method for r in rows))
    nfes = sorted({r.nfe for r in rows})
    shape = (len(cases), len(methods), len(nfes))
    values = {k: np.full(shape, np.nan) for k in ("pathwise_error", "sliced_w2", "mmd", "nfe_used")}
    config = np.full(shape, "", dtype=object)
    for r in rows:
        index = (cases.index(r.case), methods.index(r.method), nfes.index(r.nfe))
        for k in values:
            values[k][index] = getattr(r, k)
        config[index] = r.config
    peer = {r.method: r.peer for r in rows}
    dims = ("case", "solver", "nfe")
    ds = xr.Dataset(
        {k: (dims, v) for k, v in values.items()} | {"config": (dims, config.astype(str))},
        coords={"case": cases, "solver": methods, "nfe": nfes, "peer": ("solver", [peer[m] for m in methods])},
    )
    for metric in ("sliced_w2", "mmd"):
        ds[f"{metric}_floor"] = ("case", [floor[c][metric] for c in cases])
    ds.attrs["description"] = "interp solvers vs peers on the exact VP Gaussian-mixture field (validate.bench.solvers)"
    return ds


def accuracy_records(rows: list[Row]) -> list[BenchRecord]:
    records = []
    for case in sorted({r.case for r in rows}):
        for nfe in sorted({r.nfe for r in rows}):
            here = [r for r in rows if r.case == case and r.nfe == nfe]
            peer = _best([r for r in here if r.peer])
            standard = _best([r for r in here if not r.peer and r.config != "searched"])
            searched = _best([r for r in here if r.config == "searched"])
            if peer is None or standard is None:
                continue
            peer_name = f"{peer.method}@{peer.config}"
            for ours, label in ((standard, "standard-grids"), (searched, "searched-grid")):
                if ours is None:
                    continue
                metric_names = (
                    ("pathwise_error", "sliced_w2", "mmd") if label == "standard-grids" else ("pathwise_error",)
                )
                for metric in metric_names:
                    records.append(
                        compare(
                            "solvers",
                            f"{case}/nfe{nfe}/{label}/{ours.method}@{ours.config}",
                            metric,
                            getattr(ours, metric),
                            peer_name,
                            getattr(peer, metric),
                            "lower",
                        )
                    )
    return records


# ----------------------------------------------------------------------------------------------- entry


def measure_cases(seed: int) -> tuple[list[Row], dict[str, dict[str, float]]]:
    """Every case of :data:`CASES`: adapters checked (a peer off by more than ``ADAPTER_TOLERANCE`` is reported),
    Monte-Carlo floors, and the measured rows. Shared by :func:`run` and the figure script."""
    rows: list[Row] = []
    floor = {}
    for name, (dim, n, pilot) in CASES.items():
        problem = make_problem(name, dim, n, pilot, seed)
        off = {k: e for k, e in check_adapters(problem).items() if not e < ADAPTER_TOLERANCE}
        if off:
            print(f"solvers bench: {name}: peer configurations off at NFE {CHECK_NFE}: {off}", file=sys.stderr)
        floor[name] = floors(problem)
        rows += measure(problem)
    return rows, floor


def run(seed: int = 0, table: str | None = None) -> list[BenchRecord]:
    all_rows, floor = measure_cases(seed)
    if table is not None:
        from interp.results import write_atomically

        dataset = to_dataset(all_rows, floor)
        write_atomically(table, lambda path: dataset.to_netcdf(path, engine="h5netcdf"))
    return accuracy_records(all_rows) + overhead_records(seed)
