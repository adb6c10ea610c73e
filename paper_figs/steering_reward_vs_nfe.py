"""Reward against compute for inference-time steering: FK steering, SVDD and rollover budget forcing against
best-of-N on one prior and one base sampler.

The analogue, on a closed form, of the reward-vs-particles comparison with best-of-N of FK steering (Singhal et al.
2025) and of the reward-vs-NFE curves of rollover budget forcing (Kim et al. 2025): those use text-to-image models
and learned rewards; here the prior is a 2-D Gaussian mixture with its exact VP score and the rewards are a linear
and a quadratic function, so the curves compare the search methods alone (``validate/bench/steering.py``).
Left: linear reward, right: quadratic; y: mean reward of the outputs minus the base sampler's, x: model evaluations
per output.

    python -m paper_figs steering_reward_vs_nfe --out figs/                         # runs the bench (~2 min on CPU)
    python -m paper_figs steering_reward_vs_nfe --out figs/ --json steering.json    # from saved bench records

Writes ``steering_reward_vs_nfe.png`` and ``steering_reward_vs_nfe.nc`` (the numbers plotted) into ``--out``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import xarray as xr

from .figure import run, save_png

NAME = "steering_reward_vs_nfe"


def to_dataset(records: list[dict]) -> xr.Dataset:
    """Bench records (``python -m validate.bench steering --json``) → reward_gain and nfe over (reward, sampler, k)."""
    values: dict[tuple[str, str, int], dict[str, float]] = {}
    for r in records:
        if r.get("bench") != "steering":
            raise ValueError("not a steering bench record")
        reward, k, method = r["case"].split("/")
        k = int(k.lstrip("x"))
        values.setdefault((reward, method, k), {})[r["metric"]] = r["ours"]
        values.setdefault((reward, r["peer"], k), {})[r["metric"]] = r["peer_value"]
    rewards = sorted({key[0] for key in values})
    methods = sorted({key[1] for key in values})
    ks = sorted({key[2] for key in values})
    data = {m: np.full((len(rewards), len(methods), len(ks)), np.nan) for m in ("reward_gain", "nfe")}
    for (reward, method, k), metrics in values.items():
        for metric, value in metrics.items():
            data[metric][rewards.index(reward), methods.index(method), ks.index(k)] = value
    return xr.Dataset(
        {m: (("reward", "sampler", "k"), v) for m, v in data.items()},
        coords={"reward": rewards, "sampler": methods, "k": ks},
        attrs={"source": "python -m validate.bench steering"},
    )


def plot(ds: xr.Dataset, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rewards = list(ds.reward.values)
    fig, axes = plt.subplots(1, len(rewards), figsize=(6 * len(rewards), 4.5), squeeze=False)
    for ax, reward in zip(axes[0], rewards, strict=True):
        for method in ds.sampler.values:
            x = ds.nfe.sel(reward=reward, sampler=method).values
            y = ds.reward_gain.sel(reward=reward, sampler=method).values
            keep = np.isfinite(x) & np.isfinite(y)
            peer = str(method) == "best-of-N"
            ax.plot(x[keep], y[keep], "s--" if peer else "o-", label=str(method), color="black" if peer else None)
        ax.set_xscale("log")
        ax.set_xlabel("model evaluations per output")
        ax.set_ylabel("mean reward − base sampler's")
        ax.set_title(f"{reward} reward")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save_png(fig, path)


def add_arguments(parser) -> None:
    parser.add_argument("--json", help="records written by `python -m validate.bench steering --json PATH`")


def load(args, parser) -> xr.Dataset:
    """The figure's numbers from the bench records in ``--json``, or from running the steering bench here."""
    if args.json:
        if not os.path.exists(args.json):
            parser.error(f"--json: no such file {args.json!r}")
        with open(args.json) as f:
            records = json.load(f)
    else:
        from dataclasses import asdict

        from validate.bench import steering

        records = [asdict(r) for r in steering.run(seed=args.seed)]
    try:
        return to_dataset(records)
    except (ValueError, KeyError) as error:
        parser.error(f"the records are not steering bench records ({error})")


def main(argv: list[str] | None = None) -> int:
    """Draw the figure (``python -m paper_figs steering_reward_vs_nfe --out DIR [--json PATH]``)."""
    return run(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
