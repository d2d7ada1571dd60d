"""Count bonuses: exact n ** -exponent, MiniGrid's PositionBonus, numba == reference, episodic resets, SimHash."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rove.intrinsic import Rollout, make
from rove.intrinsic.counts import SimHashCount, StateCount
from rove.intrinsic.kernels import (
    CountTable,
    EpisodicCountTables,
    count_episodic_reference,
    count_keys_reference,
    hash_rows,
    hash_rows_reference,
)

KEY_SPACE = spaces.Dict({"state_key": spaces.Box(-(2**62), 2**62, (1,), np.int64)})
ACTIONS = spaces.Discrete(3)


def rollout_of(next_obs, dones=None, valid=None) -> Rollout:
    """A rollout whose ``obs`` equals ``next_obs`` (count modules read only ``next_obs``)."""
    leaf = next(iter(next_obs.values())) if isinstance(next_obs, dict) else next_obs
    t, e = leaf.shape[:2]
    dones = torch.zeros(t, e, dtype=torch.bool) if dones is None else torch.as_tensor(dones)
    valid = torch.ones(t, e, dtype=torch.bool) if valid is None else torch.as_tensor(valid)
    return Rollout(next_obs, torch.zeros(t, e, dtype=torch.long), next_obs, torch.zeros(t, e), dones, valid)


def key_rollout(keys: np.ndarray, **kwargs) -> Rollout:
    return rollout_of({"state_key": torch.as_tensor(keys, dtype=torch.int64)[..., None]}, **kwargs)


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_bonus_is_exactly_visit_count_to_minus_exponent(exponent):
    rng = np.random.default_rng(0)
    module = StateCount(KEY_SPACE, ACTIONS, exponent=exponent)
    seen: dict[int, int] = {}
    for _ in range(3):  # counts carry over between rollouts
        keys = rng.integers(0, 12, size=(20, 4))
        bonus = module.compute(key_rollout(keys)).numpy()
        expected = np.empty(keys.shape)
        for t in range(keys.shape[0]):  # time-major: env 0..E-1 at step t, then step t+1
            for e in range(keys.shape[1]):
                seen[keys[t, e]] = seen.get(keys[t, e], 0) + 1
                expected[t, e] = seen[keys[t, e]] ** -exponent
        np.testing.assert_allclose(bonus, expected, rtol=1e-6)


class _LastReward(gym.Wrapper):
    """Remembers the env's own reward, so the PositionBonus part can be separated from it."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.last_reward = reward
        return obs, reward, terminated, truncated, info


def test_equals_minigrid_position_bonus():
    from minigrid.wrappers import PositionBonus

    inner = _LastReward(gym.make("MiniGrid-Empty-8x8-v0", max_steps=40))
    env = PositionBonus(inner)
    rng = np.random.default_rng(1)
    position_space = spaces.Box(0, 100, (2,), np.int64)
    module = StateCount(position_space, ACTIONS)  # keyed on the raw bytes of the position
    env.reset(seed=3)
    wrapper_bonus, positions, dones, valid = [], [], [], []
    for _ in range(150):
        _, reward, terminated, truncated, _ = env.step(int(rng.integers(3)))
        wrapper_bonus.append(reward - inner.last_reward)
        positions.append(np.array(env.unwrapped.agent_pos, dtype=np.int64))
        dones.append(terminated or truncated)
        valid.append(True)
        if terminated or truncated:
            env.reset()
            # NEXT_STEP autoreset: a step whose next_obs is the reset position, not a visit.
            positions.append(np.array(env.unwrapped.agent_pos, dtype=np.int64))
            wrapper_bonus.append(0.0)
            dones.append(False)
            valid.append(False)
    assert not all(valid), "the rollout should cross an episode end"
    obs = torch.as_tensor(np.stack(positions))[:, None]
    bonus = module.compute(rollout_of(obs, torch.tensor(dones)[:, None], torch.tensor(valid)[:, None]))
    np.testing.assert_allclose(bonus[:, 0].numpy(), np.array(wrapper_bonus), rtol=1e-6, atol=1e-7)


def test_numba_hash_matches_reference():
    rng = np.random.default_rng(2)
    for width in (1, 7, 8, 37, 3318):
        rows = rng.integers(0, 256, size=(50, width), dtype=np.uint8)
        rows[1] = rows[0]  # equal rows, equal keys
        keys = hash_rows(rows)
        np.testing.assert_array_equal(keys, hash_rows_reference(rows))
        assert keys[0] == keys[1]
        assert len(set(keys.tolist())) == len({row.tobytes() for row in rows})


def test_numba_counts_match_reference_including_growth():
    rng = np.random.default_rng(3)
    table, reference = CountTable(capacity=16), {}
    capacities = {table.capacity}
    for _ in range(5):
        keys = rng.integers(-(2**63), 2**63 - 1, size=3000, dtype=np.int64)
        keys[::3] = rng.integers(0, 500, size=1000)  # many repeats, plus negative and huge keys
        np.testing.assert_array_equal(table.increment(keys), count_keys_reference(reference, keys))
        capacities.add(table.capacity)
    assert len(capacities) > 2, "the table should have grown"
    assert len(table) == len(reference)
    probe = np.array([*list(reference)[:100], 12345678901], dtype=np.int64)
    np.testing.assert_array_equal(table.lookup(probe), [reference.get(k, 0) for k in probe.tolist()])


def test_numba_episodic_counts_match_reference_including_growth():
    rng = np.random.default_rng(4)
    tables, reference = EpisodicCountTables(capacity=4), [{} for _ in range(6)]
    for _ in range(4):
        keys = rng.integers(0, 400, size=(200, 6))
        valid = rng.random((200, 6)) > 0.03
        dones = rng.random((200, 6)) < 0.01
        np.testing.assert_array_equal(
            tables.increment(keys, valid, dones), count_episodic_reference(reference, keys, valid, dones)
        )
    assert tables.keys.shape[1] > 8


def test_episodic_counts_reset_at_episode_end_and_not_otherwise():
    module = StateCount(KEY_SPACE, ACTIONS, mode="episodic")
    keys = np.full((6, 2), 7)
    dones = np.zeros((6, 2), bool)
    valid = np.ones((6, 2), bool)
    dones[2, 0] = True  # env 0's episode ends at step 2 ...
    valid[3, 0] = False  # ... and autoresets at step 3
    first = module.compute(key_rollout(keys, dones=dones, valid=valid)).numpy()
    counts = np.rint(np.where(valid, first.astype(np.float64), 1.0) ** -2).astype(int) * valid
    np.testing.assert_array_equal(counts[:, 0], [1, 2, 3, 0, 1, 2])
    np.testing.assert_array_equal(counts[:, 1], [1, 2, 3, 4, 5, 6])
    # A rollout boundary is not an episode boundary.
    second = module.compute(key_rollout(np.full((2, 2), 7))).numpy()
    np.testing.assert_allclose(second**-2, [[3, 7], [4, 8]], rtol=1e-5)


def test_both_mode_is_product_of_lifelong_and_episodic():
    keys = np.array([[1], [1], [1], [1]])
    dones = np.array([[False], [True], [False], [False]])
    valid = np.array([[True], [True], [False], [True]])
    both = StateCount(KEY_SPACE, ACTIONS, mode="both").compute(key_rollout(keys, dones=dones, valid=valid))
    lifelong = np.array([1, 2, 0, 3])
    episodic = np.array([1, 2, 0, 1])
    expected = np.where(valid[:, 0], (lifelong * episodic).clip(1) ** -0.5, 0.0)
    np.testing.assert_allclose(both[:, 0].numpy(), expected, rtol=1e-6)


def test_lifelong_table_survives_state_dict_round_trip():
    module = StateCount(KEY_SPACE, ACTIONS)
    module.compute(key_rollout(np.arange(40).reshape(10, 4) % 9))
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    restored = StateCount(KEY_SPACE, ACTIONS)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    probe = np.arange(12).reshape(3, 4) % 10
    np.testing.assert_array_equal(module.compute(key_rollout(probe)), restored.compute(key_rollout(probe)))


def test_falls_back_to_exact_observation_hash_without_state_key():
    space = spaces.Dict(
        {"image": spaces.Box(0, 255, (5, 5, 3), np.uint8), "caption": spaces.Box(0, 255, (8,), np.uint8)}
    )
    module = StateCount(space, ACTIONS)
    image = torch.zeros(4, 1, 5, 5, 3, dtype=torch.uint8)
    image[2, 0, 0, 0, 0] = 1  # one differing byte is another state
    caption = torch.arange(4 * 8, dtype=torch.uint8).reshape(4, 1, 8)  # captions are not part of the state
    bonus = module.compute(rollout_of({"image": image, "caption": caption}))[:, 0]
    np.testing.assert_allclose(bonus.numpy(), [1.0, 2**-0.5, 1.0, 3**-0.5], rtol=1e-6)


def nethack_space() -> spaces.Dict:
    return spaces.Dict(
        {
            "glyphs": spaces.Box(0, 5976, (21, 79), np.int16),
            "blstats": spaces.Box(-(2**31), 2**31 - 1, (27,), np.int64),
        }
    )


def test_simhash_counts_identical_states_and_separates_different_ones():
    module = SimHashCount(nethack_space(), ACTIONS, seed=0)
    rng = np.random.default_rng(5)
    glyphs = torch.as_tensor(rng.integers(2300, 2400, size=(10, 1, 21, 79)), dtype=torch.int16)
    blstats = torch.zeros(10, 1, 27, dtype=torch.int64)
    blstats[..., 0], blstats[..., 1], blstats[..., 12] = 40, 10, 1
    glyphs[5:] = glyphs[0]  # states 5..9 repeat state 0
    bonus = module.compute(rollout_of({"glyphs": glyphs, "blstats": blstats}))[:, 0].numpy()
    np.testing.assert_allclose(bonus[:5], 1.0)  # five different windows: five new keys
    np.testing.assert_allclose(bonus[5:], np.arange(2, 7) ** -0.5, rtol=1e-6)
    # Glyphs outside the window around the agent do not change the key; the depth does.
    far, deeper = glyphs[:1].clone(), blstats[:1].clone()
    far[..., 0, 0] = 1
    deeper[..., 12] = 2
    keys = module.keys(
        {"glyphs": torch.cat([glyphs[0], far[0], glyphs[0]]), "blstats": torch.cat([blstats[0], blstats[0], deeper[0]])}
    )
    assert keys[0] == keys[1] and keys[0] != keys[2]


@pytest.mark.parametrize("bits", [8, 64, 100])
def test_simhash_on_box_observations_is_deterministic_under_seed(bits):
    space = spaces.Box(-1, 1, (6,), np.float32)
    obs = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    a = SimHashCount(space, ACTIONS, bits=bits, seed=1).keys(obs)
    b = SimHashCount(space, ACTIONS, bits=bits, seed=1).keys(obs)
    np.testing.assert_array_equal(a, b)
    # More bits, finer cells: with 8 bits some of 200 random points share a cell; with 64 almost none do.
    distinct = len(set(a.tolist()))
    assert distinct < 200 if bits == 8 else distinct >= 195


def test_simhash_minigrid_image_and_direction():
    space = spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8), "direction": spaces.Discrete(4)})
    module = make("simhash", space, ACTIONS, mode="episodic", seed=0)
    image = torch.zeros(3, 7, 7, 3, dtype=torch.uint8)
    direction = torch.tensor([0, 0, 1])
    keys = module.keys({"image": image, "direction": direction})
    assert keys[0] == keys[1] != keys[2]


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (StateCount, {"mode": "forever"}, "mode must be one of"),
        (StateCount, {"exponent": 0.0}, "exponent must be > 0"),
        (SimHashCount, {"bits": 0}, "bits must be a positive integer"),
        (SimHashCount, {"crop": 4}, "crop must be a positive odd integer"),
    ],
)
def test_bad_options_raise_clear_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(KEY_SPACE if cls is StateCount else nethack_space(), ACTIONS, **kwargs)


def test_nan_observation_raises():
    module = StateCount(spaces.Box(-1, 1, (3,), np.float32), ACTIONS)
    obs = torch.zeros(2, 1, 3)
    obs[1, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        module.compute(rollout_of(obs))


def test_count_key_option_counts_minigrid_pose_key_and_networks_never_read_it() -> None:
    """``count(key="pose_key")`` counts MiniGrid's pose key, computed here from the raw env; an absent key is an
    error naming the observations; the policy's encoder does not take either key as a feature."""
    import rove
    from rove.encoders import make_encoder
    from rove.obs import network_keys

    keys_wanted = ("image", "direction", "pose_key", "state_key")
    envs = rove.make_vec("Rove/MiniGrid-DoorKey-6x6-v0", 2, seed=3, observation_keys=keys_wanted)
    envs.reset()
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(60):
        nxt = envs.step(rng.integers(0, 6, size=2))[0]
        rows.append({k: np.array(v) for k, v in nxt.items()})
    envs.close()
    next_obs = {k: torch.as_tensor(np.stack([r[k] for r in rows])) for k in keys_wanted}
    pose = next_obs["pose_key"][..., 0].numpy()
    module = StateCount(envs.single_observation_space, envs.single_action_space, key="pose_key", mode="lifelong")
    bonus = module.compute(rollout_of(next_obs)).numpy()
    seen: dict[int, int] = {}
    expected = np.zeros(pose.shape)
    for t in range(pose.shape[0]):
        for e in range(pose.shape[1]):
            seen[int(pose[t, e])] = seen.get(int(pose[t, e]), 0) + 1
            expected[t, e] = seen[int(pose[t, e])] ** -0.5
    np.testing.assert_allclose(bonus, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="key 'pose_key' is not an observation"):
        StateCount(KEY_SPACE, ACTIONS, key="pose_key")
    assert sorted(network_keys(envs.single_observation_space)) == ["direction", "image"]
    encoder = make_encoder(envs.single_observation_space)
    assert "pose_key" not in str(encoder) and "state_key" not in str(encoder)
