"""Plots the tuned coefficients (``train/int_coef``, ``train/ent_coef``) of every run under a folder over training.

PPO with ``int_coef="auto"`` / ``ent_coef="auto"`` logs them per rollout in each run's ``progress.jsonl``::

    python experiments/plot_coefs.py runs/maxinfo_doorkey6 --out experiments/results/maxinfo_doorkey6/int_coef.png

Runs without the key (a fixed coefficient) are drawn flat at their configured value, so both arms show.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def read_curves(root: Path, key: str) -> dict[str, list[tuple[list[int], list[float]]]]:
    """``{method label: [(steps, values) per run]}`` from ``root/**/progress.jsonl``."""
    curves: dict[str, list[tuple[list[int], list[float]]]] = defaultdict(list)
    for progress in sorted(root.rglob("progress.jsonl")):
        run = progress.parent
        label = run.name.split("__")[1] if run.name.count("__") >= 3 else run.name
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
        fixed = config.get(key.split("/")[-1])
        steps, values = [], []
        for line in progress.read_text().splitlines():
            row = json.loads(line)
            value = row.get(key, fixed if isinstance(fixed, (int, float)) else None)
            if value is not None:
                steps.append(int(row["step"]) if "step" in row else int(row["time/total_timesteps"]))
                values.append(float(value))
        if steps:
            curves[label].append((steps, values))
    return dict(curves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder holding run folders (searched recursively)")
    parser.add_argument("--key", default="train/int_coef", help="progress.jsonl key to plot")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = read_curves(args.runs, args.key)
    if not curves:
        raise SystemExit(f"no run under {args.runs} logs {args.key!r}")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for color, (label, runs) in zip(
        plt.rcParams["axes.prop_cycle"].by_key()["color"], sorted(curves.items()), strict=False
    ):
        for i, (steps, values) in enumerate(runs):
            ax.plot(steps, values, color=color, alpha=0.8, label=label if i == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel(args.key)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
