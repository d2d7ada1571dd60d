"""Stable-Baselines3's PPO as a run's agent (``RunSpec(agent="sb3")``, a sweep method's ``agent = "sb3"``).

The run folder is the one Rove's PPO writes (:mod:`rove.experiments.runs`), so ``rove report`` reads both
alike: ``config.json``, ``episodes.jsonl`` (one line per finished episode: ``step``, ``env``, ``return``,
``length`` and the env's suite metrics such as MiniGrid's ``success``, through
:class:`rove.agents.sb3.RoveMonitor`), ``progress.jsonl`` (SB3's logger, one line per update, keyed as SB3
logs: ``rollout/ep_rew_mean``, ``train/value_loss``, ...), ``run.json`` and ``result.json``.

The agent: ``stable_baselines3.PPO`` with the run's ``agent_kwargs`` (SB3's own option names; validated
against its signature), on :func:`rove.agents.sb3.make_vec_env` (``DummyVecEnv`` of the Rove env, seeded as SB3
seeds: env ``i`` resets first with ``seed + i``). On Dict and image observations the policy runs Rove's
encoder (:func:`rove.agents.sb3.rove_policy_kwargs`), on flat Box spaces SB3's ``MlpPolicy`` as it ships.
``policy_kwargs.activation_fn`` may be a name (``"tanh"``, ``"relu"``, ...), as for Rove's PPO. Budgets
count env transitions on both agents: SB3 autoresets inside ``step``, so each of its steps is one.

Resume: the model is saved to ``checkpoints/last.zip`` (SB3's ``save``: weights, optimiser, step count,
hyperparameters) after every update. A killed run resumes from it: training continues to the same
``total_timesteps`` and the log lines written after that checkpoint are dropped. Unlike a Rove run, the
resumed SB3 run is not bit-identical to an uninterrupted one: the envs start fresh episodes (SB3 saves no env
state) and the random streams restart from the seed.

Not supported here: intrinsic modules (use :class:`rove.agents.sb3.IntrinsicRewardCallback` directly) and
the ``[eval]``/``[track]`` run tools (they are Rove callbacks); both are refused up front.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger

from rove.agents.common.logger import JSONLWriter, to_jsonable

if TYPE_CHECKING:
    from rove.experiments.runs import RunSpec

CHECKPOINT = Path("checkpoints") / "last.zip"
# Options the run sets itself, refused in agent_kwargs (with what to use instead).
RUN_SET = {
    "policy": "chosen from the env (MultiInputPolicy/MlpPolicy with Rove's encoder); use policy_kwargs",
    "env": "set the env id",
    "seed": "use seeds",
    "device": "use device",
    "verbose": "the run logs to its folder",
    "tensorboard_log": "the run logs to its folder",
    "_init_setup_model": "internal",
}
# rove.make_vec options that SB3's DummyVecEnv has no use for.
VECTOR_ONLY_ENV_KWARGS = ("mode", "step_in_main", "num_workers", "copy")


def check_spec(spec: RunSpec, here: bool = True) -> None:
    """Checks an SB3 run's options before any folder is made.

    Raises:
        ValueError: One line naming the bad key or value.
    """
    from stable_baselines3.common.policies import ActorCriticPolicy

    from rove.experiments.validate import check_device, check_options

    if spec.intrinsic:
        raise ValueError(
            f"agent 'sb3' runs plain PPO in sweeps, got intrinsic modules {list(spec.intrinsic)}; use "
            "rove.agents.sb3.IntrinsicRewardCallback in a script, or agent 'ppo' (Rove's PPO)"
        )
    check_options("agent options (sb3)", spec.agent_kwargs, PPO, RUN_SET)
    policy_kwargs = spec.agent_kwargs.get("policy_kwargs")
    if policy_kwargs is not None and not isinstance(policy_kwargs, Mapping):
        raise ValueError(f"agent options (sb3): policy_kwargs must be a table, got {policy_kwargs!r}")
    if policy_kwargs:
        run_set = {"observation_space": "the env's", "action_space": "the env's", "lr_schedule": "learning_rate"}
        named = {k: v for k, v in policy_kwargs.items() if k != "activation_fn"}  # a name stands for the class
        check_options("agent options (sb3): policy_kwargs", named, ActorCriticPolicy, run_set)
        _activation(policy_kwargs.get("activation_fn"))
    for key in spec.env_kwargs:
        if key in VECTOR_ONLY_ENV_KWARGS:
            raise ValueError(f"env option {key!r} is a rove.make_vec option; agent 'sb3' runs SB3's DummyVecEnv")
    check_device(spec.device, here)


def _activation(value: Any) -> Any:
    from rove.agents.ppo.policies import activation_class

    return None if value is None else activation_class(value)


def _policy(spec: RunSpec, observation_space: Any) -> tuple[str, dict[str, Any]]:
    from gymnasium import spaces

    from rove.agents.sb3 import rove_policy_kwargs
    from rove.encoders import suite_of

    kwargs = dict(spec.agent_kwargs.get("policy_kwargs") or {})
    if "activation_fn" in kwargs:
        kwargs["activation_fn"] = _activation(kwargs["activation_fn"])
    if suite_of(observation_space) == "box":
        return "MlpPolicy", kwargs
    name = "MultiInputPolicy" if isinstance(observation_space, spaces.Dict) else "MlpPolicy"
    return name, rove_policy_kwargs(**kwargs)


def _make_env(spec: RunSpec) -> Any:
    from rove.agents.sb3 import make_vec_env
    from rove.envs import check_env_id

    return make_vec_env(check_env_id(spec.env_id), spec.n_envs, seed=spec.seed, env_kwargs=dict(spec.env_kwargs))


def build_agent(spec: RunSpec, run_dir: Path) -> Any:
    """A fresh ``stable_baselines3.PPO`` for ``spec``; writes ``run_dir/config.json``."""
    env = _make_env(spec)
    policy, policy_kwargs = _policy(spec, env.observation_space)
    options = {k: v for k, v in spec.agent_kwargs.items() if k != "policy_kwargs"}
    model = PPO(policy, env, policy_kwargs=policy_kwargs, seed=spec.seed, device=spec.device, verbose=0, **options)
    _write_config(model, spec, run_dir, policy)
    return model


def resume_agent(spec: RunSpec, run_dir: Path) -> Any:
    """The model of ``run_dir``'s checkpoint on fresh envs; log lines after the checkpoint are dropped."""
    model = PPO.load(run_dir / CHECKPOINT, env=_make_env(spec), device=spec.device)
    for name in ("episodes.jsonl", "progress.jsonl"):
        _truncate_log(run_dir / name, model.num_timesteps)
    return model


def _truncate_log(path: Path, step: int) -> None:
    """Keeps the lines of ``path`` logged at or before ``step`` (and drops a torn last line)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record.get("step", 0) <= step:
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


def _write_config(model: Any, spec: RunSpec, run_dir: Path, policy: str) -> None:
    import stable_baselines3

    from rove.envs import check_env_id

    config = {
        "algorithm": "stable_baselines3.PPO",
        "stable_baselines3": stable_baselines3.__version__,
        "env_id": check_env_id(spec.env_id),
        "n_envs": spec.n_envs,
        "policy": policy,
        "policy_kwargs": {k: str(v) for k, v in (model.policy_kwargs or {}).items()},
        "network": str(model.policy),
        "intrinsic": None,
        **{k: v for k, v in spec.agent_kwargs.items() if k != "policy_kwargs"},
        "seed": spec.seed,
        "device": str(model.device),
        "observation_space": str(model.observation_space),
        "action_space": str(model.action_space),
    }
    path = run_dir / "config.json"
    if not path.exists():
        path.write_text(json.dumps(to_jsonable(config), indent=2) + "\n")


def learn(model: Any, spec: RunSpec, run_dir: Path, resuming: bool) -> None:
    """Trains ``model`` up to ``spec.total_timesteps``, logging into ``run_dir`` and checkpointing every update."""
    remaining = spec.total_timesteps - model.num_timesteps
    progress = _JSONLOutput(run_dir / "progress.jsonl")
    model.set_logger(Logger(folder=None, output_formats=[progress]))
    recorder = RunFolderCallback(run_dir)
    try:
        if remaining > 0:
            model.learn(remaining, callback=recorder, reset_num_timesteps=not resuming)
        save(model, run_dir / CHECKPOINT)
    finally:
        recorder.close()
        progress.close()


def save(model: Any, path: Path) -> None:
    """``model.save`` through a temporary file and a rename, so a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    model.save(tmp)
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return to_jsonable(np.asarray(value).item() if np.ndim(value) == 0 else value)


class RunFolderCallback(BaseCallback):
    """Writes ``episodes.jsonl`` as Rove's agent does and saves the checkpoint after every update."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.episodes = JSONLWriter(run_dir / "episodes.jsonl")
        self.saved_at: int | None = None

    def _on_training_start(self) -> None:
        self.saved_at = self.num_timesteps

    def _on_rollout_start(self) -> None:
        # SB3 starts a rollout right after the previous update: the model now holds that update.
        if self.saved_at is not None and self.num_timesteps > self.saved_at:
            save(self.model, self.run_dir / CHECKPOINT)
            self.saved_at = self.num_timesteps

    def _on_step(self) -> bool:
        for env, info in enumerate(self.locals["infos"]):
            episode = info.get("episode")
            if not isinstance(episode, Mapping):
                continue
            record = {"env": env, "return": float(episode["r"]), "length": int(episode["l"])}
            record.update({k: _plain(v) for k, v in episode.items() if k not in ("r", "l", "t")})
            self.episodes.write(record, self.num_timesteps)
        return True

    def close(self) -> None:
        self.episodes.close()


class _JSONLOutput(KVWriter):
    """SB3 logger output writing ``progress.jsonl`` lines as Rove's agent does: ``step``, ``time`` (seconds
    since training started), ``sps`` and SB3's numeric keys."""

    def __init__(self, path: Path) -> None:
        self.writer = JSONLWriter(path)
        self.start = time.perf_counter()

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        values = {
            k: float(v)
            for k, v in key_values.items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
        }
        self.writer.write({"time": time.perf_counter() - self.start, "sps": values.get("time/fps"), **values}, step)

    def close(self) -> None:
        self.writer.close()
