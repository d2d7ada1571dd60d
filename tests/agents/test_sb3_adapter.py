"""Rove intrinsic modules inside Stable-Baselines3: the intrinsic reward reaches SB3's GAE.

The central test rebuilds, from what the envs themselves logged, the advantages and returns SB3 should train
on -- GAE over extrinsic + intrinsic rewards with SB3's episode boundaries and timeout bootstrap -- and
compares them with the rollout buffer's after ``collect_rollouts``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from rove.agents.sb3 import IntrinsicDictRolloutBuffer, IntrinsicRewardCallback, IntrinsicRolloutBuffer
from rove.intrinsic import IntrinsicModule, Rollout, Step, register
from rove.obs import obs_map

GAMMA, GAE_LAMBDA, INT_COEF, N_STEPS = 0.9, 0.8, 2.0, 15


class FixedEpisodes(gym.Env):
    """Episodes of 3, 4, 5, 3, ... steps (shifted by ``phase``); even ones terminate, odd ones are truncated.

    Logs every transition it really made, so a test can rebuild the rollout without trusting the adapter.
    Observation ``[time / 10, episode % 5 / 5, phase]``; reward ``0.5 * action`` plus 1 on termination.
    """

    def __init__(self, phase: int, dict_obs: bool = False) -> None:
        self.phase = phase
        self.dict_obs = dict_obs
        box = spaces.Box(-10.0, 10.0, (3,), np.float32)
        self.observation_space = spaces.Dict({"x": box, "n": spaces.Box(0, 255, (2,), np.uint8)}) if dict_obs else box
        self.action_space = spaces.Discrete(2)
        self.episode = -1
        self.t = 0
        self.log: list[dict[str, Any]] = []
        self.current: np.ndarray | None = None

    def _vector(self) -> np.ndarray:
        return np.array([self.t / 10, (self.episode % 5) / 5, self.phase], dtype=np.float32)

    def _obs(self) -> Any:
        vector = self._vector()
        if self.dict_obs:
            return {"x": vector, "n": np.array([self.t, self.episode % 7], dtype=np.uint8)}
        return vector

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        self.current = self._vector()
        return self._obs(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        k = self.episode + self.phase
        self.t += 1
        ended = self.t >= 3 + k % 3
        terminated, truncated = ended and k % 2 == 0, ended and k % 2 == 1
        reward = 0.5 * float(action) + float(terminated)
        obs = self._obs()
        self.log.append(
            {
                "obs": self.current,
                "action": int(action),
                "reward": reward,
                "terminated": terminated,
                "truncated": truncated,
                "next_obs": self._vector(),
            }
        )
        self.current = self._vector()
        return obs, reward, terminated, truncated, {}


def bonus_numpy(next_vector: np.ndarray) -> np.ndarray:
    """The test module's reward, written independently: ``0.3 * time + 0.1 * episode_feature + 0.05``."""
    return 0.3 * next_vector[..., 0] + 0.1 * next_vector[..., 1] + 0.05


def _vector_of(obs: Any) -> torch.Tensor:
    return obs["x"] if isinstance(obs, dict) else obs


@register("test_sb3_next_obs_bonus")
class NextObsBonus(IntrinsicModule):
    """Deterministic module: reward = a known function of s_{t+1}; remembers every Step it observes."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any) -> None:
        super().__init__(observation_space, action_space, normalize="none", **kwargs)
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        self.steps: list[Step] = []
        self.warm_up_batches = 0

    def _warm_up(self, obs: Any) -> None:
        self.warm_up_batches += 1

    def _observe(self, step: Step) -> None:
        self.steps.append(Step(*(obs_map(torch.clone, x) for x in (step.obs, step.actions, step.next_obs)),
                               step.dones.clone(), step.valid.clone()))  # fmt: skip

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        x = _vector_of(rollout.next_obs).float()
        return 0.3 * x[..., 0] + 0.1 * x[..., 1] + 0.05

    def _update(self, batch: Any) -> dict[str, float]:
        loss = (self.weight - 1.0) ** 2
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}


def _make(algo: type[OnPolicyAlgorithm], dict_obs: bool = False) -> tuple[OnPolicyAlgorithm, list[FixedEpisodes]]:
    envs = [FixedEpisodes(phase, dict_obs) for phase in (0, 1)]
    venv = DummyVecEnv([lambda e=e: e for e in envs])
    policy = "MultiInputPolicy" if dict_obs else "MlpPolicy"
    extra = {"batch_size": N_STEPS * len(envs)} if algo is PPO else {}
    model = algo(policy, venv, n_steps=N_STEPS, gamma=GAMMA, gae_lambda=GAE_LAMBDA, seed=0, device="cpu", **extra)
    return model, envs


def _collect_one_rollout(model: OnPolicyAlgorithm, callback: IntrinsicRewardCallback) -> None:
    """SB3's own ``learn`` up to (not including) ``train``: setup, one ``collect_rollouts``."""
    _, wrapped = model._setup_learn(model.n_steps * model.n_envs, callback)
    wrapped.on_training_start(locals(), globals())
    assert model.collect_rollouts(model.env, wrapped, model.rollout_buffer, n_rollout_steps=model.n_steps)


def _values(model: OnPolicyAlgorithm, vectors: np.ndarray) -> np.ndarray:
    """V(s) under the current policy for Box observations ``[..., 3]``."""
    with torch.no_grad():
        values = model.policy.predict_values(torch.as_tensor(vectors.reshape(-1, 3)))
    return values.numpy().reshape(vectors.shape[:-1])


def _hand_gae(model: OnPolicyAlgorithm, envs: list[FixedEpisodes], with_intrinsic: bool) -> tuple[np.ndarray, ...]:
    """Advantages and returns from the envs' own logs, with SB3's semantics written out by hand."""
    logs = [env.log for env in envs]
    assert all(len(log) == N_STEPS for log in logs)
    obs = np.array([[entry["obs"] for entry in log] for log in logs]).swapaxes(0, 1)  # [T, E, 3]
    next_obs = np.array([[entry["next_obs"] for entry in log] for log in logs]).swapaxes(0, 1)
    reward = np.array([[entry["reward"] for entry in log] for log in logs]).T
    terminated = np.array([[entry["terminated"] for entry in log] for log in logs]).T
    truncated = np.array([[entry["truncated"] for entry in log] for log in logs]).T
    done = terminated | truncated
    values = _values(model, obs)
    # SB3 bootstraps a timeout by adding gamma * V(true last obs) to that step's reward (its issue #633).
    reward = reward + GAMMA * _values(model, next_obs) * (truncated & ~terminated)
    if with_intrinsic:
        reward = reward + INT_COEF * bonus_numpy(next_obs)
    last_values = _values(model, np.array([env.current for env in envs]))
    advantages = np.zeros_like(reward)
    gae = np.zeros(len(envs))
    for t in reversed(range(N_STEPS)):
        next_value = last_values if t == N_STEPS - 1 else values[t + 1]
        not_done = 1.0 - done[t]
        delta = reward[t] + GAMMA * next_value * not_done - values[t]
        gae = delta + GAMMA * GAE_LAMBDA * not_done * gae
        advantages[t] = gae
    return advantages, advantages + values, terminated, truncated


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_sb3_advantages_equal_hand_computed_gae_over_extrinsic_plus_intrinsic(algo: type[OnPolicyAlgorithm]) -> None:
    model, envs = _make(algo)
    callback = IntrinsicRewardCallback("test_sb3_next_obs_bonus", int_coef=INT_COEF)
    _collect_one_rollout(model, callback)
    buffer = model.rollout_buffer
    assert isinstance(buffer, IntrinsicRolloutBuffer)

    advantages, returns, terminated, truncated = _hand_gae(model, envs, with_intrinsic=True)
    # The rollout covers both kinds of episode end, and one env ends an episode on the last step.
    assert terminated.any() and truncated.any() and (terminated | truncated)[-1].any()
    np.testing.assert_allclose(buffer.advantages, advantages, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buffer.returns, returns, rtol=1e-5, atol=1e-5)
    # Not vacuous: GAE over extrinsic rewards alone (what a post-GAE integration trains on) is different.
    extrinsic_only, _, _, _ = _hand_gae(model, envs, with_intrinsic=False)
    assert not np.allclose(buffer.advantages, extrinsic_only, atol=1e-3)


def test_module_observes_true_terminal_observation_not_reset_obs() -> None:
    model, envs = _make(PPO)
    module = NextObsBonus(model.observation_space, model.action_space)
    _collect_one_rollout(model, IntrinsicRewardCallback(module, int_coef=INT_COEF))
    assert len(module.steps) == N_STEPS
    for t, step in enumerate(module.steps):
        assert bool(step.valid.all()), "SB3 VecEnvs have no ignored autoreset step"
        for e, env in enumerate(envs):
            entry = env.log[t]
            assert bool(step.dones[e]) == (entry["terminated"] or entry["truncated"])
            np.testing.assert_array_equal(step.obs[e].numpy(), entry["obs"])
            np.testing.assert_array_equal(step.next_obs[e].numpy(), entry["next_obs"])
            assert int(step.actions[e]) == entry["action"]
    ended = [(t, e) for t in range(N_STEPS) for e in range(2) if bool(module.steps[t].dones[e])]
    assert ended, "the rollout must contain episode ends"
    for t, e in ended:
        assert module.steps[t].next_obs[e][0] > 0, "next_obs of a done step must be the last obs, not a reset obs"


def test_dict_observations_use_dict_buffer_and_the_same_gae() -> None:
    model, envs = _make(PPO, dict_obs=True)
    module = NextObsBonus(model.observation_space, model.action_space)
    _collect_one_rollout(model, IntrinsicRewardCallback(module, int_coef=INT_COEF))
    buffer = model.rollout_buffer
    assert isinstance(buffer, IntrinsicDictRolloutBuffer)
    assert module.steps[0].obs["n"].dtype == torch.uint8, "modules see the env's raw dtypes"
    # Rewards in the buffer = extrinsic (+ bootstrap) + int_coef * bonus(true next obs); recompute GAE on them.
    next_vectors = np.array([[entry["next_obs"] for entry in env.log] for env in envs]).swapaxes(0, 1)
    extrinsic = np.array([[entry["reward"] for entry in env.log] for env in envs]).T
    truncated = np.array([[entry["truncated"] for entry in env.log] for env in envs]).T
    intrinsic = buffer.rewards - extrinsic
    np.testing.assert_allclose(intrinsic[~truncated], INT_COEF * bonus_numpy(next_vectors)[~truncated], atol=1e-5)
    advantages = np.zeros_like(buffer.rewards)
    gae = 0.0
    for t in reversed(range(N_STEPS)):
        done = np.array([env.log[t]["terminated"] or env.log[t]["truncated"] for env in envs], dtype=np.float32)
        with torch.no_grad():
            last_obs = {
                "x": torch.as_tensor(np.array([env.current for env in envs])),
                "n": torch.as_tensor(np.array([[env.t, env.episode % 7] for env in envs], dtype=np.uint8)),
            }
            last = model.policy.predict_values(last_obs).numpy().ravel()
        next_value = last if t == N_STEPS - 1 else buffer.values[t + 1]
        delta = buffer.rewards[t] + GAMMA * next_value * (1 - done) - buffer.values[t]
        gae = delta + GAMMA * GAE_LAMBDA * (1 - done) * gae
        advantages[t] = gae
    np.testing.assert_allclose(buffer.advantages, advantages, rtol=1e-5, atol=1e-5)


def test_update_runs_after_rollout_and_losses_are_logged() -> None:
    model, _ = _make(A2C)
    module = NextObsBonus(model.observation_space, model.action_space)
    logger = Capture()
    model.set_logger(logger)
    model.learn(2 * N_STEPS * model.n_envs, callback=IntrinsicRewardCallback(module))
    assert float(module.weight.detach()) != 0.0, "module.update was not called"
    assert module.warm_up_batches == 1, "warm-up runs once, on the first rollout"
    assert "intrinsic/test_sb3_next_obs_bonus/loss" in logger.records
    assert logger.records["intrinsic/test_sb3_next_obs_bonus/reward_mean"] > 0


def test_typo_in_module_name_raises_a_clear_error() -> None:
    with pytest.raises(KeyError, match=r"unknown intrinsic module 'rndd'.*Did you mean 'rnd'"):
        IntrinsicRewardCallback("rndd")


def test_off_policy_algorithms_are_rejected() -> None:
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", DummyVecEnv([lambda: FixedEpisodes(0)]), learning_starts=0, device="cpu")
    with pytest.raises(TypeError, match="on-policy"):
        model.learn(10, callback=IntrinsicRewardCallback("test_sb3_next_obs_bonus"))


def test_buffer_without_callback_refuses_to_silently_drop_the_reward() -> None:
    envs = DummyVecEnv([lambda: FixedEpisodes(0)])
    model = PPO("MlpPolicy", envs, n_steps=8, batch_size=8, rollout_buffer_class=IntrinsicRolloutBuffer, device="cpu")
    with pytest.raises(RuntimeError, match="IntrinsicRewardCallback"):
        model.learn(8)


HAS_RND = importlib.util.find_spec("rove.intrinsic.rnd") is not None
HAS_MINIGRID = importlib.util.find_spec("rove.envs.minigrid.env") is not None


class Capture(Logger):
    """An SB3 logger that remembers every recorded key."""

    def __init__(self) -> None:
        super().__init__(folder=None, output_formats=[])
        self.records: dict[str, Any] = {}

    def record(self, key: str, value: Any, exclude: Any = None) -> None:
        self.records[key] = value
        super().record(key, value, exclude)


def _rove_minigrid_ppo(n_steps: int = 16) -> PPO:
    from stable_baselines3.common.env_util import make_vec_env

    from rove.agents.sb3 import rove_policy_kwargs

    venv = make_vec_env("Rove/MiniGrid-Empty-5x5-v0", n_envs=2, seed=0)
    return PPO(
        "MultiInputPolicy",
        venv,
        n_steps=n_steps,
        batch_size=2 * n_steps,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs=rove_policy_kwargs(features_dim=32),
    )


@pytest.mark.skipif(not HAS_MINIGRID, reason="needs rove.envs.minigrid.env")
def test_rove_minigrid_dict_obs_modules_see_channels_last_images() -> None:
    model = _rove_minigrid_ppo()
    callback = IntrinsicRewardCallback("test_sb3_next_obs_bonus_minigrid")
    _collect_one_rollout(model, callback)
    buffer = model.rollout_buffer
    assert isinstance(buffer, IntrinsicDictRolloutBuffer)
    module = callback.module
    assert isinstance(module, ImageBonus)
    assert module.observation_space["image"].shape == (7, 7, 3), "built from the env's own (H, W, C) space"
    # SB3 stores channels-first images (its VecTransposeImage); the module got the env's layout and dtype.
    assert buffer.observations["image"].shape[2:] == (3, 7, 7)
    for t, step in enumerate(module.steps):
        assert step.obs["image"].dtype == torch.uint8
        np.testing.assert_array_equal(step.obs["image"].numpy(), buffer.observations["image"][t].transpose(0, 2, 3, 1))
    # The reward it computed on those images is what entered the buffer before GAE.
    assert module.last_reward is not None
    last_dones = np.asarray(callback.locals["dones"], dtype=bool)
    assert np.array_equal(module.last_dones[:-1], buffer.episode_starts[1:].astype(bool))
    assert np.array_equal(module.last_dones[-1], last_dones)


@register("test_sb3_next_obs_bonus_minigrid")
class ImageBonus(IntrinsicModule):
    """Reward = mean object code of the next image; remembers the Steps it observed."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any) -> None:
        super().__init__(observation_space, action_space, normalize="none", **kwargs)
        self.steps: list[Step] = []
        self.last_reward: torch.Tensor | None = None
        self.last_dones = np.zeros(0)

    def _observe(self, step: Step) -> None:
        self.steps.append(Step(*(obs_map(torch.clone, x) for x in (step.obs, step.actions, step.next_obs)),
                               step.dones.clone(), step.valid.clone()))  # fmt: skip

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        assert isinstance(rollout.next_obs, dict)
        self.last_reward = rollout.next_obs["image"][..., 0].float().mean(dim=(-1, -2)) / 10
        self.last_dones = rollout.dones.cpu().numpy()
        return self.last_reward


@pytest.mark.skipif(not (HAS_RND and HAS_MINIGRID), reason="needs rove.intrinsic.rnd and rove.envs.minigrid.env")
def test_rnd_through_the_adapter_trains_on_a_rove_minigrid_env() -> None:
    model = _rove_minigrid_ppo()
    logger = Capture()
    model.set_logger(logger)
    callback = IntrinsicRewardCallback("rnd", module_kwargs={"seed": 0})
    model.learn(16 * 2, callback=callback)
    module = callback.module
    assert module is not None and module.name == "rnd"
    before = {k: v.clone() for k, v in module.state_dict().items()}
    model.learn(2 * 16 * 2, callback=callback, reset_num_timesteps=False)
    changed = [k for k, v in module.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "RND's parameters did not change"
    losses = [k for k in logger.records if k.startswith("intrinsic/rnd/") and "reward" not in k]
    assert losses, f"no RND loss logged: {sorted(logger.records)}"
    assert logger.records["intrinsic/rnd/reward_mean"] > 0


class CountingBonus(NextObsBonus):
    """NextObsBonus that counts its compute and reset_episodes calls."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any) -> None:
        super().__init__(observation_space, action_space, **kwargs)
        self.computes = 0
        self.episode_resets = 0

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        self.computes += 1
        return super()._compute(rollout)

    def _reset_episodes(self) -> None:
        self.episode_resets += 1


def test_a_later_learn_without_the_callback_adds_no_intrinsic_reward() -> None:
    model, envs = _make(PPO)
    module = CountingBonus(model.observation_space, model.action_space)
    model.learn(N_STEPS * 2, callback=IntrinsicRewardCallback(module, int_coef=INT_COEF))
    assert module.computes == 1
    for env in envs:
        env.log.clear()
    model.learn(N_STEPS * 2, reset_num_timesteps=False)  # no callback: plain SB3 PPO
    assert module.computes == 1, "the module's reward was computed without its callback"
    extrinsic = np.array([[entry["reward"] for entry in env.log] for env in envs]).T
    truncated = np.array([[entry["truncated"] for entry in env.log] for env in envs]).T
    # The buffer holds the extrinsic rewards alone (timeouts get SB3's bootstrap added, so they are skipped).
    np.testing.assert_allclose(model.rollout_buffer.rewards[~truncated], extrinsic[~truncated], atol=1e-6)


def test_episodic_memory_is_cleared_whenever_sb3_resets_the_envs(tmp_path: Any) -> None:
    model, _ = _make(PPO)
    module = CountingBonus(model.observation_space, model.action_space)
    callback = IntrinsicRewardCallback(module)
    model.learn(N_STEPS * 2, callback=callback)
    assert module.episode_resets == 1  # the first reset
    model.learn(N_STEPS * 2, callback=callback, reset_num_timesteps=False)  # continues the same episodes
    assert module.episode_resets == 1
    model.learn(N_STEPS * 2, callback=callback)  # SB3 resets the envs
    assert module.episode_resets == 2


def test_the_module_is_saved_and_loaded_with_the_sb3_model(tmp_path: Any) -> None:
    pytest.importorskip("rove.intrinsic.rnd")
    model, _ = _make(PPO)
    callback = IntrinsicRewardCallback("rnd", module_kwargs={"seed": 0})
    model.learn(N_STEPS * 2 * 2, callback=callback)
    module = callback.module
    assert module is not None and model.intrinsic_module is module  # type: ignore[attr-defined]
    model.save(tmp_path / "model.zip")

    loaded = PPO.load(tmp_path / "model.zip", env=DummyVecEnv([lambda: FixedEpisodes(0), lambda: FixedEpisodes(1)]))
    restored = loaded.intrinsic_module  # type: ignore[attr-defined]
    assert isinstance(restored, IntrinsicModule) and restored.name == "rnd"
    saved, back = module.state_dict(), restored.state_dict()
    assert saved.keys() == back.keys() and all(torch.equal(saved[k], back[k]) for k in saved)
    assert restored.num_steps_seen == module.num_steps_seen > 0
    # A callback naming the same module continues the loaded one (no second warm-up, no fresh networks).
    again = IntrinsicRewardCallback("rnd")
    loaded.learn(N_STEPS * 2, callback=again, reset_num_timesteps=False)
    assert again.module is restored and restored.num_steps_seen > module.num_steps_seen
    with pytest.raises(ValueError, match="already carries a trained 'rnd' module"):
        loaded.learn(N_STEPS * 2, callback=IntrinsicRewardCallback("rnd", module_kwargs={"seed": 1}))


@pytest.mark.skipif(not HAS_MINIGRID, reason="needs rove.envs.minigrid.env")
def test_rove_monitor_keeps_rove_statistics_and_reports_is_success() -> None:
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    from rove.agents.sb3 import make_vec_env

    ours = make_vec_env("Rove/MiniGrid-Empty-5x5-v0", n_envs=2, seed=0)
    theirs = sb3_make_vec_env("Rove/MiniGrid-Empty-5x5-v0", n_envs=2, seed=0)
    ours.reset()
    theirs.reset()
    ended: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for _ in range(300):
        actions = np.array([ours.action_space.sample() for _ in range(2)])
        _, _, dones, infos = ours.step(actions)
        _, _, _, plain = theirs.step(actions)
        ended += [(infos[i], plain[i]) for i in np.flatnonzero(dones)]
    assert ended
    for info, plain in ended:
        assert "success" not in plain["episode"] and "is_success" not in plain  # what SB3's Monitor leaves
        assert {"r", "l", "t", "success"} <= set(info["episode"])
        assert info["is_success"] == info["episode"]["success"]
    # SB3 averages is_success into rollout/success_rate.
    from rove.agents.sb3 import rove_policy_kwargs

    venv = make_vec_env("Rove/MiniGrid-Empty-5x5-v0", n_envs=2, seed=0)
    kwargs = {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "policy_kwargs": rove_policy_kwargs(features_dim=32)}
    model = PPO("MultiInputPolicy", venv, device="cpu", seed=0, **kwargs)
    model.learn(256)
    assert len(model.ep_success_buffer) > 0
