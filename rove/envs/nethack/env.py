"""``NetHackEnv``: every nle task (and Motif's variants) behind Rove's common interface.

The adapter owns an nle task object (``nle.env.tasks.NetHackScore`` and friends, see ``tasks.py``) and drives
it directly instead of calling its ``step``: nle's ``step`` copies every observation array to keep the
previous observation for the reward function; this one copies only the 27 bottom-line statistics that the
rewards read (and the 9 ``internal`` ints for ``NetHackEat``). The saving pays for the caption, the state
key, the per-step info and for returning observations that stay valid after the next step. NetHackScore's
reward (also Challenge's) is computed on Python ints, bit for bit nle's, at a fifth of the cost.

For Rove's vector env the adapter implements ``rove.envs.core.BufferedEnv``: ``attach_buffers`` hands the
vector env's batch rows to nle (``set_buffers``), so that NetHack's C code writes the observations straight
into the batch, and ``step_into`` returns only the reward, flags, caption and episode statistics.

Differences from nle's own envs, all deliberate:

* ``terminated``/``truncated``: nle reports its step limit (end status ``ABORTED``) as ``terminated=True``;
  here it is ``truncated=True, terminated=False``. Death and task success are terminations.
* ``reset(seed=s)`` seeds NetHack's core and display RNGs (``reseed=False``) from ``s`` so the whole episode
  is reproducible, and ``fix_moon_phase`` defaults to True so that the moon phase / Friday 13th luck
  comes from the seed rather than from the wall clock. Without a seed the RNGs are drawn from the env's
  ``np_random`` (fresh entropy on the first reset, as Gymnasium does), so successive episodes differ.
  ``NetHackChallenge`` forbids seeding in nle (a competition rule); Rove seeds it like the other tasks.
* The final observation of an episode that nle ends itself (step limit, task success) is the game as the
  agent left it, taken before nle quits the game; nle returns the screen after quitting.
* ttyrec recording stays off unless ``save_ttyrec_every`` and ``savedir`` ask for it (nle's default).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from nle import nethack
from nle.env import base as nle_base
from nle.env import tasks as nle_tasks
from nle.env.base import NLE_SPACE_ITEMS

from rove.envs.core import (
    CAPTION,
    CAPTION_BYTES,
    STATE_KEY,
    TEXT,
    BufferedStep,
    EpisodeTracker,
    caption_space,
    check_discrete_action,
    encode_text,
    resolve_observation_keys,
    state_key_space,
    text_space,
)
from rove.envs.nethack import text as nethack_text
from rove.envs.nethack.progress import ProgressTracker
from rove.envs.nethack.tasks import TASKS, motif_eat_action, task_kwargs

NLE_KEYS: tuple[str, ...] = tuple(name for name, _ in NLE_SPACE_ITEMS)
AVAILABLE_KEYS: tuple[str, ...] = (*NLE_KEYS, CAPTION, STATE_KEY, TEXT)
DEFAULT_KEYS: tuple[str, ...] = ("glyphs", "blstats", CAPTION, STATE_KEY)
RESET_OPTIONS = ("wizkit_items",)


def nle_reset_options(name: str, options: dict[str, Any] | None) -> dict[str, Any] | None:
    """nle's ``reset`` options from Rove's (``RESET_OPTIONS`` only; an unknown one is an error naming it)."""
    if not options:
        return None
    bad = [k for k in options if k not in RESET_OPTIONS]
    if bad:
        raise ValueError(f"{name}: unknown reset option(s) {bad}; valid options: {list(RESET_OPTIONS)}")
    return {"wizkit_items": options.get("wizkit_items")}


# NetHack's message line is exactly a caption: 256 NUL-padded bytes.
assert nethack.MESSAGE_SHAPE == (CAPTION_BYTES,), nethack.MESSAGE_SHAPE

_BL_X, _BL_Y = nethack.NLE_BL_X, nethack.NLE_BL_Y
_BL_DNUM, _BL_DLEVEL = nethack.NLE_BL_DNUM, nethack.NLE_BL_DLEVEL
_BL_SCORE, _BL_TIME = nethack.NLE_BL_SCORE, nethack.NLE_BL_TIME
_MAX_SEED = 2**63 - 1


def pack_state_key(dnum: int, dlevel: int, x: int, y: int) -> int:
    """Packs a NetHack position into one int64: ``dnum`` (15 bits), ``dlevel``, ``y``, ``x`` (16 bits each).

    Exact (no hashing): two positions share a key only if dungeon number, level, x and y are all equal.
    """
    return ((dnum & 0x7FFF) << 48) | ((dlevel & 0xFFFF) << 32) | ((y & 0xFFFF) << 16) | (x & 0xFFFF)


def unpack_state_key(key: int) -> tuple[int, int, int, int]:
    """Inverse of :func:`pack_state_key` for non-negative fields: ``(dnum, dlevel, x, y)``."""
    key = int(key)
    return (key >> 48) & 0x7FFF, (key >> 32) & 0xFFFF, key & 0xFFFF, (key >> 16) & 0xFFFF


def blstats_state_key(blstats: np.ndarray) -> int:
    """The state key of a ``blstats`` vector: dungeon number, level number and (x, y)."""
    bl = blstats.tolist()  # One conversion is cheaper than four numpy scalar reads.
    return (
        ((bl[_BL_DNUM] & 0x7FFF) << 48)
        | ((bl[_BL_DLEVEL] & 0xFFFF) << 32)
        | ((bl[_BL_Y] & 0xFFFF) << 16)
        | (bl[_BL_X] & 0xFFFF)
    )


def _has_score_reward(task: Any) -> bool:
    """Whether ``task`` rewards with nle's unmodified ``NetHackScore`` function in ``constant`` penalty mode."""
    cls = type(task)
    score = nle_tasks.NetHackScore
    if not isinstance(task, score) or task.penalty_mode != "constant":
        return False
    after_score: Any = cls.__mro__[cls.__mro__.index(score) + 1]  # what NetHackScore's super() call resolves to
    return (
        cls._reward_fn is score._reward_fn
        and cls._get_time_penalty is score._get_time_penalty
        and after_score._reward_fn is nle_base.NLE._reward_fn
    )


def _score_reward(task: Any, old: list[int], new: list[int]) -> float:
    """nle's ``NetHackScore._reward_fn`` (constant penalty mode) on blstats as Python ints, bit for bit.

    Score difference (0 outside a normal game) plus the time penalty: ``penalty_step`` on steps where game time
    does not advance, and ``penalty_time`` per elapsed turn. Updates ``task._frozen_steps`` as nle does. The
    float operations are nle's, in nle's order, so the result is the same double.
    """
    old_time, new_time = old[_BL_TIME], new[_BL_TIME]
    task._frozen_steps = task._frozen_steps + 1 if old_time == new_time else 0
    penalty: float = 0
    if task._frozen_steps > 0:
        penalty += task.penalty_step
    penalty += (new_time - old_time) * task.penalty_time
    old_score, new_score = old[_BL_SCORE], new[_BL_SCORE]
    # nle's score difference is 0.0 outside a normal game; equal scores give 0 either way (the same sum), so the
    # binding is asked only when the score changed.
    if new_score != old_score and task.nethack.in_normal_game():
        return float((new_score - old_score) + penalty)
    return float(0.0 + penalty)


def _message_text(message: np.ndarray) -> str:
    return message.tobytes().split(b"\0", 1)[0].decode("latin-1")


class NetHackEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """A NetHack task (nle 1.3.0) with Rove's caption, state key, seeding and episode statistics.

    Made through ``gym.make("Rove/<task>-v0", ...)`` (see ``rove.envs.registration.NETHACK_TASKS``).

    Observations are a ``Dict`` with the keys asked for in ``observation_keys``: any of nle's keys
    (``glyphs`` ``int16[21, 79]``, ``blstats`` ``int64[27]``, ``message`` ``uint8[256]``, ``chars``,
    ``tty_chars`` ``uint8[24, 80]``, ...) plus

    * ``caption``: ``uint8[256]``, the message line (NUL-padded latin-1, same bytes as ``message``);
    * ``state_key``: ``int64[1]``, :func:`pack_state_key` of (dungeon number, level, x, y);
    * ``text``: ``uint8[4096]``, the text view of ``rove.envs.nethack.text`` (message, what is in sight with
      direction and distance, status line, inventory); the string is also in ``info["text"]``. Asking for it
      makes nle compute ``screen_descriptions`` and the inventory too, and turns off the vector-env fast path.

    nle is asked only for the keys needed (its step logic always reads ``glyphs``, ``blstats``,
    ``message``, ``program_state`` and ``internal``); ``state_key`` is computed only when requested.

    ``info["caption"]`` (the message text) and ``info["end_status"]`` (nle's ``StepStatus``) are in every
    step's info; at the end of an episode ``info["episode"] = {"r", "l", "score", "depth", "end_reason",
    "progression"}`` (+ ``"success"`` on tasks with a goal) with ``end_reason`` one of ``"task_successful"``,
    ``"aborted"`` (nle's step limit: a truncation) or NetHack's cause of the game's end (``"died"``, ``"starving"``, ``"quit"``,
    ``"ascended"``, ...), ``success`` whether the goal was reached (Staircase, Oracle, ...; not on Score)
    and ``progression`` BALROG's progression metric (``rove.envs.nethack.progress``: the largest human-data
    milestone value of the depths and experience levels reached, in [0, 1]).

    Pickling stores the constructor arguments only: a live NetHack game cannot be pickled, so
    ``pickle.loads(pickle.dumps(env))`` is a fresh env of the same configuration that must be reset.

    Args:
        task: one of ``rove.envs.nethack.tasks.TASKS`` (``"NetHackScore"``, ``"NetHackStaircaseLvl3"``, ...).
        observation_keys: the observation keys; defaults to ``("glyphs", "blstats", "caption", "state_key")``.
        render_mode: ``None`` or ``"ansi"`` (the map as text).
        copy_obs: if True (default) every observation holds fresh arrays. If False the same dict and arrays
            are returned and overwritten at each step (nle's own behaviour, no copies): for vector envs
            that copy into their own buffers anyway.
        max_steps: nle's step limit of an episode (default 5000; reaching it is a truncation with
            ``info["episode"]``). The name every Rove suite shares: ``gym.make(id, max_steps=N)``. (nle calls it
            ``max_episode_steps``, which ``gym.make`` keeps for itself: there it adds Gymnasium's ``TimeLimit``,
            whose truncations carry no episode statistics and leave nle's game running.)
        **nle_kwargs: passed to nle's task class: ``character``, ``penalty_step``, ``allow_all_yn_questions``,
            ``save_ttyrec_every``/``savedir``, ... (see ``rove.envs.nethack.tasks.task_kwargs(task)``).
            ``fix_moon_phase`` defaults to True here.

    Raises:
        ValueError: unknown task or observation key.
        TypeError: a keyword argument the task does not accept.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 42}  # noqa: RUF012  (Gymnasium declares it a plain dict)

    def __init__(
        self,
        task: str = "NetHackScore",
        observation_keys: Sequence[str] | None = None,
        render_mode: str | None = None,
        copy_obs: bool = True,
        max_steps: int | None = None,
        **nle_kwargs: Any,
    ) -> None:
        if task not in TASKS:
            close = difflib.get_close_matches(task, list(TASKS), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(f"NetHackEnv: unknown task {task!r}.{hint} Valid tasks: {list(TASKS)}")
        name = f"NetHackEnv({task})"
        if max_steps is not None:
            if "max_episode_steps" in nle_kwargs:
                raise TypeError(f"{name}: pass max_steps or max_episode_steps, not both")
            if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps <= 0:
                raise ValueError(f"{name}: max_steps must be a positive int, got {max_steps!r}")
            nle_kwargs["max_episode_steps"] = int(max_steps)
        valid = task_kwargs(task)
        for key in nle_kwargs:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=3)
                hint = f" Did you mean {close}?" if close else ""
                raise TypeError(
                    f"{name}: unexpected keyword argument {key!r}.{hint} Valid arguments: "
                    f"task, observation_keys, render_mode, copy_obs, {', '.join(valid)}"
                )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"{name}: render_mode {render_mode!r} is not supported; choose None or 'ansi'")
        keys = resolve_observation_keys(observation_keys, AVAILABLE_KEYS, DEFAULT_KEYS, name)

        self._init_kwargs: dict[str, Any] = dict(
            task=task, observation_keys=keys, render_mode=render_mode, copy_obs=copy_obs, **nle_kwargs
        )
        self.task = task
        self.render_mode = render_mode
        self._name = name
        self._copy_obs = bool(copy_obs)
        self._keys = keys

        nle_keys = [k for k in keys if k in NLE_KEYS]
        needed = {"message": CAPTION in keys, "blstats": STATE_KEY in keys, "chars": render_mode == "ansi"}
        if TEXT in keys:
            needed.update(dict.fromkeys(nethack_text.NEEDED_KEYS, True))
        nle_keys += [k for k, wanted in needed.items() if wanted and k not in nle_keys]
        cls, fixed = TASKS[task]
        kwargs = {"fix_moon_phase": True, **fixed, **nle_kwargs}
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        self._task = cls(observation_keys=tuple(nle_keys), **kwargs)
        t = self._task

        nle_spaces = dict(NLE_SPACE_ITEMS)
        obs_spaces: dict[str, spaces.Space] = {}
        for key in keys:
            if key == CAPTION:
                obs_spaces[key] = caption_space()
            elif key == STATE_KEY:
                obs_spaces[key] = state_key_space()
            elif key == TEXT:
                obs_spaces[key] = text_space()
            else:
                obs_spaces[key] = nle_spaces[key]
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Discrete(len(t.actions))

        # Hot-path state, looked up once.
        self._n_actions = len(t.actions)
        self._actions = tuple(int(a) for a in t.actions)
        self._bl_idx = t._blstats_index
        self._msg_idx = t._message_index
        self._ps_idx = t._program_state_index
        self._last_blstats = np.zeros(nethack.BLSTATS_SHAPE, dtype=np.int64)
        self._last_internal = np.zeros(nethack.INTERNAL_SHAPE, dtype=np.int32)
        # nle's rewards read the previous blstats (score, time, gold); NetHackEat also the previous hunger.
        self._copy_internal = isinstance(t, nle_tasks.NetHackEat)
        self._cache_live_buffers()
        # NetHackScore's reward (also Challenge's) is recomputed on Python ints: nle's costs ~5 us a step in
        # NumPy scalar arithmetic, several times the rest of the adapter. Other tasks keep nle's function.
        self._python_score_reward = _has_score_reward(t)
        self._plain_known_steps = type(t)._perform_known_steps is nle_base.NLE._perform_known_steps
        self._prev_bl: list[int] = []  # blstats after the last step, as ints (Python score reward only)
        self._status = t.StepStatus
        # NetHackChallenge's _check_abort counts steps without game progress and nle calls it twice a step.
        self._double_abort_check = isinstance(t, nle_tasks.NetHackChallenge)
        self._obs_items = tuple(
            (key, t._message_index if key == CAPTION else t._observation_keys.index(key))
            for key in keys
            if key not in (STATE_KEY, TEXT)
        )
        self._want_text = TEXT in keys
        self._text_idx = (
            tuple(t._observation_keys.index(k) for k in nethack_text.NEEDED_KEYS) if self._want_text else ()
        )
        self._eat_fix = bool(getattr(t, "motif_eat_fix", False))
        self._progress = ProgressTracker()
        self._want_state_key = STATE_KEY in keys
        self._obs_dict: dict[str, np.ndarray] = {}
        self._state_key_buf = np.zeros(1, dtype=np.int64)
        self._tracker = EpisodeTracker()
        self._needs_reset = True
        # Set by attach_buffers: nle arrays that are rows of a vector env's batch, and the rows Rove fills.
        self._bound: tuple[tuple[int, np.ndarray], ...] = ()
        self._caption_row: np.ndarray | None = None
        self._state_key_row: np.ndarray | None = None

    def _cache_live_buffers(self) -> None:
        """Looks up nle's live observation arrays (which nle overwrites in place at every step)."""
        t = self._task
        live = t.nethack._obs
        assert not t.nethack._copy, "nle's task objects drive Nethack without copies"
        self._game = t.nethack._pynethack
        self._live = live
        self._live_blstats = live[t._blstats_index]
        self._live_internal = live[t._internal_index]
        self._last_obs = list(live)
        self._last_obs[t._blstats_index] = self._last_blstats
        self._last_obs[t._internal_index] = self._last_internal

    @property
    def nle_env(self) -> Any:
        """The nle task object this env drives (for scripting raw keys through ``nle_env.nethack``)."""
        return self._task

    # ------------------------------------------------------------------ Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Starts a new game; ``seed`` fixes the whole episode (NetHack's own RNGs included).

        Args:
            seed: seeds ``np_random`` and, through it, NetHack's core and display RNGs.
            options: ``{"wizkit_items": [...]}`` (wizard mode only) or None.
        """
        super().reset(seed=seed)
        nle_options = nle_reset_options(self._name, options)
        core, disp = (int(s) for s in self.np_random.integers(0, _MAX_SEED, size=2))
        t = self._task
        # Through the binding: NetHackChallenge replaces nle's seeding methods by ones that raise.
        t.nethack._pynethack.set_initial_seeds(core, disp, False, None)
        t.reset(options=nle_options)
        if hasattr(t, "_frozen_steps"):
            t._frozen_steps = 0  # nle carries the time-penalty counter over episodes; seeded replays must not.
        self._tracker.reset()
        self._progress.reset()
        self._needs_reset = False
        obs = t.last_observation
        bl = obs[self._bl_idx].tolist()
        self._progress.update(bl)
        if self._python_score_reward:
            self._prev_bl = bl
        info: dict[str, Any] = {"caption": _message_text(obs[self._msg_idx])}
        observation = self._observation(obs)
        if self._want_text:
            info[TEXT] = self._text(obs, observation)
        return observation, info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """One agent step; the same game logic as nle's ``step`` (menus and ``--More--`` skipped as in nle)."""
        self._check_not_done()
        index = check_discrete_action(action, self._n_actions, self._name)
        obs, reward, end_status, done = self._advance(index)
        observation = self._observation(obs)
        info: dict[str, Any] = {"caption": _message_text(obs[self._msg_idx]), "end_status": end_status}
        if self._want_text:
            info[TEXT] = self._text(obs, observation)
        if not end_status:
            return observation, reward, False, False, info
        # Without copies the observation is nle's arrays, which quitting the game would overwrite.
        keep = () if self._copy_obs else tuple(observation.values())
        info["episode"] = self._end_episode(end_status, obs, done, keep)
        truncated = end_status == self._status.ABORTED
        return observation, reward, not truncated, truncated, info

    # ------------------------------------------------------------------ vector-env fast path (BufferedEnv)

    def attach_buffers(self, rows: dict[str, np.ndarray]) -> bool:
        """Makes nle write this env's observations into ``rows`` (a vector env's batch rows); see ``BufferedEnv``.

        nle's C code fills the arrays handed to its ``set_buffers``, so a vector env's rows can be those arrays
        and nothing is copied per step. nle accepts new arrays only before the first reset of its game.

        Args:
            rows: one C-contiguous array per observation key, with the key's shape and dtype.

        Returns:
            True if from now on ``step_into``/``reset_into`` fill ``rows``; False (nothing changed) if the game
            was already started or an array does not fit.
        """
        if set(rows) != set(self._keys) or self._want_text:
            return False
        nh = self._task.nethack
        targets = {key: rows[key] for key in self._keys if key in NLE_KEYS}
        if CAPTION in rows and "message" not in targets:
            targets["message"] = rows[CAPTION]  # The caption is the message line: let nle write it there.
        buffers = {key: targets.get(key, array) for key, array in nh._obs_buffers.items()}
        try:
            # ValueError for an array of the wrong shape, dtype or layout; RuntimeError once the game was reset.
            nh._pynethack.set_buffers(**buffers)
        except (ValueError, RuntimeError):
            return False
        nh._obs_buffers = buffers
        nh._obs = tuple(buffers.values())  # Same order: nle builds both from its observation_keys.
        self._cache_live_buffers()
        self._bound = tuple((i, array) for i, array in enumerate(nh._obs) if any(array is r for r in targets.values()))
        self._caption_row = rows[CAPTION] if CAPTION in rows and targets["message"] is not rows[CAPTION] else None
        self._state_key_row = rows.get(STATE_KEY)
        return True

    def step_into(self, action: Any) -> BufferedStep:
        """``step`` for a vector env after ``attach_buffers``: the observation goes to the attached rows.

        Returns:
            ``(reward, terminated, truncated, info["caption"], info.get("episode"))``, as ``step`` would.
        """
        self._check_not_done()
        if action.__class__ is not int or not 0 <= action < self._n_actions:
            action = check_discrete_action(action, self._n_actions, self._name)
        obs, reward, end_status, done = self._advance(action)
        self._fill_rows(obs)
        caption = _message_text(obs[self._msg_idx])
        if not end_status:
            return reward, False, False, caption, None
        episode = self._end_episode(end_status, obs, done, tuple(array for _, array in self._bound))
        truncated = end_status == self._status.ABORTED
        return reward, not truncated, truncated, caption, episode

    def reset_into(self, seed: int | None = None, options: dict[str, Any] | None = None) -> str:
        """``reset`` for a vector env after ``attach_buffers``; returns ``info["caption"]``."""
        _, info = self.reset(seed=seed, options=options)
        self._fill_rows(self._task.last_observation)
        return info["caption"]

    def _fill_rows(self, obs: tuple[np.ndarray, ...]) -> None:
        """Writes into the attached rows what nle did not write there itself."""
        if obs is not self._live:  # A task replaced one of nle's arrays (the staircase keeps a message).
            for i, row in self._bound:
                if obs[i] is not row:
                    row[...] = obs[i]
        if self._caption_row is not None:
            self._caption_row[...] = obs[self._msg_idx]
        if self._state_key_row is not None:
            self._state_key_row[0] = blstats_state_key(obs[self._bl_idx])

    # ------------------------------------------------------------------ game logic

    def _check_not_done(self) -> None:
        if self._needs_reset:
            raise gym.error.ResetNeeded(
                f"{self._name}: call reset() before step() (after construction, unpickling or an episode's end)"
            )

    def _advance(self, index: int) -> tuple[tuple[np.ndarray, ...], float, Any, bool]:
        """nle's step logic for a valid action index: ``(observation tuple, reward, end status, nle's done)``."""
        t = self._task
        python_reward = self._python_score_reward
        prev = self._prev_bl
        if not python_reward:
            self._last_blstats[:] = self._live_blstats
            if self._copy_internal:
                self._last_internal[:] = self._live_internal

        # nle's Nethack.step, without its two Python calls: nle's task objects never ask it for copies, so the
        # observation is always its live arrays.
        game = self._game
        key = self._actions[index]
        if self._eat_fix:
            key = motif_eat_action(t.last_observation[self._msg_idx], key)
        game.step(key)
        done = game.done()
        obs = self._live
        if self._double_abort_check:
            t._check_abort(obs)
        if (not t._allow_all_modes or obs[self._ps_idx][0] == 1) and self._prompt_may_be_open(done):
            obs, done = t._perform_known_steps(obs, done, exceptions=True)
        t._steps += 1
        t.last_observation = obs

        status = self._status
        if done:
            end_status = status.DEATH
        elif t._check_abort(obs):
            end_status = status.ABORTED
        else:
            end_status = t._is_episode_end(obs)
        if python_reward:
            bl = obs[self._bl_idx].tolist()
            reward = _score_reward(t, prev, bl)
            self._prev_bl = bl
            if end_status:
                self._last_blstats[:] = prev  # _episode_stats reads them once the game is over.
        else:
            reward = float(t._reward_fn(self._last_obs, index, obs, end_status))
            bl = obs[self._bl_idx].tolist()
        if not done:
            self._progress.update(bl)
        self._tracker.add(reward)
        return obs, reward, end_status, done

    def _prompt_may_be_open(self, done: bool) -> bool:
        """False when nle's own ``_perform_known_steps`` would return at once: game over or no prompt open."""
        if not self._plain_known_steps:
            return True  # A task's own version may do more (the staircase keeps a message).
        internal = self._live_internal
        return not done and bool(internal[3] or internal[1] or internal[2])  # xwaitforspace, yn, getlin

    def _end_episode(
        self, end_status: Any, obs: tuple[np.ndarray, ...], done: bool, keep: Sequence[np.ndarray]
    ) -> dict[str, Any]:
        """Episode statistics; ends the game as nle does if nle did not, restoring the arrays in ``keep``."""
        episode = self._episode_stats(end_status, obs)
        if not done:
            saved = [(array, array.copy()) for array in keep]
            self._task._quit_game(obs, done)  # Quitting steps the game, which overwrites nle's arrays.
            for array, value in saved:
                array[...] = value
        self._needs_reset = True
        return episode

    def render(self) -> str | None:  # type: ignore[override]
        """The map as text when ``render_mode="ansi"``; None otherwise."""
        if self.render_mode != "ansi":
            return None
        return self._task.render()

    def close(self) -> None:
        self._task.close()
        super().close()

    # ------------------------------------------------------------------ internals

    def _observation(self, obs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        if self._copy_obs:
            out = {key: obs[i].copy() for key, i in self._obs_items}
            if self._want_state_key:
                self._state_key_buf[0] = blstats_state_key(obs[self._bl_idx])
                out[STATE_KEY] = self._state_key_buf.copy()
            return out
        out = self._obs_dict
        for key, i in self._obs_items:
            out[key] = obs[i]
        if self._want_state_key:
            self._state_key_buf[0] = blstats_state_key(obs[self._bl_idx])
            out[STATE_KEY] = self._state_key_buf
        return out

    def _episode_stats(self, end_status: Any, obs: tuple[np.ndarray, ...]) -> dict[str, Any]:
        status = self._status
        # Once NetHack's game is over its blstats are zeros: report the last in-game ones.
        blstats = obs[self._bl_idx] if self._task.nethack.in_normal_game() else self._last_blstats
        if end_status == status.DEATH:
            end_reason = self._task.nethack.how_done().name.lower()
        else:
            end_reason = end_status.name.lower()
        metrics: dict[str, Any] = {
            "score": int(blstats[nethack.NLE_BL_SCORE]),
            "depth": int(blstats[nethack.NLE_BL_DEPTH]),
            "end_reason": end_reason,
            "progression": self._progress.progression,
        }
        if hasattr(status, "TASK_SUCCESSFUL"):  # tasks with a goal (Staircase, Oracle, ...); not Score
            metrics["success"] = end_status == status.TASK_SUCCESSFUL
        return self._tracker.finish(**metrics)

    def _text(self, obs: tuple[np.ndarray, ...], observation: dict[str, np.ndarray]) -> str:
        """The text view of ``obs``; also written into ``observation["text"]``."""
        text = nethack_text.describe(*(obs[i] for i in self._text_idx))
        observation[TEXT] = encode_text(text)
        return text

    def __getstate__(self) -> dict[str, Any]:
        return {"init_kwargs": self._init_kwargs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["init_kwargs"])  # type: ignore[misc]
