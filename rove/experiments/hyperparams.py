"""Tuned settings per env, kept in ``rove/experiments/hyperparams/ppo.toml`` as RL Zoo keeps its
``hyperparams/ppo.yml``: ``rove train ENV`` starts from ENV's table (its exact id, else its suite's), and bare
``rove train`` is ``rove train <default_env>``, so naming the default env changes nothing.

Reference: DLR-RM/rl-baselines3-zoo, ``rl_zoo3/exp_manager.py`` (``read_hyperparameters``: exact env id, with
the algorithm's file). Deviation: a table per suite (``minigrid``, ``crafter``, ``nethack``) covers every id of
that suite without one entry per id (RL Zoo's only fallback is ``atari``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HYPERPARAMS_FILE = Path(__file__).with_name("hyperparams") / "ppo.toml"
ENTRY_KEYS = ("total_timesteps", "n_envs", "intrinsic", "agent", "intrinsic_kwargs", "env_kwargs")
SUITES = ("minigrid", "crafter", "nethack")


@dataclass(frozen=True)
class Tuned:
    """One env's settings: where they came from (``source``: the table's name, or ``None`` for PPO's defaults)."""

    env_id: str
    source: str | None
    total_timesteps: int = 100_000
    n_envs: int = 8
    intrinsic: tuple[str, ...] = ()
    agent: dict[str, Any] = field(default_factory=dict)
    intrinsic_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def module_kwargs(self, intrinsic: Sequence[str]) -> dict[str, Any]:
        """The options of ``intrinsic`` (one module: its table; several: ``{member: table}`` for a fusion)."""
        if len(intrinsic) == 1:
            return dict(self.intrinsic_kwargs.get(intrinsic[0], {}))
        return {n: dict(self.intrinsic_kwargs[n]) for n in intrinsic if n in self.intrinsic_kwargs}


def _load(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())


def _check_entry(name: str, entry: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{path}: [{name}] must be a table, got {entry!r}")
    unknown = set(entry) - set(ENTRY_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)} in [{name}]; valid: {list(ENTRY_KEYS)}")
    return entry


def suite_of(env_id: str) -> str | None:
    name = env_id.split("/", 1)[-1]
    if name.startswith(("MiniGrid-", "BabyAI-")):
        return "minigrid"
    if name.startswith("Crafter"):
        return "crafter"
    if name.startswith("NetHack"):
        return "nethack"
    return None


def default_env(path: Path = HYPERPARAMS_FILE) -> str:
    """The env bare ``rove train`` runs."""
    return str(_load(path)["default_env"])


def tuned(env_id: str, path: Path = HYPERPARAMS_FILE) -> Tuned:
    """The settings of ``env_id`` (a full ``Rove/...`` id): its own table, else its suite's, else PPO's defaults.

    Raises:
        ValueError: A table holds a key not in :data:`ENTRY_KEYS`.
    """
    data = _load(path)
    suite = suite_of(env_id)
    for name in (env_id, suite):
        if name is not None and name in data:
            entry = _check_entry(name, data[name], path)
            intrinsic = entry.get("intrinsic", ())
            return Tuned(
                env_id=env_id,
                source=name,
                total_timesteps=int(entry.get("total_timesteps", 100_000)),
                n_envs=int(entry.get("n_envs", 8)),
                intrinsic=(intrinsic,) if isinstance(intrinsic, str) else tuple(intrinsic),
                agent=dict(entry.get("agent", {})),
                intrinsic_kwargs={k: dict(v) for k, v in entry.get("intrinsic_kwargs", {}).items()},
                env_kwargs=dict(entry.get("env_kwargs", {})),
            )
    return Tuned(env_id=env_id, source=None)


def default_train(path: Path = HYPERPARAMS_FILE) -> dict[str, Any]:
    """What bare ``rove train`` runs, as a dict: the default env's id and its tuned settings."""
    settings = tuned(default_env(path), path)
    return {
        "env_id": settings.env_id,
        "intrinsic": settings.intrinsic,
        "intrinsic_kwargs": settings.module_kwargs(settings.intrinsic),
        "total_timesteps": settings.total_timesteps,
        "n_envs": settings.n_envs,
        "agent_kwargs": dict(settings.agent),
        "env_kwargs": dict(settings.env_kwargs),
    }
