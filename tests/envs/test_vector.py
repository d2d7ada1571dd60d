"""RoveVectorEnv: batching, NEXT_STEP autoreset, episode stats, seeding, copy semantics, subprocess mode, errors."""

from __future__ import annotations

import os
import pickle
import signal
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from rove.envs.core import CAPTION_BYTES, decode_captions, encode_caption
from rove.envs.vector import EnvStateError, RoveVectorEnv, VectorEnvError, make_vec


class CounterEnv(gym.Env):
    """Deterministic env with a fixed episode length; the start position comes from the reset seed.

    ``fail_at`` makes step number ``fail_at`` (counted over the env's life) raise, ``crash_at`` kill the process.
    """

    def __init__(self, length: int = 3, truncate: bool = False, fail_at: int = -1, crash_at: int = -1) -> None:
        self.length = length
        self.truncate = truncate
        self.fail_at = fail_at
        self.crash_at = crash_at
        self.observation_space = spaces.Dict(
            {
                "pos": spaces.Box(-1000, 1000, shape=(1,), dtype=np.int64),
                "image": spaces.Box(0, 255, shape=(2, 3), dtype=np.uint8),
                "caption": spaces.Box(0, 255, shape=(CAPTION_BYTES,), dtype=np.uint8),
            }
        )
        self.action_space = spaces.Discrete(4)
        self.steps_taken = 0
        self.t = 0
        self.pos = 0
        self.ret = 0.0

    def _obs(self, caption: str) -> dict[str, np.ndarray]:
        image = np.full((2, 3), (self.pos + self.t) % 256, dtype=np.uint8)
        return {"pos": np.array([self.pos], dtype=np.int64), "image": image, "caption": encode_caption(caption)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.ret = 0.0
        self.pos = int(self.np_random.integers(0, 100))
        return self._obs("start"), {"caption": "start"}

    def step(self, action):
        self.steps_taken += 1
        if self.steps_taken == self.crash_at:
            os._exit(3)
        if self.steps_taken == self.fail_at:
            raise ValueError("boom")
        action = int(action)
        self.t += 1
        self.pos += action
        reward = float(action) + 0.5
        self.ret += reward
        done = self.t >= self.length
        caption = f"moved {action}"
        info: dict[str, Any] = {"caption": caption, "noise": self.t}
        if done:
            info["episode"] = {"r": self.ret, "l": self.t, "achievements": {"far": self.pos > 50, "moved": True}}
        terminated = done and not self.truncate
        truncated = done and self.truncate
        return self._obs(caption), reward, terminated, truncated, info


def _fns(lengths: list[int], **kwargs: Any) -> list:
    return [lambda n=n: CounterEnv(length=n, truncate=(n % 2 == 0), **kwargs) for n in lengths]


def _actions(num_steps: int, num_envs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, size=(num_steps, num_envs))


def _rollout(envs: gym.vector.VectorEnv, actions: np.ndarray, seed: int | list[int] | None = 0) -> list[tuple]:
    obs, info = envs.reset(seed=seed)
    out = [({k: v.copy() for k, v in obs.items()}, info)]
    for a in actions:
        obs, rew, term, trunc, info = envs.step(a)
        out.append(({k: v.copy() for k, v in obs.items()}, rew, term, trunc, info))
    return out


def _assert_info_equal(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_info_equal(a[key], b[key])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_batches_observations_with_the_space_shapes_and_dtypes():
    with make_vec(None, env_fns=_fns([3, 4, 5])) as envs:
        assert envs.num_envs == 3
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        assert envs.observation_space == gym.vector.utils.batch_space(envs.single_observation_space, 3)
        assert envs.action_space.shape == (3,)
        obs, _ = envs.reset(seed=0)
        for _ in range(2):
            for key, sub in envs.single_observation_space.spaces.items():
                assert obs[key].shape == (3, *sub.shape)
                assert obs[key].dtype == sub.dtype
            assert envs.observation_space.contains(obs)
            obs, rew, term, trunc, infos = envs.step(np.array([1, 2, 3]))
            assert rew.dtype == np.float64 and rew.shape == (3,)
            assert term.dtype == np.bool_ and trunc.dtype == np.bool_ and term.shape == trunc.shape == (3,)
        # The observation written in place is the env's own: caption bytes decode to infos["caption"].
        assert decode_captions(obs["caption"]) == infos["caption"] == ["moved 1", "moved 2", "moved 3"]
        np.testing.assert_array_equal(rew, [1.5, 2.5, 3.5])


def test_next_step_autoreset_ignores_the_action_and_sets_the_mask():
    lengths = [2, 3]
    with make_vec(None, env_fns=_fns(lengths)) as envs:
        obs, infos = envs.reset(seed=5)
        start = obs["pos"][:, 0].copy()
        assert not infos["autoreset"].any()
        seen_autoreset = 0
        for t in range(1, 13):
            obs, rew, term, trunc, infos = envs.step(np.full(2, 3))
            for i, n in enumerate(lengths):
                # Episodes last n steps, then one autoreset step: a period of n + 1 vector steps.
                phase = t % (n + 1)
                is_reset = phase == 0
                assert infos["autoreset"][i] == is_reset
                if is_reset:
                    seen_autoreset += 1
                    assert rew[i] == 0.0 and not term[i] and not trunc[i]
                    assert infos["caption"][i] == "start"
                    # The reset takes no seed, so the env continues its RNG stream: a fresh start position,
                    # and the ignored action (3) did not move it.
                    assert obs["image"][i, 0, 0] == obs["pos"][i, 0] % 256
                else:
                    assert rew[i] == 3.5
                    assert (term[i] or trunc[i]) == (phase == n)
                    assert trunc[i] == (phase == n and n % 2 == 0)
            if t == 1:
                np.testing.assert_array_equal(obs["pos"][:, 0], start + 3)
        assert seen_autoreset >= 6


@pytest.mark.parametrize("lengths", [[2, 3, 4], [1, 1]])
def test_matches_gymnasium_sync_vector_env_step_for_step(lengths):
    """Same NEXT_STEP semantics as Gymnasium: identical observations, rewards, flags and episode infos."""
    actions = _actions(15, len(lengths))
    reference = SyncVectorEnv(_fns(lengths), autoreset_mode=AutoresetMode.NEXT_STEP)
    with make_vec(None, env_fns=_fns(lengths)) as envs:
        ours = _rollout(envs, actions)
    theirs = _rollout(reference, actions)
    reference.close()
    prev_done = np.zeros(len(lengths), dtype=bool)
    ended_steps = 0
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        _assert_info_equal(a[0], b[0])
        if step == 0:
            continue
        for x, y in zip(a[1:4], b[1:4], strict=True):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
        info, ref_info = a[4], b[4]
        np.testing.assert_array_equal(info["autoreset"], prev_done)
        prev_done = a[2] | a[3]
        if "episode" in ref_info:
            ended_steps += 1
            _assert_info_equal(info["episode"], ref_info["episode"])
            _assert_info_equal(info["_episode"], ref_info["_episode"])
        else:
            assert "episode" not in info and "_episode" not in info
    assert ended_steps > 0


def test_episode_stats_are_batched_with_masks_including_nested_dicts():
    with make_vec(None, env_fns=_fns([2, 3, 2])) as envs:
        envs.reset(seed=0)
        _, _, term, trunc, infos = envs.step(np.array([1, 1, 1]))
        assert "episode" not in infos and "_episode" not in infos
        _, _, term, trunc, infos = envs.step(np.array([1, 2, 3]))
        done = term | trunc
        np.testing.assert_array_equal(done, [True, False, True])
        np.testing.assert_array_equal(infos["_episode"], done)
        episode = infos["episode"]
        np.testing.assert_array_equal(episode["l"], [2, 0, 2])
        np.testing.assert_allclose(episode["r"], [3.0, 0.0, 5.0])
        assert episode["r"].dtype == np.float64
        np.testing.assert_array_equal(episode["_achievements"], done)
        np.testing.assert_array_equal(episode["achievements"]["moved"], [True, False, True])
        assert episode["achievements"]["moved"].dtype == np.bool_
        # Only what learners read is batched: other info keys stay out.
        assert set(infos) == {"autoreset", "caption", "episode", "_episode"}


def test_seeding_is_reproducible_and_offsets_per_env():
    actions = _actions(10, 3)

    def run(**kwargs: Any) -> list[tuple]:
        with make_vec(None, env_fns=_fns([2, 3, 4]), **kwargs) as envs:
            return _rollout(envs, actions, seed=None)

    first, second = run(seed=7), run(seed=7)
    for a, b in zip(first, second, strict=True):
        _assert_info_equal(a[0], b[0])
    different = run(seed=8)
    assert any(not np.array_equal(a[0]["pos"], b[0]["pos"]) for a, b in zip(first, different, strict=True))
    # seed=int gives env i the seed seed + i, like Gymnasium; a list gives each env its own.
    with make_vec(None, env_fns=_fns([2, 3, 4])) as envs:
        obs_int, _ = envs.reset(seed=7)
        obs_list, _ = envs.reset(seed=[7, 8, 9])
        np.testing.assert_array_equal(obs_int["pos"], obs_list["pos"])
        single = CounterEnv()
        expected = [single.reset(seed=7 + i)[0]["pos"][0] for i in range(3)]
        np.testing.assert_array_equal(obs_int["pos"][:, 0], expected)
        with pytest.raises(ValueError, match="2 seeds for 3 envs"):
            envs.reset(seed=[1, 2])


def test_copy_false_returns_the_internal_buffers_and_copy_true_returns_copies():
    with make_vec(None, env_fns=_fns([5, 5]), copy=False) as envs:
        obs0, _ = envs.reset(seed=0)
        before = obs0["pos"].copy()
        obs1, *_ = envs.step(np.array([1, 1]))
        assert obs1 is obs0 and obs1["pos"] is obs0["pos"]
        np.testing.assert_array_equal(obs0["pos"], before + 1)  # overwritten in place
    with make_vec(None, env_fns=_fns([5, 5]), copy=True) as envs:
        obs0, _ = envs.reset(seed=0)
        before = obs0["pos"].copy()
        obs1, *_ = envs.step(np.array([1, 1]))
        assert not np.shares_memory(obs0["pos"], obs1["pos"])
        np.testing.assert_array_equal(obs0["pos"], before)
        np.testing.assert_array_equal(obs1["pos"], before + 1)


@pytest.mark.parametrize(
    ("num_workers", "step_in_main"), [(1, False), (2, False), (3, False), (0, True), (1, True), (2, True)]
)
def test_subprocess_mode_gives_identical_results_to_sync_mode(num_workers, step_in_main):
    lengths = [2, 3, 4]
    actions = _actions(12, 3, seed=1)
    with make_vec(None, env_fns=_fns(lengths)) as envs:
        sync = _rollout(envs, actions, seed=3)
    with make_vec(
        None, env_fns=_fns(lengths), mode="subprocess", num_workers=num_workers, step_in_main=step_in_main
    ) as envs:
        assert len(envs._workers) == num_workers
        # With step_in_main the main process owns the first slice: 3 envs over num_workers + 1 slices.
        assert len(envs.envs) == ([3, 2, 1][num_workers] if step_in_main else 0)
        assert all(start >= len(envs.envs) for _, _, start, _ in envs._workers)
        subproc = _rollout(envs, actions, seed=3)
        assert envs.get_attr("length") == (2, 3, 4)
    for a, b in zip(sync, subproc, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_info_equal(x, y)
    assert envs.closed and all(not process.is_alive() for process, *_ in envs._workers)


@pytest.mark.parametrize("failing", [0, 2])
def test_a_failure_with_a_slice_in_the_main_process_names_the_env_and_keeps_workers_in_step(failing):
    fns = [lambda i=i: CounterEnv(length=5, fail_at=2 if i == failing else -1) for i in range(3)]
    with make_vec(None, env_fns=fns, mode="subprocess", num_workers=1, step_in_main=True) as envs:
        envs.reset(seed=0)
        envs.step(np.zeros(3, dtype=int))
        with pytest.raises(VectorEnvError, match=rf"env {failing} \(of 3\) raised ValueError: boom") as info:
            envs.step(np.zeros(3, dtype=int))
        assert info.value.env_index == failing
        # Every worker answered before the error was raised: the pipes still pair commands with answers.
        obs, _ = envs.reset(seed=0)
        assert obs["pos"].shape == (3, 1)


def test_worker_crash_raises_a_clear_error_without_hanging():
    fns = [lambda: CounterEnv(length=5), lambda: CounterEnv(length=5, crash_at=2)]
    envs = make_vec(None, env_fns=fns, mode="subprocess", num_workers=2)
    envs.reset(seed=0)
    envs.step(np.array([0, 0]))
    start = time.monotonic()
    with pytest.raises(VectorEnvError, match=r"worker 1 \(envs 1\.\.1\) died \(exit code 3\)") as info:
        envs.step(np.array([0, 0]))
    assert info.value.env_index == 1
    assert time.monotonic() - start < 10
    envs.close()


@pytest.mark.parametrize("mode", ["sync", "subprocess"])
def test_an_env_that_raises_names_its_index_and_the_original_exception(mode):
    fns = [lambda: CounterEnv(length=5), lambda: CounterEnv(length=5), lambda: CounterEnv(length=5, fail_at=2)]
    with make_vec(None, env_fns=fns, mode=mode, num_workers=2 if mode == "subprocess" else None) as envs:
        envs.reset(seed=0)
        envs.step(np.zeros(3, dtype=int))
        with pytest.raises(VectorEnvError, match=r"env 2 \(of 3\) raised ValueError: boom") as info:
            envs.step(np.zeros(3, dtype=int))
        assert info.value.env_index == 2
        assert isinstance(info.value.__cause__, ValueError)


def test_an_env_that_cannot_be_built_in_a_worker_raises():
    def broken() -> gym.Env:
        raise OSError("no such file")

    with pytest.raises(VectorEnvError, match=r"env 1 \(of 2\) raised OSError: no such file"):
        RoveVectorEnv([CounterEnv, broken], mode="subprocess", num_workers=2)


def test_close_stops_workers_and_blocks_further_use():
    envs = make_vec(None, env_fns=_fns([2, 2]), mode="subprocess", num_workers=2)
    processes = [process for process, *_ in envs._workers]
    assert all(process.is_alive() for process in processes)
    envs.close()
    assert all(not process.is_alive() for process in processes)
    with pytest.raises(RuntimeError, match="closed"):
        envs.reset()


def test_step_checks_reset_and_the_number_of_actions():
    with make_vec(None, env_fns=_fns([2, 2])) as envs:
        with pytest.raises(RuntimeError, match="before reset"):
            envs.step(np.zeros(2, dtype=int))
        envs.reset()
        with pytest.raises(ValueError, match="3 actions for 2 envs"):
            envs.step(np.zeros(3, dtype=int))


def test_bad_arguments_get_clear_errors():
    with pytest.raises(gym.error.NameNotFound, match="NetHackScore-v0"):
        make_vec("Rove/NetHackScor-v0", 2)
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
            make_vec("Rove/NetHackScore-v0", bad)
    with pytest.raises(ValueError, match=r"unknown vector env mode 'async'; choose from \['sync', 'subprocess'\]"):
        make_vec("Rove/NetHackScore-v0", 2, mode="async")
    with pytest.raises(ValueError, match="num_envs=3 but 2 env_fns"):
        make_vec(None, 3, env_fns=_fns([2, 2]))
    with pytest.raises(ValueError, match="num_workers must be in"):
        make_vec(None, env_fns=_fns([2, 2]), mode="subprocess", num_workers=3)
    with pytest.raises(ValueError, match=r"num_workers must be in \[0, 1\] for 2 envs with step_in_main, got 2"):
        make_vec(None, env_fns=_fns([2, 2]), mode="subprocess", num_workers=2, step_in_main=True)
    with pytest.raises(ValueError, match=r"num_workers must be in \[1, 2\] for 2 envs, got 0"):
        make_vec(None, env_fns=_fns([2, 2]), mode="subprocess", num_workers=0)
    text_env = lambda: gym.make("MiniGrid-Empty-5x5-v0")  # noqa: E731  (its "mission" is a Text space)
    with pytest.raises(TypeError, match="observation key 'mission'"):
        make_vec(None, env_fns=[text_env])


def _has_adapter(suite: str) -> bool:
    return os.path.exists(os.path.join(os.path.dirname(__import__("rove").__file__), "envs", suite, "env.py"))


@pytest.mark.skipif(
    not _has_adapter("minigrid"), reason="the MiniGrid adapter (rove/envs/minigrid/env.py) has not landed"
)
def test_rove_id_batches_captions_and_state_keys():
    import rove

    with rove.make_vec("MiniGrid-Empty-5x5-v0", 2, seed=0, mode="sync") as envs:
        obs, infos = envs.reset()
        assert obs["state_key"].shape == (2, 1) and obs["state_key"].dtype == np.int64
        for _ in range(30):
            obs, _, _, _, infos = envs.step(envs.action_space.sample())
            assert decode_captions(obs["caption"]) == infos["caption"]


@pytest.mark.skipif(not _has_adapter("nethack"), reason="the NetHack adapter (rove/envs/nethack/env.py) has not landed")
def test_subprocess_matches_sync_on_rove_nethack():
    actions = np.random.default_rng(0).integers(0, 23, size=(40, 4))
    runs = []
    for mode in ("sync", "subprocess"):
        with make_vec("NetHackScore-v0", 4, mode=mode, num_workers=2) as envs:
            runs.append(_rollout(envs, actions, seed=11))
    for a, b in zip(*runs, strict=True):
        for x, y in zip(a, b, strict=True):
            _assert_info_equal(x, y)


@pytest.mark.skipif(
    not _has_adapter("minigrid"), reason="the MiniGrid adapter (rove/envs/minigrid/env.py) has not landed"
)
def test_subprocess_mode_works_with_the_spawn_start_method():
    actions = np.random.default_rng(0).integers(0, 7, size=(10, 2))
    runs = []
    for mode in ("sync", "subprocess"):
        kwargs = {"context": "spawn", "num_workers": 1, "timeout": 120.0} if mode == "subprocess" else {}
        with make_vec("MiniGrid-DoorKey-5x5-v0", 2, mode=mode, **kwargs) as envs:
            runs.append(_rollout(envs, actions, seed=4))
    for a, b in zip(*runs, strict=True):
        for x, y in zip(a, b, strict=True):
            _assert_info_equal(x, y)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "FrozenLake-v1"])
def test_non_dict_observation_spaces_match_sync_vector_env(env_id):
    """A single Box or Discrete observation is batched into one array, with Gymnasium's wrappers kept working."""
    fns = [lambda: gym.make(env_id)] * 3
    reference = SyncVectorEnv(fns)
    with make_vec(None, env_fns=fns) as envs:
        np.testing.assert_array_equal(envs.reset(seed=1)[0], reference.reset(seed=1)[0])
        for action in np.random.default_rng(0).integers(0, 2, size=(150, 3)):
            ours, theirs = envs.step(action), reference.step(action)
            for x, y in zip(ours[:4], theirs[:4], strict=True):
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)
    reference.close()


# ----------------------------------------------------------------------------------------------- buffered NetHack
class _PassThrough(gym.Wrapper):
    """A wrapper that changes nothing but hides the env's buffered path: the vector env steps it through ``step``."""


def _nethack_fns(task: str, keys: tuple[str, ...], buffered: bool, num_envs: int, **kwargs: Any) -> list:
    from rove.envs.nethack import NetHackEnv

    if buffered:  # as make_vec builds them: no copies, the vector env's rows become nle's arrays
        return [lambda: NetHackEnv(task, observation_keys=keys, copy_obs=False, **kwargs)] * num_envs
    return [lambda: _PassThrough(NetHackEnv(task, observation_keys=keys, **kwargs))] * num_envs


def _quit_script(task: str, steps: int, num_envs: int) -> np.ndarray:
    """Random actions; on the full keyboard env 0 also quits (M-q, "y") twice, so that games end by nle's done.

    The quits come right after a reset (steps 0-1; step 2 is the autoreset): a random action could leave a prompt
    open that would swallow the M-q.
    """
    from nle import nethack

    from rove.envs.nethack import TASKS

    n = len(nethack.ACTIONS) if task in ("NetHack", "NetHackChallenge") else 23
    actions = np.random.default_rng(7).integers(0, n, size=(steps, num_envs))
    if TASKS[task][0].__name__ == "NetHackChallenge":
        for t in (0, 3):
            actions[t, 0] = nethack.ACTIONS.index(nethack.Command.QUIT)
            actions[t + 1, 0] = nethack.ACTIONS.index(nethack.CompassDirection.NW)  # "y"
    return actions


@pytest.mark.skipif(not _has_adapter("nethack"), reason="the NetHack adapter (rove/envs/nethack/env.py) has not landed")
@pytest.mark.parametrize(
    ("task", "keys", "kwargs"),
    [
        # Python score reward; nle's step limit every 37 steps (truncations that quit the game).
        ("NetHackScore", ("glyphs", "blstats", "message"), {"max_episode_steps": 37}),
        # The caption row is nle's message array; the state key is written by Rove.
        ("NetHackScore", ("glyphs", "caption", "state_key"), {"max_episode_steps": 53}),
        # nle's reward function; message and caption both asked for (the caption row is a copy).
        ("NetHackStaircase", ("chars", "blstats", "message", "caption"), {"max_episode_steps": 41}),
        ("NetHackEat", ("blstats", "tty_chars", "caption"), {"max_episode_steps": 60}),
        # Game over (nle's done) from scripted quits, besides the step limit.
        ("NetHackChallenge", ("glyphs", "blstats", "caption", "state_key"), {"max_episode_steps": 90}),
    ],
)
def test_buffered_nethack_matches_the_per_env_path(task, keys, kwargs):
    """nle writing into the batch rows gives exactly what stepping each env and copying its observation gives."""
    num_envs, steps = 3, 300
    actions = _quit_script(task, steps, num_envs)
    runs = []
    for buffered in (True, False):
        with make_vec(None, env_fns=_nethack_fns(task, keys, buffered, num_envs, **kwargs)) as envs:
            uses_buffers = [step.__name__ == "step_into" for step, _ in envs._block.steppers]
            assert uses_buffers == [buffered] * num_envs
            runs.append(_rollout(envs, actions, seed=[3, 4, 5]))
    fast, slow = runs
    for a, b in zip(fast, slow, strict=True):
        for x, y in zip(a, b, strict=True):
            _assert_info_equal(x, y)
    ended = sum(int(np.count_nonzero(step[2] | step[3])) for step in fast[1:])
    assert ended >= 2 * num_envs  # episode ends, their final observations and the autoresets were compared too
    if task == "NetHackChallenge":
        assert any(step[2][0] for step in fast[1:])  # a game over, not only truncations


@pytest.mark.skipif(not _has_adapter("nethack"), reason="the NetHack adapter (rove/envs/nethack/env.py) has not landed")
def test_buffered_nethack_subprocess_matches_sync():
    actions = np.random.default_rng(1).integers(0, 23, size=(80, 4))
    runs = []
    for mode in ("sync", "subprocess"):
        with make_vec("NetHackScore-v0", 4, mode=mode, num_workers=2, max_episode_steps=None) as envs:
            runs.append(_rollout(envs, actions, seed=2))
    for a, b in zip(*runs, strict=True):
        for x, y in zip(a, b, strict=True):
            _assert_info_equal(x, y)


@pytest.mark.skipif(not _has_adapter("nethack"), reason="the NetHack adapter (rove/envs/nethack/env.py) has not landed")
def test_an_env_reset_before_batching_falls_back_to_copies():
    from rove.envs.nethack import NetHackEnv

    def started() -> gym.Env:
        env = NetHackEnv("NetHackScore", observation_keys=("glyphs", "caption"), copy_obs=False)
        env.reset(seed=0)  # nle takes new arrays only before its game's first reset
        return env

    actions = np.random.default_rng(2).integers(0, 23, size=(30, 2))
    with make_vec(None, env_fns=[started] * 2) as envs:
        assert [step.__name__ for step, _ in envs._block.steppers] == ["step", "step"]
        late = _rollout(envs, actions, seed=9)
    with make_vec(None, env_fns=_nethack_fns("NetHackScore", ("glyphs", "caption"), True, 2)) as envs:
        fresh = _rollout(envs, actions, seed=9)
    for a, b in zip(late, fresh, strict=True):
        for x, y in zip(a, b, strict=True):
            _assert_info_equal(x, y)


@pytest.mark.skipif(not _has_adapter("nethack"), reason="the NetHack adapter (rove/envs/nethack/env.py) has not landed")
def test_buffered_staircase_keeps_the_final_observation_and_the_descend_caption():
    from nle import nethack

    from rove.envs.nethack import NetHackEnv

    fns = [lambda: NetHackEnv("NetHackStaircaseLvl3", observation_keys=("blstats", "caption"), wizard=True)]
    with make_vec(None, env_fns=fns) as envs:
        env = envs.envs[0]
        down = np.array([env.nle_env.actions.index(nethack.MiscDirection.DOWN)])
        envs.reset(seed=0)
        for level in (2, 3):
            for key in (6, 20, ord(">"), ord(".")):  # wizard mode: map the level, teleport onto ">"
                env.nle_env.nethack.step(key)
            obs, reward, terminated, _, infos = envs.step(down)
            assert obs["blstats"][0, nethack.NLE_BL_DLEVEL] == level  # at 3: the game before nle quit it
            assert decode_captions(obs["caption"]) == infos["caption"]
            assert "You descend the stairs." in infos["caption"][0]
        assert terminated[0] and reward[0] > 0.9 and infos["episode"]["end_reason"][0] == "task_successful"


@pytest.mark.parametrize("env_id", ["Rove/NetHackScore-v0", "Rove/MiniGrid-DoorKey-5x5-v0", "Rove/CrafterReward-v1"])
def test_max_steps_is_each_suites_own_limit_and_ends_with_episode_statistics(env_id):
    env = gym.make(env_id, max_steps=7)
    env.reset(seed=0)
    for t in range(1, 8):
        _, _, terminated, truncated, info = env.step(0)  # 0 never ends these episodes within 7 steps
        assert not terminated
        assert truncated == (t == 7)
    assert info["episode"]["l"] == 7
    env.close()


def test_a_gymnasium_time_limit_around_a_rove_env_warns_and_names_max_steps():
    with pytest.warns(UserWarning, match=r"TimeLimit.*pass max_steps=9"):
        make_vec("Rove/MiniGrid-DoorKey-5x5-v0", 1, max_episode_steps=9).close()
    from rove.envs.nethack.env import NetHackEnv

    with pytest.raises(TypeError, match="max_steps or max_episode_steps, not both"):
        NetHackEnv("NetHackScore", max_steps=5, max_episode_steps=6)
    with pytest.raises(ValueError, match="max_steps must be a positive int"):
        gym.make("Rove/NetHackScore-v0", max_steps=0)
    with pytest.raises(ValueError, match="CrafterEnv: max_steps must be a positive int, got -3"):
        gym.make("Rove/CrafterReward-v1", max_steps=-3)


def test_processes_poll_before_blocking_only_when_each_has_a_core(monkeypatch):
    import rove.envs.vector as vector

    monkeypatch.setattr(vector.os, "cpu_count", lambda: 2)
    with make_vec(None, env_fns=_fns([2, 2]), mode="subprocess", num_workers=1, step_in_main=True) as envs:
        assert envs.spin == vector.SPIN_SECONDS  # main + 1 worker on 2 cores
    with make_vec(None, env_fns=_fns([2, 2]), mode="subprocess", num_workers=2) as envs:
        assert envs.spin == 0.0  # 2 workers and a waiting main process on 2 cores: polling would steal a core
    with make_vec(None, env_fns=_fns([2, 2]), mode="subprocess", num_workers=2, spin=0.002) as envs:
        assert envs.spin == 0.002
    with pytest.raises(ValueError, match="spin must be >= 0 seconds"):
        make_vec(None, env_fns=_fns([2, 2]), mode="subprocess", spin=-1.0)


# ----------------------------------------------------------------------------- saved state, interrupted calls
@pytest.mark.parametrize(
    ("env_id", "mode"),
    [
        ("Rove/MiniGrid-DoorKey-5x5-v0", "sync"),
        ("Rove/CrafterReward-v1", "sync"),
        ("Rove/NetHackScore-v0", "sync"),
        ("Rove/NetHackScore-v0", "subprocess"),
    ],
)
def test_set_state_continues_the_same_episodes_exactly(env_id, mode):
    workers = 2 if mode == "subprocess" else None
    rng = np.random.default_rng(0)
    n = 2
    with make_vec(env_id, n, seed=1, mode=mode, num_workers=workers) as envs:
        actions = envs.single_action_space.n
        envs.reset()
        for _ in range(30):
            envs.step(rng.integers(actions, size=n))
        state = pickle.loads(pickle.dumps(envs.get_state()))  # as a checkpoint file would hold it
        with make_vec(env_id, n, seed=99, mode=mode, num_workers=workers) as restored:
            restored.set_state(state)
            for _ in range(40):
                a = rng.integers(actions, size=n)
                want, got = envs.step(a), restored.step(a)
                for k in want[0]:
                    np.testing.assert_array_equal(want[0][k], got[0][k], err_msg=k)
                for i in (1, 2, 3):
                    np.testing.assert_array_equal(want[i], got[i])
                np.testing.assert_array_equal(want[4]["autoreset"], got[4]["autoreset"])
                assert want[4]["caption"] == got[4]["caption"]


class ReplayNoisyEnv(CounterEnv):
    """Claims replay (its pickle is not its state) but draws its start from NumPy's global generator."""

    def __getstate__(self):
        return {"length": self.length}

    def reset(self, *, seed=None, options=None):
        _, info = super().reset(seed=seed, options=options)
        self.pos = int(np.random.randint(0, 10**6))
        return self._obs("start"), info


class UnpicklableEnv(CounterEnv):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hook = lambda: None


def test_set_state_refuses_what_it_cannot_restore_exactly():
    with make_vec(None, env_fns=_fns([3, 4])) as envs:
        envs.reset(seed=0)
        state = envs.get_state()
    with make_vec(None, env_fns=_fns([3, 4, 5])) as other, pytest.raises(EnvStateError, match="holds 2 envs"):
        other.set_state(state)
    with make_vec(None, env_fns=[lambda: ReplayNoisyEnv(length=5)] * 2) as envs:
        envs.reset(seed=0)
        envs.step(np.array([1, 2]))
        state = envs.get_state()
        assert [e["kind"] for e in state["envs"]] == ["replay", "replay"]
        with pytest.raises(EnvStateError, match=r"env 0 did not replay to its saved observation"):
            envs.set_state(state)
    with make_vec(None, env_fns=[lambda: UnpicklableEnv(length=5)]) as envs:
        envs.reset(seed=0)
        state = envs.get_state()
        with pytest.raises(EnvStateError, match=r"env 0 could not be saved \((PicklingError|AttributeError)"):
            envs.set_state(state)


class SlowFirstStepEnv(CounterEnv):
    """CounterEnv whose first step of its life takes 0.5 s."""

    def step(self, action):
        if self.steps_taken == 0:
            time.sleep(0.5)
        return super().step(action)


class InterruptingEnv(CounterEnv):
    """CounterEnv whose second step of its life raises KeyboardInterrupt (Ctrl-C arriving mid-step)."""

    def step(self, action):
        if self.steps_taken == 1:
            self.steps_taken += 1
            raise KeyboardInterrupt
        return super().step(action)


def _interrupt_after(seconds: float):
    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return previous


def test_an_interrupted_subprocess_step_is_refused_and_reset_drains_its_replies():
    fns = [lambda: SlowFirstStepEnv(length=4) for _ in range(2)]
    actions = _actions(9, 2, seed=3)
    with make_vec(None, env_fns=fns, mode="subprocess", num_workers=2) as envs:
        envs.reset(seed=0)
        previous = _interrupt_after(0.1)
        try:
            with pytest.raises(KeyboardInterrupt):
                envs.step(np.array([1, 1]))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        time.sleep(0.8)  # the workers finish that step and their replies wait in the pipes
        with pytest.raises(RuntimeError, match=r"previous step\(\) was interrupted .* call reset\(\)"):
            envs.step(np.array([1, 1]))
        with pytest.raises(RuntimeError, match="interrupted"):
            envs.get_state()
        got = _rollout(envs, actions, seed=5)
    with make_vec(None, env_fns=[lambda: CounterEnv(length=4) for _ in range(2)]) as reference:
        want = _rollout(reference, actions, seed=5)
    for a, b in zip(want, got, strict=True):
        for x, y in zip(a, b, strict=True):
            _assert_info_equal(x, y)


def test_an_interrupted_sync_step_is_refused_rather_than_dropping_a_terminal_transition():
    fns = [lambda: CounterEnv(length=2), lambda: InterruptingEnv(length=5)]
    with make_vec(None, env_fns=fns) as envs:
        envs.reset(seed=0)
        envs.step(np.array([0, 0]))
        with pytest.raises(KeyboardInterrupt):
            envs.step(np.array([0, 0]))  # env 0 ended its episode in this step, which returned nothing
        with pytest.raises(RuntimeError, match="interrupted"):
            envs.step(np.array([0, 0]))  # would autoreset env 0 and lose that terminal transition
        envs.reset(seed=0)
        _, _, terminated, _, _ = envs.step(np.array([0, 0]))
        _, _, terminated, _, _ = envs.step(np.array([0, 0]))
        assert terminated.tolist() == [True, False]
