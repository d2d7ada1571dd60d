"""Crafter behind Rove's common interface (see :mod:`rove.envs.core`).

Registered as ``Rove/CrafterReward-v1`` and ``Rove/CrafterNoReward-v1`` (Hafner, "Benchmarking the Spectrum
of Agent Capabilities", ICLR 2022). The PyPI package speaks the old gym API and has no Gymnasium spaces;
this adapter gives it real ``Dict`` spaces, the 5-tuple step, seeding through ``reset(seed=)``, captions,
a state key and per-episode achievement statistics (the input of the Crafter score).

Seeding: crafter seeds each world from ``hash((seed, episode_counter))``. ``reset(seed=s)`` sets the seed to
``s`` and the counter to 0, so the same seed gives the same world and, with the same actions, the same
episode; later ``reset()`` calls without a seed continue the counter (new worlds, still reproducible).

Only the requested keys are computed: without ``image`` the frame is not rendered at all. Rendering at
night draws noise from the world's RNG, so the adapter then draws the same number of values, keeping the
world's dynamics identical whatever keys are asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

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
from rove.envs.crafter import text as crafter_text
from rove.envs.crafter.captions import describe
from rove.envs.crafter.world import WorldConfig, generate_world

try:
    import crafter
    from crafter import constants as crafter_constants
    from crafter import objects as crafter_objects
except ImportError as exc:  # pragma: no cover - crafter is a core dependency
    raise ImportError("Rove's Crafter envs need the crafter package: pip install crafter==1.8.3") from exc

_KEY_TEMPLATE = np.zeros(1, dtype=np.int64)
AVAILABLE_KEYS = ("image", "inventory", CAPTION, STATE_KEY, TEXT)
DEFAULT_KEYS = ("image", CAPTION, STATE_KEY)
ACHIEVEMENTS: tuple[str, ...] = tuple(crafter_constants.achievements)
INVENTORY_ITEMS: tuple[str, ...] = tuple(crafter_constants.items)
NUM_ACTIONS = len(crafter_constants.actions)
_CONSTRUCTOR_ARGS = (
    "reward",
    "observation_keys",
    "size",
    "area",
    "view",
    "length",
    "max_steps",
    "render_mode",
    "semantic",
    "world",
)


class _CrafterCore(crafter.Env):
    """``crafter.Env`` that renders only when asked to (same RNG stream), despawns deterministically and
    builds its world from a :class:`~rove.envs.crafter.world.WorldConfig` (the default is crafter's world)."""

    def __init__(self, render_image: bool, semantic: bool, world: WorldConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.render_image = render_image
        self.semantic = semantic
        self.world_config = world
        # LocalView draws one uniform per pixel of its canvas (grid * unit) for night noise.
        unit = self._size // self._view
        self._night_draws = int(np.prod(self._local_view._grid * unit))

    def reset(self) -> np.ndarray | None:
        # crafter 1.8.3's reset, with the configurable world generation and the starting inventory.
        center = (self._world.area[0] // 2, self._world.area[1] // 2)
        self._episode += 1
        self._step = 0
        self._world.reset(seed=hash((self._seed, self._episode)) % (2**31 - 1))
        self._update_time()
        self._player = crafter_objects.Player(self._world, center)
        self._last_health = self._player.health
        self._world.add(self._player)
        self._unlocked: set[str] = set()
        generate_world(self._world, self._player, self.world_config)
        for item, count in self.world_config.inventory:
            self._player.inventory[item] = count
        return self._obs()

    def _balance_chunk(self, chunk, objs) -> None:
        # crafter 1.8.3's balancing (same order, same draws) with each creature's spawn probability and
        # target counts scaled by its rate.
        light = self._world.daylight
        cfg, world, player = self.world_config, self._world, self._player
        zombie, skeleton, cow = cfg.zombie_rate, cfg.skeleton_rate, cfg.cow_rate
        self._balance_object(
            chunk, objs, crafter_objects.Zombie, "grass", 6, 0, min(1.0, 0.3 * zombie), 0.4,
            lambda pos: crafter_objects.Zombie(world, pos, player),
            lambda num, space: ((0 if space < 50 else 3.5 - 3 * light) * zombie, (3.5 - 3 * light) * zombie),
        )  # fmt: skip
        self._balance_object(
            chunk, objs, crafter_objects.Skeleton, "path", 7, 7, min(1.0, 0.1 * skeleton), 0.1,
            lambda pos: crafter_objects.Skeleton(world, pos, player),
            lambda num, space: ((0 if space < 6 else 1) * skeleton, 2 * skeleton),
        )  # fmt: skip
        self._balance_object(
            chunk, objs, crafter_objects.Cow, "grass", 5, 5, min(1.0, 0.01 * cow), 0.1,
            lambda pos: crafter_objects.Cow(world, pos),
            lambda num, space: ((0 if space < 30 else 1) * cow, (1.5 + light) * cow),
        )  # fmt: skip

    def _balance_object(
        self, chunk, objs, cls, material, span_dist, despan_dist, spawn_prob, despawn_prob, ctor, target_fn
    ) -> None:
        # crafter 1.8.3's own version, except that the creatures are sorted by position: crafter lists them
        # from a set of objects hashed by memory address, so which one despawns differed between runs and
        # the same seed did not give the same episode.
        xmin, xmax, ymin, ymax = chunk
        random = self._world.random
        creatures = sorted((obj for obj in objs if isinstance(obj, cls)), key=lambda obj: (obj.pos[0], obj.pos[1]))
        mask = self._world.mask(*chunk, material)
        target_min, target_max = target_fn(len(creatures), mask.sum())
        if len(creatures) < int(target_min) and random.uniform() < spawn_prob:
            xs = np.tile(np.arange(xmin, xmax)[:, None], [1, ymax - ymin])
            ys = np.tile(np.arange(ymin, ymax)[None, :], [xmax - xmin, 1])
            xs, ys = xs[mask], ys[mask]
            i = random.randint(0, len(xs))
            pos = np.array((xs[i], ys[i]))
            empty = self._world[pos][1] is None
            away = self._player.distance(pos) >= span_dist
            if empty and away:
                self._world.add(ctor(pos))
        elif len(creatures) > int(target_max) and random.uniform() < despawn_prob:
            obj = creatures[random.randint(0, len(creatures))]
            away = self._player.distance(obj.pos) >= despan_dist
            if away:
                self._world.remove(obj)

    def _sem_view(self) -> np.ndarray | None:
        # crafter builds the semantic map on every step for its info; only when asked for here.
        return super()._sem_view() if self.semantic else None

    def _obs(self) -> np.ndarray | None:
        if self.render_image:
            return self.render()
        if self._world.daylight < 0.5:
            self._world.random.uniform(32, 127, self._night_draws)
        return None


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in pair):
        raise ValueError(f"CrafterEnv: {name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


class CrafterEnv(gym.Env[dict[str, Any], np.int64]):
    """Crafter with Rove's caption, state key and episode statistics.

    Args:
        reward: ``True`` for Crafter's reward (+1 per first unlock of an achievement in an episode, ±0.1 per
            health point); ``False`` for the reward-free variant (reward always 0; statistics still kept).
        observation_keys: keys to compute, from ``("image", "inventory", "caption", "state_key", "text")``;
            ``None`` gives ``("image", "caption", "state_key")``. ``text`` is ``rove.envs.crafter.text``'s view
            (visible materials and creatures with direction and distance, inventory, vitals), also in
            ``info["text"]``.
        size: rendered frame size in pixels (int or ``(w, h)``).
        area: world size in cells (int or pair).
        view: local view in cells (int or pair; 9 as in the paper, the bottom rows show the inventory).
        length: step limit of an episode (truncation), ``None`` for none.
        render_mode: ``None`` or ``"rgb_array"``.
        semantic: if True, every step's info has crafter's ``semantic`` map (int ``[area]``; crafter computes it
            on every step, Rove only when asked).
        max_steps: same as ``length`` (overrides it): the step-limit name every Rove suite shares, since
            ``gym.make(id, max_episode_steps=N)`` adds Gymnasium's ``TimeLimit``, whose truncations carry no
            episode statistics.
        world: The world's options (:class:`~rove.envs.crafter.world.WorldConfig` or a dict of its fields:
            ``biome``, ``tree_density``, ``coal_density``, ``iron_density``, ``diamond_density``, ``cow_rate``,
            ``zombie_rate``, ``skeleton_rate``, ``inventory``); None (default) is crafter's own world, exactly.

    Observation (a ``Dict`` with the requested keys):
        ``image``: uint8 ``[size, size, 3]``. ``inventory``: int32 ``[16]``, Crafter's inventory in the order
        of :data:`INVENTORY_ITEMS` (health, food, drink, energy, then items). ``caption``: uint8 ``[256]``.
        ``state_key``: int64 ``[1]``, a 64-bit hash of position, facing and inventory.

    ``terminated`` is True when the player dies, ``truncated`` when ``length`` steps are reached.
    Every step's info keeps crafter's own keys: ``inventory``, ``achievements`` (counts), ``discount`` (0 on
    death, else 1), ``player_pos``, and ``semantic`` when ``semantic=True``.
    ``info["episode"]`` at the end of an episode is ``{"r", "l", "achievements", "crafter_return"}`` with
    ``achievements`` mapping each of the 22 names in :data:`ACHIEVEMENTS` to 1 if unlocked in the episode,
    else 0, and ``crafter_return`` the sum of Crafter's own reward (also in the reward-free variant).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium's API)

    def __init__(
        self,
        reward: bool = True,
        observation_keys: Iterable[str] | None = None,
        *,
        size: int | tuple[int, int] = 64,
        area: int | tuple[int, int] = 64,
        view: int | tuple[int, int] = 9,
        length: int | None = 10000,
        render_mode: str | None = None,
        max_steps: int | None = None,
        semantic: bool = False,
        world: WorldConfig | dict[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(f"CrafterEnv: unknown keyword argument(s) {sorted(unknown)}; accepted: {_CONSTRUCTOR_ARGS}")
        if max_steps is not None:  # the name every Rove suite shares for the episode's step limit
            if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps <= 0:
                raise ValueError(f"CrafterEnv: max_steps must be a positive int, got {max_steps!r}")
            length = int(max_steps)
        if length is not None and (not isinstance(length, int | np.integer) or length <= 0):
            raise ValueError(f"CrafterEnv: length must be a positive int or None, got {length!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"CrafterEnv: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.reward = bool(reward)
        self.render_mode = render_mode
        self.observation_keys = resolve_observation_keys(observation_keys, AVAILABLE_KEYS, DEFAULT_KEYS, "CrafterEnv")
        size_wh = _pair(size, "size")
        self.world = WorldConfig.from_options(world)
        self._env = _CrafterCore(
            render_image="image" in self.observation_keys,
            semantic=bool(semantic),
            world=self.world,
            area=_pair(area, "area"),
            view=_pair(view, "view"),
            size=size_wh,
            reward=self.reward,
            length=length,
            seed=0,  # replaced at the first reset; crafter would otherwise draw from numpy's global RNG
        )

        self.action_space = spaces.Discrete(NUM_ACTIONS)
        item_max = np.array([crafter_constants.items[name]["max"] for name in INVENTORY_ITEMS], dtype=np.int32)
        all_spaces: dict[str, spaces.Space] = {
            "image": spaces.Box(0, 255, shape=(size_wh[1], size_wh[0], 3), dtype=np.uint8),
            "inventory": spaces.Box(0, item_max, dtype=np.int32),
            CAPTION: caption_space(),
            STATE_KEY: state_key_space(),
            TEXT: text_space(),
        }
        self.observation_space = spaces.Dict({k: all_spaces[k] for k in self.observation_keys})
        keys = set(self.observation_keys)
        self._want_image = "image" in keys
        self._want_inventory = "inventory" in keys
        self._want_caption = CAPTION in keys
        self._want_state_key = STATE_KEY in keys
        self._want_text = TEXT in keys
        self._semantic = bool(semantic)

        self._seeded = False
        self._tracker = EpisodeTracker()
        self._crafter_return = 0.0
        self._inventory: dict[str, int] = {}
        self._achievements: dict[str, int] = {}
        self._sleeping = False

    @property
    def crafter_env(self) -> crafter.Env:
        """The wrapped ``crafter.Env`` (its ``_world`` and ``_player`` are crafter's own API)."""
        return self._env

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        env = self._env
        if seed is not None:
            env._seed, env._episode = int(seed), 0
        elif not self._seeded:
            env._seed, env._episode = int(self.np_random.integers(2**31 - 1)), 0
        self._seeded = True
        image = env.reset()
        player = env._player
        self._inventory = player.inventory.copy()
        self._achievements = player.achievements.copy()
        self._sleeping = player.sleeping
        self._tracker.reset()
        self._crafter_return = 0.0
        info: dict[str, Any] = {CAPTION: ""}
        obs = self._observation(image, "")
        if self._want_text:
            info[TEXT] = crafter_text.describe(env)
            obs[TEXT] = encode_text(info[TEXT])
        return obs, info

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = check_discrete_action(action, NUM_ACTIONS, "CrafterEnv")
        env = self._env
        image, reward, done, raw_info = env.step(a)
        inventory, achievements = raw_info["inventory"], raw_info["achievements"]
        sleeping = env._player.sleeping
        caption = describe(self._achievements, achievements, self._inventory, inventory, self._sleeping, sleeping)
        self._inventory, self._achievements, self._sleeping = inventory, achievements, sleeping

        reward = float(reward)
        self._tracker.add(reward)
        self._crafter_return += raw_info["reward"]
        terminated = inventory["health"] <= 0
        truncated = bool(done) and not terminated
        info: dict[str, Any] = {
            CAPTION: caption,
            "inventory": inventory,
            "achievements": achievements,
            "discount": raw_info["discount"],
            "player_pos": np.array(raw_info["player_pos"]),
        }
        if self._semantic:
            info["semantic"] = raw_info["semantic"]
        if done:
            info["episode"] = self._tracker.finish(
                achievements={name: int(achievements[name] > 0) for name in ACHIEVEMENTS},
                crafter_return=self._crafter_return,
            )
        obs = self._observation(image, caption)
        if self._want_text:
            info[TEXT] = crafter_text.describe(env)
            obs[TEXT] = encode_text(info[TEXT])
        return obs, reward, terminated, truncated, info

    def render(self) -> Any:
        """The current frame (``render_mode="rgb_array"``), drawn without touching the world's RNG."""
        if self.render_mode is None:
            return None
        random = self._env._world.random
        state = random.get_state()
        frame = self._env.render()
        random.set_state(state)
        return frame

    # -- observation pieces --
    def _observation(self, image: np.ndarray | None, caption: str) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        if self._want_image:
            obs["image"] = image
        if self._want_inventory:
            obs["inventory"] = np.fromiter(self._inventory.values(), dtype=np.int32, count=len(INVENTORY_ITEMS))
        if self._want_caption:
            obs[CAPTION] = encode_caption(caption) if caption else np.zeros(CAPTION_BYTES, dtype=np.uint8)
        if self._want_state_key:
            key = _KEY_TEMPLATE.copy()  # copying a template is ~3x cheaper than np.array([...])
            key[0] = self.state_key()
            obs[STATE_KEY] = key
        return obs

    def state_key(self) -> int:
        """64-bit hash of the player's position, facing and inventory (Python's tuple hash is not salted)."""
        player = self._env._player
        x, y = player.pos
        fx, fy = player.facing
        return hash((int(x), int(y), fx, fy, *self._inventory.values()))
