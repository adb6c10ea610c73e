"""Langevin bench: effective samples per second against BlackJAX, the same algorithm on the same target.

Targets: Neal's funnel in 10 dimensions (scale 3) and a 50-dimensional mixture of four isotropic Gaussians. Both
sides run 64 and then 1024 chains (``CHAIN_COUNTS``) for ``STEPS`` steps of MALA at the same step size from the same
starting points in float64 (BlackJAX under ``jax_enable_x64``, vmapped and jit-compiled with ``lax.scan``; ours
batched in torch, eager and compiled: ``run_chains(..., compile=True)`` in blocks of ``BLOCK`` steps); the first
``BURN_IN`` steps are dropped. Each side runs once untimed first (both compile then).
ESS is ArviZ's bulk ESS over the chains for each coordinate, the minimum over coordinates taken; ESS/s divides it by
the timed run's wall time. BlackJAX has no BAOAB, so interp's BAOAB is recorded against BlackJAX's MALA (labelled as
such: a different algorithm, for scale) on the mixture only: in the scale-3 funnel, chains started at exact draws
reach v ≈ ±10, where the force is stiff as e^10 and BAOAB diverges at any usable step (MALA rejects those moves).

Recorded per target: ESS/s at steady state, eager and compiled (higher is better), min ESS (higher; the same
algorithm should give the same ESS up to noise, which checks that the two sides run the same chain), wall seconds
(lower), each side's compile seconds (ours: the first compiled block of the case, which compiles; BlackJAX: its
ahead-of-time ``lower().compile()``), and ESS/s including compilation for a run
of ``LONG`` steps (measured, every ``THIN``-th draw kept) and of 10 × ``LONG`` (projected from it: at stationarity ESS
and run time grow in proportion, compilation does not).

Peers: ``pip install blackjax arviz`` (BlackJAX pulls jax and jaxlib for CPU).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from interp.analytic import Funnel, GaussianMixture
from interp.langevin import BAOAB, MALA, LangevinTarget, run_chains
from interp.records import BenchRecord, compare

from . import synchronise

CHAIN_COUNTS, STEPS, BURN_IN = (64, 1024), 2000, 500  # 1024: the per-step overhead spread over many chains
LONG, THIN = 10_000, 10  # the run timed with its compilation
BLOCK = 8  # steps per compiled call (longer blocks compile for minutes and run no faster)


def _mixture_50d(seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(1000 + seed)
    means = 1.5 * torch.randn(4, 50, generator=g, dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.1, 0.2, 0.3, 0.4]), means, torch.tensor([0.5, 0.8, 1.0, 1.2]))


def _jax_log_density(name: str, target):
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    if name.startswith("funnel"):
        scale = target.scale

        def log_density(x):
            v, rest = x[0], x[1:]
            return (
                -0.5 * v**2 / scale**2
                - 0.5 * jnp.log(2 * jnp.pi * scale**2)
                - 0.5 * jnp.sum(rest**2 * jnp.exp(-v) + v + jnp.log(2 * jnp.pi))
            )

        return log_density
    weights = jnp.asarray(target.weights.numpy())
    means = jnp.asarray(target.means.numpy())
    variances = jnp.asarray(torch.diagonal(target.covariances, dim1=1, dim2=2)[:, 0].numpy())
    dim = means.shape[1]

    def log_density(x):
        sq = jnp.sum((x[None, :] - means) ** 2, axis=1)
        return logsumexp(jnp.log(weights) - 0.5 * sq / variances - 0.5 * dim * jnp.log(2 * jnp.pi * variances))

    return log_density


def _torch_isotropic_mixture(target: GaussianMixture, device="cpu"):
    """The mixture's log-density written as the peer's is (isotropic components), its score by autograd: the
    two sides then differ only in the sampler, not in how the target is evaluated (``GaussianMixture`` itself
    handles full covariances with triangular solves)."""
    log_w, means = torch.log(target.weights).to(device), target.means.to(device)
    variances = torch.diagonal(target.covariances, dim1=1, dim2=2)[:, 0].to(device)
    dim = means.shape[1]

    def log_density(x):
        sq = ((x[:, None, :] - means[None]) ** 2).sum(dim=2)
        return torch.logsumexp(log_w - 0.5 * sq / variances - 0.5 * dim * torch.log(2 * math.pi * variances), dim=1)

    return LangevinTarget(log_density=log_density)


def _min_ess(draws: np.ndarray) -> float:
    import arviz

    return float(min(arviz.ess(np.ascontiguousarray(draws[:, :, d])) for d in range(draws.shape[2])))


def _ours(kernel, target, x0, seed, *, steps=None, compile=False, thin=1):
    """(draws after burn-in, seconds of the timed run, acceptance, compile seconds or None). Compiled: the first
    run, of the same block length, pays the compilation; its time is the compile estimate."""
    steps = steps or STEPS
    device = x0.device
    warm = run_chains(kernel, target, x0, 2 * BLOCK, generator=torch.Generator(device).manual_seed(seed + 1),
                      progress=False, block=BLOCK, compile=compile)  # fmt: skip
    compile_seconds = warm.settings.get("compile_seconds") if compile else None
    started = time.perf_counter()
    out = run_chains(kernel, target, x0, steps, generator=torch.Generator(device).manual_seed(seed), burn_in=BURN_IN,
                     thin=thin, progress=False, block=BLOCK, compile=compile)  # fmt: skip
    synchronise(device)
    seconds = time.perf_counter() - started
    acceptance = float(out.acceptance.mean()) if out.acceptance is not None else math.nan
    return out.draws.cpu().numpy(), seconds, acceptance, compile_seconds


def _blackjax(log_density, step_size, x0, seed, *, steps=None, thin=1):
    """(draws after burn-in, seconds of the timed run, acceptance, seconds of the ahead-of-time compilation).
    Thinned runs keep every ``thin``-th state inside the scan."""
    import blackjax
    import jax

    steps = steps or STEPS
    mala = blackjax.mala(log_density, step_size)
    n_keep = steps // thin

    @jax.jit
    def run(key, positions):
        state = jax.vmap(mala.init)(positions)

        def one(state, key):
            state, info = jax.vmap(mala.step)(jax.random.split(key, positions.shape[0]), state)
            return state, info.is_accepted

        def kept(state, key):
            state, accepted = jax.lax.scan(one, state, jax.random.split(key, thin))
            return state, (state.position, accepted)

        _, (trace, accepted) = jax.lax.scan(kept, state, jax.random.split(key, n_keep))
        return trace, accepted

    positions = jax.numpy.asarray(x0.numpy())
    started = time.perf_counter()
    compiled = run.lower(jax.random.PRNGKey(seed), positions).compile()  # ahead of time: compilation alone
    compile_seconds = time.perf_counter() - started
    jax.block_until_ready(compiled(jax.random.PRNGKey(seed + 1), positions))  # warm-up
    started = time.perf_counter()
    trace, accepted = jax.block_until_ready(compiled(jax.random.PRNGKey(seed), positions))
    seconds = time.perf_counter() - started
    draws = np.swapaxes(np.asarray(trace), 0, 1)[:, BURN_IN // thin :]  # (chain, draw, dim)
    return draws, seconds, float(np.asarray(accepted).mean()), compile_seconds


def run(seed: int = 0, device: str = "cpu", chain_counts=CHAIN_COUNTS, long: bool = True) -> list[BenchRecord]:
    """Every case; ``device`` is where interp's chains run (BlackJAX runs where jax finds its backend: the CPU
    here, and its device is named in the peer label); ``long=False`` leaves out the runs timed with compilation."""
    import blackjax
    import jax

    jax.config.update("jax_enable_x64", True)
    peer = f"blackjax {blackjax.__version__} mala ({jax.default_backend()})"
    cases = {
        "funnel 10-D, scale 3": (Funnel(10, 3.0), 0.02, None),  # no BAOAB: see the module docstring
        "mixture 50-D, 4 modes": (_mixture_50d(seed), 0.05, 0.25),
    }
    records = []
    for chains in chain_counts:
        for name, (target, step, baoab_step) in cases.items():
            records += _case(f"{name}, {chains} chains", target, step, baoab_step, chains, peer, seed, device, long)
    return records


def _case(name, target, step, baoab_step, chains, peer, seed, device="cpu", long=True) -> list[BenchRecord]:
    import jax

    g = torch.Generator().manual_seed(seed)
    x0 = target.sample(chains, g)  # both sides start at the same exact draws
    log_density = _jax_log_density(name, target)
    check = np.asarray(jax.vmap(log_density)(jax.numpy.asarray(x0.numpy())))
    mine_check = target.log_density(x0).numpy()
    if isinstance(target, GaussianMixture):
        assert np.allclose(_torch_isotropic_mixture(target).log_density(x0).numpy(), mine_check, rtol=1e-10)
    if not np.allclose(check, mine_check, rtol=1e-10, atol=1e-8):
        raise AssertionError(f"{name}: the peer's log-density differs from interp's")
    ours = _torch_isotropic_mixture(target, device) if isinstance(target, GaussianMixture) else target
    theirs, peer_seconds, peer_acceptance, _ = _blackjax(log_density, step, x0, seed)
    peer_ess = _min_ess(theirs)
    x0 = x0.to(device)
    eager, seconds, acceptance, _ = _ours(MALA(step), ours, x0, seed)
    # The first compiled run of a case compiles (dynamo caches it for the runs after): its compile seconds count
    fused, fused_seconds, _, compile_seconds = _ours(MALA(step), ours, x0, seed, compile=True)
    label = f"{name}: MALA h={step:g}"
    print(f"{label}: acceptance ours {acceptance:.3f}, peer {peer_acceptance:.3f}", flush=True)
    ess, fused_ess, peer_rate = _min_ess(eager), _min_ess(fused), peer_ess / peer_seconds
    records = [
        compare("langevin", label, "ESS/s (min over dims)", ess / seconds, peer, peer_rate, "higher"),
        compare("langevin", label, "ESS/s, compiled", fused_ess / fused_seconds, peer, peer_rate, "higher"),
        compare("langevin", label, "min ESS, compiled", fused_ess, peer, peer_ess, "higher"),
        compare("langevin", label, "min ESS", ess, peer, peer_ess, "higher"),
        compare("langevin", label, "seconds", seconds, peer, peer_seconds, "lower"),
    ]
    if not long:
        records.append(compare("langevin", label, "compile seconds", compile_seconds,
                               f"one eager run of {STEPS} steps", seconds, "lower"))  # fmt: skip
        return records
    # Including compilation: a fresh process compiles once, then runs LONG steps (every THIN-th draw kept); ours
    # compiled above (thinning is outside the compiled block), the peer compiles its thinned scan here. 10x LONG is
    # projected (ESS and run time grow in proportion for a chain at stationarity; compilation does not).
    theirs, peer_seconds, _, peer_compile = _blackjax(log_density, step, x0, seed, steps=LONG, thin=THIN)
    mine, seconds, _, _ = _ours(MALA(step), ours, x0, seed, steps=LONG, compile=True, thin=THIN)
    peer_ess, ess = _min_ess(theirs), _min_ess(mine)
    records.append(compare("langevin", label, "compile seconds", compile_seconds, peer, peer_compile, "lower"))
    for factor, what in ((1, f"{LONG:.0e} steps"), (10, f"{10 * LONG:.0e} steps, projected")):
        records.append(
            compare(
                "langevin",
                label,
                f"ESS/s incl. compilation, {what}",
                factor * ess / (compile_seconds + factor * seconds),
                peer,
                factor * peer_ess / (peer_compile + factor * peer_seconds),
                "higher",
            )
        )
    if baoab_step is not None:
        baoab, baoab_seconds, _, _ = _ours(BAOAB(baoab_step), ours, x0, seed, compile=True)
        label = f"{name}: interp BAOAB h={baoab_step:g} (compiled) vs peer MALA h={step:g}"
        records.append(compare("langevin", label, "ESS/s (min over dims)", _min_ess(baoab) / baoab_seconds, peer,
                               peer_rate, "higher"))  # fmt: skip
    return records
