"""What recording trajectories costs a run, and what the exploration metrics cost to compute.

In one single-threaded run, for each env: PPO trains ``steps`` env steps with and without
:class:`rove.agents.common.trajectories.TrajectoryRecorder` (same seed, so the same transitions), the two
interleaved over ``repeats`` repeats with the order alternating; each run's CPU time (``time.process_time``,
less sensitive to other jobs on the machine than wall time) gives its steps per CPU-second. The result is the
median ratio *with / without* of those rates, beside the recorder's own share of the recorded run's time
(its ``on_rollout_end`` timed inside the run). Then :func:`rove.experiments.exploration_metrics.compute_metrics`
is timed on the recorded rows and on a synthetic run of ``synthetic_rows`` rows.

Run: ``python experiments/bench_trajectories.py`` (``--quick`` for a smoke run). Prints a Markdown table and
writes JSON to ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rove.agents import PPO
from rove.agents.common.trajectories import DONE, ROW_DTYPE, START, TrajectoryRecorder, read_trajectories
from rove.experiments.args import parse_dataclass_args
from rove.experiments.exploration_metrics import compute_metrics


@dataclass
class Args:
    envs: str = field(
        default="Rove/MiniGrid-DoorKey-8x8-v0,Rove/CrafterReward-v1", metadata={"help": "comma-separated env ids"}
    )
    steps: int = field(default=8192, metadata={"help": "env steps per run"})
    repeats: int = field(default=3, metadata={"help": "interleaved repeats (with/without); medians are reported"})
    synthetic_rows: int = field(default=1_000_000, metadata={"help": "rows of the synthetic metrics timing"})
    seed: int = field(default=0, metadata={"help": "seed of every run"})
    quick: bool = field(default=False, metadata={"help": "smoke run: 1024 steps, 1 repeat, 10k synthetic rows"})
    out: str = field(default="runs/bench_trajectories.json", metadata={"help": "where the JSON results go"})


class TimedRecorder(TrajectoryRecorder):
    """The recorder, timing its own work (CPU seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def _on_rollout_end(self) -> None:
        start = time.process_time()
        super()._on_rollout_end()
        self.seconds += time.process_time() - start


def one_run(env_id: str, steps: int, seed: int, record: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        model = PPO(
            "auto", env_id, seed=seed, device="cpu", run_dir=folder, n_envs=8, n_steps=128, batch_size=256, verbose=0
        )
        recorder = TimedRecorder() if record else None
        start = time.process_time()
        model.learn(steps, callback=recorder)
        seconds = time.process_time() - start
        out: dict[str, Any] = {"steps": model.num_timesteps, "cpu_s": seconds, "sps": model.num_timesteps / seconds}
        if recorder is not None:
            rows = read_trajectories(folder)
            start = time.process_time()
            compute_metrics(rows, int(model.action_space.n))
            out.update(
                recorder_s=recorder.seconds,
                rows=len(rows),
                file_bytes=len(rows) * ROW_DTYPE.itemsize,
                metrics_s=time.process_time() - start,
            )
        model.close()
        return out


def synthetic_rows(n: int, seed: int) -> np.ndarray:
    """A run of ``n`` transitions of 8 envs over 5,000 states, 17 actions, episodes of ~200 steps."""
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, dtype=ROW_DTYPE)
    rows["step"] = np.arange(1, n + 1)
    rows["env"] = np.arange(n) % 8
    rows["state"] = rng.integers(0, 5000, n)
    rows["action"] = rng.integers(0, 17, n)
    rows["next_state"] = (rows["state"] + rows["action"] * 7 + rng.integers(0, 2, n)) % 5000
    ends = rng.random(n) < 1 / 200
    starts = np.r_[np.ones(8, dtype=bool), ends[:-8]]  # an env's first row, and its row after an episode's end
    rows["flags"] = (ends * DONE | starts * START).astype(np.uint8)
    return rows


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    if args.quick:
        args.steps, args.repeats, args.synthetic_rows = 1024, 1, 10_000
    results: dict[str, Any] = {"args": asdict(args), "envs": {}}
    for env_id in [e for e in args.envs.split(",") if e]:
        runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
        for i in range(args.repeats):
            for record in (False, True) if i % 2 == 0 else (True, False):
                runs["with" if record else "without"].append(one_run(env_id, args.steps, args.seed, record))
        ratio = statistics.median(w["sps"] for w in runs["with"]) / statistics.median(w["sps"] for w in runs["without"])
        share = statistics.median(w["recorder_s"] / w["cpu_s"] for w in runs["with"])
        per_row = statistics.median(w["metrics_s"] / w["rows"] for w in runs["with"])
        results["envs"][env_id] = {"runs": runs, "ratio": ratio, "recorder_share": share, "metrics_s_per_row": per_row}
    rows = synthetic_rows(args.synthetic_rows, args.seed)
    start = time.process_time()
    compute_metrics(rows, 17)
    results["synthetic"] = {"rows": len(rows), "metrics_s": time.process_time() - start}

    print("| env | steps/CPU-s without | with recorder | ratio | recorder's share of the run | metrics per 100k rows |")
    print("|---|---:|---:|---:|---:|---:|")
    for env_id, r in results["envs"].items():
        without = statistics.median(w["sps"] for w in r["runs"]["without"])
        with_ = statistics.median(w["sps"] for w in r["runs"]["with"])
        print(
            f"| {env_id} | {without:.0f} | {with_:.0f} | {r['ratio']:.3f} | {100 * r['recorder_share']:.2f} % |"
            f" {1e5 * r['metrics_s_per_row']:.2f} s |"
        )
    print(f"synthetic: compute_metrics on {len(rows):,} rows in {results['synthetic']['metrics_s']:.1f} CPU-s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(parse_dataclass_args(Args, None, (__doc__ or "").split("\n\n")[0]))
