"""Cost of every intrinsic module relative to the env steps it rewards, and numba counting vs a Python dict.

Per suite (MiniGrid DoorKey-8x8 and NetHackScore), in one single-threaded run:

1. For every registered module that supports the observation space (``rove.intrinsic.names()``,
   ``get(name).supports(space)``): collect a rollout of ``num_steps`` x ``num_envs`` real observations with
   random actions through ``rove.make_vec`` (NEXT_STEP autoreset; ``infos["autoreset"]`` marks the invalid
   steps), timing the env steps; then time what an agent does with the module on that rollout: ``observe``
   on each step (only for modules with episodic memory, ``module.observes_steps``, as the agents do) +
   ``compute`` + ``update``.
2. Repeat, rotating the modules' order, and report the median of ``module time / env-step time`` for the same
   transitions: that ratio is the result (absolute numbers depend on the machine and its load). Modules that
   fail to import or build are reported, not fatal.

Targets (issue 3): counts and SimHash <= 0.05x on MiniGrid and <= 0.10x on NetHack; RND, ICM and
disagreement <= 0.5x on CPU; numba counting >= 20x a Python dict.

Run: ``python experiments/bench_intrinsic.py`` (``--quick`` for a smoke run). Prints a Markdown table and
writes JSON to ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import rove
from rove import intrinsic
from rove.experiments.args import parse_dataclass_args
from rove.intrinsic import Rollout
from rove.intrinsic.kernels import CountTable
from rove.obs import obs_flatten, to_tensor


@dataclass
class Args:
    suites: str = field(default="minigrid,nethack", metadata={"help": "comma-separated suites: minigrid, nethack"})
    modules: str = field(default="all", metadata={"help": "comma-separated module names, or 'all' registered ones"})
    num_envs: int = field(default=8, metadata={"help": "envs in the vector env"})
    num_steps: int = field(default=128, metadata={"help": "steps per rollout (each is num_envs transitions)"})
    repeats: int = field(default=5, metadata={"help": "interleaved repeats; medians are reported"})
    count_keys: int = field(default=2_000_000, metadata={"help": "keys counted in the numba-vs-dict comparison"})
    device: str = field(default="cpu", metadata={"help": "device of the modules"})
    seed: int = field(default=0, metadata={"help": "seed of envs, actions and modules"})
    quick: bool = field(default=False, metadata={"help": "smoke run: 4 envs x 32 steps, 2 repeats, 100k keys"})
    out: str = field(default="runs/bench_intrinsic.json", metadata={"help": "where the JSON results are written"})


def parse_args(argv: Sequence[str] | None = None) -> Args:
    args = parse_dataclass_args(Args, argv, __doc__.split("\n\n")[0])
    if args.quick:
        args = dataclasses.replace(args, num_envs=4, num_steps=32, repeats=2, count_keys=100_000)
    return args


SUITES = {
    "minigrid": ("Rove/MiniGrid-DoorKey-8x8-v0", ("image", "direction", "state_key")),
    "nethack": ("Rove/NetHackScore-v0", ("glyphs", "blstats", "message", "state_key")),
}
# Modules that need options to be built at all: fusion measures E3B's NetHack recipe pairing (counts + RND).
MODULE_KWARGS: dict[str, dict[str, Any]] = {"fusion": {"modules": ["count", "rnd"]}}
# name -> {suite: target ratio}
TARGETS = {
    "count": {"minigrid": 0.05, "nethack": 0.10},
    "simhash": {"minigrid": 0.05, "nethack": 0.10},
    "rnd": {"minigrid": 0.5, "nethack": 0.5},
    "icm": {"minigrid": 0.5, "nethack": 0.5},
    "disagreement": {"minigrid": 0.5, "nethack": 0.5},
}


class Collector:
    """Steps a Rove vector env with random actions and returns rollouts ``[T, E]`` plus the time spent stepping."""

    def __init__(self, env_id: str, keys: tuple[str, ...], num_envs: int, seed: int) -> None:
        self.envs = rove.make_vec(env_id, num_envs, seed=seed, observation_keys=keys)
        self.envs.action_space.seed(seed)
        self.obs, _ = self.envs.reset(seed=seed)
        self.space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space

    def collect(self, num_steps: int) -> tuple[Rollout, float]:
        actions = np.stack([self.envs.action_space.sample() for _ in range(num_steps)])
        observations, dones, valid = [self.obs], [], []
        start = time.perf_counter()
        for t in range(num_steps):
            self.obs, _, terminated, truncated, infos = self.envs.step(actions[t])
            observations.append(self.obs)
            dones.append(terminated | truncated)
            valid.append(~np.asarray(infos["autoreset"]))
        elapsed = time.perf_counter() - start
        stacked = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
        obs = to_tensor(stacked)
        rollout = Rollout(
            {k: v[:-1] for k, v in obs.items()},
            torch.as_tensor(actions),
            {k: v[1:] for k, v in obs.items()},
            torch.zeros(num_steps, len(valid[0])),
            torch.as_tensor(np.stack(dones)),
            torch.as_tensor(np.stack(valid)),
        )
        return rollout, elapsed

    def close(self) -> None:
        self.envs.close()


def run_module(module: intrinsic.IntrinsicModule, rollout: Rollout) -> float:
    """Seconds for what an agent does with a module per rollout: observe every step, compute, update."""
    start = time.perf_counter()
    if module.observes_steps:  # as the agents do: modules without episodic memory are not shown each step
        for t in range(rollout.num_steps):
            module.observe(rollout.step(t))
    module.compute(rollout)
    module.update(rollout)
    return time.perf_counter() - start


def build_modules(names: list[str], collector: Collector, args: Args, first: Rollout) -> tuple[dict, dict]:
    """Builds, warms up and runs once (JIT, lazy buffers) each module; returns (modules, failures)."""
    modules, failures = {}, {}
    for name in names:
        try:
            cls = intrinsic.get(name)
        except Exception as err:  # a module whose optional dependency is missing must not stop the others
            failures[name] = f"import failed: {type(err).__name__}: {err}"
            continue
        if not cls.supports(collector.space):
            failures[name] = "does not support this observation space"
            continue
        try:
            kwargs = {"seed": args.seed, "device": args.device, **MODULE_KWARGS.get(name, {})}
            module = intrinsic.make(name, collector.space, collector.action_space, **kwargs)
            module.warm_up(obs_flatten(first.obs))
            run_module(module, first)
        except Exception as err:
            failures[name] = f"failed: {type(err).__name__}: {err}"
            continue
        modules[name] = module
    return modules, failures


def bench_suite(suite: str, names: list[str], args: Args) -> dict[str, Any]:
    env_id, keys = SUITES[suite]
    collector = Collector(env_id, keys, args.num_envs, args.seed)
    try:
        first, _ = collector.collect(args.num_steps)
        modules, failures = build_modules(names, collector, args, first)
        env_times: list[float] = []
        ratios: dict[str, list[float]] = {name: [] for name in modules}
        seconds: dict[str, list[float]] = {name: [] for name in modules}
        names_in_order = list(modules)
        for repeat in range(args.repeats):
            # Each module runs right after the env steps of its own rollout, as in an agent (the first code to
            # touch a fresh rollout pays for cold caches: up to 10% of a module's time), and the order rotates
            # so that a drift in machine load hits every module alike.
            shift = repeat % max(1, len(names_in_order))
            for name in names_in_order[shift:] + names_in_order[:shift]:
                rollout, env_time = collector.collect(args.num_steps)
                env_times.append(env_time)
                elapsed = run_module(modules[name], rollout)
                seconds[name].append(elapsed)
                ratios[name].append(elapsed / env_time)
    finally:
        collector.close()
    transitions = args.num_envs * args.num_steps
    rows = []
    for name in modules:
        target = TARGETS.get(name, {}).get(suite)
        ratio = statistics.median(ratios[name])
        rows.append(
            {
                "module": name,
                "ratio": ratio,
                "seconds": statistics.median(seconds[name]),
                "transitions_per_s": transitions / statistics.median(seconds[name]),
                "target": target,
                "meets_target": None if target is None else ratio <= target,
            }
        )
    return {
        "env_id": env_id,
        "observation_keys": list(keys),
        "transitions": transitions,
        "env_seconds": statistics.median(env_times),
        "env_steps_per_s": transitions / statistics.median(env_times),
        "rows": rows,
        "failures": failures,
    }


def dict_count(keys: list[int]) -> list[int]:
    """The baseline: a Python dict counting keys in order, returning each key's count at its visit."""
    table: dict[int, int] = {}
    out = [0] * len(keys)
    for i, key in enumerate(keys):
        count = table.get(key, 0) + 1
        table[key] = count
        out[i] = count
    return out


def bench_counting(args: Args) -> dict[str, Any]:
    """numba open-addressing table vs a Python dict on the same keys (50k distinct, skewed like visits)."""
    rng = np.random.default_rng(args.seed)
    pool = rng.integers(-(2**62), 2**62, size=50_000)
    keys = pool[np.minimum(rng.zipf(1.3, size=args.count_keys) - 1, len(pool) - 1)]
    as_list = keys.tolist()
    CountTable().increment(keys)  # compile every path (growth included) outside the timing
    numba_times, dict_times = [], []
    for _ in range(max(args.repeats, 5)):
        start = time.perf_counter()
        numba_counts = CountTable().increment(keys)
        numba_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        dict_counts = dict_count(as_list)
        dict_times.append(time.perf_counter() - start)
    if not np.array_equal(numba_counts, np.asarray(dict_counts)):
        raise AssertionError("numba and dict counts disagree")
    numba_s, dict_s = statistics.median(numba_times), statistics.median(dict_times)
    return {
        "keys": args.count_keys,
        "numba_keys_per_s": args.count_keys / numba_s,
        "dict_keys_per_s": args.count_keys / dict_s,
        "speedup": dict_s / numba_s,
        "target": 20.0,
        "meets_target": dict_s / numba_s >= 20.0,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for suite, res in results["suites"].items():
        lines += [
            f"### {suite}: {res['env_id']}, {res['transitions']} transitions per rollout, "
            f"env {res['env_steps_per_s']:.0f} steps/s",
            "",
            "| module | (observe+compute+update) / env time | target | transitions/s |",
            "|---|---|---|---|",
        ]
        for row in sorted(res["rows"], key=lambda r: r["ratio"]):
            target = (
                ""
                if row["target"] is None
                else f"<= {row['target']:.2f}x " + ("ok" if row["meets_target"] else "MISSED")
            )
            lines.append(f"| {row['module']} | {row['ratio']:.3f}x | {target} | {row['transitions_per_s']:.0f} |")
        for name, why in res["failures"].items():
            lines.append(f"| {name} | - | {why} | |")
        lines.append("")
    c = results["counting"]
    lines += [
        "### counting: numba table vs Python dict",
        "",
        "| keys | numba keys/s | dict keys/s | speedup | target |",
        "|---|---|---|---|---|",
        f"| {c['keys']} | {c['numba_keys_per_s']:.3g} | {c['dict_keys_per_s']:.3g} | {c['speedup']:.1f}x | "
        f">= 20x {'ok' if c['meets_target'] else 'MISSED'} |",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    names = intrinsic.names() if args.modules == "all" else [n.strip() for n in args.modules.split(",") if n.strip()]
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise SystemExit(f"unknown suite(s) {unknown}; choose from {sorted(SUITES)}")
    results: dict[str, Any] = {
        "args": dataclasses.asdict(args),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "suites": {suite: bench_suite(suite, names, args) for suite in suites},
        "counting": bench_counting(args),
    }
    print(markdown(results))
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
