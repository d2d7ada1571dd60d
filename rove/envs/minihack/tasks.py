"""Which MiniHack ids Rove registers, and how it builds their task objects.

minihack 1.0.2 registers 161 ids (on ``import minihack``); Rove mirrors them as ``Rove/MiniHack-...`` except
those listed in :data:`NOT_REGISTERED` with the reason. The list is written out here so that registering does
not import minihack (and nle); ``tests/envs/test_minihack.py`` checks it against minihack's own registry.

Two things are fixed while building a task:

* nle computes only the keys Rove needs: MiniHack's base class drops its ``observation_keys`` argument before
  calling nle, so nle would compute every array (``tty_*``, ``inv_*``, ``screen_descriptions``, ...) on every
  step. :func:`task_class` slips a class between MiniHack and nle's ``NetHackStaircase`` that hands nle the
  keys it is given.
* ``MiniHack-LavaCrossing*``/``SimpleCrossing*`` cannot be built with minigrid 3.x (minihack passes
  ``width``/``height`` to minigrid's ``CrossingEnv``, which takes only ``size``: an AssertionError at
  ``make``); :class:`CrossingHack` builds them without those arguments, the only change.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

NOT_REGISTERED = {
    "MiniHack-Boxoban-Hard-v0": "needs the Boxoban level files, which the minihack wheel does not ship",
    "MiniHack-Boxoban-Medium-v0": "needs the Boxoban level files, which the minihack wheel does not ship",
    "MiniHack-Boxoban-Unfiltered-v0": "needs the Boxoban level files, which the minihack wheel does not ship",
}

# Ids that need a user's level: gym.make(id, des_file=...).
CUSTOM_IDS = ("MiniHack-Navigation-Custom-v0", "MiniHack-Skill-Custom-v0")

# fmt: off
MINIHACK_IDS = (
    "MiniHack-ClosedDoor-v0", "MiniHack-Corridor-R2-v0", "MiniHack-Corridor-R3-v0", "MiniHack-Corridor-R5-v0",
    "MiniHack-CorridorBattle-Dark-v0", "MiniHack-CorridorBattle-v0", "MiniHack-Eat-Distr-v0",
    "MiniHack-Eat-Fixed-v0", "MiniHack-Eat-v0", "MiniHack-ExploreMaze-Easy-Mapped-v0",
    "MiniHack-ExploreMaze-Easy-v0", "MiniHack-ExploreMaze-Hard-Mapped-v0", "MiniHack-ExploreMaze-Hard-v0",
    "MiniHack-Freeze-Horn-Full-v0", "MiniHack-Freeze-Horn-Restricted-v0", "MiniHack-Freeze-Lava-Full-v0",
    "MiniHack-Freeze-Lava-Restricted-v0", "MiniHack-Freeze-Random-Full-v0", "MiniHack-Freeze-Random-Restricted-v0",
    "MiniHack-Freeze-Wand-Full-v0", "MiniHack-Freeze-Wand-Restricted-v0", "MiniHack-HideNSeek-Big-v0",
    "MiniHack-HideNSeek-Lava-v0", "MiniHack-HideNSeek-Mapped-v0", "MiniHack-HideNSeek-v0",
    "MiniHack-KeyRoom-Dark-S15-v0", "MiniHack-KeyRoom-Dark-S5-v0", "MiniHack-KeyRoom-Fixed-S5-v0",
    "MiniHack-KeyRoom-S15-v0", "MiniHack-KeyRoom-S5-v0", "MiniHack-Labyrinth-Big-v0", "MiniHack-Labyrinth-Small-v0",
    "MiniHack-LavaCross-Full-v0", "MiniHack-LavaCross-Levitate-Full-v0",
    "MiniHack-LavaCross-Levitate-Potion-Inv-Full-v0", "MiniHack-LavaCross-Levitate-Potion-Inv-Restricted-v0",
    "MiniHack-LavaCross-Levitate-Potion-Pickup-Full-v0", "MiniHack-LavaCross-Levitate-Potion-Pickup-Restricted-v0",
    "MiniHack-LavaCross-Levitate-Restricted-v0", "MiniHack-LavaCross-Levitate-Ring-Inv-Full-v0",
    "MiniHack-LavaCross-Levitate-Ring-Inv-Restricted-v0", "MiniHack-LavaCross-Levitate-Ring-Pickup-Full-v0",
    "MiniHack-LavaCross-Levitate-Ring-Pickup-Restricted-v0", "MiniHack-LavaCross-Restricted-v0",
    "MiniHack-LavaCrossingS11N5-v0", "MiniHack-LavaCrossingS19N13-v0", "MiniHack-LavaCrossingS19N17-v0",
    "MiniHack-LavaCrossingS9N1-v0", "MiniHack-LavaCrossingS9N2-v0", "MiniHack-LavaCrossingS9N3-v0",
    "MiniHack-Levitate-Boots-Fixed-v0", "MiniHack-Levitate-Boots-Full-v0", "MiniHack-Levitate-Boots-Restricted-v0",
    "MiniHack-Levitate-Potion-Fixed-v0", "MiniHack-Levitate-Potion-Full-v0", "MiniHack-Levitate-Potion-Restricted-v0",
    "MiniHack-Levitate-Random-Full-v0", "MiniHack-Levitate-Ring-Fixed-v0", "MiniHack-Levitate-Ring-Full-v0",
    "MiniHack-Levitate-Ring-Restricted-v0", "MiniHack-LockedDoor-Fixed-v0", "MiniHack-LockedDoor-v0",
    "MiniHack-MazeWalk-15x15-v0", "MiniHack-MazeWalk-45x19-v0", "MiniHack-MazeWalk-9x9-v0",
    "MiniHack-MazeWalk-Mapped-15x15-v0", "MiniHack-MazeWalk-Mapped-45x19-v0", "MiniHack-MazeWalk-Mapped-9x9-v0",
    "MiniHack-Memento-F2-v0", "MiniHack-Memento-F4-v0", "MiniHack-Memento-Short-F2-v0",
    "MiniHack-MultiRoom-N10-Lava-OpenDoor-v0", "MiniHack-MultiRoom-N10-Lava-v0", "MiniHack-MultiRoom-N10-OpenDoor-v0",
    "MiniHack-MultiRoom-N10-v0", "MiniHack-MultiRoom-N2-Extreme-v0", "MiniHack-MultiRoom-N2-Lava-v0",
    "MiniHack-MultiRoom-N2-LavaMonsters-v0", "MiniHack-MultiRoom-N2-Locked-v0", "MiniHack-MultiRoom-N2-Monster-v0",
    "MiniHack-MultiRoom-N2-v0", "MiniHack-MultiRoom-N4-Extreme-v0", "MiniHack-MultiRoom-N4-Lava-v0",
    "MiniHack-MultiRoom-N4-LavaMonsters-v0", "MiniHack-MultiRoom-N4-Locked-v0", "MiniHack-MultiRoom-N4-Monster-v0",
    "MiniHack-MultiRoom-N4-v0", "MiniHack-MultiRoom-N6-Extreme-v0", "MiniHack-MultiRoom-N6-Lava-OpenDoor-v0",
    "MiniHack-MultiRoom-N6-Lava-v0", "MiniHack-MultiRoom-N6-LavaMonsters-v0", "MiniHack-MultiRoom-N6-Locked-v0",
    "MiniHack-MultiRoom-N6-Monster-v0", "MiniHack-MultiRoom-N6-OpenDoor-v0", "MiniHack-MultiRoom-N6-v0",
    "MiniHack-Navigation-Custom-v0", "MiniHack-Pray-Distr-v0", "MiniHack-Pray-Fixed-v0", "MiniHack-Pray-v0",
    "MiniHack-PutOn-Distr-v0", "MiniHack-PutOn-Fixed-v0", "MiniHack-PutOn-v0", "MiniHack-Quest-Easy-v0",
    "MiniHack-Quest-Hard-v0", "MiniHack-Quest-Medium-v0", "MiniHack-Read-Distr-v0", "MiniHack-Read-Fixed-v0",
    "MiniHack-Read-v0", "MiniHack-River-Lava-v0", "MiniHack-River-Monster-v0", "MiniHack-River-MonsterLava-v0",
    "MiniHack-River-Narrow-v0", "MiniHack-River-v0", "MiniHack-Room-15x15-v0", "MiniHack-Room-5x5-v0",
    "MiniHack-Room-Dark-15x15-v0", "MiniHack-Room-Dark-5x5-v0", "MiniHack-Room-Monster-15x15-v0",
    "MiniHack-Room-Monster-5x5-v0", "MiniHack-Room-Random-15x15-v0", "MiniHack-Room-Random-5x5-v0",
    "MiniHack-Room-Trap-15x15-v0", "MiniHack-Room-Trap-5x5-v0", "MiniHack-Room-Ultimate-15x15-v0",
    "MiniHack-Room-Ultimate-5x5-v0", "MiniHack-SimpleCrossingS11N5-v0", "MiniHack-SimpleCrossingS9N1-v0",
    "MiniHack-SimpleCrossingS9N2-v0", "MiniHack-SimpleCrossingS9N3-v0", "MiniHack-Sink-Distr-v0",
    "MiniHack-Sink-Fixed-v0", "MiniHack-Sink-v0", "MiniHack-Skill-Custom-v0", "MiniHack-Sokoban1a-v1",
    "MiniHack-Sokoban1b-v1", "MiniHack-Sokoban2a-v1", "MiniHack-Sokoban2b-v1", "MiniHack-Sokoban3a-v1",
    "MiniHack-Sokoban3b-v1", "MiniHack-Sokoban4a-v1", "MiniHack-Sokoban4b-v1", "MiniHack-Wear-Distr-v0",
    "MiniHack-Wear-Fixed-v0", "MiniHack-Wear-v0", "MiniHack-Wield-Distr-v0", "MiniHack-Wield-Fixed-v0",
    "MiniHack-Wield-v0", "MiniHack-WoD-Easy-Full-v0", "MiniHack-WoD-Easy-Restricted-v0", "MiniHack-WoD-Hard-Full-v0",
    "MiniHack-WoD-Hard-Restricted-v0", "MiniHack-WoD-Medium-Full-v0", "MiniHack-WoD-Medium-Restricted-v0",
    "MiniHack-WoD-Pro-Full-v0", "MiniHack-WoD-Pro-Restricted-v0", "MiniHack-Zap-Distr-v0", "MiniHack-Zap-Fixed-v0",
    "MiniHack-Zap-v0",
)
# fmt: on


def import_minihack() -> Any:
    """Imports minihack (registering its ids) or raises an ImportError that says what to install."""
    try:
        with warnings.catch_warnings():
            # minihack's own import of pkg_resources warns that it is deprecated: nothing a user can act on.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import minihack
    except ModuleNotFoundError as exc:
        if exc.name == "pkg_resources":
            raise ImportError(
                "minihack 1.0.2 imports pkg_resources, which setuptools >= 81 removed: pip install 'setuptools<81'"
            ) from exc
        raise ImportError("Rove's MiniHack envs need minihack: pip install minihack==1.0.2") from exc
    return minihack


@functools.cache
def _nle_keys_shim() -> type:
    from nle.env.tasks import NetHackStaircase

    class HandKeysToNle(NetHackStaircase):
        """Passes ``rove_nle_keys`` to nle as its ``observation_keys`` (MiniHack keeps its own list apart)."""

        def __init__(self, *args: Any, rove_nle_keys: tuple[str, ...], **kwargs: Any) -> None:
            kwargs["observation_keys"] = rove_nle_keys
            super().__init__(*args, **kwargs)

    return HandKeysToNle


def _crossing_hack() -> type:
    import gymnasium as gym
    from minihack.envs.minigrid import MOVE_AND_KICK_ACTIONS, MiniGridHack
    from minihack.navigation import MiniHackNavigation

    class CrossingHack(MiniGridHack):
        """minihack's ``MiniGridHack`` for minigrid's ``CrossingEnv``, built without ``width``/``height``."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.minigrid_env = gym.make(kwargs.pop("env_name"))
            self.num_mon = kwargs.pop("num_mon", 0)
            self.num_trap = kwargs.pop("num_trap", 0)
            self.door_state = kwargs.pop("door_state", "closed")
            if self.door_state == "locked":
                kwargs["actions"] = kwargs.pop("actions", MOVE_AND_KICK_ACTIONS)
            self.wall = "L" if kwargs.pop("lava_walls", False) else "|"
            des_file = self.get_env_desc()
            MiniHackNavigation.__init__(self, *args, des_file=des_file, **kwargs)

    return CrossingHack


@functools.cache
def task_class(env_id: str) -> tuple[type, dict[str, Any]]:
    """The class Rove builds for ``env_id`` (minihack's, with the nle-keys shim) and the id's fixed kwargs."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    import_minihack()
    spec = gym.spec(env_id)
    cls: Any = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
    if "Crossing" in env_id:
        cls = _crossing_hack()
    shim = _nle_keys_shim()
    return type(cls.__name__, (cls, shim), {"__module__": __name__}), dict(spec.kwargs)
