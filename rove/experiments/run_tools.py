"""The callbacks a run can ask for beyond checkpoints: periodic evaluation, W&B tracking, trajectory recording.

``rove train --eval-freq N --eval-episodes K --track ...`` and a sweep's ``[eval]``/``[track]`` tables build
them here, for :func:`rove.experiments.runs.train_run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# Eval episodes start from their own seeds, not those of the training envs' first episodes.
EVAL_SEED_OFFSET = 10_000


@dataclass(frozen=True)
class RunTools:
    """Evaluation and tracking options of a run (JSON round-trips through ``asdict``/``from_dict``).

    Args:
        eval_freq: Env steps between evaluations (0: none).
        eval_episodes: Episodes per evaluation.
        track: Log to Weights & Biases.
        wandb_project, wandb_entity, wandb_name, wandb_mode, wandb_group: see
            :class:`rove.agents.common.tracking.TrackOptions`.
        trajectories: Record every transition's state key and action into ``trajectories.bin`` (on by
            default; ``rove report`` computes the exploration metrics from it). See
            :mod:`rove.agents.common.trajectories`.
        trajectory_key: The int64 observation key recorded (``state_key``; e.g. MiniGrid's ``pose_key``).
    """

    eval_freq: int = 0
    eval_episodes: int = 5
    track: bool = False
    wandb_project: str = "rove"
    wandb_entity: str | None = None
    wandb_name: str | None = None
    wandb_mode: str | None = None
    wandb_group: str | None = None
    trajectories: bool = True
    trajectory_key: str = "state_key"

    def __post_init__(self) -> None:
        if not isinstance(self.trajectories, bool):
            raise ValueError(f"trajectories must be true or false, got {self.trajectories!r}")
        if not isinstance(self.trajectory_key, str) or not self.trajectory_key:
            raise ValueError(f"trajectory_key must be an observation key name, got {self.trajectory_key!r}")
        if self.eval_freq < 0 or self.eval_episodes < 1:
            raise ValueError(
                f"eval_freq must be >= 0 and eval_episodes >= 1, got {self.eval_freq}, {self.eval_episodes}"
            )
        from rove.agents.common.tracking import MODES

        if self.wandb_mode is not None and self.wandb_mode not in MODES:
            raise ValueError(f"unknown W&B mode {self.wandb_mode!r}; choose from {list(MODES)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunTools:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown run tool option(s) {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_eval_env(env_id: str, env_kwargs: Mapping[str, Any]) -> Any:
    """One env like the training envs (same id and env options, no vector options)."""
    import gymnasium as gym

    import rove  # noqa: F401  (registers the Rove ids)
    from rove.experiments.env_options import env_only

    return gym.make(env_id, **env_only(env_kwargs))


def callbacks(spec: Any, tools: RunTools) -> list[Any]:
    """The callbacks ``tools`` asks for, for the run ``spec`` (a ``RunSpec``).

    An ``agent = "sb3"`` run gets none: Rove callbacks do not plug into SB3's loop. Its evaluation and
    tracking are refused when the sweep is parsed; its trajectories are not recorded (no exploration
    metrics in its report rows).
    """
    out: list[Any] = []
    if spec.agent == "sb3":
        return out
    if tools.eval_freq > 0:
        from rove.agents.common.evaluation import EvalCallback

        out.append(
            EvalCallback(
                lambda: make_eval_env(spec.env_id, spec.env_kwargs),
                eval_freq=tools.eval_freq,
                n_eval_episodes=tools.eval_episodes,
                seed=spec.seed + EVAL_SEED_OFFSET,
            )
        )
    if tools.track:
        from rove.agents.common.tracking import TrackOptions, WandbCallback

        options = TrackOptions(
            project=tools.wandb_project,
            entity=tools.wandb_entity,
            name=tools.wandb_name,
            mode=tools.wandb_mode,
            group=tools.wandb_group,
        )
        out.append(WandbCallback(options, extra_config={"spec": spec.to_dict()}))
    if tools.trajectories:
        from rove.agents.common.trajectories import TrajectoryRecorder

        out.append(TrajectoryRecorder(tools.trajectory_key))
    return out


EVAL_KEYS = {"freq": "eval_freq", "episodes": "eval_episodes"}
TRACK_KEYS = {"project": "wandb_project", "entity": "wandb_entity", "mode": "wandb_mode", "group": "wandb_group"}
RECORD_KEYS = {"trajectories": "trajectories", "key": "trajectory_key"}


def tools_from_config(data: Mapping[str, Any], name: str, source: str = "config") -> RunTools:
    """A sweep config's ``[eval]`` (``freq``, ``episodes``), ``[track]`` (``project``, ``entity``, ``mode``,
    ``group``; the group defaults to the sweep's ``name``) and ``[record]`` (``trajectories``: true or false,
    ``key``: the observation key recorded) as :class:`RunTools`.

    Raises:
        ValueError: An unknown key (the message lists the valid ones) or a bad value.
    """
    out: dict[str, Any] = {}
    for table, keys in (("eval", EVAL_KEYS), ("track", TRACK_KEYS), ("record", RECORD_KEYS)):
        if table not in data:
            continue
        entry = data[table]
        if not isinstance(entry, Mapping):
            raise ValueError(f"{source}: [{table}] must be a table, got {entry!r}")
        unknown = set(entry) - set(keys)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {sorted(unknown)} in [{table}]; valid: {sorted(keys)}")
        out.update({keys[k]: v for k, v in entry.items()})
    if "track" in data:
        out["track"] = True
        out.setdefault("wandb_group", name)
    if "eval" in data and "eval_freq" not in out:
        raise ValueError(f"{source}: [eval] needs freq (env steps between evaluations)")
    try:
        return RunTools.from_dict(out)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from err
