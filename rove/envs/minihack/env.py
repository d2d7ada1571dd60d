"""``MiniHackEnv``: every MiniHack task (minihack 1.0.2 on nle 1.3.0) behind Rove's common interface.

The adapter builds minihack's own task object (its des-file level, reward manager, action set and step logic,
``KeyRoom``'s key-and-door macro included) and calls its ``reset``/``step``. What it adds or changes, all
deliberate:

* Only the requested keys are computed: the ``*_crop`` keys by MiniHack only when asked for, and nle only
  the arrays Rove or MiniHack's own code reads (``rove.envs.minihack.tasks.task_class``); MiniHack alone
  would have nle compute all of them.
* ``terminated``/``truncated``: nle's step limit (end status ``ABORTED``) is a truncation only; nle flags it
  as both. Death and task success terminate.
* Seeding: ``reset(seed=s)`` fixes the level and the episode. NetHack's core and display RNGs are seeded from
  ``s`` (``reseed=False``), which fixes the des-file level NetHack generates; for the MiniGrid-ported tasks
  (MultiRoom, LavaCrossing, ...) minigrid's layout RNG is seeded from ``s`` too (minihack's own ``seed``
  cannot reach it on Gymnasium: it calls a ``seed`` method minigrid no longer has), and a task built with
  ``seeds=[...]`` draws its level seed from the env's ``np_random`` instead of Python's global ``random``.
  Without a seed, the RNGs are drawn from ``np_random`` (fresh entropy on the first reset).
* The final observation of an episode that nle ends itself (step limit, success) is the game as the agent
  left it, taken before nle quits the game (nle returns the screen after quitting).
* ``max_steps`` is the step-limit name all Rove suites share (minihack's ``max_episode_steps``).

The vector env's fast path (``BufferedEnv``) is NetHack's only: MiniHack's step copies its arrays anyway.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from nle import nethack
from nle.env.base import NLE_SPACE_ITEMS

from rove.envs.core import (
    CAPTION,
    STATE_KEY,
    TEXT,
    EpisodeTracker,
    caption_space,
    check_discrete_action,
    encode_caption,
    encode_text,
    resolve_observation_keys,
    state_key_space,
    text_space,
)
from rove.envs.minihack.tasks import CUSTOM_IDS, MINIHACK_IDS, NOT_REGISTERED, task_class
from rove.envs.nethack.env import blstats_state_key, nle_reset_options
from rove.envs.nethack.text import describe

CROP_KEYS = (
    "glyphs_crop",
    "chars_crop",
    "colors_crop",
    "specials_crop",
    "tty_chars_crop",
    "tty_colors_crop",
    "screen_descriptions_crop",
)
DEFAULT_KEYS = ("glyphs", "blstats", CAPTION, STATE_KEY)
# What MiniHack's own code reads from nle (rewards, KeyRoom's macro, object lookups) and Rove's keys need.
_ALWAYS_NLE = ("glyphs", "chars", "blstats", "message", "screen_descriptions", "inv_letters", "inv_strs")
_TEXT_NLE = ("message", "glyphs", "blstats", "screen_descriptions", "inv_letters", "inv_strs")
_MAX_SEED = 2**63 - 1


NLE_KEYS: tuple[str, ...] = tuple(name for name, _ in NLE_SPACE_ITEMS)
AVAILABLE_KEYS: tuple[str, ...] = (*NLE_KEYS, *CROP_KEYS, CAPTION, STATE_KEY, TEXT)


class MiniHackEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """A MiniHack task with Rove's caption, state key, text view, seeding and episode statistics.

    Made through ``gym.make("Rove/MiniHack-<task>-vN", ...)``; the ids are minihack's with the ``Rove/`` prefix.

    Observations are a ``Dict`` with the keys asked for in ``observation_keys``: any of nle's keys (``glyphs``
    ``int16[21, 79]``, ``blstats`` ``int64[27]``, ``message``, ``chars``, ``inv_strs``, ...), MiniHack's
    agent-centred crops (``glyphs_crop``, ``chars_crop``, ... ``int16/uint8[obs_crop_h, obs_crop_w]``, 9x9 by
    default), and

    * ``caption``: ``uint8[256]``, the message line;
    * ``state_key``: ``int64[1]``, ``rove.envs.nethack.pack_state_key`` of (dungeon number, level, x, y);
    * ``text``: ``uint8[4096]``, the text view of ``rove.envs.nethack.text`` (also ``info["text"]``).

    ``info["caption"]`` (the message) and ``info["end_status"]`` are in every step's info; at an episode's end
    ``info["episode"] = {"r", "l", "success", "end_reason", "score", "depth"}``: ``success`` is True when the task
    was completed (nle's end status ``TASK_SUCCESSFUL``: the goal reached or the reward manager satisfied),
    ``end_reason`` ``"task_successful"``, ``"aborted"`` (the step limit, a truncation) or NetHack's cause of
    death (``"died"``, ...).

    Pickling stores the constructor arguments (a live game cannot be pickled): the clone must be reset.

    Args:
        env_id: minihack's id, e.g. ``"MiniHack-KeyRoom-S5-v0"``.
        observation_keys: keys to compute; defaults to ``("glyphs", "blstats", "caption", "state_key")``.
        render_mode: None or ``"ansi"``.
        copy_obs: if False, the nle arrays in the observation are nle's own buffers, overwritten by the next
            step (for vector envs that copy anyway).
        max_steps: the episode's step limit (minihack's default differs per task, e.g. 200, 400, 1000).
        **minihack_kwargs: the task's own arguments (``des_file`` for the Custom ids, ``obs_crop_h``,
            ``reward_win``, ``seeds``, ``character``, ``autopickup``, ...).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 42}  # noqa: RUF012  (Gymnasium declares it a plain dict)

    def __init__(
        self,
        env_id: str,
        observation_keys: Sequence[str] | None = None,
        render_mode: str | None = None,
        copy_obs: bool = True,
        max_steps: int | None = None,
        **minihack_kwargs: Any,
    ) -> None:
        name = f"MiniHackEnv({env_id})"
        if env_id not in MINIHACK_IDS:
            if env_id in NOT_REGISTERED:
                raise ValueError(f"{name}: not available in Rove: {NOT_REGISTERED[env_id]}")
            close = difflib.get_close_matches(env_id, MINIHACK_IDS, n=3)
            raise ValueError(f"{name}: unknown MiniHack id {env_id!r}. Did you mean {close}?")
        if env_id in CUSTOM_IDS and "des_file" not in minihack_kwargs:
            raise TypeError(f"{name}: this id builds a level you give: pass des_file= (a .des path or its text)")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"{name}: render_mode {render_mode!r} is not supported; choose None or 'ansi'")
        if max_steps is not None:
            if "max_episode_steps" in minihack_kwargs:
                raise TypeError(f"{name}: pass max_steps or max_episode_steps, not both")
            if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps <= 0:
                raise ValueError(f"{name}: max_steps must be a positive int, got {max_steps!r}")
            minihack_kwargs["max_episode_steps"] = int(max_steps)
        if "observation_keys" in minihack_kwargs or "rove_nle_keys" in minihack_kwargs:
            raise TypeError(f"{name}: observation keys are chosen with observation_keys")
        nle_keys = NLE_KEYS
        keys = resolve_observation_keys(observation_keys, AVAILABLE_KEYS, DEFAULT_KEYS, name)
        self._init_kwargs: dict[str, Any] = dict(
            env_id=env_id, observation_keys=keys, render_mode=render_mode, copy_obs=copy_obs, **minihack_kwargs
        )
        self.env_id = env_id
        self.render_mode = render_mode
        self._name = name
        self._keys = keys
        self._copy_obs = bool(copy_obs)

        mh_keys = [k for k in keys if k in nle_keys or k in CROP_KEYS]
        wanted = [k for k in mh_keys if k in nle_keys]
        wanted += [k.removesuffix("_crop") for k in mh_keys if k in CROP_KEYS]
        wanted += list(_ALWAYS_NLE)
        if any(k.startswith("tty_") and k in CROP_KEYS for k in mh_keys):
            wanted.append("tty_cursor")
        nle_order = tuple(k for k in nle_keys if k in wanted)

        cls, fixed = task_class(env_id)
        kwargs = {**fixed, **minihack_kwargs}
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        try:
            with warnings.catch_warnings():
                # minihack builds its MiniGrid-ported levels from minigrid ids it chose (MultiRoom-N4-S5-v0),
                # which minigrid calls out of date: nothing a Rove user can act on.
                warnings.filterwarnings("ignore", message=r".*MiniGrid-.* is out of date", category=DeprecationWarning)
                self._task = cls(observation_keys=mh_keys, rove_nle_keys=nle_order, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}: {exc}") from exc
        t = self._task
        t._quit_game = self._defer_quit  # quit after the final observation is taken (see the module docstring)
        self._pending_quit: tuple[Any, bool] | None = None

        obs_spaces: dict[str, spaces.Space] = {}
        for key in keys:
            if key == CAPTION:
                obs_spaces[key] = caption_space()
            elif key == STATE_KEY:
                obs_spaces[key] = state_key_space()
            elif key == TEXT:
                obs_spaces[key] = text_space()
            else:
                obs_spaces[key] = t.observation_space[key]
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Discrete(len(t.actions))
        self._n_actions = len(t.actions)
        self._mh_keys = tuple(mh_keys)
        self._msg_idx = t._message_index
        self._bl_idx = t._blstats_index
        self._text_idx = tuple(t._observation_keys.index(k) for k in _TEXT_NLE) if TEXT in keys else ()
        self._want_caption = CAPTION in keys
        self._want_state_key = STATE_KEY in keys
        self._status = t.StepStatus
        self._tracker = EpisodeTracker()
        self._needs_reset = True

    @property
    def minihack_env(self) -> Any:
        """The minihack task object this env drives."""
        return self._task

    # ------------------------------------------------------------------ Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Starts a new episode; ``seed`` fixes its level and everything that happens in it."""
        super().reset(seed=seed)
        nle_options = nle_reset_options(self._name, options)
        t = self._task
        core, disp, layout = (int(s) for s in self.np_random.integers(0, _MAX_SEED, size=3))
        minigrid_env = getattr(t, "minigrid_env", None)
        if minigrid_env is not None:
            minigrid_env.reset(seed=layout % 2**32)  # MiniGridHack.reset draws its next layout from this RNG
        level_seeds = getattr(t, "_level_seeds", None)
        if level_seeds is not None:
            core = disp = int(level_seeds[int(self.np_random.integers(len(level_seeds)))])
        t.nethack.set_initial_seeds(core, disp, False)
        self._pending_quit = None
        if level_seeds is not None:
            t.reset(sample_seed=False, options=nle_options)
        else:
            t.reset(options=nle_options)
        if hasattr(t, "_frozen_steps"):
            t._frozen_steps = 0  # nle carries the time-penalty counter over episodes; seeded replays must not.
        self._tracker.reset()
        self._needs_reset = False
        raw = t.last_observation
        info: dict[str, Any] = {CAPTION: self._message(raw)}
        return self._observation(raw, info, copy=self._copy_obs), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise gym.error.ResetNeeded(
                f"{self._name}: call reset() before step() (after construction, unpickling or an episode's end)"
            )
        index = check_discrete_action(action, self._n_actions, self._name)
        t = self._task
        _, reward, _, _, nle_info = t.step(index)
        reward = float(reward)
        end_status = nle_info["end_status"]
        raw = t.last_observation
        info: dict[str, Any] = {CAPTION: self._message(raw), "end_status": end_status}
        self._tracker.add(reward)
        if end_status == self._status.RUNNING:
            return self._observation(raw, info, copy=self._copy_obs), reward, False, False, info
        # The episode is over: take the observation (copied: quitting overwrites nle's arrays), then quit.
        observation = self._observation(raw, info, copy=True)
        # Once NetHack's game is over its blstats are zeros: report the last in-game ones (MiniHack keeps them).
        last = raw if t.nethack.in_normal_game() else t._previous_obs
        blstats = last[self._bl_idx]
        score, depth = int(blstats[nethack.NLE_BL_SCORE]), int(blstats[nethack.NLE_BL_DEPTH])
        if self._pending_quit is not None:
            pending, self._pending_quit = self._pending_quit, None
            type(t)._quit_game(t, *pending)
        end_reason = t.nethack.how_done().name.lower() if end_status == self._status.DEATH else end_status.name.lower()
        success = end_status == self._status.TASK_SUCCESSFUL
        truncated = end_status == self._status.ABORTED
        info["episode"] = self._tracker.finish(success=success, end_reason=end_reason, score=score, depth=depth)
        self._needs_reset = True
        return observation, reward, not truncated, truncated, info

    def render(self) -> str | None:  # type: ignore[override]
        """The map as text when ``render_mode="ansi"``; None otherwise."""
        if self.render_mode != "ansi":
            return None
        return self._task.render()

    def close(self) -> None:
        self._task.close()
        super().close()

    # ------------------------------------------------------------------ internals

    def _defer_quit(self, observation: Any, done: bool) -> None:
        self._pending_quit = (observation, done)

    def _message(self, raw: tuple[np.ndarray, ...]) -> str:
        return raw[self._msg_idx].tobytes().split(b"\0", 1)[0].decode("latin-1")

    def _observation(self, raw: tuple[np.ndarray, ...], info: dict[str, Any], copy: bool) -> dict[str, np.ndarray]:
        mh = self._task._get_observation(raw) if self._mh_keys else {}
        out: dict[str, np.ndarray] = {}
        for key in self._keys:
            if key == CAPTION:
                out[key] = encode_caption(info[CAPTION])
            elif key == STATE_KEY:
                out[key] = np.array([blstats_state_key(raw[self._bl_idx])], dtype=np.int64)
            elif key == TEXT:
                info[TEXT] = describe(*(raw[i] for i in self._text_idx))
                out[key] = encode_text(info[TEXT])
            else:
                out[key] = mh[key].copy() if copy else mh[key]
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"init_kwargs": self._init_kwargs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["init_kwargs"])  # type: ignore[misc]
