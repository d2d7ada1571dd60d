"""Training throughput of ``rove.agents.PPO`` vs Stable-Baselines3's PPO, side by side in one run.

Same env, same hyperparameters, single-threaded CPU. Rows:

1. ``CartPole-v1``: Rove PPO on ``gymnasium.make_vec`` vs SB3 ``MlpPolicy`` on ``DummyVecEnv``.
2. ``Rove/MiniGrid-DoorKey-8x8-v0`` (keys ``image``, ``direction``): Rove PPO (auto policy = Rove's MiniGrid
   encoder) on ``rove.make_vec`` vs SB3 ``MultiInputPolicy`` with the same encoder
   (``rove.agents.sb3.rove_policy_kwargs``) on ``DummyVecEnv``.
3. The same MiniGrid env with RND: Rove PPO ``intrinsic="rnd"`` vs SB3 PPO + Rove's RND through
   ``rove.agents.sb3.IntrinsicRewardCallback``.
4. ``minigrid_late`` (opt-in, ``--rows minigrid_late``): row 2 timed after both agents trained for
   ``--late-warmup`` steps. By then Adam's moments of units the loss no longer reaches have decayed to
   subnormal floats, which x86 computes with in microcode; Rove's ``learn`` flushes them to zero
   (``flush_denormals=True``), SB3 does not.

Each row runs under every hyperparameter preset in ``--presets`` (see ``PRESETS``): ``zoo`` is the rollout
and minibatch layout of RL Baselines3 Zoo's tuned PPO config for MiniGrid (what an SB3 user runs on these
envs), ``cleanrl`` CleanRL's Atari-style layout (fewer, larger minibatches, so the shared network's cost
weighs more and library overhead less).

Each agent is built once and warmed up; then the timed ``learn`` calls of both agents are interleaved
``repeats`` times. Reported: median steps per CPU second of each (this process's CPU time, so that other
processes on a shared machine do not blur it; everything runs on one thread), the median of the per-repeat
ratios, and the wall-clock ratio beside it. Target (issue 4): ratio >= 1.2.

Both sides run the same network in every row (issue 17, like with like): SB3's default architecture, separate
64-64 tanh actor and critic MLPs (``net_arch=dict(pi=[64, 64], vf=[64, 64])``), which Rove's policy builds
from the same ``net_arch`` and ``activation_fn=nn.Tanh``. On CartPole they follow a plain flatten (SB3's
``FlattenExtractor``), on MiniGrid Rove's MiniGrid encoder (256 features), shared by actor and critic on both
sides (SB3 through ``rove.agents.sb3.rove_policy_kwargs``). Rove's network has one more output, its V_int
head (65 parameters); each row states the architecture and both parameter counts.

Run: ``python experiments/bench_agents.py`` (``--quick`` for a smoke run). Prints a Markdown table, writes JSON
to ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import rove
from rove.agents import PPO
from rove.agents.common.utils import denormals_flushed
from rove.experiments.args import parse_dataclass_args

MINIGRID_ID = "Rove/MiniGrid-DoorKey-8x8-v0"
MINIGRID_KEYS = ("image", "direction")


@dataclass(frozen=True)
class Preset:
    """The rollout and minibatch layout both agents share."""

    n_envs: int
    n_steps: int
    batch_size: int
    n_epochs: int


PRESETS = {
    # rl-baselines3-zoo's hyperparams/ppo.yml, MiniGrid entries: 8 envs x 128 steps, minibatches of 64, 10 epochs.
    "zoo": Preset(n_envs=8, n_steps=128, batch_size=64, n_epochs=10),
    # CleanRL's ppo_atari layout: 8 envs x 128 steps, 4 minibatches, 4 epochs.
    "cleanrl": Preset(n_envs=8, n_steps=128, batch_size=256, n_epochs=4),
}
QUICK = Preset(n_envs=2, n_steps=32, batch_size=32, n_epochs=1)
ROWS = ("cartpole", "minigrid", "minigrid_rnd", "minigrid_late")
# SB3's default MlpPolicy/MultiInputPolicy network, given to both agents.
NET_ARCH = {"pi": [64, 64], "vf": [64, 64]}
ARCHITECTURE = {
    "cartpole": "flatten -> separate 64-64 tanh actor and critic MLPs",
    "minigrid": "Rove MiniGrid encoder (256, shared) -> separate 64-64 tanh actor and critic MLPs",
}


@dataclass
class Args:
    rows: str = field(default="cartpole,minigrid,minigrid_rnd", metadata={"help": "comma-separated rows to run"})
    presets: str = field(default="zoo,cleanrl", metadata={"help": f"comma-separated presets of {sorted(PRESETS)}"})
    steps: int = field(default=4096, metadata={"help": "env steps per timed learn() call"})
    late_warmup: int = field(default=98_304, metadata={"help": "training steps before timing the *_late rows"})
    sb3_flush_denormals: bool = field(
        default=False,
        metadata={"help": "run SB3 with subnormals flushed too (isolates that effect; not SB3's default)"},
    )
    repeats: int = field(default=5, metadata={"help": "interleaved timed repeats; medians are reported"})
    seed: int = field(default=0, metadata={"help": "seed of both agents"})
    quick: bool = field(
        default=False, metadata={"help": "smoke run: one preset of 2 envs x 32 steps, 128 timed steps, 1 repeat"}
    )
    out: str = field(default="runs/bench_agents.json", metadata={"help": "where the JSON results are written"})


def parse_args(argv: Sequence[str] | None = None) -> Args:
    args = parse_dataclass_args(Args, argv, __doc__.split("\n\n")[0])
    if args.quick:
        args = dataclasses.replace(args, presets="quick", steps=128, repeats=1)
    return args


def preset_named(name: str) -> Preset:
    if name == "quick":
        return QUICK
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_pair(row: str, preset: Preset, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """The Rove agent, the SB3 agent and a description of the row."""
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    n_envs = preset.n_envs
    common = {"n_steps": preset.n_steps, "batch_size": preset.batch_size, "n_epochs": preset.n_epochs, "seed": seed}
    shared = {"learning_rate": 2.5e-4, "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.01, "clip_range": 0.2}
    net = {"net_arch": NET_ARCH, "activation_fn": torch.nn.Tanh}
    if row == "cartpole":
        vec = gym.make_vec("CartPole-v1", n_envs, vectorization_mode="sync")
        rove_model = PPO("auto", vec, policy_kwargs=net, **common, **shared, verbose=0)
        sb3_env = DummyVecEnv([lambda: gym.make("CartPole-v1") for _ in range(n_envs)])
        sb3_model = SB3PPO("MlpPolicy", sb3_env, policy_kwargs=net, **common, **shared, device="cpu", verbose=0)
        return rove_model, sb3_model, {"env": "CartPole-v1", "intrinsic": None, "architecture": ARCHITECTURE[row]}
    if row in ("minigrid", "minigrid_rnd", "minigrid_late"):
        from rove.agents.sb3 import IntrinsicRewardCallback, rove_policy_kwargs

        intrinsic = "rnd" if row == "minigrid_rnd" else None
        vec = rove.make_vec(MINIGRID_ID, n_envs, seed=seed, copy=False, observation_keys=MINIGRID_KEYS)
        rove_model = PPO(
            "auto", vec, policy_kwargs=net, intrinsic=intrinsic, intrinsic_warmup_steps=0, **common, **shared, verbose=0
        )
        make = lambda: gym.make(MINIGRID_ID, observation_keys=MINIGRID_KEYS)  # noqa: E731
        sb3_env = DummyVecEnv([make for _ in range(n_envs)])
        sb3_model = SB3PPO(
            "MultiInputPolicy",
            sb3_env,
            policy_kwargs=rove_policy_kwargs(**net),
            **common,
            **shared,
            device="cpu",
            verbose=0,
        )
        if intrinsic is not None:
            sb3_model._rove_callback = IntrinsicRewardCallback("rnd", int_coef=1.0, warm_up=False)
        info = {"env": MINIGRID_ID, "intrinsic": intrinsic, "architecture": ARCHITECTURE["minigrid"]}
        return rove_model, sb3_model, info
    raise ValueError(f"unknown row {row!r}; choose from {', '.join(ROWS)}")


def timed(learn: Callable[[], Any], model: Any) -> tuple[float, float]:
    """``(steps per CPU second of this process, steps per wall second)`` of one ``learn`` call, counting the
    env transitions ``model`` made in it.

    The transitions, not the steps asked for: Rove's PPO finishes the rollout that crosses its target and its
    autoreset rows are no transitions, so it may run one rollout more than SB3 for the same request.
    CPU time is the primary measure: on a shared machine other processes' load inflates wall time by
    whatever they happen to do during each call, not by what this code costs (everything runs on one thread).
    """
    before = model.num_timesteps
    cpu, wall = time.process_time(), time.perf_counter()
    learn()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    steps = model.num_timesteps - before
    return steps / cpu, steps / wall


def run_row(row: str, preset_name: str, args: Args) -> dict[str, Any]:
    preset = preset_named(preset_name)
    rove_model, sb3_model, info = build_pair(row, preset, args.seed)
    callback = getattr(sb3_model, "_rove_callback", None)
    rollout = preset.n_envs * preset.n_steps
    steps = max(args.steps, rollout)

    def rove_learn() -> None:
        rove_model.learn(steps, reset_num_timesteps=False)

    def sb3_learn(steps: int = steps, reset_num_timesteps: bool = False) -> None:
        with denormals_flushed(args.sb3_flush_denormals):
            sb3_model.learn(steps, callback=callback, reset_num_timesteps=reset_num_timesteps)

    warmup = args.late_warmup if row.endswith("_late") else rollout  # first resets, allocations, lazy imports
    rove_model.learn(warmup)
    sb3_learn(warmup, reset_num_timesteps=True)
    rove_sps, sb3_sps, ratios, rove_wall, sb3_wall = [], [], [], [], []
    for _ in range(args.repeats):
        r, r_wall = timed(rove_learn, rove_model)
        s, s_wall = timed(sb3_learn, sb3_model)
        rove_sps.append(r)
        sb3_sps.append(s)
        ratios.append(r / s)
        rove_wall.append(r_wall)
        sb3_wall.append(s_wall)
    return {
        "row": row,
        "preset": preset_name,
        "warmup_steps": warmup,
        "sb3_flush_denormals": args.sb3_flush_denormals,
        **dataclasses.asdict(preset),
        **info,
        "rove_sps": statistics.median(rove_sps),
        "sb3_sps": statistics.median(sb3_sps),
        "ratio": statistics.median(ratios),
        "wall_ratio": statistics.median(r / s for r, s in zip(rove_wall, sb3_wall, strict=True)),
        "rove_sps_all": rove_sps,
        "sb3_sps_all": sb3_sps,
        "rove_wall_sps_all": rove_wall,
        "sb3_wall_sps_all": sb3_wall,
        "rove_trained_steps": rove_model.num_timesteps,
        "sb3_trained_steps": sb3_model.num_timesteps,
        "rove_params": num_params(rove_model.policy),
        "sb3_params": num_params(sb3_model.policy),
    }


def markdown(results: list[dict[str, Any]], args: Args) -> str:
    lines = [
        f"{args.steps} steps x {args.repeats} interleaved repeats, 1 CPU thread",
        "",
        "| env | intrinsic | architecture (both sides) | params Rove / SB3 | preset (envs x steps, batch, epochs) "
        "| timed after (steps) | Rove PPO steps/CPU-s | SB3 PPO steps/CPU-s | ratio (median) | wall-clock ratio |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        intrinsic = r["intrinsic"] or "-"
        if r["intrinsic"]:
            intrinsic += " (SB3 via rove.agents.sb3)"
        env = r["env"] + (" (SB3 flushing subnormals too)" if r["sb3_flush_denormals"] else "")
        layout = f"{r['preset']} ({r['n_envs']}x{r['n_steps']}, {r['batch_size']}, {r['n_epochs']})"
        lines.append(
            f"| {env} | {intrinsic} | {r['architecture']} | {r['rove_params']} / {r['sb3_params']} | {layout} "
            f"| {r['warmup_steps']} | {r['rove_sps']:.0f} | {r['sb3_sps']:.0f} "
            f"| {r['ratio']:.2f}x | {r['wall_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    presets = [name.strip() for name in args.presets.split(",") if name.strip()]
    for name in presets:
        preset_named(name)  # fail before any timing on a misspelt preset or row
    for row in rows:
        if row not in ROWS:
            raise ValueError(f"unknown row {row!r}; choose from {', '.join(ROWS)}")
    results = [run_row(row, name, args) for name in presets for row in rows]
    print(markdown(results, args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"args": dataclasses.asdict(args), "python": platform.python_version(), "torch": torch.__version__}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
