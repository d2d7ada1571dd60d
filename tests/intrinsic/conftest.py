"""Real rollouts of MiniGrid, Crafter and NetHack (random actions through ``rove.make_vec``), built once per session.

Each fixture returns a :class:`RealRollouts`: ``rollouts`` consecutive ``[T, E]`` rollouts of one vector env
(NEXT_STEP autoreset, ``valid`` False on autoreset steps), plus the spaces to build modules with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove
from rove.intrinsic import Rollout
from rove.obs import to_tensor

SUITES = {
    "minigrid": ("Rove/MiniGrid-DoorKey-5x5-v0", ("image", "direction", "state_key")),
    "crafter": ("Rove/CrafterReward-v1", ("image", "state_key")),
    "nethack": ("Rove/NetHackScore-v0", ("glyphs", "blstats", "state_key")),
}


@dataclass
class RealRollouts:
    suite: str
    observation_space: spaces.Space
    action_space: spaces.Space
    rollouts: list[Rollout]

    def part(self, index: int, envs: slice) -> Rollout:
        """Rollout ``index`` restricted to the envs ``envs`` (views)."""
        return env_slice(self.rollouts[index], envs)


def env_slice(rollout: Rollout, envs: slice) -> Rollout:
    """The rollout of a subset of its envs (views)."""

    def pick(x):
        return {k: v[:, envs] for k, v in x.items()} if isinstance(x, dict) else x[:, envs]

    return Rollout(
        pick(rollout.obs),
        rollout.actions[:, envs],
        pick(rollout.next_obs),
        rollout.rewards[:, envs],
        rollout.dones[:, envs],
        rollout.valid[:, envs],
    )


def collect(suite: str, num_envs: int = 4, num_steps: int = 32, num_rollouts: int = 2, seed: int = 0) -> RealRollouts:
    """Consecutive rollouts of random actions; ``obs[t + 1]`` and ``next_obs[t]`` are views of one buffer."""
    env_id, keys = SUITES[suite]
    envs = rove.make_vec(env_id, num_envs, seed=seed, observation_keys=keys)
    envs.action_space.seed(seed)
    obs, _ = envs.reset(seed=seed)
    rollouts = []
    for _ in range(num_rollouts):
        frames, actions, rewards, dones, valid = [obs], [], [], [], []
        for _ in range(num_steps):
            action = envs.action_space.sample()
            obs, reward, terminated, truncated, infos = envs.step(action)
            frames.append(obs)
            actions.append(action)
            rewards.append(reward)
            dones.append(terminated | truncated)
            valid.append(~np.asarray(infos["autoreset"]))
        stacked = to_tensor({k: np.stack([f[k] for f in frames]) for k in frames[0]})
        rollouts.append(
            Rollout(
                {k: v[:-1] for k, v in stacked.items()},
                torch.as_tensor(np.stack(actions)),
                {k: v[1:] for k, v in stacked.items()},
                torch.as_tensor(np.stack(rewards), dtype=torch.float32),  # the env's extrinsic rewards
                torch.as_tensor(np.stack(dones)),
                torch.as_tensor(np.stack(valid)),
            )
        )
    space, action_space = envs.single_observation_space, envs.single_action_space
    envs.close()
    return RealRollouts(suite, space, action_space, rollouts)


@pytest.fixture(scope="session")
def minigrid_batch() -> RealRollouts:
    return collect("minigrid", num_envs=4, num_steps=80, num_rollouts=2)


@pytest.fixture(scope="session")
def crafter_batch() -> RealRollouts:
    return collect("crafter", num_envs=2, num_steps=32, num_rollouts=2)


@pytest.fixture(scope="session")
def nethack_batch() -> RealRollouts:
    return collect("nethack", num_envs=4, num_steps=64, num_rollouts=2)


@pytest.fixture(params=["minigrid", "crafter", "nethack"])
def real_batch(request: pytest.FixtureRequest) -> RealRollouts:
    """Each suite in turn."""
    return request.getfixturevalue(f"{request.param}_batch")
