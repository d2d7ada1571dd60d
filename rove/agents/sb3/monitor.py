"""Stable-Baselines3's ``Monitor`` for Rove envs: keeps Rove's episode statistics and reports ``is_success``.

A Rove env ends each episode with ``info["episode"] = {"r", "l", <suite metrics>}`` (MiniGrid ``success``,
NetHack ``score``/``depth``, Crafter ``achievements``). SB3's ``Monitor`` overwrites ``info["episode"]`` with
its own ``{"r", "l", "t"}``, so under plain SB3 those metrics are lost and ``rollout/success_rate`` is never
logged (SB3 reads ``info["is_success"]``, which no Rove env writes). :class:`RoveMonitor` is a ``Monitor``
that merges the two and sets ``is_success``; :func:`make_vec_env` is SB3's ``make_vec_env`` with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

_STASH = "rove_episode"


class _StashEpisode(gym.Wrapper):
    """Inside ``Monitor``: moves the env's ``info["episode"]`` to a key Monitor leaves alone and sets
    ``is_success`` from its ``success`` (so ``Monitor(info_keywords=("is_success",))`` can log it)."""

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        episode = info.pop("episode", None)
        if isinstance(episode, dict):
            info[_STASH] = episode
            if "success" in episode:
                info["is_success"] = bool(episode["success"])
        return obs, reward, terminated, truncated, info


class RoveMonitor(Monitor):
    """SB3's ``Monitor`` whose ``info["episode"]`` keeps the Rove env's statistics next to ``r``, ``l``, ``t``.

    At the end of an episode ``info["episode"]`` is Monitor's ``{"r", "l", "t"}`` plus the env's own entries
    (``success``, ``score``, ``achievements``, ...; Monitor's ``r`` and ``l`` win, they are equal), and
    ``info["is_success"]`` is set when the env reports ``success``: SB3 logs its mean as
    ``rollout/success_rate``. Arguments are ``Monitor``'s.
    """

    def __init__(self, env: gym.Env, *args: Any, **kwargs: Any) -> None:
        super().__init__(_StashEpisode(env), *args, **kwargs)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        rove_episode = info.pop(_STASH, None)
        if isinstance(rove_episode, dict) and "episode" in info:
            info["episode"] = {**rove_episode, **info["episode"]}
        return obs, reward, terminated, truncated, info


def make_vec_env(
    env_id: str | Callable[..., gym.Env],
    n_envs: int = 1,
    seed: int | None = None,
    start_index: int = 0,
    monitor_dir: str | None = None,
    wrapper_class: Callable[..., gym.Env] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    vec_env_cls: type[DummyVecEnv | SubprocVecEnv] | None = None,
    vec_env_kwargs: dict[str, Any] | None = None,
    monitor_kwargs: dict[str, Any] | None = None,
    wrapper_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """``stable_baselines3.common.env_util.make_vec_env`` (same arguments) with :class:`RoveMonitor` in place
    of ``Monitor``. (SB3's own always adds a plain ``Monitor``, which would drop the statistics again.)

    Seeds as SB3 does: env ``i`` first resets with ``seed + i``, its action space is seeded with
    ``seed + start_index + i``.
    """
    import os

    import rove  # noqa: F401  (registers the Rove ids)

    def make(rank: int) -> Callable[[], gym.Env]:
        def init() -> gym.Env:
            kwargs = env_kwargs or {}
            env = gym.make(env_id, **kwargs) if isinstance(env_id, str) else env_id(**kwargs)
            if seed is not None:
                env.action_space.seed(seed + rank)
            filename = os.path.join(monitor_dir, str(rank)) if monitor_dir is not None else None
            if monitor_dir is not None:
                os.makedirs(monitor_dir, exist_ok=True)
            env = RoveMonitor(env, filename=filename, **(monitor_kwargs or {}))
            return wrapper_class(env, **(wrapper_kwargs or {})) if wrapper_class is not None else env

        return init

    venv = (vec_env_cls or DummyVecEnv)([make(start_index + i) for i in range(n_envs)], **(vec_env_kwargs or {}))
    venv.seed(seed)
    return venv
