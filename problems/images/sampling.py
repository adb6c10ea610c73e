r"""Sampling a trained image model with interp's fixed-step samplers (:func:`interp.solvers.at_budget`), and the
scores of the samples.

Every sampler starts from the same noise at ``SPANS[interpolant][0]`` and stops at ``SPANS[...][1]``, on one of
the standard grids (uniform, quadratic, log-SNR uniform, EDM :math:`\rho = 7`). The VP span is the solvers
bench's (flow time ``[0, 0.999]``, the noise level at its end is 0.01 of the data's scale); the flow path's
log-SNR is infinite at both ends, so it runs over ``[1e-3, 1 - 1e-3]``.

Classifier-free guidance (Ho & Salimans 2022) with scale :math:`w`: the network's prediction (velocity or noise —
both linear in the score at a fixed time) is :math:`p_c + w\,(p_c - p_\varnothing)`, one network call on the
conditional and unconditional halves stacked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from interp import grids, integrate
from interp.fields import LearnedField
from interp.solvers import MOMENTUM, STANDARD, Torchdiffeq, at_budget

from .model import ImageModel

SPANS = {"vp": (0.0, 0.999), "flow": (1e-3, 1 - 1e-3)}
GRIDS = grids.STANDARD
SAMPLERS = STANDARD + MOMENTUM


def grid(model: ImageModel, kind: str, steps: int) -> Tensor:
    """The ``kind`` grid of ``steps`` steps over the model's span."""
    return grids.standard(kind, model.interpolant.schedule, steps, *SPANS[model.interpolant_name])


def guided_field(model: ImageModel, labels: Tensor | None, guidance: float) -> LearnedField:
    """The model's field for ``labels`` (``None``: unconditional) with classifier-free guidance scale ``guidance``
    (0: the conditional model as trained)."""
    if labels is None or guidance == 0:
        return model.field(labels)
    if not model.net.num_classes:
        raise ValueError("classifier-free guidance needs a class-conditional model")
    null = torch.full_like(labels, model.net.null_label)

    def prediction(t, x):
        tt = t.repeat(2) if torch.is_tensor(t) and t.ndim == 1 else t
        both = model.predict(tt, torch.cat([x, x]), torch.cat([labels, null]))
        conditional, unconditional = both.chunk(2)
        return conditional + guidance * (conditional - unconditional)

    return LearnedField(model.interpolant, {model.parameterisation: prediction})


def initial_noise(model: ImageModel, n: int, seed: int, device="cpu") -> Tensor:
    """``n`` standard normal images (float32), the same for every sampler of a run."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, *model.shape, generator=generator, dtype=torch.float32).to(device)


def sample(model: ImageModel, sampler: str, nfe: int, noise: Tensor, *, grid_kind: str = "log_snr",
           labels: Tensor | None = None, guidance: float = 0.0, batch: int = 1000) -> tuple[Tensor, int]:  # fmt: skip
    """Images from ``noise`` with ``sampler`` (a name of :data:`SAMPLERS`) within ``nfe`` evaluations (each a
    network call on the batch; guidance doubles the batch, not the count), and the evaluations spent."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    budget = at_budget(model.interpolant, nfe, [sampler])
    if not budget:
        raise ValueError(f"{sampler} needs more than {nfe} evaluations for one step")
    solver, steps = budget[sampler]
    times = grid(model, grid_kind, steps)
    out, used = [], 0
    for a in range(0, noise.shape[0], batch):
        chunk_labels = None if labels is None else labels[a : a + batch]
        field = guided_field(model, chunk_labels, guidance)
        run = integrate(field.velocity, noise[a : a + batch], times, solver, progress=False)
        out.append(run.final)
        used = run.nfe
    return torch.cat(out), used


def tight_solve(model: ImageModel, noise: Tensor, *, labels=None, guidance: float = 0.0, rtol: float = 1e-5,
                batch: int = 250) -> Tensor:  # fmt: skip
    """The reference end points: torchdiffeq's dopri5 at ``rtol = atol``, from the same noise over the same span."""
    t0, t1 = SPANS[model.interpolant_name]
    times = torch.tensor([t0, t1], dtype=torch.float64)
    # the first step is given: dopri5's own guess divides by the field's size at the start, where the VP velocity is
    # almost 0, and steps far outside [0, 1]
    solver = Torchdiffeq("dopri5", rtol=rtol, atol=rtol, options={"first_step": 1e-4})
    out = []
    for a in range(0, noise.shape[0], batch):
        field = guided_field(model, None if labels is None else labels[a : a + batch], guidance)
        out.append(integrate(field.velocity, noise[a : a + batch], times, solver, progress=False).final)
    return torch.cat(out)


def pathwise_error(images: Tensor, reference: Tensor) -> float:
    """Root mean square per-pixel difference to the reference end points, averaged over images."""
    per_image = (images - reference).flatten(1).pow(2).mean(1).sqrt()
    return float(per_image.mean())
