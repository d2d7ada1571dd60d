"""Which intrinsic coefficient works inside Stable-Baselines3's PPO: success on MiniGrid Empty-5x5.

SB3 has one value head and one discount, so through ``rove.agents.sb3.IntrinsicRewardCallback`` the
intrinsic return is episodic: an episode that ends forfeits the bonus it would still have collected,
about ``int_coef * r_int / (1 - gamma)``. With RND's return-normalised reward (``r_int`` of order 1) and
``int_coef=1`` that is worth far more than Empty-5x5's terminal reward (at most 1), so the agent learns
to keep episodes alive rather than reach the goal. This script measures the final success rate of SB3 PPO
with RND at several ``int_coef`` values next to plain SB3 PPO, same seeds, same hyperparameters.

Run: ``OMP_NUM_THREADS=1 python experiments/sb3_recipe.py`` (about 3 CPU minutes); writes JSON to ``--out``
and prints a Markdown table. ``--quick`` is a smoke run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rove.experiments.args import parse_dataclass_args


@dataclasses.dataclass
class Args:
    env: str = dataclasses.field(default="Rove/MiniGrid-Empty-5x5-v0", metadata={"help": "Rove env id"})
    steps: int = dataclasses.field(default=30_000, metadata={"help": "env steps per run"})
    seeds: int = dataclasses.field(default=2, metadata={"help": "seeds per setting (0, 1, ...)"})
    coefs: str = dataclasses.field(default="1.0,0.1,0.01", metadata={"help": "RND int_coef values, comma-separated"})
    n_envs: int = dataclasses.field(default=8, metadata={"help": "parallel envs"})
    out: str = dataclasses.field(default="experiments/results/sb3_recipe.json", metadata={"help": "JSON output"})
    quick: bool = dataclasses.field(default=False, metadata={"help": "smoke run: 1 seed, 1k steps"})


def run(env_id: str, coef: float | None, seed: int, steps: int, n_envs: int) -> dict[str, Any]:
    """Trains SB3 PPO (+ RND scaled by ``coef``; None: no intrinsic reward) and returns its final success."""
    import torch
    from stable_baselines3 import PPO

    from rove.agents.sb3 import IntrinsicRewardCallback, make_vec_env, rove_policy_kwargs

    torch.set_num_threads(1)
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    hyper = {"n_steps": 64, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3, "gamma": 0.99}
    model = PPO("MultiInputPolicy", venv, seed=seed, device="cpu", policy_kwargs=rove_policy_kwargs(), **hyper)
    callback = None if coef is None else IntrinsicRewardCallback("rnd", int_coef=coef, module_kwargs={"seed": seed})
    start = time.process_time()
    model.learn(steps, callback=callback)
    venv.close()
    # SB3 keeps the last 100 episodes' is_success (set by rove.agents.sb3.RoveMonitor).
    successes = [float(s) for s in model.ep_success_buffer]
    lengths = [float(e["l"]) for e in model.ep_info_buffer]
    return {
        "int_coef": coef,
        "seed": seed,
        "final_success": float(np.mean(successes)) if successes else float("nan"),
        "final_length": float(np.mean(lengths)) if lengths else float("nan"),
        "cpu_s": time.process_time() - start,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass_args(Args, argv, __doc__ or "")
    steps, seeds = (1000, 1) if args.quick else (args.steps, args.seeds)
    settings: list[float | None] = [None, *[float(c) for c in args.coefs.split(",")]]
    rows = [run(args.env, coef, seed, steps, args.n_envs) for coef in settings for seed in range(seeds)]
    print(f"| setting ({args.env.split('/')[-1]}, {steps} steps) | final success (per seed) | mean episode length |")
    print("|---|---|---|")
    for coef in settings:
        mine = [r for r in rows if r["int_coef"] == coef]
        name = "SB3 PPO" if coef is None else f"SB3 PPO + RND, int_coef={coef:g}"
        success = ", ".join(f"{r['final_success']:.2f}" for r in mine)
        print(f"| {name} | {success} | {np.mean([r['final_length'] for r in mine]):.1f} |")
    out = {"env": args.env, "steps": steps, "seeds": seeds, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
