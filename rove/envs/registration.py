"""Registers every Rove environment with Gymnasium under the ``Rove/`` namespace.

Entry points are strings, so registering imports no suite (nle, crafter) until an env is made.
MiniGrid's ids are read from minigrid's own registrations, so every id it ships is mirrored (but the
``MiniGrid-WFC-*`` ids, whose pattern files the minigrid wheel lacks). MiniHack's ids are a list in
``rove/envs/minihack/tasks.py`` (importing minihack would import nle), checked against minihack's registry
by the tests.
"""

from __future__ import annotations

import difflib

import gymnasium as gym

NAMESPACE = "Rove"

# Task name -> the NetHack task the adapter builds; see rove/envs/nethack/tasks.py.
NETHACK_TASKS = (
    "NetHack",
    "NetHackScore",
    "NetHackStaircase",
    "NetHackStaircasePet",
    "NetHackOracle",
    "NetHackGold",
    "NetHackEat",
    "NetHackScout",
    "NetHackChallenge",
    # Variants used by the LLM-reward papers (Motif, ONI).
    "NetHackStaircaseLvl2",
    "NetHackStaircaseLvl3",
    "NetHackStaircaseLvl4",
    "NetHackOracleSober",
)

# Motif's own tasks (rl_baseline/tasks_nle.py registers them as -v1), as Rove/Motif-<name>-v1 (a name of their
# own: a plain <name>-v1 would make Gymnasium call nle's -v0 out of date): id name -> Rove's task. Staircase and
# Oracle: 50 on success, 0 otherwise; all with Motif's eat fix. The -v0 ids of the same names keep nle's scale.
MOTIF_TASKS = {
    "NetHackScore": "MotifScore",
    "NetHackStaircase": "MotifStaircaseLvl2",
    "NetHackStaircaseLvl2": "MotifStaircaseLvl2",
    "NetHackStaircaseLvl3": "MotifStaircaseLvl3",
    "NetHackStaircaseLvl4": "MotifStaircaseLvl4",
    "NetHackOracle": "MotifOracle",
    "NetHackOracleSober": "MotifOracleSober",
}

CRAFTER_TASKS = {"CrafterReward": True, "CrafterNoReward": False}


def _minigrid_ids() -> list[str]:
    import minigrid  # noqa: F401  (registers MiniGrid and BabyAI ids on import)

    # MiniGrid-WFC-*: minigrid 3.2.0's wheel lacks their pattern images, so they can never be reset.
    return sorted(
        k for k in gym.registry if k.startswith(("MiniGrid-", "BabyAI-")) and "/" not in k and "-WFC-" not in k
    )


def register_envs() -> None:
    """Registers all Rove ids; safe to call more than once."""
    if f"{NAMESPACE}/NetHackScore-v0" in gym.registry:
        return
    for task in NETHACK_TASKS:
        gym.register(
            id=f"{NAMESPACE}/{task}-v0",
            entry_point="rove.envs.nethack.env:NetHackEnv",
            kwargs={"task": task},
            disable_env_checker=True,
        )
    for name, task in MOTIF_TASKS.items():
        gym.register(
            id=f"{NAMESPACE}/Motif-{name}-v1",
            entry_point="rove.envs.nethack.env:NetHackEnv",
            kwargs={"task": task},
            disable_env_checker=True,
        )
    for name, reward in CRAFTER_TASKS.items():
        gym.register(
            id=f"{NAMESPACE}/{name}-v1",
            entry_point="rove.envs.crafter.env:CrafterEnv",
            kwargs={"reward": reward},
            disable_env_checker=True,
        )
    from rove.envs.minihack.tasks import MINIHACK_IDS  # a plain list: imports neither minihack nor nle

    for env_id in MINIHACK_IDS:
        gym.register(
            id=f"{NAMESPACE}/{env_id}",
            entry_point="rove.envs.minihack.env:MiniHackEnv",
            kwargs={"env_id": env_id},
            disable_env_checker=True,
        )
    for env_id in _minigrid_ids():
        gym.register(
            id=f"{NAMESPACE}/{env_id}",
            entry_point="rove.envs.minigrid.env:MiniGridEnv",
            kwargs={"env_id": env_id},
            disable_env_checker=True,
        )


def rove_ids(suite: str | None = None) -> list[str]:
    """All registered Rove ids, optionally one suite's (``"nethack"``, ``"minihack"``, ``"crafter"``, ``"minigrid"``)."""
    register_envs()
    prefix = f"{NAMESPACE}/"
    ids = sorted(k for k in gym.registry if k.startswith(prefix))
    if suite is None:
        return ids
    starts = {
        "nethack": ("NetHack", "Motif-NetHack"),
        "minihack": ("MiniHack-",),
        "crafter": ("Crafter",),
        "minigrid": ("MiniGrid-", "BabyAI-"),
    }
    if suite not in starts:
        raise ValueError(f"unknown suite {suite!r}; choose from {sorted(starts)}")
    return [k for k in ids if k[len(prefix) :].startswith(starts[suite])]


def check_env_id(env_id: str) -> str:
    """Returns the full Rove id for ``env_id`` (``"Rove/"`` may be left out) or raises with close matches."""
    register_envs()
    full = env_id if "/" in env_id else f"{NAMESPACE}/{env_id}"
    if full in gym.registry:
        return full
    from rove.envs.minihack.tasks import NOT_REGISTERED

    name = full.split("/", 1)[1]
    if name in NOT_REGISTERED:
        raise gym.error.NameNotFound(f"{env_id!r} is not registered in Rove: it {NOT_REGISTERED[name]}")
    if name.startswith("MiniGrid-WFC-"):
        raise gym.error.NameNotFound(
            f"{env_id!r} is not registered in Rove: the minigrid wheel lacks its pattern files, so it can never reset"
        )
    close = difflib.get_close_matches(full, rove_ids(), n=5, cutoff=0.6)
    hint = f" Did you mean one of {close}?" if close else " See rove.envs.rove_ids() for the list."
    raise gym.error.NameNotFound(f"unknown Rove environment id {env_id!r}.{hint}")
