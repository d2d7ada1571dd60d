"""MiniHack (minihack 1.0.2) adapter: ``MiniHackEnv`` for every ``Rove/MiniHack-*`` id; see ``env.py``, ``tasks.py``.

Importing this package imports neither minihack nor nle (the registry reads ``tasks.MINIHACK_IDS``); reading
``MiniHackEnv`` or the key lists imports them.
"""

from typing import Any

from rove.envs.minihack.tasks import CUSTOM_IDS, MINIHACK_IDS, NOT_REGISTERED

__all__ = ["AVAILABLE_KEYS", "CROP_KEYS", "CUSTOM_IDS", "DEFAULT_KEYS", "MINIHACK_IDS", "NOT_REGISTERED", "MiniHackEnv"]


def __getattr__(name: str) -> Any:
    if name in ("AVAILABLE_KEYS", "CROP_KEYS", "DEFAULT_KEYS", "MiniHackEnv"):
        from rove.envs.minihack import env

        return getattr(env, name)
    raise AttributeError(f"module 'rove.envs.minihack' has no attribute {name!r}")
