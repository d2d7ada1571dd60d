"""Sparse-reward MiniGrid: plain PPO vs PPO + count bonus vs PPO + RND, over several seeds (issue 4).

Every run is a ``rove.agents.PPO`` run folder (``runs/hard_exploration/{env}__{method}__{seed}__{time}``);
curves are read back from each run's ``episodes.jsonl``. Outputs, under ``--out-dir``:

- ``curves.png``: mean episode return against env steps, one line per method (mean over seeds, band =
  min..max over seeds);
- ``results.md`` / ``results.json``: final return and success rate (last ``--final-fraction`` of each run's
  episodes) and the first step with a success, per method and seed.

The default task is ``Rove/MiniGrid-DoorKey-16x16-v0`` (reward only at the goal, behind a locked door whose
key must be found; a random policy almost never gets there) with a 1M-step budget per run: 9 runs take
hours on one CPU core, so this script is opt-in and its full version is not run by the tests (they run
``--quick``: DoorKey-5x5, 640 steps, to check the plumbing). Hyperparameters follow Burda et al.'s
RND recipe (gamma 0.999 / 0.99, advantage 2 A_ext + 1 A_int, non-episodic intrinsic returns).

Run: ``python experiments/hard_exploration.py`` (``--quick`` for a smoke run, ``--env-id`` to pick the task).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rove.agents import PPO
from rove.experiments.args import parse_dataclass_args
from rove.experiments.report import label_steps_axis

METHODS = {"ppo": None, "ppo+count": "count", "ppo+rnd": "rnd"}


@dataclass
class Args:
    env_id: str = field(default="Rove/MiniGrid-DoorKey-16x16-v0", metadata={"help": "sparse-reward Rove MiniGrid id"})
    methods: str = field(default="ppo,ppo+count,ppo+rnd", metadata={"help": f"comma-separated, from {list(METHODS)}"})
    seeds: int = field(default=3, metadata={"help": "seeds per method (0..seeds-1)"})
    total_steps: int = field(default=1_000_000, metadata={"help": "env steps per run"})
    n_envs: int = field(default=16, metadata={"help": "envs per run"})
    n_steps: int = field(default=128, metadata={"help": "steps per env per rollout"})
    batch_size: int = field(default=512, metadata={"help": "minibatch size"})
    n_epochs: int = field(default=4, metadata={"help": "epochs per update"})
    learning_rate: float = field(default=2.5e-4, metadata={"help": "Adam learning rate"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy bonus"})
    bins: int = field(default=50, metadata={"help": "points on each curve"})
    final_fraction: float = field(default=0.1, metadata={"help": "fraction of a run's last episodes for the table"})
    device: str = field(default="auto", metadata={"help": "torch device"})
    quick: bool = field(default=False, metadata={"help": "smoke run: DoorKey-5x5, 1 seed, 640 steps, 2 envs"})
    out_dir: str = field(default="runs/hard_exploration", metadata={"help": "run folders, PNG and tables go here"})


def parse_args(argv: Sequence[str] | None = None) -> Args:
    args = parse_dataclass_args(Args, argv, __doc__.split("\n\n")[0])
    if args.quick:
        args = dataclasses.replace(
            args,
            env_id="Rove/MiniGrid-DoorKey-5x5-v0",
            seeds=1,
            total_steps=640,
            n_envs=2,
            n_steps=64,
            batch_size=64,
            n_epochs=1,
            bins=4,
        )
    for method in args.methods.split(","):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    return args


def train_one(args: Args, method: str, seed: int) -> Path:
    """Trains one run and returns its run folder."""
    name = f"{args.env_id.split('/')[-1]}__{method}__{seed}__{int(time.time())}"
    run_dir = Path(args.out_dir) / name
    model = PPO(
        "auto",
        args.env_id,
        intrinsic=METHODS[method],
        n_envs=args.n_envs,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        learning_rate=args.learning_rate,
        ent_coef=args.ent_coef,
        run_dir=str(run_dir),
        device=args.device,
        seed=seed,
        verbose=0,
    )
    model.learn(args.total_steps)
    model.close()
    assert model.env is not None
    model.env.close()
    return run_dir


def read_episodes(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "episodes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curve(episodes: list[dict[str, Any]], total_steps: int, bins: int) -> np.ndarray:
    """Mean return of the episodes ending in each of ``bins`` equal step intervals (carried forward if none)."""
    edges = np.linspace(0, total_steps, bins + 1)
    steps = np.array([e["step"] for e in episodes])
    returns = np.array([e["return"] for e in episodes])
    out = np.zeros(bins)
    last = 0.0
    for i in range(bins):
        inside = (steps > edges[i]) & (steps <= edges[i + 1]) if len(steps) else np.array([], bool)
        if inside.any():
            last = float(returns[inside].mean())
        out[i] = last
    return out


def summarise(episodes: list[dict[str, Any]], final_fraction: float) -> dict[str, Any]:
    if not episodes:
        return {"episodes": 0, "final_return": 0.0, "final_success": 0.0, "first_success_step": None}
    tail = episodes[-max(1, int(len(episodes) * final_fraction)) :]
    first = next((e["step"] for e in episodes if e.get("success")), None)
    return {
        "episodes": len(episodes),
        "final_return": float(np.mean([e["return"] for e in tail])),
        "final_success": float(np.mean([bool(e.get("success")) for e in tail])),
        "first_success_step": first,
    }


def plot(curves: dict[str, list[np.ndarray]], args: Args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.linspace(0, args.total_steps, args.bins + 1)[1:]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, runs in curves.items():
        stack = np.stack(runs)
        ax.plot(x, stack.mean(0), label=f"{method} ({len(runs)} seeds)")
        ax.fill_between(x, stack.min(0), stack.max(0), alpha=0.2)
    label_steps_axis(ax)
    ax.set_ylabel("episode return")
    ax.set_title(args.env_id)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[np.ndarray]] = {}
    table: dict[str, list[dict[str, Any]]] = {}
    for method in args.methods.split(","):
        for seed in range(args.seeds):
            run_dir = train_one(args, method, seed)
            episodes = read_episodes(run_dir)
            curves.setdefault(method, []).append(curve(episodes, args.total_steps, args.bins))
            table.setdefault(method, []).append(
                {"seed": seed, "run_dir": str(run_dir), **summarise(episodes, args.final_fraction)}
            )
    plot(curves, args, out / "curves.png")
    lines = [
        f"{args.env_id}, {args.total_steps} env steps per run, {args.seeds} seeds",
        "",
        "| method | final return (mean over seeds) | final success rate | runs with a success |",
        "| --- | ---: | ---: | ---: |",
    ]
    for method, rows in table.items():
        ret = np.mean([r["final_return"] for r in rows])
        succ = np.mean([r["final_success"] for r in rows])
        hits = sum(r["first_success_step"] is not None for r in rows)
        lines.append(f"| {method} | {ret:.3f} | {succ:.2f} | {hits}/{len(rows)} |")
    text = "\n".join(lines)
    print(text)
    (out / "results.md").write_text(text + "\n")
    results = {"args": dataclasses.asdict(args), "results": table}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
