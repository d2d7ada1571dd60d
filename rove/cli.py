"""The ``rove`` command: ``train``, ``eval``, ``sweep``, ``report``, ``bench`` (and ``llm`` when available).

``rove train`` with no arguments runs the embedded default (:data:`DEFAULT_TRAIN`): PPO with a count-based
exploration bonus on a sparse-reward MiniGrid task, a few minutes on a laptop CPU; it prints the final
success rate and return and the path of the learning-curve PNG it wrote. ``rove <command> --help`` lists
every option.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import json
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rove.experiments.cli_tools import figure_style, finish_parser, prepare, run_tools, slurm_options
from rove.experiments.hyperparams import default_train, tuned

# The README's "run" command: the tuned settings of the default env in rove/experiments/hyperparams/ppo.toml
# (DoorKey-6x6 with an episodic count bonus; measured in the README and experiments/results/minigrid_doorkey6).
DEFAULT_TRAIN: dict[str, Any] = default_train()
BENCHES = ("envs", "intrinsic", "agents", "llm")


class CLIError(Exception):
    """A bad option or id: printed as one line, exit status 2."""


# ----- option parsing helpers -----


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_kwargs(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """Merges ``--x-kwargs`` values: JSON objects or ``key=value`` (value parsed as JSON when it is JSON,
    else kept as a string; ``a.b=1`` nests as ``{"a": {"b": 1}}``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        for part in [item] if item.lstrip().startswith("{") else item.split(","):
            part = part.strip()
            if not part:
                continue
            if part.startswith("{"):
                try:
                    value = json.loads(part)
                except json.JSONDecodeError as err:
                    raise CLIError(f"{what}: {part!r} is not valid JSON ({err})") from err
                if not isinstance(value, dict):
                    raise CLIError(f"{what}: expected a JSON object, got {part!r}")
                out.update(value)
                continue
            if "=" not in part:
                raise CLIError(f"{what}: expected key=value or a JSON object, got {part!r}")
            key, raw = part.split("=", 1)
            target = out
            *parents, leaf = key.strip().split(".")
            for p in parents:
                target = target.setdefault(p, {})
                if not isinstance(target, dict):
                    raise CLIError(f"{what}: {key!r} nests under a non-table value")
            target[leaf] = _parse_value(raw.strip())
    return out


def parse_intrinsic(items: Sequence[str] | None) -> tuple[str, ...] | None:
    """``--intrinsic rnd --intrinsic count`` or ``--intrinsic rnd,count`` -> ``("rnd", "count")``; ``none``
    -> ``()``; not given -> None. Unknown names raise with the list of valid ones."""
    if items is None:
        return None
    from rove.intrinsic import get

    out: list[str] = []
    for item in items:
        out += [n.strip() for n in item.replace("+", ",").split(",") if n.strip()]
    if out in (["none"], ["ppo"]):
        return ()
    for name in out:
        try:
            get(name)  # the registry's error names close matches and every valid module
        except KeyError as err:
            raise CLIError(f"{err.args[0]} (or 'none' for plain PPO)") from None
    if len(set(out)) != len(out):
        raise CLIError(f"--intrinsic names a module twice: {out}")
    return tuple(out)


def _env_id(name: str) -> str:
    from rove.envs import check_env_id

    try:
        return check_env_id(name)
    except Exception as err:  # gymnasium's NameNotFound
        raise CLIError(str(err)) from err


# ----- train -----

# The `rove train` options that set a RunSpec field: (flag, argparse dest, field; "agent_kwargs.x" nests).
# A resumed run takes these from its run.json; one given on the command line must agree with it.
SPEC_OPTIONS = (
    ("ENV", "env", "env_id"),
    ("--agent", "agent", "agent"),
    ("--intrinsic", "intrinsic", "intrinsic"),
    ("--intrinsic-kwargs", "intrinsic_kwargs", "intrinsic_kwargs"),
    ("--agent-kwargs", "agent_kwargs", "agent_kwargs"),
    ("--steps", "steps", "total_timesteps"),
    ("--seed", "seed", "seed"),
    ("--device", "device", "device"),
    ("--n-envs", "n_envs", "n_envs"),
    ("--n-steps", "n_steps", "agent_kwargs.n_steps"),
    ("--batch-size", "batch_size", "agent_kwargs.batch_size"),
    ("--label", "label", "label"),
    ("--env-kwargs", "env_kwargs", "env_kwargs"),
)


def parse_steps_option(text: str | None, flag: str = "--steps") -> int | None:
    """``--steps 1e6`` / ``100k`` / ``1_000_000`` -> int (None when not given)."""
    from rove.experiments.args import parse_steps

    if text is None:
        return None
    try:
        return parse_steps(text)
    except ValueError as err:
        raise CLIError(f"{flag}: {err}") from None


def _given_spec_options(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """``(flag, RunSpec field, value)`` for each spec option given on the command line, parsed."""
    out: list[tuple[str, str, Any]] = []
    for flag, dest, field in SPEC_OPTIONS:
        raw = getattr(args, dest)
        if raw is None:
            continue
        if dest == "env":
            value: Any = _env_id(raw)
        elif dest == "intrinsic":
            value = list(parse_intrinsic(raw) or ())
        elif dest.endswith("_kwargs"):
            value = parse_kwargs(raw, flag)
        elif dest == "steps":
            value = parse_steps_option(raw)
        else:
            value = raw
        out.append((flag, field, value))
    return out


def _train_spec(args: argparse.Namespace) -> Any:
    from rove.experiments.runs import RunSpec

    intrinsic = parse_intrinsic(args.intrinsic)
    env_id = _env_id(args.env) if args.env is not None else DEFAULT_TRAIN["env_id"]
    try:
        settings = tuned(env_id)  # naming the default env is the same run as naming none
    except ValueError as err:
        raise CLIError(str(err)) from err
    if intrinsic is None:
        intrinsic = settings.intrinsic
    intrinsic_kwargs = {
        **settings.module_kwargs(intrinsic),
        **parse_kwargs(args.intrinsic_kwargs, "--intrinsic-kwargs"),
    }
    agent_kwargs = {**settings.agent, **parse_kwargs(args.agent_kwargs, "--agent-kwargs")}
    env_kwargs = {**settings.env_kwargs, **parse_kwargs(args.env_kwargs, "--env-kwargs")}
    for key in ("n_steps", "batch_size"):
        if getattr(args, key) is not None:
            agent_kwargs[key] = getattr(args, key)
    steps = parse_steps_option(args.steps)
    try:
        return RunSpec(
            env_id=env_id,
            intrinsic=intrinsic,
            seed=args.seed if args.seed is not None else 0,
            total_timesteps=steps if steps is not None else settings.total_timesteps,
            agent=args.agent or "ppo",
            n_envs=args.n_envs if args.n_envs is not None else settings.n_envs,
            intrinsic_kwargs=intrinsic_kwargs,
            agent_kwargs=agent_kwargs,
            env_kwargs=env_kwargs,
            device=args.device or "auto",
            label=args.label,
        )
    except ValueError as err:
        raise CLIError(str(err)) from err


def _check_spec(spec: Any) -> None:
    from rove.experiments.validate import check_spec

    try:
        check_spec(spec)
    except ValueError as err:
        raise CLIError(str(err)) from None


def _nested(data: Any, field: str) -> Any:
    for part in field.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


_MISSING = object()


def _contradictions(saved: dict[str, Any], given: list[tuple[str, str, Any]]) -> list[str]:
    """The given options whose value differs from the saved spec's (kwargs: each given key must agree)."""
    out = []
    for flag, field, value in given:
        pairs = [(f"{field}.{k}", v) for k, v in _flatten(value)] if field.endswith("_kwargs") else [(field, value)]
        for key, wanted in pairs:
            have = _nested(saved, key)
            if key == "env_id" and isinstance(have, str):
                have = _env_id(have)  # "Rove/" may have been left out
            if have != wanted:
                shown = "missing" if have is _MISSING else repr(have)
                out.append(f"{flag} gives {key} = {wanted!r}, the run has {shown}")
    return out


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _resume_target(args: argparse.Namespace) -> tuple[Any, Path]:
    """The run ``--resume`` continues, with the spec saved in its ``run.json``; refuses what cannot resume."""
    from rove.experiments.runs import CHECKPOINT, RESULT_FILE, SPEC_FILE, RunSpec, _read_json, is_finished

    given = _given_spec_options(args)
    if args.run_dir is not None:
        path = Path(args.run_dir)
        saved = _read_json(path / SPEC_FILE)
        if not isinstance(saved, dict):
            raise CLIError(f"--resume: {path} holds no run to resume (no readable {SPEC_FILE})")
        if is_finished(path):
            result = _read_json(path / RESULT_FILE) or {}
            steps = result.get("total_timesteps", "?")
            raise CLIError(f"--resume: {path} is finished ({steps} steps, {RESULT_FILE}): there is nothing to resume")
        if not (path / CHECKPOINT).is_file():
            raise CLIError(f"--resume: {path} has no checkpoint yet ({CHECKPOINT}; it stopped before its first update)")
        problems = _contradictions(saved, given)
        if problems:
            raise CLIError(f"--resume continues {path} as it was started ({SPEC_FILE}): {'; '.join(problems)}")
    else:
        root = Path(args.out)
        candidates, finished = [], []
        for spec_file in root.glob(f"*/{SPEC_FILE}") if root.is_dir() else []:
            folder, saved = spec_file.parent, _read_json(spec_file)
            if not isinstance(saved, dict) or _contradictions(saved, given):
                continue
            if is_finished(folder):
                finished.append(folder)
            elif (folder / CHECKPOINT).is_file():
                candidates.append((spec_file.stat().st_mtime, folder, saved))
        if not candidates:
            which = " matching " + " ".join(flag for flag, _, _ in given) if given else ""
            if finished:
                names = ", ".join(str(f) for f in sorted(finished)[:3])
                raise CLIError(f"--resume: the runs under {root}{which} are finished ({names}): nothing to resume")
            raise CLIError(
                f"--resume: no unfinished run with a checkpoint{which} under {root} (name one with --run-dir)"
            )
        _, path, saved = max(candidates, key=lambda c: (c[0], str(c[1])))
    try:
        return RunSpec.from_dict(saved), path
    except (TypeError, ValueError) as err:
        raise CLIError(f"--resume: {path / SPEC_FILE} is not a run spec this version of Rove reads ({err})") from None


def cmd_train(args: argparse.Namespace) -> int:
    from rove.experiments.env_options import check_env_kwargs
    from rove.experiments.report import group_runs, plot_curves
    from rove.experiments.run_tools import callbacks
    from rove.experiments.runs import SPEC_FILE, RunInterrupted, load_run, train_run

    run_dir: Path | None
    if args.resume:
        spec, run_dir = _resume_target(args)
        _check_spec(spec)
        print("rove train --resume: " + _describe_spec(spec))
    else:
        spec = _train_spec(args)
        _check_spec(spec)
        run_dir = Path(args.run_dir) if args.run_dir is not None else None
        if run_dir is not None and (run_dir / SPEC_FILE).exists():
            raise CLIError(f"--run-dir {run_dir} already holds a run: add --resume to continue it, or choose another")
        if args.env is None:
            print("rove train: no env given, running the default: " + _describe_spec(spec))
        else:
            print("rove train: " + _describe_spec(spec))
    try:
        check_env_kwargs(spec.env_id, spec.env_kwargs)
        tools = run_tools(args)
    except ValueError as err:
        raise CLIError(str(err)) from err
    try:
        result = train_run(
            spec,
            args.out,
            run_dir=run_dir,
            resume=args.resume,
            verbose=args.verbose,
            progress_bar=not args.no_progress,
            threads=args.threads,
            log=lambda line: print(line, flush=True),
            callbacks=callbacks(spec, tools),
        )
    except RunInterrupted as stop:
        saved = (
            f"its checkpoint holds step {stop.checkpoint_step}"
            if stop.checkpoint_step is not None
            else "no checkpoint yet"
        )
        print(f"rove train: interrupted at step {stop.step} ({saved})", file=sys.stderr)
        if stop.checkpoint_step is not None:
            print(f"resume with: rove train --resume --run-dir {shlex.quote(str(stop.run_dir))}", file=sys.stderr)
        return 130
    except ValueError as err:  # what only the agent can check (an option's value out of range, ...)
        raise CLIError(str(err)) from err
    run_dir = Path(result["run_dir"])
    groups, episodes_of = group_runs([load_run(run_dir)])
    png = plot_curves(groups, episodes_of, run_dir / "curve.png", bins=40) if groups else None
    print(f"run folder: {run_dir}")
    print(_result_line(result))
    print(f"learning curve: {png if png is not None else '(no finished episode to plot)'}")
    return 0


def _describe_spec(spec: Any) -> str:
    return (
        f"{spec.env_id}, {spec.agent} + {spec.method}, {spec.total_timesteps} steps, seed {spec.seed}, "
        f"{spec.n_envs} envs, device {spec.device}"
    )


def _result_line(result: dict[str, Any]) -> str:
    parts = [f"{result.get('episodes', 0)} episodes in {result.get('wall_time_s', 0.0):.0f} s"]
    if "final_success" in result:
        parts.append(f"final success rate {result['final_success']:.2f}")
    if "final_return" in result:
        parts.append(f"final return {result['final_return']:.3f}")
    if "crafter_score" in result:
        parts.append(f"Crafter score {result['crafter_score']:.2f}%")
    if "final_score" in result:
        parts.append(f"NetHack score {result['final_score']:.1f}")
    return "result: " + ", ".join(parts) + " (last 10% of training episodes)"


# ----- eval -----


def _find_checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
        numbered = sorted((path / "checkpoints").glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
        if numbered:
            return numbered[-1]
        raise CLIError(f"no checkpoint in {path} (looked for checkpoints/last.pt and checkpoints/step_*.pt)")
    raise CLIError(f"no such run folder or checkpoint: {path}")


def _checkpoint_env_id(ckpt: Path) -> str | None:
    """The env id a checkpoint was trained on, from its run folder's config or the checkpoint itself."""
    for folder in (ckpt.parent.parent, ckpt.parent):
        config = folder / "config.json"
        if config.is_file():
            env_id = json.loads(config.read_text()).get("env_id")
            if env_id:
                return str(env_id)
    import torch

    return torch.load(ckpt, map_location="cpu", weights_only=False).get("env_id")


def _space_mismatch(model: Any, env: Any, added_keys: Sequence[str] = ()) -> str:
    """Which of the env's spaces differ from those the agent was built for ("" if none); ``added_keys`` are
    observation keys eval itself added (the terminal of a NetHack GIF), not compared."""
    from gymnasium import spaces

    from rove.agents.common.utils import tensor_space

    observation = env.observation_space
    if added_keys and isinstance(observation, spaces.Dict):
        observation = spaces.Dict({k: v for k, v in observation.spaces.items() if k not in added_keys})
    observation = tensor_space(observation)
    if observation != model.observation_space:
        if isinstance(observation, spaces.Dict) and isinstance(model.observation_space, spaces.Dict):
            mine, theirs = model.observation_space.spaces, observation.spaces
            keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            return f"observation keys {keys} differ (the agent's: {sorted(mine)})"
        return f"observation space {observation} is not the agent's {model.observation_space}"
    if env.action_space != model.action_space:
        return f"action space {env.action_space} is not the agent's {model.action_space}"
    return ""


def cmd_eval(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import numpy as np
    import torch

    import rove  # noqa: F401  (registers the Rove ids)
    from rove.agents import PPO
    from rove.experiments.env_options import run_env_kwargs
    from rove.experiments.plugins import load_for_eval
    from rove.experiments.tty_gif import FrameSource
    from rove.experiments.validate import check_device

    if args.episodes < 1:
        raise CLIError(f"--episodes must be >= 1, got {args.episodes}")
    try:
        check_device(args.device)
    except ValueError as err:
        raise CLIError(str(err)) from None
    torch.set_num_threads(args.threads)
    ckpt = _find_checkpoint(Path(args.path))
    try:
        model = load_for_eval(PPO, ckpt, args.device)
    except ValueError as err:
        raise CLIError(str(err)) from err
    env_id = args.env or model.env_id or _checkpoint_env_id(ckpt)
    if env_id is None:
        raise CLIError(f"{ckpt} does not record its env id: pass --env")
    env_id = _env_id(env_id)
    trained_on = model.env_id or _checkpoint_env_id(ckpt)
    # The run's own env options (run.json's env_kwargs: observation keys, step limit) apply when it is
    # evaluated on its own env.
    env_kwargs = run_env_kwargs(ckpt) if trained_on is not None and _env_id(trained_on) == env_id else {}
    render_mode = "rgb_array" if args.gif else None
    try:
        source = FrameSource.make(env_id, env_kwargs) if render_mode else None
        env = source.env if source is not None else gym.make(env_id, **env_kwargs)
    except (ValueError, TypeError) as err:
        raise CLIError(f"{env_id} cannot render frames for --gif ({err})") from err
    mismatch = _space_mismatch(model, env, source.added_keys if source is not None else ())
    if mismatch:
        env.close()
        raise CLIError(
            f"{env_id} does not match the agent (trained on {trained_on or 'an unrecorded env'}): {mismatch}"
        )
    frames: list[Any] = []
    episodes: list[dict[str, Any]] = []
    for i in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + i)
        state, start = None, np.ones(1, dtype=bool)
        total, length = 0.0, 0
        info: dict[str, Any] = {}
        while True:
            if source is not None and i < args.gif_episodes:
                frames.append(source.frame(obs))
            action, state = model.predict(obs, state, start, deterministic=args.deterministic)
            start = np.zeros(1, dtype=bool)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            if terminated or truncated:
                if source is not None and i < args.gif_episodes:
                    frames.append(source.frame(obs))
                break
        record: dict[str, Any] = {"return": total, "length": length}
        for key, value in (info.get("episode") or {}).items():
            if key not in ("r", "l") and isinstance(value, (bool, int, float)):
                record[key] = value
        episodes.append(record)
    env.close()
    mean_return = float(np.mean([e["return"] for e in episodes]))
    summary: dict[str, Any] = {"checkpoint": str(ckpt), "env_id": env_id, "episodes": len(episodes)}
    summary["mean_return"] = mean_return
    summary["mean_length"] = float(np.mean([e["length"] for e in episodes]))
    if any("success" in e for e in episodes):
        summary["success_rate"] = float(np.mean([bool(e.get("success")) for e in episodes]))
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({**summary, "per_episode": episodes}, indent=2) + "\n")
    if frames:
        import imageio.v2 as imageio

        Path(args.gif).parent.mkdir(parents=True, exist_ok=True)
        imageio.mimsave(args.gif, frames, duration=1000 / args.fps, loop=0)
        print(f"GIF ({len(frames)} frames): {args.gif}")
    return 0


# ----- sweep / report / bench -----


def cmd_sweep(args: argparse.Namespace) -> int:
    from rove.experiments.sweep import load_config, plan, run_sweep

    try:
        config = load_config(args.config)
        slurm = slurm_options(args)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from err
    except Exception as err:  # gymnasium's NameNotFound for a bad env id
        raise CLIError(f"{args.config}: {err}") from err
    steps = parse_steps_option(args.steps)
    if steps is not None:
        config.total_timesteps = steps
    try:
        config.check(here=args.launcher == "local")
    except ValueError as err:
        raise CLIError(f"{args.config}: {err}") from None
    if args.dry_run:
        root = Path(args.out or config.out or Path("runs") / config.name)
        todo, done = plan(config.specs(), root)
        for spec in config.specs():
            mark = "todo" if spec in todo else "done"
            print(f"[{mark}] {spec.prefix}* ({spec.total_timesteps} steps)")
        print(f"{len(todo)} to run, {len(done)} finished, under {root}")
        return 0
    summary = run_sweep(
        config,
        args.out,
        launcher=args.launcher,
        workers=args.workers,
        address=args.address,
        threads=args.threads,
        progress=not args.no_progress,
        slurm=slurm,
    )
    ok = len(summary["results"]) - len(summary["failed"])
    print(f"{ok} runs finished, {len(summary['failed'])} failed, {len(summary['skipped'])} skipped -> {summary['out']}")
    print(f"next: rove report {summary['out']}")
    return 1 if summary["failed"] else 0


def cmd_report(args: argparse.Namespace) -> int:
    from rove.experiments.report import write_report

    try:
        out = write_report(
            args.runs_dir,
            args.out,
            bins=args.bins,
            budget=args.budget,
            include_unfinished=args.include_unfinished,
            style=figure_style(args),
        )
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from err
    print(out["markdown"].read_text())
    print(f"wrote {out['markdown']}, {out['csv']}, {out['runs_csv']}")
    for png in out["figures"]:
        print(f"wrote {png}")
    for warning in out["warnings"]:
        print(f"rove report: warning: {warning}", file=sys.stderr)
    return 0


def experiments_dir() -> Path:
    """The repository's ``experiments/`` folder (benchmarks live there, not in the installed package)."""
    for candidate in (Path(__file__).resolve().parents[1] / "experiments", Path.cwd() / "experiments"):
        if (candidate / "bench_envs.py").is_file():
            return candidate
    raise CLIError("rove bench needs the repository's experiments/ folder (run from a source checkout)")


def cmd_bench(args: argparse.Namespace) -> int:
    which = list(BENCHES) if args.which == "all" else [args.which]
    folder = experiments_dir()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.extra) if args.extra else []
    failed = []
    for name in which:
        cmd = [sys.executable, str(folder / f"bench_{name}.py"), "--out", str(out_dir / f"bench_{name}.json")]
        cmd += ["--quick"] if args.quick else []
        cmd += extra
        print(f"$ {shlex.join(cmd)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
        print(f"bench {name}: exit {code} in {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# ----- the parser -----


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) that name close matches of an invalid choice."""

    def error(self, message: str) -> NoReturn:
        import re

        from rove.experiments.validate import close_matches

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += close_matches(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rove",
        description="Exploration research on NetHack, Crafter and MiniGrid with intrinsic rewards.",
        epilog="`rove train` with no arguments runs the default example; `rove <command> --help` for options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train one agent (no arguments: the default example)")
    p.add_argument("env", nargs="?", default=None, help="Rove env id ('Rove/' optional); omitted: the default example")
    p.add_argument("--agent", default=None, choices=["ppo"], help="agent (only ppo)")
    p.add_argument(
        "--intrinsic",
        action="append",
        metavar="NAME",
        help="intrinsic module, repeatable or comma-separated (several are fused); 'none' for plain PPO",
    )
    p.add_argument(
        "--intrinsic-kwargs",
        action="append",
        metavar="KW",
        help="module options: JSON or key=value[,key=value]; with several modules, NAME.key=value per member",
    )
    p.add_argument("--agent-kwargs", action="append", metavar="KW", help="extra PPO options: JSON or key=value")
    p.add_argument(
        "--env-kwargs",
        action="append",
        metavar="KW",
        help="options of every env and of the vector env: JSON or key=value (max_steps=500,"
        " observation_keys=[...], mode=subprocess, step_in_main=true)",
    )
    p.add_argument(
        "--steps",
        default=None,
        help="env steps, summed over envs: 100000, 100_000, 1e5 or 100k (default: the env's tuned settings)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the agent and the envs (default: 0)")
    p.add_argument(
        "--device", default=None, help="torch device: auto (CUDA when available), cpu, cuda, cuda:1 (default: auto)"
    )
    p.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: the env's tuned settings)")
    p.add_argument("--n-steps", type=int, default=None, help="rollout length per env (PPO n_steps; default: tuned)")
    p.add_argument("--batch-size", type=int, default=None, help="PPO minibatch size (default: tuned)")
    p.add_argument("--out", default="runs", help="parent folder of the new run folder {env}__{method}__{seed}__{time}")
    p.add_argument("--run-dir", default=None, help="exact run folder instead of a new one under --out")
    p.add_argument("--label", default=None, help="method name in the run folder's name (default: module names)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run from its last checkpoint with its own run.json (--run-dir, or the newest "
        "unfinished one under --out matching the options given)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--verbose", type=int, default=0, help="1 prints PPO's table after every update")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained agent for N episodes (optionally as a GIF)")
    p.add_argument("path", help="run folder (uses checkpoints/last.pt) or checkpoint file")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play")
    p.add_argument("--env", default=None, help="env id (default: the one it was trained on)")
    p.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampling")
    p.add_argument("--seed", type=int, default=1000, help="seed of the first episode (episode i gets seed + i)")
    p.add_argument("--device", default="auto", help="torch device")
    p.add_argument("--gif", default=None, help="write the first --gif-episodes episodes as this GIF")
    p.add_argument("--gif-episodes", type=int, default=1, help="episodes recorded into the GIF")
    p.add_argument("--fps", type=float, default=10.0, help="GIF frames per second")
    p.add_argument("--out", default=None, help="write the results (and per-episode records) as JSON here")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sweep", help="run a grid of envs x methods x seeds from a TOML config")
    p.add_argument("config", help="sweep config (e.g. experiments/configs/minigrid_hard.toml)")
    p.add_argument(
        "--launcher",
        choices=["local", "ray", "slurm"],
        default="local",
        help="local processes, Ray tasks, or SLURM jobs through submitit (--slurm-* options)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address ('auto', 'ray://host:10001'); none: local Ray")
    p.add_argument("--workers", type=int, default=1, help="runs at a time (local processes / local Ray CPUs)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (and Ray CPUs) per run")
    p.add_argument("--out", default=None, help="runs folder (default: the config's out, else runs/<name>)")
    p.add_argument("--steps", default=None, help="override every run's total_timesteps (1e6, 100k, 1_000_000)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="tables (Markdown, CSV) and learning curves from run folders")
    p.add_argument("runs_dir", help="folder holding run folders (searched recursively)")
    p.add_argument("--out", default=None, help="output folder (default RUNS_DIR/report)")
    p.add_argument("--bins", type=int, default=50, help="points per learning curve")
    p.add_argument("--budget", type=int, default=None, help="only episodes within this many env steps (Crafter: 1M)")
    p.add_argument("--include-unfinished", action="store_true", help="also runs without result.json")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench", help="throughput benchmarks (experiments/bench_*.py)")
    p.add_argument("which", nargs="?", default="all", choices=[*BENCHES, "all"], help="which benchmark")
    p.add_argument("--quick", action="store_true", help="smoke-sized runs")
    p.add_argument("--out-dir", default="runs/bench", help="folder for the JSON results")
    p.add_argument("--extra", default=None, help='extra options for the script(s), e.g. "--suites minigrid"')
    p.set_defaults(func=cmd_bench)

    try:
        from rove.llm.cli import add_llm_commands
    except ImportError:
        pass
    else:
        add_llm_commands(sub)
    from rove.llm.envgen_cli import add_envgen_command

    add_envgen_command(sub)
    finish_parser(parser, sub)
    return parser


@contextlib.contextmanager
def _warnings_as_lines(command: str) -> Iterator[None]:
    """Shows each Python warning raised while ``command`` runs as one ``rove <command>: warning: ...`` line on
    stderr, once per message (the same fallback warned by the up-front check and by the agent is one line)."""
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        line = f"rove {command}: warning: {message}"
        if line not in shown:
            shown.add(line)
            print(line, file=sys.stderr, flush=True)

    with warnings.catch_warnings():  # the filters in force stay as they are; only the display changes
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rove`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with _warnings_as_lines(args.command):
            prepare(args)
            return int(args.func(args) or 0)
    except ImportError as err:
        print(f"rove {args.command}: error: {err}", file=sys.stderr)
        return 2
    except CLIError as err:
        print(f"rove {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "; run the same command again to resume it" if args.command == "sweep" else ""
        print(f"rove {args.command}: interrupted{again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
