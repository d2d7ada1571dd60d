"""The empowerment module: its reward tracks the number of distinct outcomes of the actions, computed by
simulating every action from copies of a real MiniGrid env; the closed-form source is the optimum of the bound."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rove
from rove.intrinsic import Rollout
from rove.intrinsic.empowerment import Empowerment
from rove.obs import to_tensor

ENV = "Rove/MiniGrid-Empty-8x8-v0"
KEYS = ("image", "direction")


def random_rollouts(num_envs: int, steps: int, rollouts: int, seed: int) -> tuple[gym.vector.VectorEnv, list[Rollout]]:
    envs = rove.make_vec(ENV, num_envs, seed=seed, observation_keys=KEYS)
    envs.action_space.seed(seed)
    obs, _ = envs.reset(seed=seed)
    out = []
    for _ in range(rollouts):
        frames, actions, dones, valid = [obs], [], [], []
        for _ in range(steps):
            action = envs.action_space.sample()
            obs, _, terminated, truncated, infos = envs.step(action)
            frames.append(obs)
            actions.append(action)
            dones.append(terminated | truncated)
            valid.append(~np.asarray(infos["autoreset"]))
        stacked = to_tensor({k: np.stack([f[k] for f in frames]) for k in frames[0]})
        out.append(
            Rollout(
                {k: v[:-1] for k, v in stacked.items()},
                torch.as_tensor(np.stack(actions)),
                {k: v[1:] for k, v in stacked.items()},
                torch.zeros(steps, num_envs),
                torch.as_tensor(np.stack(dones)),
                torch.as_tensor(np.stack(valid)),
            )
        )
    return envs, out


def true_outcomes(num_states: int, seed: int) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """States of a random walk and, for each, the number of distinct next observations over all 7 actions,
    found by stepping a copy of the env with each action."""
    env = gym.make(ENV, observation_keys=KEYS)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    states, counts = [], []
    for _ in range(num_states):
        outcomes = set()
        for action in range(int(env.action_space.n)):
            child = copy.deepcopy(env)
            nxt, *_ = child.step(action)
            outcomes.add((nxt["image"].tobytes(), int(nxt["direction"])))
        states.append({k: np.asarray(v) for k, v in obs.items()})
        counts.append(len(outcomes))
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(0, 3)))
        if terminated or truncated:
            obs, _ = env.reset()
    return to_tensor({k: np.stack([s[k] for s in states]) for k in states[0]}), np.array(counts)


def test_reward_follows_the_number_of_distinct_outcomes():
    # Facing a wall, 3 of MiniGrid's 7 actions have distinct outcomes (turn left, turn right, nothing); facing
    # an open cell, 4 (forward too). The true one-step empowerment is ln 3 or ln 4.
    envs, rollouts = random_rollouts(num_envs=8, steps=64, rollouts=2, seed=0)
    module = Empowerment(
        envs.single_observation_space, envs.single_action_space, seed=0, epochs=4, batch_size=64, normalize="none"
    )
    envs.close()
    for _ in range(10):
        for rollout in rollouts:
            module.update(rollout)
    states, outcomes = true_outcomes(150, seed=5)
    assert {3, 4} <= set(outcomes.tolist())
    power = module.empowerment(states).numpy()
    means = {k: float(power[outcomes == k].mean()) for k in (3, 4)}
    assert means[4] - means[3] > 0.1, means
    for k, value in means.items():
        assert value == pytest.approx(math.log(k), abs=0.2), means
    # compute() scores s_{t+1}: the raw reward of each transition is the empowerment of its next observation.
    rollout = rollouts[0]
    expected = module.empowerment({k: v.reshape(-1, *v.shape[2:]) for k, v in rollout.next_obs.items()})
    reward = module.compute(rollout)
    torch.testing.assert_close(reward, expected.reshape(reward.shape) * rollout.valid)


def test_closed_form_source_is_the_optimum_of_the_bound():
    # For fixed q_a = q(a | s, s'_a), max_w sum_a w_a (ln q_a - ln w_a) = ln sum_a q_a, reached at w ∝ q.
    gen = torch.Generator().manual_seed(0)
    q = torch.rand(7, generator=gen)
    bound = lambda w: float((w * (q.log() - w.log())).sum())  # noqa: E731
    best = math.log(float(q.sum()))
    assert bound(q / q.sum()) == pytest.approx(best, abs=1e-6)
    for _ in range(200):
        w = torch.rand(7, generator=gen) + 1e-3
        assert bound(w / w.sum()) <= best + 1e-9


def test_options_are_checked():
    envs = rove.make_vec(ENV, 1, observation_keys=KEYS)
    with pytest.raises(ValueError, match="beta must be in"):
        Empowerment(envs.single_observation_space, envs.single_action_space, beta=1.5)
    with pytest.raises(ValueError, match="Discrete action space"):
        Empowerment(envs.single_observation_space, gym.spaces.Box(-1, 1, (2,)))
    envs.close()
