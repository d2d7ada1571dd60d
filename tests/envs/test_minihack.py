"""MiniHack behind Rove's interface: every id builds and steps, keys, seeding, flags, success, text view."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import rove
from rove.envs import decode_caption
from rove.envs.minihack import CUSTOM_IDS, MINIHACK_IDS, NOT_REGISTERED
from rove.envs.nethack import pack_state_key

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # minihack imports pkg_resources, which warns
    import minihack  # noqa: F401
    from minihack import LevelGenerator
from nle import nethack

E, W = ord("l"), ord("h")  # NetHack's keys for a step east, west


def _level(monster_at: tuple[int, int] = (4, 1), stairs_at: tuple[int, int] = (6, 2)) -> str:
    gen = LevelGenerator(w=7, h=3, lit=True)
    gen.set_start_pos((1, 1))
    gen.add_monster("jackal", place=monster_at, args=("asleep",))
    gen.add_object("apple", "%", place=(1, 2))
    gen.add_goal_pos(stairs_at)
    return gen.get_des()


def _make(env_id: str, **kwargs) -> gym.Env:
    if env_id in CUSTOM_IDS:
        kwargs.setdefault("des_file", _level())
    return gym.make(f"Rove/{env_id}", **kwargs)


def _key_index(env: gym.Env, key: int) -> int:
    return [int(a) for a in env.unwrapped.minihack_env.actions].index(key)


def test_rove_mirrors_every_minihack_id_but_those_without_data():
    theirs = {k for k in gym.registry if k.startswith("MiniHack-")}
    assert set(MINIHACK_IDS) == theirs - set(NOT_REGISTERED)
    assert set(NOT_REGISTERED) <= theirs
    assert sorted(f"Rove/{k}" for k in MINIHACK_IDS) == rove.rove_ids("minihack")
    with pytest.raises(gym.error.Error):
        gym.make("Rove/MiniHack-Boxoban-Hard-v0")


@pytest.mark.parametrize("env_id", MINIHACK_IDS)
def test_every_id_makes_resets_and_steps(env_id):
    env = _make(env_id)
    try:
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert isinstance(info["caption"], str)
        env.action_space.seed(0)
        for _ in range(5):
            obs, _reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs), env_id
            assert obs["state_key"][0] == pack_state_key(
                int(obs["blstats"][nethack.NLE_BL_DNUM]),
                int(obs["blstats"][nethack.NLE_BL_DLEVEL]),
                int(obs["blstats"][nethack.NLE_BL_X]),
                int(obs["blstats"][nethack.NLE_BL_Y]),
            )
            if terminated or truncated:
                assert "episode" in info
                obs, info = env.reset()
    finally:
        env.close()


def test_custom_ids_need_a_level():
    with pytest.raises(TypeError, match="des_file"):
        gym.make("Rove/MiniHack-Navigation-Custom-v0")


def test_only_requested_keys_are_computed():
    env = _make("MiniHack-Room-5x5-v0", observation_keys=("glyphs_crop", "caption"))
    task = env.unwrapped.minihack_env
    assert set(env.observation_space.spaces) == {"glyphs_crop", "caption"}
    assert task._minihack_obs_keys == ["glyphs_crop"]  # MiniHack crops nothing else
    for unused in ("tty_chars", "tty_colors", "colors", "specials", "inv_glyphs", "inv_oclasses", "misc"):
        assert unused not in task._observation_keys  # nle does not compute it
    obs, _ = env.reset(seed=1)
    assert obs["glyphs_crop"].shape == (9, 9)
    env.close()
    plain = gym.make("MiniHack-Room-5x5-v0")
    assert "tty_chars" in plain.unwrapped._observation_keys  # what minihack alone would have nle compute
    plain.close()


def test_step_limit_is_a_truncation_with_the_last_game_screen():
    env = _make("MiniHack-Room-15x15-v0", max_steps=3)
    env.reset(seed=0)
    for _ in range(3):
        obs, _, terminated, truncated, info = env.step(_key_index(env, W))
    assert truncated and not terminated
    assert info["episode"]["end_reason"] == "aborted" and info["episode"]["success"] is False
    assert info["episode"]["l"] == 3
    assert obs["blstats"][nethack.NLE_BL_HPMAX] > 0  # the game as left, not nle's screen after quitting


def test_reaching_the_stairs_is_a_success():
    env = _make("MiniHack-Navigation-Custom-v0", des_file=_level(monster_at=(4, 0), stairs_at=(3, 1)))
    env.reset(seed=0)
    steps = [env.step(_key_index(env, E)) for _ in range(2)]
    _, reward, terminated, truncated, info = steps[-1]
    assert terminated and not truncated
    assert reward == 1.0
    assert info["episode"]["success"] is True and info["episode"]["end_reason"] == "task_successful"


def test_seed_replays_the_same_generated_level_and_episode():
    # MultiRoom's layout comes from minigrid's RNG, which minihack's own seeding cannot reach on Gymnasium.
    def first_maps(seed: int) -> list[np.ndarray]:
        env = _make("MiniHack-MultiRoom-N4-v0")
        maps = [env.reset(seed=seed)[0]["glyphs"]]
        env.action_space.seed(0)
        for _ in range(20):
            obs, *_ = env.step(env.action_space.sample())
            maps.append(obs["glyphs"])
        maps.append(env.reset()[0]["glyphs"])  # the next, unseeded episode follows from the seed too
        env.close()
        return maps

    a, b, c = first_maps(7), first_maps(7), first_maps(8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_text_names_a_known_monster_in_its_direction():
    env = _make("MiniHack-Navigation-Custom-v0", observation_keys=("glyphs", "blstats", "text"))
    obs, info = env.reset(seed=0)
    text = info["text"]
    assert decode_caption(obs["text"]) == text
    assert "jackal (monster): 3 east\n" in text
    assert "apple (object): 1 south\n" in text
    assert "staircase down (feature): 5 east, 1 south" in text
    assert "Status: HP " in text and "Inventory:\na - " in text
    _, _, _, _, info = env.step(_key_index(env, E))  # one step closer
    assert "jackal (monster): 2 east\n" in info["text"]


def test_unregistered_ids_say_why():
    with pytest.raises(gym.error.NameNotFound, match="Boxoban level files"):
        rove.envs.check_env_id("MiniHack-Boxoban-Hard-v0")
    with pytest.raises(gym.error.NameNotFound, match="pattern files"):
        rove.envs.check_env_id("Rove/MiniGrid-WFC-MazeSimple-v0")


def test_a_skill_task_succeeds_through_its_reward_manager():
    env = _make("MiniHack-Eat-Fixed-v0", observation_keys=("blstats", "caption"))
    env.reset(seed=0)  # the apple lies 2 west, 2 north of the agent
    for key in "yy":
        env.step(_key_index(env, ord(key)))  # north-west, twice: onto the apple
    _, _, terminated, _, info = env.step(_key_index(env, ord("e")))
    assert not terminated and info["caption"].startswith("There is an apple here; eat it?")
    _, reward, terminated, truncated, info = env.step(_key_index(env, ord("y")))
    assert terminated and not truncated and reward == 1.0
    assert info["episode"]["success"] is True and info["episode"]["end_reason"] == "task_successful"
