"""Env throughput: Rove's wrapped envs vs the raw envs, and Rove's vector env vs Gymnasium's ``SyncVectorEnv``.

Per suite, in one run, with interleaved repeats and medians. Each repeat resets every contender with the same seed
and splits the action sequence into ``--slices`` slices; slice by slice every contender steps through it, in an order
that rotates, so that a change of machine load hits all contenders alike. In-process contenders are timed in CPU
time of this process (``time.process_time()``: far less sensitive to other processes than wall time); rows with a
subprocess contender compare wall time on both sides.

(a) **wrapper**: the raw env vs ``gym.make("Rove/...")`` with the same observation keys, the same seeds and
    the same pre-generated random actions; episodes that end are reset inside the timed loop on both sides.
(b) **vector**: ``gymnasium.vector.SyncVectorEnv`` vs :class:`rove.envs.vector.RoveVectorEnv` (sync mode),
    both holding Rove envs (same id, keys, seeds and actions, ``copy=True`` on both sides; see below).

What is compared, exactly:

- NetHack: nle's ``gym.make("NetHackScore-v0", observation_keys=("glyphs", "blstats", "message"))`` vs
  ``Rove/NetHackScore-v0`` with the same three keys (no ``caption``/``state_key`` observation keys; the Rove
  env still writes ``info["caption"]`` and the episode statistics, which is part of what it costs).
- MiniGrid: ``gym.make("MiniGrid-DoorKey-8x8-v0")`` (``image``, ``direction``, ``mission`` as text) vs
  ``Rove/MiniGrid-DoorKey-8x8-v0`` with ``image``, ``direction``, ``mission`` (as bytes) and its caption info.
- Crafter: ``crafter.Env()`` stepped directly (old gym API, ``image`` only) vs ``Rove/CrafterReward-v1`` with
  ``image``. The same seed gives the same worlds on both sides; trajectories part after a few dozen steps (crafter's
  renderer draws its dusk/night noise from the world's RNG, Rove's adapter renders without touching it), so the number
  of episodes, and of world generations (each ~0.2 s), can differ slightly (the JSON records both counts), so the
  Crafter wrapper row times the steps only, resets left out on both sides.
- The vector rows also time a plain Python loop over the same envs through their ``step`` (no batching, nothing
  copied): the ceiling for a sync vector env that steps its envs through the Gymnasium API. RoveVectorEnv can pass
  it: Rove's NetHack envs write their observations straight into its batch arrays (``rove.envs.core.BufferedEnv``). ``vector x8`` puts the envs as users write them in each
  (``gym.make(id, observation_keys=...)`` in SyncVectorEnv, ``make_vec(id, 8, observation_keys=...)``, which
  builds NetHack envs with ``copy_obs=False`` since it copies into its buffers anyway); ``vector x8, same
  envs`` gives SyncVectorEnv exactly the envs make_vec builds. On NetHack, ``vector x8 vs SyncVectorEnv of nle``
  (no target) compares with what a user who does not use Rove writes: ``SyncVectorEnv`` over nle's own
  ``gym.make("NetHackScore-v0", observation_keys=...)`` (no caption info, state key or episode statistics).

(c) **text view**: the Rove env with its keys vs the same env with the ``text`` key added (issue 15): the ratio
    is the share of throughput kept when the text view is computed on every step (1/ratio - 1 is its cost
    relative to the rest of the step). No target.

MiniHack (``--suites minihack``, not in the default list): minihack's ``gym.make("MiniHack-MultiRoom-N4-v0",
observation_keys=("glyphs", "blstats", "message"))`` vs ``Rove/MiniHack-MultiRoom-N4-v0`` with the same keys.

Targets (issue 2): wrapper/raw >= 0.90 on NetHack and >= 0.95 on MiniGrid and Crafter; Rove's vector env >=
1.5x ``SyncVectorEnv`` on NetHack. Absolute numbers depend on the machine and its load; the ratios are the
result. Prints a Markdown table and writes it as JSON to ``--out``.

Run: ``python experiments/bench_envs.py`` (``--quick`` for a smoke run, ``--suites nethack`` for one suite).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

import rove
from rove.envs.vector import make_vec
from rove.experiments.args import parse_dataclass_args


@dataclass
class Args:
    suites: str = field(
        default="nethack,minigrid,crafter",
        metadata={"help": "comma-separated suites: nethack, minihack, minigrid, crafter"},
    )
    repeats: int = field(default=5, metadata={"help": "interleaved repeats per comparison; medians are reported"})
    slices: int = field(
        default=4, metadata={"help": "each repeat is timed in this many slices, interleaved across the contenders"}
    )
    scale: float = field(default=1.0, metadata={"help": "multiplies every suite's default number of timed steps"})
    num_envs: int = field(default=8, metadata={"help": "envs in each vector env"})
    seed: int = field(default=0, metadata={"help": "seed of the action sequences and of the envs"})
    quick: bool = field(default=False, metadata={"help": "smoke run: a few hundred steps per measurement, 2 repeats"})
    out: str = field(default="runs/bench_envs.json", metadata={"help": "where the JSON table is written"})


def parse_args(argv: Sequence[str] | None = None) -> Args:
    return parse_dataclass_args(Args, argv, __doc__.split("\n\n")[0])


# ----------------------------------------------------------------------------------------------- suites
@dataclass(frozen=True)
class Suite:
    name: str
    raw_name: str
    rove_id: str
    keys: tuple[str, ...]
    num_actions: int
    steps: int  # timed single-env steps per measurement (before --scale)
    vec_steps: int  # timed vector steps per measurement (each is num_envs env steps)
    wrapper_target: float
    vector_target: float | None
    make_raw: Callable[[], Any]
    old_api: bool = False  # crafter.Env: reset() -> obs, step() -> (obs, reward, done, info)
    raw_vector: bool = False  # also time SyncVectorEnv over the raw envs (they are Gymnasium envs with Box spaces)
    # Whether the wrapper rows count the resets of finished episodes in the timed time. Crafter's world generation
    # costs 60-100 steps' worth and happens a different number of times on each side once trajectories part
    # (see above), so its wrapper rows time the steps only.
    time_resets: bool = True


def _raw_nethack() -> gym.Env:
    import nle  # noqa: F401  (registers NetHackScore-v0)

    return gym.make("NetHackScore-v0", observation_keys=("glyphs", "blstats", "message"))


def _raw_minigrid() -> gym.Env:
    import minigrid  # noqa: F401  (registers its ids)

    return gym.make("MiniGrid-DoorKey-8x8-v0")


def _raw_minihack() -> gym.Env:
    import minihack  # noqa: F401  (registers its ids)

    return gym.make("MiniHack-MultiRoom-N4-v0", observation_keys=("glyphs", "blstats", "message"))


def _raw_crafter() -> Any:
    import crafter

    return crafter.Env()


SUITES = {
    "nethack": Suite(
        "nethack",
        "nle NetHackScore-v0",
        "Rove/NetHackScore-v0",
        ("glyphs", "blstats", "message"),
        23,
        5000,
        600,
        0.90,
        1.5,
        _raw_nethack,
        raw_vector=True,
    ),
    "minihack": Suite(
        "minihack",
        "minihack MiniHack-MultiRoom-N4-v0",
        "Rove/MiniHack-MultiRoom-N4-v0",
        ("glyphs", "blstats", "message"),
        8,
        3000,
        200,
        0.90,
        None,
        _raw_minihack,
    ),
    "minigrid": Suite(
        "minigrid",
        "MiniGrid-DoorKey-8x8-v0",
        "Rove/MiniGrid-DoorKey-8x8-v0",
        ("image", "direction", "mission"),
        7,
        4000,
        400,
        0.95,
        None,
        _raw_minigrid,
    ),
    "crafter": Suite(
        "crafter",
        "crafter.Env (old gym API)",
        "Rove/CrafterReward-v1",
        ("image",),
        17,
        1000,
        100,
        0.95,
        None,
        _raw_crafter,
        old_api=True,
        time_resets=False,
    ),
}


# ----------------------------------------------------------------------------------------------- timing loops
# (wall seconds, CPU seconds of this process, episodes ended) of one timed slice.
Timing = tuple[float, float, int]


def _seed_single(env: Any, seed: int, old_api: bool) -> None:
    if old_api:  # crafter: the world of episode k comes from hash((seed, k)), as in Rove's adapter
        env._seed, env._episode = seed, 0
        env.reset()
    else:
        env.reset(seed=seed)


def _time_single(env: Any, actions: np.ndarray, old_api: bool, time_resets: bool = True) -> Timing:
    """Steps ``env`` through ``actions`` (resetting finished episodes; their time left out unless ``time_resets``)."""
    episodes = 0
    step = env.step
    reset_wall = reset_cpu = 0.0

    def reset() -> None:
        nonlocal reset_wall, reset_cpu
        if time_resets:
            env.reset()
            return
        wall, cpu = time.perf_counter(), time.process_time()
        env.reset()
        reset_wall += time.perf_counter() - wall
        reset_cpu += time.process_time() - cpu

    start, start_cpu = time.perf_counter(), time.process_time()
    if old_api:
        for action in actions.tolist():
            _, _, done, _ = step(action)
            if done:
                episodes += 1
                reset()
    else:
        for action in actions.tolist():
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                episodes += 1
                reset()
    return time.perf_counter() - start - reset_wall, time.process_time() - start_cpu - reset_cpu, episodes


def _time_vector(envs: Any, actions: np.ndarray) -> Timing:
    episodes = 0
    step = envs.step
    start, start_cpu = time.perf_counter(), time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = step(action)
        episodes += int(np.count_nonzero(terminated | truncated))
    return time.perf_counter() - start, time.process_time() - start_cpu, episodes


class PlainLoop:
    """The same envs stepped through ``step`` in a Python loop, nothing batched or copied.

    Finished episodes are reset at once (not NEXT_STEP), so it does slightly less work than a vector env.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
        self.envs = [fn() for fn in env_fns]

    def reset(self, seed: int) -> None:
        for i, env in enumerate(self.envs):
            env.reset(seed=seed + i)

    def step(self, actions: np.ndarray) -> tuple[None, None, np.ndarray, np.ndarray, None]:
        ended = 0
        for env, action in zip(self.envs, actions.tolist(), strict=True):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                ended += 1
                env.reset()
        return None, None, np.arange(len(self.envs)) < ended, np.zeros(len(self.envs), bool), None

    def close(self) -> None:
        for env in self.envs:
            env.close()


def measure(
    factories: dict[str, Callable[[], Any]],
    reset: Callable[[Any, int], None],
    run: Callable[[Any, np.ndarray], Timing],
    actions: np.ndarray,
    repeats: int,
    slices: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Interleaved repeats: per repeat every contender is reset with the same seed, then steps slice by slice.

    The contenders take turns on each slice of ``actions`` (the order rotates with the repeat and the slice), so
    their timings share the machine's load. Returns, per contender and repeat, steps/s by wall and by CPU time.
    """
    contenders = {name: make() for name, make in factories.items()}
    names = list(contenders)
    results: dict[str, dict[str, Any]] = {name: {"sps_wall": [], "sps_cpu": [], "episodes": 0} for name in names}
    chunks = np.array_split(actions, max(1, min(slices, len(actions))))
    try:
        for r in range(repeats):
            for name in names:
                reset(contenders[name], seed + r)
            wall = dict.fromkeys(names, 0.0)
            cpu = dict.fromkeys(names, 0.0)
            for s, chunk in enumerate(chunks):
                k = (r + s) % len(names)
                for name in names[k:] + names[:k]:
                    seconds, cpu_seconds, ended = run(contenders[name], chunk)
                    wall[name] += seconds
                    cpu[name] += cpu_seconds
                    results[name]["episodes"] += ended
            for name in names:
                results[name]["sps_wall"].append(actions.size / wall[name])
                results[name]["sps_cpu"].append(actions.size / max(cpu[name], 1e-9))
    finally:
        for env in contenders.values():
            if hasattr(env, "close"):  # crafter.Env has no close()
                env.close()
    return results


def _row(
    results: dict[str, dict[str, Any]], base_key: str, rove_key: str, clock: str = "cpu", **fields: Any
) -> dict[str, Any]:
    """A table row: medians of steps/s and the median of the per-repeat (paired) ratios rove/baseline.

    ``clock`` is ``"cpu"`` (this process's CPU time: both contenders run here) or ``"wall"`` (a contender
    runs in subprocesses).
    """
    base, ours = results[base_key][f"sps_{clock}"], results[rove_key][f"sps_{clock}"]
    ratios = [b / a for a, b in zip(base, ours, strict=True)]
    return {
        **fields,
        "clock": clock,
        "baseline_sps": statistics.median(base),
        "rove_sps": statistics.median(ours),
        "ratio": statistics.median(ratios),
        "samples": {"baseline_sps": base, "rove_sps": ours, "ratio": ratios},
        "episodes": {"baseline": results[base_key]["episodes"], "rove": results[rove_key]["episodes"]},
    }


def bench_wrapper(suite: Suite, args: Args, steps: int, repeats: int) -> list[dict[str, Any]]:
    actions = np.random.default_rng(args.seed).integers(0, suite.num_actions, size=steps)

    def make_rove() -> gym.Env:
        return gym.make(suite.rove_id, observation_keys=suite.keys)

    def reset(env: Any, seed: int) -> None:
        _seed_single(env, seed, suite.old_api and not isinstance(env, gym.Env))

    def run(env: Any, chunk: np.ndarray) -> Timing:
        return _time_single(env, chunk, suite.old_api and not isinstance(env, gym.Env), suite.time_resets)

    results = measure({"raw": suite.make_raw, "rove": make_rove}, reset, run, actions, repeats, args.slices, args.seed)
    row = _row(results, "raw", "rove", comparison="wrapper", baseline=suite.raw_name, rove=suite.rove_id)
    return [{**row, "target": suite.wrapper_target}]


def bench_vector(suite: Suite, args: Args, vec_steps: int, repeats: int) -> list[dict[str, Any]]:
    """SyncVectorEnv vs RoveVectorEnv as users write them, with identical envs, and vs a plain loop (ceiling)."""
    n = args.num_envs
    actions = np.random.default_rng(args.seed + 1).integers(0, suite.num_actions, size=(vec_steps, n))
    default_fn = partial(gym.make, suite.rove_id, observation_keys=suite.keys)
    rove_vec = partial(make_vec, suite.rove_id, n, mode="sync", copy=True, observation_keys=suite.keys)
    factories: dict[str, Callable[[], Any]] = {
        "sync": lambda: gym.vector.SyncVectorEnv([default_fn] * n, copy=True),
        "rove": rove_vec,
    }
    # make_vec builds the envs with the kwargs it chose (copy_obs=False where supported): the same envs again.
    probe = rove_vec()
    same_kwargs = dict(probe.envs[0].spec.kwargs) if probe.envs[0].spec is not None else {}
    probe.close()
    registered = gym.spec(suite.rove_id).kwargs
    same_fn = partial(gym.make, suite.rove_id, **{k: v for k, v in same_kwargs.items() if k not in registered})
    identical = "copy_obs" in same_kwargs
    if identical:
        factories["sync_same"] = lambda: gym.vector.SyncVectorEnv([same_fn] * n, copy=True)
    factories["loop"] = lambda: PlainLoop([same_fn] * n)
    if suite.raw_vector:
        factories["sync_raw"] = lambda: gym.vector.SyncVectorEnv([suite.make_raw] * n, copy=True)
    # Parallel modes: Rove's workers each run a slice of the envs and write into shared memory; Gymnasium's
    # AsyncVectorEnv runs one process per env and sends infos through pipes.
    workers = min(n, os.cpu_count() or 1)
    factories["rove_subprocess"] = partial(
        make_vec, suite.rove_id, n, mode="subprocess", num_workers=workers, copy=True, observation_keys=suite.keys
    )
    # The same with the main process stepping the first slice itself (step_in_main): one worker fewer, no idle
    # core while the main process waits.
    factories["rove_in_main"] = partial(
        make_vec,
        suite.rove_id,
        n,
        mode="subprocess",
        num_workers=workers - 1,
        step_in_main=True,
        copy=True,
        observation_keys=suite.keys,
    )
    factories["async"] = lambda: gym.vector.AsyncVectorEnv([default_fn] * n, shared_memory=True, copy=True)

    def reset(envs: Any, seed: int) -> None:
        envs.reset(seed=seed)

    results = measure(factories, reset, _time_vector, actions, repeats, args.slices, args.seed)
    label = f"vector x{n}"
    rove_name = f"RoveVectorEnv(sync) of {suite.rove_id}"
    rows = [
        _row(
            results,
            "sync",
            "rove",
            comparison=label,
            baseline=f"SyncVectorEnv of gym.make({suite.rove_id!r}, observation_keys=...)",
            rove=f"{rove_name} via make_vec",
            target=suite.vector_target,
        )
    ]
    if identical:
        rows.append(
            _row(
                results,
                "sync_same",
                "rove",
                comparison=f"{label}, same envs",
                baseline=f"SyncVectorEnv of the envs make_vec builds ({same_kwargs.get('copy_obs')=})",
                rove=rove_name,
                target=suite.vector_target,
            )
        )
    rows.append(
        _row(
            results,
            "loop",
            "rove",
            comparison=f"{label} vs plain loop",
            baseline="plain Python loop over the same envs' step (no batching)",
            rove=rove_name,
            target=None,
        )
    )
    if suite.raw_vector:
        rows.append(
            _row(
                results,
                "sync_raw",
                "rove",
                comparison=f"{label} vs SyncVectorEnv of {suite.name}'s own envs",
                baseline=f"SyncVectorEnv of {suite.raw_name} (no Rove: no caption, state key or episode stats)",
                rove=f"{rove_name} via make_vec",
                target=None,
            )
        )
    subprocess_name = f"RoveVectorEnv(subprocess, {workers} workers) of {suite.rove_id}"
    rows.append(
        _row(
            results,
            "sync",
            "rove_subprocess",
            comparison=f"{label} subprocess vs SyncVectorEnv",
            baseline=f"SyncVectorEnv of gym.make({suite.rove_id!r}, observation_keys=...)",
            rove=subprocess_name,
            target=suite.vector_target,
            clock="wall",
        )
    )
    rows.append(
        _row(
            results,
            "sync",
            "rove_in_main",
            comparison=f"{label} subprocess, main steps a slice, vs SyncVectorEnv",
            baseline=f"SyncVectorEnv of gym.make({suite.rove_id!r}, observation_keys=...)",
            rove=f"RoveVectorEnv(subprocess, {workers - 1} workers + the main process) of {suite.rove_id}",
            target=suite.vector_target,
            clock="wall",
        )
    )
    rows.append(
        _row(
            results,
            "async",
            "rove_subprocess",
            comparison=f"{label} subprocess vs AsyncVectorEnv",
            baseline=f"AsyncVectorEnv(shared_memory=True) of gym.make({suite.rove_id!r}, observation_keys=...)",
            rove=subprocess_name,
            target=None,
            clock="wall",
        )
    )
    return rows


# ----------------------------------------------------------------------------------------------- report
def _passed(ratio: float | None, target: float | None) -> bool | None:
    if ratio is None:
        return False
    return None if target is None else bool(ratio >= target)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| suite | comparison | baseline sps | rove sps | ratio | target | pass | clock |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['suite']} | {row['comparison']} | - | - | - | - | error: {row['error']} | - |")
            continue
        target = "-" if row["target"] is None else f">= {row['target']:.2f}"
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[row["passed"]]
        lines.append(
            f"| {row['suite']} | {row['comparison']} | {row['baseline_sps']:,.0f} | {row['rove_sps']:,.0f} "
            f"| {row['ratio']:.2f} | {target} | {verdict} | {row['clock']} |"
        )
    return "\n".join(lines)


def bench_text(suite: Suite, args: Args, steps: int, repeats: int) -> list[dict[str, Any]]:
    """The Rove env with and without the ``text`` observation key (same seeds and actions)."""
    actions = np.random.default_rng(args.seed).integers(0, suite.num_actions, size=steps)

    def reset(env: Any, seed: int) -> None:
        _seed_single(env, seed, False)

    def run(env: Any, chunk: np.ndarray) -> Timing:
        return _time_single(env, chunk, False, suite.time_resets)

    factories = {
        "plain": partial(gym.make, suite.rove_id, observation_keys=suite.keys),
        "text": partial(gym.make, suite.rove_id, observation_keys=(*suite.keys, "text")),
    }
    results = measure(factories, reset, run, actions, repeats, args.slices, args.seed)
    row = _row(results, "plain", "text", comparison="text view", baseline=suite.rove_id, rove=f"{suite.rove_id} + text")
    return [row]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    names = [name.strip() for name in args.suites.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUITES]
    if unknown or not names:
        raise SystemExit(f"unknown suite(s) {unknown or names}; choose from {sorted(SUITES)}")
    repeats = 2 if args.quick else args.repeats
    rows: list[dict[str, Any]] = []
    for name in names:
        suite = SUITES[name]
        steps = 200 if args.quick else max(1, round(suite.steps * args.scale))
        vec_steps = 25 if args.quick else max(1, round(suite.vec_steps * args.scale))
        for bench, n, label in (
            (bench_wrapper, steps, "wrapper"),
            (bench_vector, vec_steps, f"vector x{args.num_envs}"),
            (bench_text, steps, "text view"),
        ):
            print(f"[bench_envs] {name}: {label} ...", file=sys.stderr, flush=True)
            try:
                new_rows = bench(suite, args, n, repeats)
            except Exception as exc:  # a broken suite must not hide the other suites' numbers
                traceback.print_exc()
                new_rows = [{"comparison": label, "error": f"{type(exc).__name__}: {exc}", "ratio": None}]
            for row in new_rows:
                row.setdefault("target", None)
                row["passed"] = _passed(row["ratio"], row["target"])
                rows.append({"suite": name, "keys": list(suite.keys), **row})
    table = markdown_table(rows)
    print(table)
    report = {
        "args": dataclasses.asdict(args),
        "repeats": repeats,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "rove": rove.__version__},
        "rows": rows,
        "table": table,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"[bench_envs] wrote {args.out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
