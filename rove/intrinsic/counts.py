"""Count-based exploration bonuses: exact counts of Rove's state key, and SimHash pseudo-counts.

The bonus of a transition is ``n(s_{t+1}) ** -exponent`` where ``n`` counts visits of the next state's
key, lifelong (over all training), episodic (within the current episode of that env) or the product of
both (E3B's ICML-2023 recipe for NetHack). Counting runs in time-major order, so the n-th visit of a key
gets exactly ``n ** -exponent``, as MiniGrid's ``PositionBonus`` gives ``1 / sqrt(n)``.

Counting happens in ``compute``: call it exactly once per rollout, in order (as agents do). Only valid
transitions count; episodic tables clear at episode ends (see :class:`rove.intrinsic.kernels.EpisodicCountTables`).
The lifelong table is part of ``state_dict``; episodic tables are transient and cleared by ``reset_episodes``.

Reference (counts): facebookresearch/e3b ``minihack/src/algos/count.py`` and ``minihack/src/utils.py``
(episodic and lifelong count dicts of the observation key, ``1/sqrt(n)``); MiniGrid's ``PositionBonus``.
Deviations: numba hash tables instead of Python dicts (26x faster, same counts); counting in ``compute`` over
the whole rollout, in time order, instead of per step in the actors.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces

from rove.encoders import MINIGRID_CODES, NLE_MAX_GLYPH, crop_glyphs, suite_of
from rove.envs.core import CAPTION, STATE_KEY
from rove.intrinsic.base import IntrinsicModule, Normalization
from rove.intrinsic.kernels import CountTable, EpisodicCountTables, hash_rows, obs_bytes
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout
from rove.obs import TensorObs, obs_flatten

CountMode = Literal["lifelong", "episodic", "both"]
MODES = ("lifelong", "episodic", "both")


def state_keys(obs: TensorObs, batch_dims: int = 1, key: str = STATE_KEY) -> np.ndarray:
    """Exact int64 key per observation: Rove's ``state_key`` (or ``key``) when present, else a hash of the raw
    bytes.

    Args:
        obs: ``[*B, ...]`` tensor or dict of tensors (``B`` = the ``batch_dims`` leading dims).
        key: The int64 observation to count (``"state_key"``, or MiniGrid's cheaper ``"pose_key"``).

    Returns:
        ``int64 [prod(B)]``, flattened in the batch's (time-major) order.
    """
    if isinstance(obs, dict) and key in obs:
        return obs[key].detach().cpu().numpy().astype(np.int64, copy=False).reshape(-1)
    # Captions describe events, not places: leaving them out keeps one situation one key.
    return hash_rows(obs_bytes(obs, batch_dims, skip=(CAPTION,)))


class CountBonus:
    """Lifelong and/or episodic counting of keys, turned into ``n ** -exponent`` (shared by count modules)."""

    def __init__(self, mode: CountMode, exponent: float) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not exponent > 0:
            raise ValueError(f"exponent must be > 0, got {exponent}")
        self.mode = mode
        self.exponent = float(exponent)
        self.lifelong = CountTable()
        self.episodic = EpisodicCountTables()

    def __call__(self, keys: np.ndarray, valid: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Counts ``keys [T, E]`` (valid ones, time-major) and returns the bonus ``float64 [T, E]`` (0 where invalid)."""
        counts = np.ones(keys.shape, dtype=np.float64)
        if self.mode in ("lifelong", "both"):
            flat_valid = valid.reshape(-1)
            lifelong = np.zeros(keys.size, dtype=np.int64)
            lifelong[flat_valid] = self.lifelong.increment(keys.reshape(-1)[flat_valid])
            counts *= lifelong.reshape(keys.shape)
        if self.mode in ("episodic", "both"):
            counts *= self.episodic.increment(keys, valid, dones)
        bonus = np.zeros(keys.shape, dtype=np.float64)
        np.power(counts, -self.exponent, out=bonus, where=valid)
        return bonus


class _CountModule(IntrinsicModule):
    """Common part of the count modules: subclasses only say how to key a batch of observations."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        mode: CountMode = "lifelong",
        exponent: float = 0.5,
        normalize: Normalization = "none",
        **base_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, normalize=normalize, **base_kwargs)
        self.counter = CountBonus(mode, exponent)

    def keys(self, obs: TensorObs) -> np.ndarray:
        """``int64 [N]`` key of each observation of a ``[N, ...]`` batch."""
        raise NotImplementedError

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Counts have no parameters to train (the lifelong table grows in ``compute``)."""
        return {}

    def _reset_episodes(self) -> None:
        self.counter.episodic.reset()  # the lifelong table is kept

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        num_steps, num_envs = rollout.num_steps, rollout.num_envs
        keys = self.keys(obs_flatten(rollout.next_obs)).reshape(num_steps, num_envs)
        bonus = self.counter(keys, rollout.valid.cpu().numpy(), rollout.dones.cpu().numpy())
        return torch.as_tensor(bonus, dtype=torch.float32, device=self.device)

    # The lifelong table rides along in state_dict as tensors (torch.load(weights_only=True) accepts them).
    def get_extra_state(self) -> dict[str, torch.Tensor]:
        keys, counts = self.counter.lifelong.items()
        return {"keys": torch.from_numpy(keys.copy()), "counts": torch.from_numpy(counts)}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.counter.lifelong.load(state["keys"].cpu().numpy(), state["counts"].cpu().numpy())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.counter.mode!r}, exponent={self.counter.exponent}"


@register("count")
class StateCount(_CountModule):
    """Exact visit counts of the next state's key; bonus ``n ** -exponent``.

    Keys are Rove's ``state_key`` observation (``obs["state_key"][..., 0]``: NetHack depth+position,
    MiniGrid pose+carried object+doors, Crafter position+inventory) when the space has it, otherwise a
    64-bit hash of the observation's raw bytes (every key but ``caption``), i.e. exact-state counts.

    Args:
        observation_space: Single-env observation space (any Box, Discrete or Dict).
        action_space: Single-env action space (unused).
        mode: ``"lifelong"``, ``"episodic"`` (reset at episode ends) or ``"both"`` (their product, as in
            E3B's NetHack recipe: ``(n_life * n_ep) ** -exponent``).
        exponent: Bonus ``n ** -exponent``; 0.5 is the classic ``1 / sqrt(n)`` (Strehl & Littman 2008).
        key: The observation counted: ``"state_key"`` (the exact state), or MiniGrid's ``"pose_key"`` (pose,
            carried object and door states: objects lying elsewhere do not make a new key, so moving a key
            around earns nothing; the ``rove train`` default counts it). Must be in the space when not
            ``"state_key"``.
        normalize: Reward normalisation of the base class; ``"none"`` keeps the exact count bonus.
        **base_kwargs: ``coef``, ``gamma``, ``update_proportion``, ``device``, ``seed`` (see the base class).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        key: str = STATE_KEY,
        **kwargs: Any,
    ) -> None:
        if key != STATE_KEY and not (isinstance(observation_space, spaces.Dict) and key in observation_space.spaces):
            have = list(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else []
            raise ValueError(f"count: key {key!r} is not an observation of this env (it has {have})")
        super().__init__(observation_space, action_space, **kwargs)
        self.key = key

    def keys(self, obs: TensorObs) -> np.ndarray:
        return state_keys(obs, key=self.key)


def _categorical_keys(space: spaces.Space) -> str:
    """Which SimHash featurisation a space gets: ``nethack``, ``minigrid`` or ``dense``."""
    suite = suite_of(space)
    return suite if suite in ("nethack", "minigrid") else "dense"


@register("simhash")
class SimHashCount(_CountModule):
    """SimHash pseudo-counts (Tang et al. 2017, "#Exploration"): key = sign(A g(s)), bonus ``n ** -exponent``.

    ``A`` is a fixed ``k x D`` Gaussian matrix; the ``k`` sign bits are packed and hashed to one int64 key
    (exact for the bit pattern up to 64-bit collisions). ``g(s)`` depends on the space:

    - NetHack (``glyphs`` + ``blstats``): a ``crop x crop`` window of glyphs centred on the agent (the
      full 21x79 map makes the projection, not the counting, the cost), plus dungeon depth.
    - MiniGrid (``image`` codes, optional ``direction``): the whole egocentric view.
    - Anything else: every numeric key, flattened and scaled to floats.

    Categorical codes (glyph ids, MiniGrid object/colour/state codes) are first mapped to a fixed random
    N(0, 1) value ``v[p, c]`` per (position, code); raw ids would make all vectors nearly parallel and collapse
    the hash. Seen as a projection of the one-hot encoding, this is rank-1 per position (the weight of code
    ``c`` at position ``p`` on bit ``j`` is ``v[p, c] * A[p, j]``), not the i.i.d. Gaussian projection of
    Tang et al.: that matrix would hold ``positions x codes x bits`` floats (125 MB for NetHack's crop); the
    rank-1 form still sends different codes at a position to independent random directions along ``A[p]``.

    Reference: Tang et al. 2017, Algorithm 1 (``sign(A g(s))``, Gaussian ``A``); no copy of their released code
    was available to read here. Deviations: the rank-1 code projection above; one exact 64-bit hash of the
    sign bits instead of counting in several prime-sized tables and taking the minimum (collisions ~2^-64).

    Args:
        observation_space: Single-env observation space.
        action_space: Single-env action space (unused).
        bits: ``k``, the number of hash bits (Tang et al. use 64..128 ... 256 on Atari pixels).
        crop: Side of the NetHack glyph window around the agent (odd).
        mode: ``"lifelong"``, ``"episodic"`` or ``"both"`` (see :class:`StateCount`).
        exponent: Bonus ``n ** -exponent``.
        normalize: Reward normalisation of the base class.
        **base_kwargs: ``coef``, ``gamma``, ``update_proportion``, ``device``, ``seed``.
    """

    projection: torch.Tensor
    code_values: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        bits: int = 64,
        crop: int = 9,
        mode: CountMode = "lifelong",
        exponent: float = 0.5,
        normalize: Normalization = "none",
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, mode=mode, exponent=exponent, normalize=normalize, **base_kwargs
        )
        if not (isinstance(bits, int) and bits >= 1):
            raise ValueError(f"bits must be a positive integer, got {bits!r}")
        if not (isinstance(crop, int) and crop >= 1 and crop % 2 == 1):
            raise ValueError(f"crop must be a positive odd integer, got {crop!r}")
        self.bits = bits
        self.crop = crop
        self.kind = _categorical_keys(observation_space)
        self.dense_keys: list[str] = []
        if self.kind == "nethack":
            dim = code_positions = crop * crop + 1  # the window's glyphs, then the dungeon depth
            num_codes = NLE_MAX_GLYPH + 1
        elif self.kind == "minigrid":
            image = observation_space["image"] if isinstance(observation_space, spaces.Dict) else observation_space
            self.has_direction = isinstance(observation_space, spaces.Dict) and "direction" in observation_space.spaces
            code_positions = int(np.prod(image.shape or (1,))) + int(self.has_direction)
            dim, num_codes = code_positions, MINIGRID_CODES
        else:
            dim, num_codes, code_positions = self._dense_dim(observation_space), 1, 1
        gen = torch.Generator().manual_seed(self.seed if self.seed is not None else int(self.rng.integers(2**62)))
        self.register_buffer("projection", torch.randn(dim, bits, generator=gen).to(self.device))
        self.register_buffer("code_values", torch.randn(code_positions, num_codes, generator=gen).to(self.device))

    def _dense_dim(self, space: spaces.Space) -> int:
        if isinstance(space, spaces.Dict):
            self.dense_keys = [
                k
                for k, s in space.spaces.items()
                if k not in (CAPTION, STATE_KEY) and isinstance(s, (spaces.Box, spaces.Discrete))
            ]
            if not self.dense_keys:
                raise ValueError(f"SimHashCount: no numeric keys to hash in {space}")
            return sum(int(np.prod(space[k].shape or (1,))) for k in self.dense_keys)
        if isinstance(space, (spaces.Box, spaces.Discrete)):
            return int(np.prod(space.shape or (1,)))
        raise TypeError(f"SimHashCount supports Box, Discrete and Dict spaces, got {space}")

    def features(self, obs: TensorObs) -> torch.Tensor:
        """``g(s)``: ``[N, D]`` float features that the Gaussian matrix projects."""
        if self.kind == "nethack":
            assert isinstance(obs, dict)
            blstats = obs["blstats"]
            # Gather only the window (padding the whole map first costs more than the projection).
            window = crop_glyphs(obs["glyphs"], blstats[:, 0], blstats[:, 1], self.crop).flatten(1)
            # NLE_BL_DEPTH (12): the same surroundings on another level are another state.
            depth = blstats[:, 12:13].long().clamp(0, NLE_MAX_GLYPH)
            return self._code_features(torch.cat([window, depth], dim=1))
        if self.kind == "minigrid":
            image = obs["image"] if isinstance(obs, dict) else obs
            codes = image.long().reshape(image.shape[0], -1).clamp(0, MINIGRID_CODES - 1)
            if self.has_direction:
                assert isinstance(obs, dict)
                codes = torch.cat([codes, obs["direction"].long().reshape(-1, 1) % MINIGRID_CODES], dim=1)
            return self._code_features(codes)
        leaves = [obs[k] for k in self.dense_keys] if isinstance(obs, dict) else [obs]
        return torch.cat([leaf.reshape(leaf.shape[0], -1).float() for leaf in leaves], dim=1)

    def _code_features(self, codes: torch.Tensor) -> torch.Tensor:
        """``code_values[p, codes[:, p]]`` for each position p: ``[N, P]`` int64 -> ``[N, P]`` float32, as one
        flat ``index_select`` (advanced indexing with two index tensors is several times slower on CPU)."""
        num_positions, num_codes = self.code_values.shape
        flat = codes + torch.arange(num_positions, device=codes.device) * num_codes
        return self.code_values.reshape(-1).index_select(0, flat.reshape(-1)).reshape(codes.shape)

    def keys(self, obs: TensorObs) -> np.ndarray:
        signs = (self.features(obs) @ self.projection) > 0  # [N, k]
        packed = np.packbits(signs.cpu().numpy(), axis=1)  # [N, ceil(k/8)] uint8
        return hash_rows(packed)
