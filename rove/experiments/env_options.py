"""Env options (``--env-kwargs``, a sweep's ``[env_kwargs]``): which go to the vector env, which to each env,
and an early check so that a bad one fails before a run folder is made."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# rove.make_vec's own options; every other key goes to gym.make for each env.
VECTOR_KEYS = ("mode", "num_workers", "step_in_main", "spin", "context", "timeout")


def env_only(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The options of one env (``gym.make``), without the vector env's."""
    return {k: v for k, v in kwargs.items() if k not in VECTOR_KEYS}


def check_env_kwargs(env_id: str, kwargs: Mapping[str, Any]) -> None:
    """Builds one env with ``kwargs`` (and checks the vector mode), then closes it.

    Raises:
        ValueError: A bad option; the message names it (and the valid choices where the env gives them).
    """
    import gymnasium as gym

    from rove.envs.vector import MODES

    mode = kwargs.get("mode", "sync")
    if mode not in MODES:
        raise ValueError(f"unknown vector env mode {mode!r}; choose from {list(MODES)}")
    try:
        env = gym.make(env_id, **env_only(kwargs))
    except (TypeError, ValueError) as err:
        raise ValueError(f"bad env option for {env_id} in {dict(kwargs)}: {err}") from err
    env.close()


def run_env_kwargs(checkpoint: str | Path) -> dict[str, Any]:
    """The env options (not the vector env's) of the run a checkpoint belongs to (its ``run.json``), else ``{}``."""
    checkpoint = Path(checkpoint)
    for folder in (checkpoint.parent.parent, checkpoint.parent):
        spec = folder / "run.json"
        if spec.is_file():
            return env_only(json.loads(spec.read_text()).get("env_kwargs") or {})
    return {}
