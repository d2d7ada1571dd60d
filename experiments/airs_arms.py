"""How often AIRS (``Fusion(operator="select")``, the ``airs`` module) chose each candidate over training.

Reads the ``intrinsic/<module>/select/...`` keys that every select fusion logs per rollout in ``progress.jsonl``
and writes, for every run under a sweep folder that has them, the share of rollouts each candidate shaped,
overall and per stretch of training, plus each candidate's final bandit value, as ``arms.md`` and ``arms.csv``,
and the mean share over runs against env steps as ``arms.png``.

    python experiments/airs_arms.py runs/airs_minigrid --out experiments/results/airs_minigrid
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHOICE = re.compile(r"^intrinsic/(?P<module>[^/]+)/select/choice$")


@dataclass
class ArmRun:
    """One run's choices: ``steps [U]`` env steps at each update, ``choices [U]`` the chosen member's index."""

    name: str
    method: str
    members: list[str]
    steps: np.ndarray
    choices: np.ndarray
    values: dict[str, float]

    def shares(self, bins: int) -> np.ndarray:
        """``[bins, members]``: the share of the rollouts in each equal stretch of training that each member shaped."""
        out = np.zeros((bins, len(self.members)))
        for b, part in enumerate(np.array_split(self.choices, bins)):
            if part.size:
                out[b] = np.bincount(part, minlength=len(self.members)) / part.size
        return out


def read_run(folder: Path) -> ArmRun | None:
    """The run's choices, or None when its ``progress.jsonl`` has no select fusion."""
    path = folder / "progress.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    prefix = next((m.group(0)[: -len("choice")] for row in rows for key in row if (m := CHOICE.match(key))), None)
    if prefix is None:
        return None
    members = list(
        dict.fromkeys(k[len(prefix) : -len("/chosen")] for row in rows for k in row if k.endswith("/chosen"))
    )
    chosen = [row for row in rows if prefix + "choice" in row]
    values = {m: float(chosen[-1][f"{prefix}{m}/value"]) for m in members if f"{prefix}{m}/value" in chosen[-1]}
    parts = folder.name.split("__")  # {env}__{method}__{seed}__{time}
    return ArmRun(
        folder.name,
        parts[1] if len(parts) == 4 else folder.name,
        members,
        np.array([row["step"] for row in chosen]),
        np.array([int(row[prefix + "choice"]) for row in chosen]),
        values,
    )


def write_report(runs: list[ArmRun], out: Path, bins: int) -> None:
    """``arms.md``, ``arms.csv`` and ``arms.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"{100 * b // bins}-{100 * (b + 1) // bins}%" for b in range(bins)]
    lines = [
        "# How often AIRS chose each candidate",
        "",
        f"Share of rollouts each candidate shaped, over all of training and per stretch of training ({', '.join(parts)});"
        " value: the candidate's bandit value at the end (mean extrinsic return of its last window).",
        "",
        "| run | candidate | all | " + " | ".join(parts) + " | final value |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in parts) + " | ---: |",
    ]
    rows = []
    for run in runs:
        shares = run.shares(bins)
        overall = np.bincount(run.choices, minlength=len(run.members)) / max(run.choices.size, 1)
        for i, member in enumerate(run.members):
            value = run.values.get(member)
            cells = [f"{overall[i]:.2f}", *(f"{s:.2f}" for s in shares[:, i]), "" if value is None else f"{value:.3f}"]
            lines.append(f"| {run.name} | {member} | " + " | ".join(cells) + " |")
            rows.append({"run": run.name, "candidate": member, "all": overall[i], "value": value})
            rows[-1].update({p: s for p, s in zip(parts, shares[:, i], strict=True)})
    (out / "arms.md").write_text("\n".join(lines) + "\n")
    with open(out / "arms.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "candidate", "all", *parts, "value"])
        writer.writeheader()
        writer.writerows(rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fine = 10
    methods = list(dict.fromkeys(run.method for run in runs))
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 3.2), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods, strict=True):
        group = [run for run in runs if run.method == method]
        mean = np.mean([run.shares(fine) for run in group], axis=0)  # mean over the method's runs (seeds)
        x = (np.arange(fine) + 0.5) * max(int(run.steps[-1]) for run in group) / fine
        for i, member in enumerate(group[0].members):
            ax.plot(x, mean[:, i], marker="o", label=member)
        ax.set(xlabel="env steps", ylim=(0, 1), title=f"{method}: choices ({len(group)} runs)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of rollouts (10 bins)")
    axes[0][0].legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out / "arms.png", dpi=150)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="a sweep's output folder (runs/<name>)")
    parser.add_argument("--out", type=Path, default=None, help="where the files go (default: the sweep folder)")
    parser.add_argument("--bins", type=int, default=4, help="stretches of training in the table")
    parser.add_argument("--include-unfinished", action="store_true", help="also runs without result.json")
    args = parser.parse_args()
    folders = [f for f in sorted(args.sweep.iterdir()) if f.is_dir()]
    if not args.include_unfinished:
        folders = [f for f in folders if (f / "result.json").is_file()]
    runs = [run for folder in folders if (run := read_run(folder))]
    if not runs:
        raise SystemExit(f"no run under {args.sweep} logged a select fusion (intrinsic/<module>/select/choice)")
    write_report(runs, args.out or args.sweep, args.bins)
    print((args.out or args.sweep) / "arms.md")


if __name__ == "__main__":
    main()
