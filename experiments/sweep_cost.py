"""What a sweep config costs: each method's training steps per CPU second, measured under the config's settings.

For every env x method of ``config`` (seed 0), one short run of ``--steps`` env transitions through the same
code a sweep runs (:func:`rove.experiments.runs.train_run`, in this process, one thread), timed in this
process's CPU time (other processes on a shared machine do not blur it). A first rollout of each run is not
timed (imports, allocations, the intrinsic warm-up is part of every real run and is timed). Then the
whole sweep's cost at ``--budget`` steps per run (default: the config's ``total_timesteps``): the sum over its
runs of ``budget / steps per CPU second``, and the largest budget per run that fits in ``--hours`` of
``--cores`` cores.

Run: ``python experiments/sweep_cost.py experiments/configs/hard_exploration.toml --steps 4096``. Prints a
Markdown table and writes JSON to ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
import json
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rove.experiments.args import parse_dataclass_args
from rove.experiments.runs import train_run
from rove.experiments.sweep import SweepConfig, load_config


@dataclass
class Args:
    config: str = field(default="experiments/configs/hard_exploration.toml", metadata={"help": "sweep config (TOML)"})
    steps: int = field(default=4096, metadata={"help": "env transitions of each timed run"})
    hours: float = field(default=4.0, metadata={"help": "wall-clock hours the sweep may take"})
    cores: int = field(default=2, metadata={"help": "cores the sweep runs on (one run per core)"})
    methods: str = field(default="all", metadata={"help": "comma-separated method labels, or 'all'"})
    out: str = field(default="runs/sweep_cost.json", metadata={"help": "where the JSON results are written"})


def timed_run(config: SweepConfig, env: str, method: Any, steps: int, root: Path) -> dict[str, Any]:
    """Steps per CPU second of ``steps`` transitions of one run, after an untimed first run of one rollout."""
    spec = config.spec(env, method, config.seeds[0])
    rollout = spec.n_envs * int(spec.agent_kwargs.get("n_steps", 128))
    train_run(dataclasses.replace(spec, total_timesteps=rollout), root / "warm")  # imports, numba compiles
    cpu, wall = time.process_time(), time.perf_counter()
    result = train_run(dataclasses.replace(spec, total_timesteps=steps), root / "timed")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "env": env,
        "method": method.label,
        "steps": result["total_timesteps"],
        "cpu_s": cpu,
        "steps_per_cpu_s": result["total_timesteps"] / cpu,
        "steps_per_wall_s": result["total_timesteps"] / wall,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass_args(Args, argv, __doc__.split("\n\n")[0])
    torch.set_num_threads(1)
    config = load_config(args.config)
    wanted = None if args.methods == "all" else {m.strip() for m in args.methods.split(",")}
    methods = [m for m in config.methods if wanted is None or m.label in wanted]
    if wanted is not None and len(methods) != len(wanted):
        raise ValueError(f"unknown method(s) {sorted(wanted - {m.label for m in methods})}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rove-sweep-cost-") as tmp:
        for env in config.envs:
            for method in methods:
                rows.append(timed_run(config, env, method, args.steps, Path(tmp) / f"{len(rows)}"))
                print(json.dumps(rows[-1]), flush=True)
    seeds = len(config.seeds)
    # CPU seconds per step of the whole sweep (every method x env x seed), then the budget that fits.
    cpu_per_step = sum(seeds / r["steps_per_cpu_s"] for r in rows)
    available = args.hours * 3600 * args.cores
    summary = {
        "runs": len(rows) * seeds,
        "cpu_s_per_budget_step": cpu_per_step,
        "config_budget": config.total_timesteps,
        "config_budget_wall_h": config.total_timesteps * cpu_per_step / args.cores / 3600,
        "largest_budget": int(available / cpu_per_step),
    }
    lines = [
        f"{args.steps} timed steps per run, 1 thread, CPU time",
        "",
        "| env | method | steps/CPU-s | steps/wall-s |",
        "| --- | --- | ---: | ---: |",
        *[f"| {r['env']} | {r['method']} | {r['steps_per_cpu_s']:.0f} | {r['steps_per_wall_s']:.0f} |" for r in rows],
        "",
        f"{summary['runs']} runs: {cpu_per_step:.4f} CPU-s per step of budget; the config's "
        f"{config.total_timesteps} steps take {summary['config_budget_wall_h']:.1f} h on {args.cores} cores; "
        f"{args.hours} h on {args.cores} cores fit {summary['largest_budget']} steps per run.",
    ]
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"args": dataclasses.asdict(args), "python": platform.python_version(), "torch": torch.__version__}
    out.write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=2) + "\n")
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
