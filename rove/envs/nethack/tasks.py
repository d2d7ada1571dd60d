"""NetHack tasks: nle's own task classes plus the variants used by the LLM-reward papers.

nle 1.3.0 ships ``NetHack`` (the base game, score reward, 86 actions) and the tasks ``NetHackScore``,
``NetHackStaircase``, ``NetHackStaircasePet``, ``NetHackOracle``, ``NetHackGold``, ``NetHackEat``,
``NetHackScout`` and ``NetHackChallenge``. Motif (Klissarov et al., 2023, "Motif: Intrinsic Motivation from
Artificial Intelligence Feedback") and ONI add:

``NetHackStaircaseLvl2/3/4``
    Success (+1, episode terminates) when the agent goes down a staircase ("You descend the stairs.")
    and arrives at dungeon level 2, 3 or 4. As in Motif's ``tasks_nle.py``, the message is kept across the
    ``--More--`` prompt that nle clicks away, otherwise the success would be missed.
``NetHackOracleSober``
    ``NetHackOracle`` that does not count an Oracle seen while hallucinating: Motif's agents learned to eat
    a corpse that makes them hallucinate and "see" the Oracle next to them. Motif's code tests
    ``blstats[25] != 512``, which lets a hallucinating agent with any second condition (e.g. confused)
    through; here the hallucination *bit* of the condition mask is tested.

Rewards of these ``Rove/...-v0`` variants are nle's: task success +1, -0.01 on steps where game time does not
advance (the scale of nle's own Staircase/Oracle).

Motif's own tasks (facebookresearch/motif ``rl_baseline/tasks_nle.py``, registered there as ``-v1``), here the
``Motif*`` tasks behind ``Rove/Motif-NetHackScore-v1``, ``Rove/Motif-NetHackStaircase-v1`` (= level 2),
``Rove/Motif-NetHackStaircaseLvl{2,3,4}-v1``, ``Rove/Motif-NetHackOracle-v1`` and
``Rove/Motif-NetHackOracleSober-v1``:

* Staircase and Oracle tasks give 50 on success and 0 on every other step (no time penalty); Motif's Oracle
  and OracleSober subclass its Staircase, so they share that reward.
* Score keeps nle's reward (score difference, -0.01 on frozen steps).
* Every Motif task applies the "eat fix": when the last message asks "What do you want to eat", the action
  ``y`` answers with the first item letter the prompt lists and any other action with a space
  (:func:`motif_eat_action`); and keeps "You descend the stairs." across ``--More--``.

Deviation from Motif: OracleSober tests the hallucination bit of ``blstats[NLE_BL_CONDITION]`` (Motif's
``blstats[25] != 512`` lets a hallucinating agent with a second condition through).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np
from nle import nethack
from nle.env import base as nle_base
from nle.env import tasks as nle_tasks

DESCEND_MESSAGE = b"You descend the stairs"
EAT_PROMPT = b"What do you want to eat"
ASCII_SPACE = ord(" ")
MOTIF_SUCCESS_REWARD = 50.0
_FIRST_CHOICE = re.compile(rb"\[([a-zA-Z]+)")


def motif_eat_action(message: np.ndarray | bytes, key: int) -> int:
    """Motif's "eat fix": the key sent to NetHack for the agent's ``key`` given the last message.

    At a "What do you want to eat" prompt ``y`` picks the first item letter listed in ``[...]`` and any other
    key becomes a space (Motif's ``NetHackScore.step``); elsewhere ``key`` is unchanged.
    """
    raw = bytes(message)
    if EAT_PROMPT not in raw:
        return key
    match = _FIRST_CHOICE.search(raw)
    if match and key == ord("y"):
        return match.group(1)[0]
    return ASCII_SPACE


def staircase_success(message: np.ndarray | bytes, blstats: np.ndarray, target_level: int) -> bool:
    """Motif's staircase success: the stairs were just descended and the level is ``target_level``.

    Args:
        message: NetHack's message line, ``uint8[256]`` (NUL-padded) or bytes.
        blstats: ``int64[27]`` bottom-line statistics; ``blstats[NLE_BL_DLEVEL]`` is the level number within
            the current dungeon branch.
        target_level: the level to reach (2, 3 or 4 in Motif).
    """
    return int(blstats[nethack.NLE_BL_DLEVEL]) == target_level and DESCEND_MESSAGE in bytes(message)


def is_hallucinating(blstats: np.ndarray) -> bool:
    """True when the hallucination bit is set in ``blstats[NLE_BL_CONDITION]``."""
    return bool(int(blstats[nethack.NLE_BL_CONDITION]) & nethack.BL_MASK_HALLU)


def oracle_in_view(glyphs: np.ndarray, blstats: np.ndarray, oracle_glyph: int) -> bool:
    """True when the Oracle's glyph is on one of the 8 cells around (or under) the agent, as in nle."""
    x, y = int(blstats[nethack.NLE_BL_X]), int(blstats[nethack.NLE_BL_Y])
    neighbors = glyphs[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
    return bool(np.any(neighbors == oracle_glyph))


class KeepDescendMessage(nle_base.NLE):
    """Keeps "You descend the stairs." across the ``--More--`` that nle clicks away (as Motif's tasks do)."""

    def _perform_known_steps(self, observation: tuple, done: bool, exceptions: bool = True) -> tuple[tuple, bool]:
        # nle answers "--More--" with a space, which replaces "You descend the stairs." by the next message.
        # Keep that message (Motif does the same) so that the success predicate can see it.
        kept = None
        while not done and observation[self._internal_index][3]:  # xwaitforspace
            message = observation[self._message_index]
            if DESCEND_MESSAGE in message.tobytes():
                kept = message.copy()
            observation, done = self.nethack.step(ASCII_SPACE)
        observation, done = super()._perform_known_steps(observation, done, exceptions=exceptions)
        if kept is not None:
            index = self._message_index
            observation = (*observation[:index], kept, *observation[index + 1 :])
        return observation, done


class NetHackStaircaseLevel(KeepDescendMessage, nle_tasks.NetHackStaircase):
    """Staircase with a target level (Motif): +1 and termination on arriving at ``target_level`` by stairs.

    Args:
        target_level: the dungeon level to reach, at least 2.
        *args, **kwargs: nle's ``NetHackStaircase`` arguments.
    """

    def __init__(self, *args: Any, target_level: int = 2, **kwargs: Any) -> None:
        if int(target_level) != target_level or target_level < 2:
            raise ValueError(f"NetHackStaircaseLevel: target_level must be an integer >= 2, got {target_level!r}")
        self.target_level = int(target_level)
        super().__init__(*args, **kwargs)

    def _is_episode_end(self, observation: tuple[np.ndarray, ...]) -> Any:
        if staircase_success(observation[self._message_index], observation[self._blstats_index], self.target_level):
            return self.StepStatus.TASK_SUCCESSFUL
        return self.StepStatus.RUNNING


class NetHackOracleSober(nle_tasks.NetHackOracle):
    """``NetHackOracle`` where the Oracle does not count while the agent is hallucinating (Motif)."""

    def _is_episode_end(self, observation: tuple[np.ndarray, ...]) -> Any:
        blstats = observation[self._blstats_index]
        if not is_hallucinating(blstats) and oracle_in_view(observation[self._glyph_index], blstats, self.oracle_glyph):
            return self.StepStatus.TASK_SUCCESSFUL
        return self.StepStatus.RUNNING


class _MotifSuccessReward(nle_base.NLE):
    """Motif's Staircase reward: 50 on success, 0 on every other step (no time penalty). Needs a StepStatus
    with ``TASK_SUCCESSFUL`` (nle's Staircase family)."""

    motif_eat_fix = True

    def _reward_fn(self, last_observation: Any, action: Any, observation: Any, end_status: Any) -> float:
        return MOTIF_SUCCESS_REWARD if end_status == self.StepStatus.TASK_SUCCESSFUL else 0.0  # type: ignore[attr-defined]


class MotifScore(KeepDescendMessage, nle_tasks.NetHackScore):
    """Motif's ``NetHackScore``: nle's score reward with the eat fix and the kept descend message."""

    motif_eat_fix = True


class MotifStaircaseLevel(_MotifSuccessReward, NetHackStaircaseLevel):
    """Motif's ``NetHackStaircase``/``NetHackStaircaseLvl3``/``Lvl4``: 50 on arriving at ``target_level``."""


class MotifOracle(_MotifSuccessReward, KeepDescendMessage, nle_tasks.NetHackOracle):
    """Motif's ``NetHackOracle`` (a subclass of its Staircase): 50 when next to the Oracle."""


class MotifOracleSober(_MotifSuccessReward, KeepDescendMessage, NetHackOracleSober):
    """Motif's ``NetHackOracleSober``: 50 when next to the Oracle and not hallucinating."""


# Task name -> (nle class, fixed constructor arguments).
TASKS: dict[str, tuple[type[nle_base.NLE], dict[str, Any]]] = {
    "NetHack": (nle_base.NLE, {}),
    "NetHackScore": (nle_tasks.NetHackScore, {}),
    "NetHackStaircase": (nle_tasks.NetHackStaircase, {}),
    "NetHackStaircasePet": (nle_tasks.NetHackStaircasePet, {}),
    "NetHackOracle": (nle_tasks.NetHackOracle, {}),
    "NetHackGold": (nle_tasks.NetHackGold, {}),
    "NetHackEat": (nle_tasks.NetHackEat, {}),
    "NetHackScout": (nle_tasks.NetHackScout, {}),
    "NetHackChallenge": (nle_tasks.NetHackChallenge, {}),
    "NetHackStaircaseLvl2": (NetHackStaircaseLevel, {"target_level": 2}),
    "NetHackStaircaseLvl3": (NetHackStaircaseLevel, {"target_level": 3}),
    "NetHackStaircaseLvl4": (NetHackStaircaseLevel, {"target_level": 4}),
    "NetHackOracleSober": (NetHackOracleSober, {}),
    "MotifScore": (MotifScore, {}),
    "MotifStaircaseLvl2": (MotifStaircaseLevel, {"target_level": 2}),
    "MotifStaircaseLvl3": (MotifStaircaseLevel, {"target_level": 3}),
    "MotifStaircaseLvl4": (MotifStaircaseLevel, {"target_level": 4}),
    "MotifOracle": (MotifOracle, {}),
    "MotifOracleSober": (MotifOracleSober, {}),
}

# Arguments that Rove's adapter owns (observation keys, rendering) or that a task fixes.
_NOT_PASSED = {"self", "args", "kwargs", "observation_keys", "render_mode"}


def task_kwargs(task: str) -> tuple[str, ...]:
    """The keyword arguments nle's class for ``task`` accepts (e.g. ``character``, ``max_episode_steps``)."""
    cls, fixed = TASKS[task]
    names: dict[str, None] = {}
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, nle_base.NLE)):
            continue
        init = vars(klass).get("__init__")
        if init is None:
            continue
        for name in inspect.signature(init).parameters:
            if name not in _NOT_PASSED and name not in fixed:
                names[name] = None
    if task == "NetHackChallenge":
        names.pop("wizard", None)  # NetHackChallenge forces wizard=False and the full keyboard.
        names.pop("actions", None)
    return tuple(sorted(names))
