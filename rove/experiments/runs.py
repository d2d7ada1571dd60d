"""Run folders: what one training run is (:class:`RunSpec`), how it is named and trained, and how it is read back.

A run folder is named ``{env}__{method}__{seed}__{time}`` (CleanRL's convention; ``env`` without the ``Rove/``
namespace, ``method`` the intrinsic modules joined by ``+`` or ``none``) and holds what ``rove.agents.PPO``
writes (``config.json``, ``episodes.jsonl``, ``progress.jsonl``, ``tb/``) plus, from here:

- ``run.json``: the :class:`RunSpec` it was started from (written first);
- ``checkpoints/last.pt``: the agent after its latest update (``PPO.load``), rewritten atomically after every
  update so that a killed run resumes from it (:func:`train_run` with ``resume=True``, as sweeps do);
  ``checkpoints/last.zip`` for a Stable-Baselines3 run (``agent="sb3"``, :mod:`rove.experiments.sb3_runs`);
- ``result.json``: summary metrics, written last and atomically. Its presence marks a finished run: sweeps
  skip it, reports aggregate it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RESULT_FILE = "result.json"
SPEC_FILE = "run.json"
CHECKPOINT = Path("checkpoints") / "last.pt"
# "ppo": rove.agents.PPO; "sb3": Stable-Baselines3's PPO in the same run folder (rove.experiments.sb3_runs).
AGENTS = ("ppo", "sb3")
NO_INTRINSIC = "none"
# Runs are summarised on their last episodes, where the policy has stopped changing much.
FINAL_FRACTION = 0.1
_LABEL = re.compile(r"^[A-Za-z0-9.+\-]+$")


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run; JSON round-trips through :meth:`to_dict`/:meth:`from_dict`.

    Args:
        env_id: Rove env id (``"Rove/MiniGrid-DoorKey-8x8-v0"``; ``Rove/`` may be left out).
        intrinsic: Intrinsic module names; empty for plain PPO, two or more are fused (``rove.intrinsic``'s
            ``fusion``).
        seed: Seed of the agent and of the envs' first reset.
        total_timesteps: Env steps, summed over envs.
        agent: ``"ppo"`` (Rove's PPO) or ``"sb3"`` (Stable-Baselines3's PPO, plain: no intrinsic module;
            ``agent_kwargs`` are then SB3's options; see :mod:`rove.experiments.sb3_runs`).
        n_envs: Parallel envs.
        intrinsic_kwargs: Options of a single module; with several, ``{member_name: {...}}`` entries go to that
            member and other keys to the fusion (``operator``, ``weights``, ...).
        agent_kwargs: Extra ``PPO`` constructor options (``n_steps``, ``batch_size``, ``ent_coef``, ...).
        env_kwargs: Options of every env (``rove.make_vec``'s ``**env_kwargs``, e.g. ``observation_keys`` or
            ``max_episode_steps``).
        device: Torch device (``"auto"`` picks CUDA when available).
        label: Method name in folder names and reports (default: the module names joined by ``+``; ``sb3``
            for an SB3 run).
    """

    env_id: str
    intrinsic: tuple[str, ...] = ()
    seed: int = 0
    total_timesteps: int = 100_000
    agent: str = "ppo"
    n_envs: int = 8
    intrinsic_kwargs: dict[str, Any] = field(default_factory=dict)
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "intrinsic", tuple(self.intrinsic))
        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent {self.agent!r}; choose from {list(AGENTS)}")
        if self.total_timesteps < 1 or self.n_envs < 1:
            raise ValueError(f"total_timesteps and n_envs must be >= 1, got {self.total_timesteps}, {self.n_envs}")
        if self.label is not None and not _LABEL.match(self.label):
            raise ValueError(f"run label {self.label!r} may only hold letters, digits, '.', '+' and '-'")
        if not all(isinstance(k, str) for k in self.env_kwargs):
            raise ValueError(f"env_kwargs keys must be option names (str), got {list(self.env_kwargs)}")

    @property
    def method(self) -> str:
        if self.label:
            return self.label
        if self.agent == "sb3":
            return "sb3"
        return "+".join(self.intrinsic) if self.intrinsic else NO_INTRINSIC

    @property
    def checkpoint(self) -> Path:
        """The checkpoint's path inside the run folder (SB3 saves zip files)."""
        return Path("checkpoints") / "last.zip" if self.agent == "sb3" else CHECKPOINT

    @property
    def env_name(self) -> str:
        return self.env_id.split("/", 1)[-1]

    @property
    def prefix(self) -> str:
        """``{env}__{method}__{seed}__``: every run folder of this spec starts with it."""
        return f"{self.env_name}__{self.method}__{self.seed}__"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["intrinsic"] = list(self.intrinsic)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown run option(s) {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**{**data, "intrinsic": tuple(data.get("intrinsic", ()))})


def parse_run_name(name: str) -> tuple[str, str, int, str] | None:
    """``(env, method, seed, time)`` from a folder named ``{env}__{method}__{seed}__{time}``, else None."""
    parts = name.split("__")
    if len(parts) != 4 or not parts[2].lstrip("-").isdigit():
        return None
    return parts[0], parts[1], int(parts[2]), parts[3]


def new_run_dir(root: str | Path, spec: RunSpec, when: float | None = None) -> Path:
    """A fresh folder ``root/{env}__{method}__{seed}__{YYYYmmdd-HHMMSS}`` (a suffix keeps it unique)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if when is None else when))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = root / f"{spec.prefix}{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def is_finished(run_dir: str | Path) -> bool:
    return (Path(run_dir) / RESULT_FILE).is_file()


def finished_run(root: str | Path, spec: RunSpec) -> Path | None:
    """A finished run folder of ``spec`` under ``root`` (same name prefix and same spec), or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    for path in sorted(root.glob(f"{glob_escape(spec.prefix)}*")):
        if not is_finished(path):
            continue
        saved = _read_json(path / SPEC_FILE)
        if saved is None or saved == spec.to_dict():
            return path
    return None


def resumable_run(root: str | Path, spec: RunSpec) -> Path | None:
    """The newest unfinished run folder of ``spec`` under ``root`` that holds a checkpoint, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    for path in sorted(root.glob(f"{glob_escape(spec.prefix)}*"), reverse=True):
        if is_finished(path) or not (path / spec.checkpoint).is_file():
            continue
        if _read_json(path / SPEC_FILE) == spec.to_dict():
            return path
    return None


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Writes JSON through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (a run killed mid-write) is skipped, others raise."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: not valid JSON ({err})") from err
    return out


# ----- training -----


def intrinsic_arguments(names: Sequence[str], kwargs: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """``(intrinsic, intrinsic_kwargs)`` for ``PPO``: None, one module, or a fusion of several.

    Raises:
        ValueError: An unknown module name (the message lists the valid ones), or options without a module.
    """
    from rove.intrinsic import names as module_names

    valid = module_names()
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown intrinsic module {name!r}; choose from: {', '.join(valid)}")
    if not names:
        if kwargs:
            raise ValueError(f"intrinsic options {dict(kwargs)} given without an intrinsic module")
        return None, None
    if len(names) == 1:
        return names[0], dict(kwargs)
    members = [(n, dict(kwargs.get(n, {}))) for n in names]
    fusion = {k: v for k, v in kwargs.items() if k not in names}
    return "fusion", {"modules": members, **fusion}


def build_env(spec: RunSpec) -> Any:
    """The env argument of ``PPO`` for ``spec``: the id, or a ``rove.make_vec`` env when it has ``env_kwargs``."""
    from rove.envs import check_env_id

    env_id = check_env_id(spec.env_id)
    if not spec.env_kwargs:
        return env_id
    import rove

    return rove.make_vec(env_id, spec.n_envs, seed=spec.seed, copy=False, **spec.env_kwargs)


def build_agent(spec: RunSpec, run_dir: str | Path | None, verbose: int = 0) -> Any:
    """The ``rove.agents.PPO`` for ``spec``, logging into ``run_dir``."""
    from rove.agents import PPO

    intrinsic, intrinsic_kwargs = intrinsic_arguments(spec.intrinsic, spec.intrinsic_kwargs)
    return PPO(
        "auto",
        build_env(spec),
        intrinsic=intrinsic,
        intrinsic_kwargs=intrinsic_kwargs,
        n_envs=spec.n_envs,
        seed=spec.seed,
        device=spec.device,
        run_dir=None if run_dir is None else str(run_dir),
        verbose=verbose,
        **spec.agent_kwargs,
    )


def resume_agent(spec: RunSpec, run_dir: Path, verbose: int = 0) -> Any:
    """The agent of ``run_dir``'s last checkpoint, logging on into the same folder; the checkpoint puts the
    envs built from ``spec`` back into the episodes it was in (Rove ids; other envs start fresh episodes)."""
    from rove.agents import PPO

    return PPO.load(
        run_dir / CHECKPOINT, env=build_env(spec), device=spec.device, run_dir=str(run_dir), verbose=verbose
    )


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train_run`: where the run is and what its checkpoint holds, to resume it."""

    def __init__(self, run_dir: Path, step: int, checkpoint_step: int | None) -> None:
        super().__init__(f"{run_dir} interrupted at step {step}")
        self.run_dir, self.step, self.checkpoint_step = run_dir, step, checkpoint_step


def spec_differences(saved: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """``"key: saved -> new"`` for each top-level option that differs between two ``RunSpec.to_dict()``."""
    return [
        f"{k}: {saved.get(k)!r} -> {spec.get(k)!r}"
        for k in sorted(set(saved) | set(spec))
        if saved.get(k) != spec.get(k)
    ]


def _check_run_dir(path: Path, spec: RunSpec, resume: bool) -> None:
    """A folder that holds a run is only trained into by resuming it, with its own spec, unless finished."""
    saved = _read_json(path / SPEC_FILE)
    if saved is None:
        return
    if not resume:
        raise ValueError(f"{path} already holds a run ({SPEC_FILE}): resume it or choose another folder")
    if is_finished(path):
        raise ValueError(f"{path} is a finished run ({RESULT_FILE} exists): there is nothing to resume")
    if saved != spec.to_dict():
        raise ValueError(
            f"{path} holds a different run; its {SPEC_FILE} differs in {'; '.join(spec_differences(saved, spec.to_dict()))}"
        )


class _Progress:
    """A run's progress bar from its first step to ``total`` (a resumed run's bar starts where it stopped),
    and the step its latest checkpoint holds."""

    def __init__(self, total: int, show: bool) -> None:
        self.total, self.show = total, show
        self.bar: Any = None
        self.checkpoint_step: int | None = None

    def callback(self) -> Any:
        from rove.agents.common.callbacks import BaseCallback

        progress = self

        class Callback(BaseCallback):
            def _on_training_start(self) -> None:
                progress.start(self.num_timesteps)

            def _on_update_end(self) -> None:  # runs after the checkpoint callback (listed after it)
                progress.advance(self.num_timesteps, self.model.ep_info_buffer if self.model is not None else ())

        return Callback()

    def start(self, step: int) -> None:
        self.checkpoint_step = step
        if self.show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=step, unit="step", dynamic_ncols=True)

    def advance(self, step: int, episodes: Any = ()) -> None:
        """Moves the bar to ``step`` (never past ``total``), with return/success of the recent ``episodes``."""
        from rove.agents.common.suite_metrics import progress_postfix

        self.checkpoint_step = step
        if self.bar is not None:
            self.bar.set_postfix_str(progress_postfix(episodes), refresh=False)
            self.bar.update(min(step, self.total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_run(
    spec: RunSpec,
    root: str | Path,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    verbose: int = 0,
    progress_bar: bool = False,
    threads: int | None = 1,
    log: Callable[[str], None] | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Trains one run into a new folder under ``root`` (or into ``run_dir``) and returns its ``result.json``.

    The spec is checked first (:func:`rove.experiments.validate.check_spec`): a bad option raises
    ValueError before any folder is made. The agent is checkpointed to ``checkpoints/last.pt`` after every
    update. With ``resume=True`` a run that was killed picks up from that checkpoint: the folder is
    ``run_dir`` if given (it must hold this spec and not be finished), else the newest unfinished folder of
    the same spec under ``root`` (:func:`resumable_run`), else a new one; its logs are appended to and
    training continues up to ``spec.total_timesteps``. A ``run_dir`` that already holds a run is refused
    without ``resume``.

    ``threads`` caps torch's intra-op threads (1 suits many runs sharing a machine; None leaves torch's
    default). ``log`` receives one line naming the folder (and the step a resumed run continues from).
    ``progress_bar`` shows steps out of ``spec.total_timesteps``, starting at the resumed step.
    ``callbacks`` are extra ``rove.agents`` callbacks (W&B tracking, periodic evaluation).

    Raises:
        RunInterrupted: On Ctrl-C, with the folder and the step of its last checkpoint.
    """
    import torch

    from rove.agents.common.callbacks import CheckpointCallback
    from rove.envs import check_env_id
    from rove.experiments import plugins
    from rove.experiments.validate import check_spec

    plugins.activate()  # a sweep worker or a SLURM job imports the plugins of the command that launched it
    sb3 = spec.agent == "sb3"
    if sb3:
        from rove.experiments import sb3_runs

        sb3_runs.check_spec(spec)
        if callbacks:
            raise ValueError("agent 'sb3' takes no run tools ([eval], [track]: Rove callbacks); leave them out")
    else:
        check_spec(spec)  # after the plugins: a module they register is a valid name
    if run_dir is not None:
        _check_run_dir(Path(run_dir), spec, resume)
    if threads is not None:
        torch.set_num_threads(threads)
    path = Path(run_dir) if run_dir is not None else (resume and resumable_run(root, spec)) or None
    if path is None:
        path, made = new_run_dir(root, spec), True
    else:
        made = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
    plugins.record(path)
    resuming = resume and (path / spec.checkpoint).is_file()
    if not resuming:
        write_json_atomic(path / SPEC_FILE, spec.to_dict())
    start = time.perf_counter()
    try:
        if sb3:
            model = sb3_runs.resume_agent(spec, path) if resuming else sb3_runs.build_agent(spec, path)
        else:
            model = resume_agent(spec, path, verbose) if resuming else build_agent(spec, path, verbose=verbose)
    except Exception:
        if made:  # what only the agent could refuse (a value out of range, ...): leave no half-made run behind
            shutil.rmtree(path, ignore_errors=True)
        raise
    steps_before = model.num_timesteps
    if log is not None:
        if resuming:
            log(f"resuming {path} from step {steps_before} of {spec.total_timesteps}")
        else:
            log(f"run folder: {path} ({spec.total_timesteps} steps)")
    progress = _Progress(spec.total_timesteps, progress_bar)
    try:
        remaining = spec.total_timesteps - model.num_timesteps
        if sb3:
            sb3_runs.learn(model, spec, path, resuming)
        elif remaining > 0:
            # The callback rewrites last.pt after every update; keep_last=0 keeps none of its numbered copies.
            checkpoints = CheckpointCallback(spec.total_timesteps, save_path=path / CHECKPOINT.parent, keep_last=0)
            model.learn(
                remaining, callback=[checkpoints, progress.callback(), *callbacks], reset_num_timesteps=not resuming
            )
        if not sb3:
            model.save(path / CHECKPOINT)
    except KeyboardInterrupt as err:
        checkpoint = progress.checkpoint_step if (path / spec.checkpoint).is_file() else None
        raise RunInterrupted(path, int(model.num_timesteps), checkpoint) from err
    finally:
        progress.close()
        if not sb3:
            model.close()
        if model.env is not None:
            model.env.close()
    wall = time.perf_counter() - start
    result = {
        "env_id": check_env_id(spec.env_id) if sb3 else model.env_id,
        "method": spec.method,
        "seed": spec.seed,
        "total_timesteps": int(model.num_timesteps),
        "wall_time_s": wall,
        "steps_per_s": (model.num_timesteps - steps_before) / max(wall, 1e-9),
        "resumed": resuming,
        **episode_metrics(read_jsonl(path / "episodes.jsonl")),
    }
    write_json_atomic(path / RESULT_FILE, result)
    result["run_dir"] = str(path)
    return result


# ----- reading back -----


def _numbers(episodes: Iterable[Mapping[str, Any]], key: str) -> np.ndarray:
    values = [e[key] for e in episodes if isinstance(e.get(key), (bool, int, float))]
    return np.asarray(values, dtype=np.float64)


def episode_metrics(episodes: Sequence[Mapping[str, Any]], final_fraction: float = FINAL_FRACTION) -> dict[str, Any]:
    """Summary of a run's training episodes.

    ``final_*`` are means over the last ``final_fraction`` of the episodes (at least one); ``success`` is
    MiniGrid's, ``score``/``depth`` NetHack's (score is the in-game score, depth the dungeon level at the
    end), ``crafter_score`` is computed over all episodes as in the Crafter paper.
    """
    out: dict[str, Any] = {"episodes": len(episodes)}
    if not episodes:
        return out
    tail = episodes[-max(1, round(len(episodes) * final_fraction)) :]
    out["mean_return"] = float(_numbers(episodes, "return").mean())
    out["final_return"] = float(_numbers(tail, "return").mean())
    out["final_length"] = float(_numbers(tail, "length").mean())
    for key in ("success", "score", "depth"):
        values = _numbers(tail, key)
        if values.size:
            out[f"final_{key}"] = float(values.mean())
    depths = _numbers(episodes, "depth")
    if depths.size:
        out["max_depth"] = float(depths.max())
    successes = [e["step"] for e in episodes if e.get("success")]
    if any("success" in e for e in episodes):
        out["first_success_step"] = successes[0] if successes else None
    if any(isinstance(e.get("achievements"), Mapping) for e in episodes):
        from rove.experiments.crafter_score import crafter_score, success_rates

        rates = success_rates(episodes)
        out["crafter_score"] = crafter_score(rates)
        out["achievement_rates"] = rates
    return out


@dataclass
class Run:
    """A run folder read back: where it is, what it ran, and (lazily) its logs."""

    path: Path
    env_id: str
    method: str
    seed: int
    config: dict[str, Any]
    result: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def env_name(self) -> str:
        return self.env_id.split("/", 1)[-1]

    def episodes(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "episodes.jsonl")

    def progress(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "progress.jsonl")


def load_run(path: str | Path) -> Run:
    """Reads a run folder; env, method and seed come from ``run.json``, else the name, else ``config.json``."""
    path = Path(path)
    config = _read_json(path / "config.json") or {}
    spec = _read_json(path / SPEC_FILE)
    result = _read_json(path / RESULT_FILE)
    parsed = parse_run_name(path.name)
    try:
        saved = RunSpec.from_dict(spec) if isinstance(spec, dict) else None
    except (TypeError, ValueError, NotImplementedError):  # written by another version of Rove
        saved = None
    if saved is not None:
        env_id, method, seed = saved.env_id, saved.method, saved.seed
    elif parsed is not None:
        env_id = config.get("env_id") or parsed[0]
        method, seed = parsed[1], parsed[2]
    else:
        env_id = config.get("env_id") or "unknown"
        method = config.get("intrinsic") or NO_INTRINSIC
        seed = int(config["seed"]) if isinstance(config.get("seed"), int) else 0
    return Run(path, env_id, method, int(seed), config, result if isinstance(result, dict) else None)


def find_runs(root: str | Path) -> list[Run]:
    """Every run folder (one holding ``config.json``) under ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such runs folder: {root}")
    folders = {p.parent for p in root.rglob("config.json")}
    if (root / "config.json").is_file():
        folders.add(root)
    return [load_run(p) for p in sorted(folders)]
