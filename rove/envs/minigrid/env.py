"""MiniGrid and BabyAI behind Rove's common interface (see :mod:`rove.envs.core`).

Every id that minigrid registers (``MiniGrid-DoorKey-8x8-v0``, ``BabyAI-GoToLocal-v0``, ...) is mirrored as
``Rove/<id>`` by :mod:`rove.envs.registration`. The adapter builds the minigrid env from its registered entry
point (no Gymnasium wrappers in between) and adds, only when asked for:

- ``caption``: sentences from events ("You picked up the yellow key.", "You opened the blue door.");
- ``state_key``: the exact state: a 64-bit digest (BLAKE2b) of the whole grid as minigrid encodes it (every
  cell's object, colour and state: keys, balls and boxes where they lie, doors open/closed/locked), the agent's
  position and direction and the carried object. Two different states share a key only by a hash collision
  (probability about n^2 / 2^65 for n distinct states).
- ``pose_key``: the cheaper key of earlier Rove versions: position, direction, carried object and the
  open/locked bits of the doors. Not exact: a moved key, ball or box, or an opened box, shares the key of the
  state it came from;
- ``mission``: the mission text as NUL-padded bytes, so vector envs can batch it.

MiniGrid steps take about 120 µs, so the per-step work here is a handful of attribute reads: events are
detected only for the actions that can cause them, and the door states are re-read only after a toggle.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from rove.envs.core import (
    CAPTION,
    CAPTION_BYTES,
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
from rove.envs.minigrid import captions, text
from rove.envs.minigrid.captions import DROP, FORWARD, PICKUP, TOGGLE

_KEY_TEMPLATE = np.zeros(1, dtype=np.int64)
POSE_KEY = "pose_key"
AVAILABLE_KEYS = ("image", "direction", "mission", CAPTION, STATE_KEY, POSE_KEY, TEXT)
DEFAULT_KEYS = ("image", "direction", CAPTION, STATE_KEY)
MISSION_BYTES = CAPTION_BYTES

# Pose-key layout (bits): x 0-7, y 8-15, direction 16-17, carried object 18-24, doors 2 bits each
# from 25. Grids wider than 256 or more than 19 doors fall back to a 64-bit hash of the same fields.
_DOOR_SHIFT = 25
_MAX_EXACT_DOORS = (63 - _DOOR_SHIFT) // 2


def minigrid_ids() -> list[str]:
    """Every MiniGrid and BabyAI id that minigrid registers (without Rove's namespace)."""
    import minigrid  # noqa: F401  (registers its ids on import)

    return sorted(k for k in gym.registry if k.startswith(("MiniGrid-", "BabyAI-")) and "/" not in k)


def _check_env_id(env_id: str) -> str:
    if env_id.startswith("Rove/"):
        env_id = env_id[len("Rove/") :]
    ids = minigrid_ids()
    if env_id not in ids:
        close = difflib.get_close_matches(env_id, ids, n=3)
        hint = f" Did you mean {close}?" if close else " See rove.rove_ids('minigrid') for the list."
        raise ValueError(f"MiniGridEnv: unknown MiniGrid/BabyAI id {env_id!r}.{hint}")
    return env_id


def _accepted_kwargs(cls: type) -> set[str]:
    """Keyword arguments a minigrid env class accepts, following ``**kwargs`` up its base classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


_DIR_TO_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _front(env: Any) -> tuple[int, int]:
    """The cell ahead of the agent; minigrid's ``front_pos`` is the same through numpy, 10x slower."""
    x, y = env.agent_pos
    dx, dy = _DIR_TO_VEC[env.agent_dir]
    return int(x) + dx, int(y) + dy


def _carried_code(obj: Any) -> int:
    """7-bit code of the carried object: 0 for nothing, else type index (4 bits) and colour index (3 bits)."""
    if obj is None:
        return 0
    return OBJECT_TO_IDX[obj.type] | (COLOR_TO_IDX[obj.color] << 4)


class MiniGridEnv(gym.Env[dict[str, Any], np.int64]):
    """A MiniGrid or BabyAI env with Rove's caption, state key and episode statistics.

    Args:
        env_id: a MiniGrid/BabyAI id as minigrid registers it, e.g. ``"MiniGrid-DoorKey-8x8-v0"``.
        observation_keys: keys to compute, from ``("image", "direction", "mission", "caption", "state_key",
            "pose_key", "text")``;
            ``None`` gives ``("image", "direction", "caption", "state_key")``.
        **minigrid_kwargs: passed to the minigrid env's constructor (``max_steps``, ``agent_view_size``,
            ``render_mode``, ``size``, ...). Unknown names raise a TypeError listing the accepted ones.
            ``max_steps`` is the step-limit name every Rove suite shares (``gym.make(id, max_episode_steps=N)``
            adds Gymnasium's ``TimeLimit`` instead, whose truncations carry no episode statistics).

    Observation (a ``Dict`` with the requested keys):
        ``image``: uint8 ``[V, V, 3]`` encoded egocentric view (object, colour, state codes), V the agent's
        view size (7 by default). ``direction``: ``Discrete(4)``. ``mission``: uint8 ``[256]`` mission text.
        ``caption``: uint8 ``[256]``. ``state_key``: int64 ``[1]``, exact (:meth:`state_key`).
        ``pose_key``: int64 ``[1]``, pose + carried object + door bits (:meth:`pose_key`).
        ``text``: uint8 ``[4096]``, ``rove.envs.minigrid.text``'s view (mission, visible objects placed relative
        to the agent, carried object); the string is also ``info["text"]``.

    ``info["caption"]`` holds the caption text on every step; ``info["episode"]`` at the end of an episode is
    ``{"r", "l", "success"}`` where ``success`` means the mission was completed (terminated with a positive
    reward).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium's API)

    def __init__(self, env_id: str, observation_keys: Iterable[str] | None = None, **minigrid_kwargs: Any) -> None:
        self.env_id = _check_env_id(env_id)
        self._name = f"MiniGridEnv({self.env_id})"
        self.observation_keys = resolve_observation_keys(observation_keys, AVAILABLE_KEYS, DEFAULT_KEYS, self._name)
        spec = gym.spec(self.env_id)
        creator: Any = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
        if isinstance(creator, type):
            accepted = _accepted_kwargs(creator)
            unknown = sorted(set(minigrid_kwargs) - accepted)
            if unknown:
                raise TypeError(
                    f"{self._name}: unknown keyword argument(s) {unknown}; accepted: {sorted(accepted)} "
                    "and observation_keys"
                )
        try:
            self._env: Any = creator(**{**spec.kwargs, **minigrid_kwargs})
        except FileNotFoundError as exc:
            # The minigrid 3.2.0 wheel ships without the WFC pattern images: MiniGrid-WFC-* cannot be built.
            raise FileNotFoundError(f"{self._name}: minigrid could not load a data file it needs ({exc})") from exc
        self.render_mode = self._env.render_mode

        self.action_space: spaces.Discrete = self._env.action_space
        self._num_actions = int(self.action_space.n)
        inner_spaces: dict[str, spaces.Space] = self._env.observation_space.spaces
        all_spaces: dict[str, spaces.Space] = {
            "image": inner_spaces["image"],
            "direction": spaces.Discrete(4),
            "mission": spaces.Box(0, 255, shape=(MISSION_BYTES,), dtype=np.uint8),
            CAPTION: caption_space(),
            STATE_KEY: state_key_space(),
            POSE_KEY: state_key_space(),
            TEXT: text_space(),
        }
        self.observation_space = spaces.Dict({k: all_spaces[k] for k in self.observation_keys})

        keys = set(self.observation_keys)
        self._want_image = "image" in keys
        self._want_direction = "direction" in keys
        self._want_mission = "mission" in keys
        self._want_caption = CAPTION in keys
        self._want_state_key = STATE_KEY in keys
        self._want_pose_key = POSE_KEY in keys
        self._want_text = TEXT in keys

        self._tracker = EpisodeTracker()
        self._doors: list[Any] = []
        self._door_bits = 0
        self._exact_key = True
        self._grid_cells: list[int] = []  # id() of each cell's object when the grid digest was taken
        self._grid_digest = b""
        self._mission = np.zeros(MISSION_BYTES, dtype=np.uint8)

    # -- access to the wrapped minigrid env (scripted tests, planners, renderers) --
    @property
    def minigrid_env(self) -> Any:
        """The wrapped ``minigrid.minigrid_env.MiniGridEnv``."""
        return self._env

    @property
    def grid(self) -> Any:
        return self._env.grid

    @property
    def agent_pos(self) -> tuple[int, int]:
        x, y = self._env.agent_pos
        return int(x), int(y)

    @property
    def agent_dir(self) -> int:
        return int(self._env.agent_dir)

    @property
    def carrying(self) -> Any:
        return self._env.carrying

    @property
    def mission(self) -> str:
        return self._env.mission

    # -- Gymnasium API --
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        raw, _ = self._env.reset(seed=seed, options=options)
        env = self._env
        # Doors are never created or removed after generation, only toggled: cache them once per episode.
        self._doors = [cell for cell in env.grid.grid if cell is not None and cell.type == "door"]
        self._exact_key = len(self._doors) <= _MAX_EXACT_DOORS and env.width <= 256 and env.height <= 256
        self._door_bits = self._read_doors()
        self._grid_cells = []
        self._grid_digest = b""
        if self._want_mission:
            encode_caption(env.mission, self._mission)
        self._tracker.reset()
        info: dict[str, Any] = {CAPTION: ""}
        return self._with_text(self._observation(raw, ""), info), info

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = check_discrete_action(action, self._num_actions, self._name)
        if a == TOGGLE:
            self._grid_cells = []  # toggling changes an object in place (a door's state): re-encode the grid
        env = self._env
        carried = env.carrying
        if a == TOGGLE:
            fx, fy = _front(env)
            front = env.grid.get(fx, fy)
            front_door = captions.door_state(front)
        raw, reward, terminated, truncated, raw_info = env.step(a)
        reward = float(reward)

        caption = ""
        if a == PICKUP:
            fx, fy = _front(env)
            caption = captions.describe_pickup(carried, env.carrying, env.grid.get(fx, fy))
        elif a == DROP:
            caption = captions.describe_drop(carried, env.carrying)
        elif a == TOGGLE:
            caption = captions.describe_toggle(front, front_door, env.grid.get(fx, fy), env.carrying)
            if front_door is not None:
                self._door_bits = self._read_doors()
        if terminated:
            under = env.grid.get(*env.agent_pos) if a == FORWARD else None
            end = captions.describe_end(under, reward)
            caption = f"{caption} {end}" if caption and end else caption or end

        self._tracker.add(reward)
        info: dict[str, Any] = {**raw_info, CAPTION: caption} if raw_info else {CAPTION: caption}
        if terminated or truncated:
            info["episode"] = self._tracker.finish(success=bool(terminated and reward > 0))
        return self._with_text(self._observation(raw, caption), info), reward, bool(terminated), bool(truncated), info

    def render(self) -> Any:
        return self._env.render()

    def close(self) -> None:
        self._env.close()

    # -- observation pieces --
    def _observation(self, raw: dict[str, Any], caption: str) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        if self._want_image:
            obs["image"] = raw["image"]
        if self._want_direction:
            obs["direction"] = raw["direction"]
        if self._want_mission:
            obs["mission"] = self._mission.copy()
        if self._want_caption:
            obs[CAPTION] = encode_caption(caption) if caption else np.zeros(CAPTION_BYTES, dtype=np.uint8)
        if self._want_state_key:
            key = _KEY_TEMPLATE.copy()  # copying a template is ~3x cheaper than np.array([...])
            key[0] = self.state_key()
            obs[STATE_KEY] = key
        if self._want_pose_key:
            key = _KEY_TEMPLATE.copy()
            key[0] = self.pose_key()
            obs[POSE_KEY] = key
        return obs

    def _with_text(self, obs: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        if self._want_text:
            info[TEXT] = text.describe(self._env)
            obs[TEXT] = encode_text(info[TEXT])
        return obs

    def _read_doors(self) -> int:
        bits = 0
        for i, door in enumerate(self._doors):
            bits |= (door.is_open | (door.is_locked << 1)) << (2 * i)
        return bits

    def state_key(self) -> int:
        """The exact state key: a 64-bit BLAKE2b digest of the encoded grid, the agent's pose and carried object.

        ``grid.encode()`` is minigrid's own full description of the grid (object type, colour and state of
        every cell), so every change of the world (an object moved, picked up or dropped, a box opened, a
        door toggled, an obstacle that moved) changes the key. Deterministic across processes. The grid is
        re-encoded only when an object was placed, removed or moved (the cells' objects changed: pickup, drop,
        moving obstacles) or after a toggle (which changes a door in place).
        """
        env = self._env
        cells = list(map(id, env.grid.grid))
        if cells != self._grid_cells:  # an object was placed, removed or moved (or an action may have changed one)
            self._grid_cells = cells
            self._grid_digest = env.grid.encode().tobytes()
        carried = env.carrying
        x, y = env.agent_pos
        agent = bytes((int(x) & 0xFF, int(y) & 0xFF, int(env.agent_dir), *(carried.encode() if carried else (0, 0, 0))))
        digest = hashlib.blake2b(self._grid_digest + agent, digest_size=8).digest()
        return int.from_bytes(digest, "little", signed=True)

    def pose_key(self) -> int:
        """The cheap key: exact packing of pose, carried object and door states (hash if too wide); not the state."""
        env = self._env
        x, y = env.agent_pos
        carried = env.carrying
        code = 0 if carried is None else _carried_code(carried)
        if self._exact_key:
            return int(x) | (int(y) << 8) | (env.agent_dir << 16) | (code << 18) | (self._door_bits << _DOOR_SHIFT)
        return hash((int(x), int(y), env.agent_dir, code, self._door_bits))
