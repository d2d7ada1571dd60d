"""NoisyTV: the TV region shows fresh noise as documented; everything else is the env's own observation."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import rove  # noqa: F401  (registers the Rove/ ids)
from rove.envs import MINIGRID_IMAGE_HIGH, NoisyTV

CASES = [
    ("Rove/MiniGrid-DoorKey-8x8-v0", "image", {}),
    ("Rove/CrafterReward-v1", "image", {}),
    ("Rove/NetHackScore-v0", "glyphs", {}),
    ("Rove/MiniHack-Room-5x5-v0", "glyphs_crop", {"observation_keys": ("glyphs_crop", "blstats", "state_key")}),
]


def _outside(obs: dict, key: str, region: tuple[slice, ...]) -> np.ndarray:
    mask = np.ones(obs[key].shape, dtype=bool)
    mask[region] = False
    return obs[key][mask]


@pytest.mark.parametrize(("env_id", "key", "kwargs"), CASES)
def test_always_on_tv_is_noise_inside_and_the_env_outside(env_id, key, kwargs):
    plain, tv = gym.make(env_id, **kwargs), NoisyTV(gym.make(env_id, **kwargs), key)
    space = plain.observation_space[key]
    obs_plain, _ = plain.reset(seed=3)
    obs_tv, _ = tv.reset(seed=3)
    pictures = [obs_tv[key][tv.region].copy()]
    for action in [0, 1, 0, 1, 2]:
        obs_plain, r_plain, *_ = plain.step(action)
        obs_tv, r_tv, _, _, info = tv.step(action)
        assert info["tv_changed"]
        assert r_plain == r_tv
        np.testing.assert_array_equal(_outside(obs_plain, key, tv.region), _outside(obs_tv, key, tv.region))
        for other in obs_plain:
            if other != key:
                np.testing.assert_array_equal(obs_plain[other], obs_tv[other])
        assert tv.observation_space[key].contains(obs_tv[key])
        assert (obs_tv[key][tv.region] >= space.low.min()).all() and (obs_tv[key][tv.region] <= space.high.max()).all()
        pictures.append(obs_tv[key][tv.region].copy())
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(pictures))
    plain.close()
    tv.close()


def test_remote_changes_the_picture_only_when_pressed_and_replays_with_the_seed():
    def run() -> list[np.ndarray]:
        env = NoisyTV(gym.make("Rove/MiniGrid-DoorKey-8x8-v0"), "image", mode="action", add_action=True, noop_action=6)
        assert env.action_space.n == 8
        obs, _ = env.reset(seed=0)
        frames = [obs["image"][env.region].copy()]
        for action in [0, 7, 1, 1, 7, 7]:
            obs, _, _, _, info = env.step(action)
            assert info["tv_changed"] == (action == 7)
            frames.append(obs["image"][env.region].copy())
        return frames

    frames = run()
    np.testing.assert_array_equal(frames[0], frames[1])  # turning left: same picture
    assert not np.array_equal(frames[1], frames[2])  # the remote
    np.testing.assert_array_equal(frames[2], frames[4])
    assert not np.array_equal(frames[4], frames[5]) and not np.array_equal(frames[5], frames[6])
    for a, b in zip(frames, run(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_minigrid_tv_shows_real_codes_with_the_code_bounds():
    # MiniGrid's Box is 0..255, but encoders clamp codes above (10, 5, 2): the TV must draw every real code.
    env = NoisyTV(gym.make("Rove/MiniGrid-DoorKey-8x8-v0"), "image", high=MINIGRID_IMAGE_HIGH)
    env.reset(seed=1)
    cells = np.concatenate([env.step(0)[0]["image"][env.region].reshape(-1, 3) for _ in range(50)])
    for channel, top in enumerate((10, 5, 2)):
        assert set(np.unique(cells[:, channel])) == set(range(top + 1))


def test_bad_configurations_are_refused():
    env = gym.make("Rove/MiniGrid-DoorKey-8x8-v0")
    with pytest.raises(ValueError, match="unknown observation key 'img'"):
        NoisyTV(env, "img")
    with pytest.raises(ValueError, match="unknown mode"):
        NoisyTV(env, "image", mode="sometimes")
    with pytest.raises(ValueError, match="tv_action or add_action"):
        NoisyTV(env, "image", mode="action")
    with pytest.raises(ValueError, match="noop_action"):
        NoisyTV(env, "image", mode="action", add_action=True)
    with pytest.raises(ValueError, match="empty"):
        NoisyTV(env, "image", region=(slice(0, 0),))
    with pytest.raises(ValueError, match="within 'image'"):
        NoisyTV(env, "image", high=(10, 5, 300))
    with pytest.raises(ValueError, match="does not broadcast"):
        NoisyTV(env, "image", high=(10, 5))


def test_a_tv_with_channels_shows_only_its_fixed_pictures_uniformly():
    def make(channel_seed: int = 0) -> NoisyTV:
        env = gym.make("Rove/MiniGrid-DoorKey-8x8-v0")
        return NoisyTV(env, "image", mode="action", add_action=True, noop_action=6, high=MINIGRID_IMAGE_HIGH,
                       channels=4, channel_seed=channel_seed)  # fmt: skip

    env, twin = make(), make()
    assert env.channels is not None and env.channels.shape == (4, *np.zeros((7, 7, 3))[env.region].shape)
    np.testing.assert_array_equal(env.channels, twin.channels)  # the same channels in every env of one seed
    assert not np.array_equal(env.channels, make(channel_seed=1).channels)
    assert len({c.tobytes() for c in env.channels}) == 4
    obs, _ = env.reset(seed=5)
    shown = []
    for _ in range(400):
        obs, *_ = env.step(7)
        (index,) = [i for i, c in enumerate(env.channels) if np.array_equal(obs["image"][env.region], c)]
        shown.append(index)
    counts = np.bincount(shown, minlength=4)
    assert (counts > 60).all()  # uniform over 4: 100 each, P(any < 60) is about 1e-4
    pressed = [env.step(a)[0]["image"][env.region].copy() for a in (0, 1, 2)]  # other actions: the channel stays
    assert all(np.array_equal(p, obs["image"][env.region]) for p in pressed)
    with pytest.raises(ValueError, match="channels must be an integer >= 2"):
        NoisyTV(gym.make("Rove/MiniGrid-DoorKey-8x8-v0"), "image", channels=1)
