"""Noisy TV: do ICM's, BYOL-Explore's and BYOL-Hindsight's rewards follow the noise? One stream of MiniGrid rollouts.

A random agent plays MiniGrid with Rove's ``NoisyTV`` in ``mode="action"``: an added remote action redraws the
``tv_rows`` farthest rows (``tv_width`` central cells of each) of the egocentric view (every cell a random
MiniGrid object, colour and state code), the other actions leave the picture as it was. The same rollouts train every module; before each update the module
scores the new rollout, and the script reports the mean raw reward of the noisy transitions (the remote was
pressed, a fresh picture is shown) over that of the ordinary ones. Curiosity that rewards prediction error keeps
that ratio high (the noise is never predictable); Curiosity in Hindsight should bring it towards 1.

``python experiments/noisy_tv_curiosity.py --seed S`` (about 5 CPU minutes) writes
``experiments/results/noisy_tv_curiosity_seed{S}.json`` and ``.png``; ``--combine a.json,b.json,c.json --figure
f.png`` plots several seeds together; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rove
from rove import intrinsic
from rove.envs import MINIGRID_IMAGE_HIGH, NoisyTV
from rove.experiments.args import parse_dataclass_args
from rove.intrinsic import Rollout
from rove.intrinsic.byol import BYOLHindsight
from rove.obs import to_tensor

NOOP = 6  # MiniGrid's "done": what the remote does to the game (nothing)
VIEW = 7  # MiniGrid's egocentric view is 7 x 7 cells
# Equal training per rollout: 16 optimiser steps each (BYOL's defaults are 4 epochs x 4 minibatches; ICM's default,
# one epoch of 512-row minibatches, is a single step per 512 transitions).
MODULE_KWARGS: dict[str, dict[str, Any]] = {"icm": {"epochs": 4, "batch_size": 128}}


@dataclass
class Args:
    env: str = field(default="Rove/MiniGrid-DoorKey-5x5-v0", metadata={"help": "a Rove MiniGrid id"})
    modules: str = field(default="icm,byol_explore,byol_hindsight", metadata={"help": "comma-separated modules"})
    num_envs: int = field(default=8, metadata={"help": "envs in the vector env"})
    num_steps: int = field(default=64, metadata={"help": "steps per rollout"})
    rollouts: int = field(default=80, metadata={"help": "rollouts (each scored, then trained on, by every module)"})
    tv_rows: int = field(default=3, metadata={"help": "the TV: this many far rows of the 7x7 view"})
    tv_width: int = field(default=7, metadata={"help": "the TV: this many central columns of those rows"})
    tv_channels: int = field(default=16, metadata={"help": "the TV switches among this many fixed pictures (0: fresh)"})
    invariance_coef: float = field(default=1.0, metadata={"help": "byol_hindsight's lambda (its default 1.0)"})
    hindsight_dim: int = field(default=32, metadata={"help": "byol_hindsight's size of Z (its default 32)"})
    novel_env: str = field(
        default="Rove/MiniGrid-LavaGapS5-v0", metadata={"help": "a MiniGrid id never trained on: real novelty"}
    )
    seed: int = field(default=0, metadata={"help": "seed of envs, actions and modules"})
    quick: bool = field(default=False, metadata={"help": "smoke run: 2 envs x 16 steps, 3 rollouts"})
    combine: str = field(
        default="", metadata={"help": "comma-separated result JSONs (seeds) to plot together into --figure; no run"}
    )
    out: str = field(
        default="experiments/results/noisy_tv_curiosity_seed{seed}.json", metadata={"help": "JSON results"}
    )
    figure: str = field(
        default="experiments/results/noisy_tv_curiosity_seed{seed}.png", metadata={"help": "PNG ('' for none)"}
    )


def parse_args(argv: Sequence[str] | None = None) -> Args:
    args = parse_dataclass_args(Args, argv, __doc__.split("\n\n")[0])
    if args.quick:
        args = dataclasses.replace(args, num_envs=2, num_steps=16, rollouts=3)
    if not args.combine:  # "{seed}" in the default paths
        args = dataclasses.replace(args, out=args.out.format(seed=args.seed), figure=args.figure.format(seed=args.seed))
    return args


def make_envs(args: Args, env_id: str | None = None, seed: int | None = None) -> Any:
    # MiniGrid's image is [x, y, 3]; y = 0 is the farthest row, x = 3 the agent's column
    left = (VIEW - args.tv_width) // 2
    region = (slice(left, left + args.tv_width), slice(0, args.tv_rows))

    def make() -> gym.Env:
        env = gym.make(env_id or args.env, observation_keys=("image", "direction"))
        return NoisyTV(
            env,
            "image",
            region=region,
            mode="action",
            add_action=True,
            noop_action=NOOP,
            high=MINIGRID_IMAGE_HIGH,
            channels=args.tv_channels or None,
            channel_seed=args.seed,
        )

    return rove.make_vec(None, env_fns=[make] * args.num_envs, seed=args.seed if seed is None else seed)


def collect(envs: Any, obs: Any, steps: int, rng: np.random.Generator) -> tuple[Rollout, torch.Tensor, Any]:
    """One rollout of uniformly random actions; returns it, the noisy-transition mask ``[T, E]`` and the last obs."""
    frames, actions, dones, valid = [obs], [], [], []
    n = int(envs.single_action_space.n)
    for _ in range(steps):
        action = rng.integers(n, size=envs.num_envs)
        obs, _, terminated, truncated, infos = envs.step(action)
        frames.append(obs)
        actions.append(action)
        dones.append(terminated | truncated)
        valid.append(~np.asarray(infos["autoreset"]))
    stacked = to_tensor({k: np.stack([f[k] for f in frames]) for k in frames[0]})
    actions_t = torch.as_tensor(np.stack(actions))
    rollout = Rollout(
        {k: v[:-1] for k, v in stacked.items()},
        actions_t,
        {k: v[1:] for k, v in stacked.items()},
        torch.zeros(steps, envs.num_envs),
        torch.as_tensor(np.stack(dones)),
        torch.as_tensor(np.stack(valid)),
    )
    noisy = (actions_t == n - 1) & rollout.valid  # the remote: NoisyTV draws a new picture on exactly these steps
    return rollout, noisy, {k: v.copy() for k, v in obs.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.combine:
        runs = [json.loads(Path(p.strip()).read_text()) for p in args.combine.split(",") if p.strip()]
        plot(runs, Path(args.figure))
        print(f"wrote {args.figure}")
        return {"runs": runs}
    torch.set_num_threads(1)
    names = [n.strip() for n in args.modules.split(",") if n.strip()]
    envs = make_envs(args)
    space, action_space = envs.single_observation_space, envs.single_action_space
    kwargs = {
        **MODULE_KWARGS,
        "byol_hindsight": {"invariance_coef": args.invariance_coef, "hindsight_dim": args.hindsight_dim},
    }
    modules = {
        n: intrinsic.make(n, space, action_space, seed=args.seed, normalize="none", **kwargs.get(n, {})) for n in names
    }
    seconds = dict.fromkeys(names, 0.0)
    history: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    rng = np.random.default_rng(args.seed)
    obs, _ = envs.reset(seed=args.seed)
    obs = {k: v.copy() for k, v in obs.items()}
    transitions = 0
    for index in range(args.rollouts):
        rollout, noisy, obs = collect(envs, obs, args.num_steps, rng)
        ordinary = rollout.valid & ~noisy
        transitions += int(rollout.valid.sum())
        for name, module in modules.items():
            start = time.perf_counter()
            reward = module.compute(rollout)  # scored before training on it: what an agent would be paid
            module.update(rollout)
            seconds[name] += time.perf_counter() - start
            noisy_mean = float(reward[noisy].mean()) if bool(noisy.any()) else float("nan")
            ordinary_mean = float(reward[ordinary].mean()) if bool(ordinary.any()) else float("nan")
            history[name].append(
                {
                    "rollout": index,
                    "transitions": transitions,
                    "noisy": noisy_mean,
                    "ordinary": ordinary_mean,
                    "ratio": noisy_mean / ordinary_mean if ordinary_mean > 0 else float("nan"),
                }
            )
        row = "  ".join(f"{n} {history[n][-1]['ratio']:.2f}" for n in names)
        print(f"rollout {index + 1}/{args.rollouts} ({transitions} transitions): noisy/ordinary  {row}", flush=True)
    rollout, noisy, obs = collect(envs, obs, args.num_steps, rng)  # held out: what Z tells about each outcome
    envs.close()
    novel_envs = make_envs(args, args.novel_env, seed=args.seed + 1)
    novel_obs, _ = novel_envs.reset(seed=args.seed + 1)
    novel, novel_noisy, _ = collect(novel_envs, {k: v.copy() for k, v in novel_obs.items()}, args.num_steps, rng)
    novel_envs.close()
    results: dict[str, Any] = {"args": dataclasses.asdict(args), "transitions": transitions, "modules": {}}
    for module in modules.values():
        if isinstance(module, BYOLHindsight):
            results["hindsight_information"] = hindsight_information(module, rollout, noisy)
    for name in names:
        ratios = [h["ratio"] for h in history[name]]
        tail = ratios[-max(1, len(ratios) // 4) :]
        results["modules"][name] = {
            "history": history[name],
            "first_ratio": ratios[0],
            "final_ratio": float(np.nanmean(tail)),  # mean over the last quarter of the rollouts
            "seconds": seconds[name],
            **novelty(modules[name], rollout, noisy, novel, novel_noisy),
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    if args.figure:
        plot([results], Path(args.figure))
    if "hindsight_information" in results:
        info = results["hindsight_information"]
        print(f"byol_hindsight, one-step error with another outcome's Z minus with its own: noisy "
              f"{info['noisy_gain']:.3f}, ordinary {info['ordinary_gain']:.3f}")  # fmt: skip
    for name, summary in results["modules"].items():
        print(f"{name}: noisy/ordinary reward {summary['first_ratio']:.2f} at first, "
              f"{summary['final_ratio']:.2f} over the last quarter ({summary['seconds']:.0f} s); held out: "
              f"noisy/ordinary {summary['held_out_ratio']:.2f}, novel env/ordinary {summary['novel_ratio']:.2f}")  # fmt: skip
    return results


def novelty(
    module: Any, rollout: Rollout, noisy: torch.Tensor, novel: Rollout, novel_noisy: torch.Tensor
) -> dict[str, float]:
    """The trained module's raw reward on a held-out rollout of the training env (noisy and ordinary transitions)
    and on ordinary transitions of ``novel_env``, which it never trained on: a bonus that ignores the noise but
    still rewards what is new has ``held_out_ratio`` near 1 and ``novel_ratio`` well above 1."""
    reward, novel_reward = module.compute(rollout), module.compute(novel)
    ordinary = float(reward[rollout.valid & ~noisy].mean())
    out = {
        "held_out_noisy": float(reward[noisy].mean()) if bool(noisy.any()) else float("nan"),
        "held_out_ordinary": ordinary,
        "novel_ordinary": float(novel_reward[novel.valid & ~novel_noisy].mean()),
    }
    out["held_out_ratio"] = out["held_out_noisy"] / ordinary
    out["novel_ratio"] = out["novel_ordinary"] / ordinary
    return out


def hindsight_information(module: BYOLHindsight, rollout: Rollout, noisy: torch.Tensor) -> dict[str, float]:
    """How much the one-step reconstruction error grows when ``Z`` comes from another transition's outcome, on
    noisy and on ordinary transitions: large where the outcome was unpredictable (Z carries the new picture),
    small where it was predictable (Z should carry nothing the past did not)."""
    own, swapped = module.one_step_errors(rollout), module.one_step_errors(rollout, swap_hindsight=True)
    ordinary = rollout.valid & ~noisy
    out = {}
    for label, rows in (("noisy", noisy), ("ordinary", ordinary)):
        out[f"{label}_own"] = float(own[rows].mean())
        out[f"{label}_swapped"] = float(swapped[rows].mean())
        out[f"{label}_gain"] = out[f"{label}_swapped"] - out[f"{label}_own"]
    return out


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """The ratio over training of one or several runs (seeds) of one setting: the mean per module, the range as a
    band (none for one run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in runs[0]["modules"]:
        histories = [run["modules"][name]["history"] for run in runs]
        steps = [h["transitions"] for h in histories[0]]
        ratios = np.array([[h["ratio"] for h in history] for history in histories])
        (line,) = ax.plot(steps, np.nanmean(ratios, 0), label=name)
        if len(runs) > 1:
            ax.fill_between(steps, np.nanmin(ratios, 0), np.nanmax(ratios, 0), color=line.get_color(), alpha=0.2)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("env transitions seen (random agent)")
    ax.set_ylabel("reward: noisy-TV / ordinary transitions")
    args = runs[0]["args"]
    tv = f"{args['tv_channels']} channels" if args.get("tv_channels") else "fresh pictures"
    seeds = f"{len(runs)} seeds" if len(runs) > 1 else f"seed {args['seed']}"
    ax.set_title(f"{args['env'].split('/')[-1].removeprefix('MiniGrid-')}, noisy TV ({tv}), {seeds}")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
