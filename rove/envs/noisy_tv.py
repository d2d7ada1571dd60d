"""``NoisyTV``: a region of the observation that shows unpredictable content, for robustness studies.

The "noisy TV" of Burda et al. 2019 ("Large-Scale Study of Curiosity-Driven Learning", a TV with a remote),
RIDE's ``MultiRoomNoisyTV`` (an action that changes a ball's colour at random) and the stochastic-distraction
tests of Curiosity in Hindsight and DEIR: a bonus that rewards prediction error or novelty of observations can
be trapped by a source of pure noise; a good one is not. The wrapper works on every Rove suite (any Dict
observation with an integer ``Box`` key: MiniGrid/Crafter ``image``, NetHack/MiniHack ``glyphs`` or
``glyphs_crop``, ...).

Semantics:

* The TV is ``obs[key][region]`` (``region`` a tuple of ``slice``; default the top-left quarter of the first
  two axes). Its cells hold integers drawn uniformly from the key's ``Box`` bounds (inclusive; ``high`` lowers
  the upper one), independent of everything else, from the wrapper's own RNG; the rest of the observation is
  the env's, unchanged.
* MiniGrid's ``image`` Box says 0..255 but only codes up to (object 10, colour 5, state 2) exist, and Rove's
  encoders clamp larger codes: pass ``high=MINIGRID_IMAGE_HIGH`` so that the TV shows real (random) objects
  instead of cells that mostly read as the same clamped code.
* ``mode="always"``: the TV shows a new picture on every reset and step (observation noise).
* ``mode="action"``: the TV shows a new picture only on steps whose action is ``tv_action`` and keeps its last
  picture otherwise (a TV with a remote: the agent chooses to watch). With ``add_action=True`` the action space
  grows by one action, the remote, which reaches the env as ``noop_action`` (e.g. NetHack's search, MiniGrid's
  ``done``): the remote then costs a step of game time and nothing else.
* ``channels=N``: the TV has N channels, N fixed random pictures drawn once from ``channel_seed`` (the same
  in every env made with that seed), and a new picture is one of them, uniformly (Burda et al.'s TV "changes
  the channel"). The noise then has ln N nats per switch however large the screen, so a model can learn its
  distribution; without ``channels`` every cell is fresh, ``region.size`` independent draws per switch.
* ``info["tv_changed"]`` says whether the TV drew a new picture on this step (with ``channels`` it may be
  the channel already showing).
* ``reset(seed=s)`` seeds the TV's RNG from ``s`` too, so seeded replays stay exact.
* ``caption``, ``text``, ``state_key`` and rewards are untouched: the TV fools observation-based bonuses (RND,
  ICM, NovelD on images or glyphs), not counts of the env's state key, by design.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

MODES = ("always", "action")
# The largest object, colour and state codes of a MiniGrid image cell (minigrid.core.constants).
MINIGRID_IMAGE_HIGH = (max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), max(STATE_TO_IDX.values()))


class NoisyTV(gym.Wrapper):
    """A region of one observation key that shows random content (see the module docstring).

    Args:
        env: a Rove env (Dict observations).
        key: the observation key to draw on; an integer ``Box``.
        region: index of the TV within ``obs[key]``, a tuple of slices; default the top-left quarter of the
            first two axes (at least one cell each).
        mode: ``"always"`` (new noise every step) or ``"action"`` (new noise when ``tv_action`` is taken).
        tv_action: ``mode="action"``: the action that switches the channel. Default: the added action with
            ``add_action=True``, else required.
        add_action: ``mode="action"``: append a remote action to a ``Discrete`` action space; it is passed to the
            env as ``noop_action``.
        noop_action: the env action the added remote performs.
        high: inclusive upper bound of the TV's values, broadcast against the region (e.g. one bound per
            channel: ``MINIGRID_IMAGE_HIGH``); default the key's ``Box`` high. Must lie within the Box.
        channels: number of fixed pictures the TV switches between (None: a fresh picture every time).
        channel_seed: seed of the channels' pictures (not of which channel is shown: that follows ``reset``).
    """

    def __init__(
        self,
        env: gym.Env,
        key: str,
        region: tuple[slice, ...] | None = None,
        mode: str = "always",
        tv_action: int | None = None,
        add_action: bool = False,
        noop_action: int | None = None,
        high: int | tuple[int, ...] | None = None,
        channels: int | None = None,
        channel_seed: int = 0,
    ) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict):
            raise TypeError(f"NoisyTV: needs a Dict observation space, got {space}")
        if key not in space.spaces:
            raise ValueError(f"NoisyTV: unknown observation key {key!r}; keys: {list(space.spaces)}")
        box = space[key]
        if not isinstance(box, spaces.Box) or not np.issubdtype(box.dtype, np.integer) or box.shape is None:
            raise ValueError(f"NoisyTV: key {key!r} must be an integer Box, got {box}")
        if mode not in MODES:
            raise ValueError(f"NoisyTV: unknown mode {mode!r}; choose from {list(MODES)}")
        if region is None:
            region = tuple(slice(0, max(1, n // 4)) for n in box.shape[:2])
        probe = np.zeros(box.shape, dtype=np.uint8)[region]
        if probe.size == 0:
            raise ValueError(f"NoisyTV: region {region} is empty in {key!r} of shape {box.shape}")
        if mode == "always" and (add_action or tv_action is not None):
            raise ValueError("NoisyTV: tv_action/add_action only apply to mode='action'")
        n_actions = None
        if add_action:
            if not isinstance(env.action_space, spaces.Discrete):
                raise TypeError(f"NoisyTV: add_action needs a Discrete action space, got {env.action_space}")
            if noop_action is None or not 0 <= int(noop_action) < env.action_space.n:
                raise ValueError(
                    f"NoisyTV: add_action needs noop_action in [0, {env.action_space.n}), got {noop_action!r}"
                )
            n_actions = int(env.action_space.n)
            self.action_space = spaces.Discrete(n_actions + 1)
            if tv_action is None:
                tv_action = n_actions
        if mode == "action" and tv_action is None:
            raise ValueError("NoisyTV: mode='action' needs tv_action or add_action=True")
        self.key = key
        self.region = region
        self.mode = mode
        self.tv_action = tv_action
        self._added = n_actions
        self._noop = None if noop_action is None else int(noop_action)
        low = np.broadcast_to(box.low, box.shape)[region]
        box_high = np.broadcast_to(box.high, box.shape)[region]
        info = np.iinfo(box.dtype)
        self._low = np.clip(low, info.min, info.max).astype(np.int64)
        self._high = np.clip(box_high, info.min, info.max).astype(np.int64)
        if high is not None:
            try:
                bound = np.broadcast_to(np.asarray(high, dtype=np.int64), self._high.shape)
            except ValueError:
                raise ValueError(
                    f"NoisyTV: high={high!r} does not broadcast against the TV region's shape {self._high.shape}"
                ) from None
            if (bound < self._low).any() or (bound > self._high).any():
                raise ValueError(f"NoisyTV: high={high!r} must lie within {key!r}'s Box bounds")
            self._high = bound.copy()
        self._dtype = box.dtype
        self._rng = np.random.default_rng()
        self._picture: np.ndarray | None = None
        self.channels: np.ndarray | None = None  # [channels, *region shape]
        if channels is not None:
            if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
                raise ValueError(f"NoisyTV: channels must be an integer >= 2 (or None), got {channels!r}")
            rng = np.random.default_rng(np.random.SeedSequence([int(channel_seed), 0x7C]))
            self.channels = np.stack([self._random_picture(rng) for _ in range(channels)])

    def _random_picture(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self._low, self._high, endpoint=True).astype(self._dtype)

    def _draw(self) -> None:
        if self.channels is None:
            self._picture = self._random_picture(self._rng)
        else:
            self._picture = self.channels[self._rng.integers(len(self.channels))]

    def _show(self, obs: dict[str, Any]) -> dict[str, Any]:
        screen = np.array(obs[self.key], copy=True)
        screen[self.region] = self._picture
        return {**obs, self.key: screen}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7F]))
        self._draw()
        return self._show(obs), {**info, "tv_changed": True}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        env_action = action
        if self._added is not None and int(action) == self._added:
            env_action = self._noop
        obs, reward, terminated, truncated, info = self.env.step(env_action)
        changed = self.mode == "always" or int(action) == self.tv_action
        if changed:
            self._draw()
        return self._show(obs), reward, terminated, truncated, {**info, "tv_changed": changed}
