"""MaxInfoRL's information-gain module on real MiniGrid, Crafter and NetHack rollouts (``tests/intrinsic/conftest.py``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import rove.intrinsic as ri
from rove.intrinsic import Rollout
from rove.intrinsic.infogain import InfoGain
from rove.obs import obs_flatten


def with_rewards(rollout: Rollout, seed: int) -> Rollout:
    """The rollout with sparse random extrinsic rewards (the collected ones are all 0)."""
    rng = np.random.default_rng(seed)
    rewards = torch.as_tensor((rng.random(rollout.rewards.shape) < 0.1) * rng.random(rollout.rewards.shape))
    return Rollout(rollout.obs, rollout.actions, rollout.next_obs, rewards.float(), rollout.dones, rollout.valid)


def by_hand(module: InfoGain, rollout: Rollout) -> np.ndarray:
    """``mean_j log(1 + Var_k[f_k]_j / sigma^2)`` per transition, each member run on its own (not the batched
    ensemble), in float64 NumPy."""
    actions = rollout.actions.reshape(-1)
    with torch.no_grad():
        phi = module.encoder(obs_flatten(rollout.obs))
        preds = np.stack([member(phi, actions).double().numpy() for member in module.members])  # [K, N, D]
    gain = np.mean(np.log1p(preds.var(0) / module.noise_std**2), axis=1)  # population variance over members
    return gain.reshape(rollout.num_steps, rollout.num_envs) * rollout.valid.numpy()


def test_the_reward_equals_an_independent_recomputation_from_the_members(real_batch: Any) -> None:
    module = ri.make("infogain", real_batch.observation_space, real_batch.action_space, normalize="none", seed=0)
    rollout = with_rewards(real_batch.rollouts[0], 0)
    module.update(rollout)  # members trained once, on normalised targets
    reward = module.compute(real_batch.rollouts[1]).numpy()
    expected = by_hand(module, real_batch.rollouts[1])
    np.testing.assert_allclose(reward, expected, rtol=2e-4, atol=1e-5)
    assert np.all(reward[real_batch.rollouts[1].valid.numpy()] > 0)


def test_targets_are_the_feature_change_and_the_reward_in_running_units(minigrid_batch: Any) -> None:
    module = ri.make("infogain", minigrid_batch.observation_space, minigrid_batch.action_space, seed=1)
    rollout = with_rewards(minigrid_batch.rollouts[0], 1)
    module.update(rollout)
    valid = rollout.valid.reshape(-1)
    with torch.no_grad():
        phi = module.encoder(obs_flatten(rollout.obs))[valid].double()
        next_phi = module.encoder(obs_flatten(rollout.next_obs))[valid].double()
    targets = torch.cat([next_phi - phi, rollout.rewards.reshape(-1)[valid].double().unsqueeze(1)], 1).numpy()
    # RunningMeanStd starts from (mean 0, var 1) with a count of 1e-4: after one batch it is the batch's moments.
    np.testing.assert_allclose(module.target_stats.mean.numpy(), targets.mean(0), atol=1e-4)
    np.testing.assert_allclose(module.target_stats.var.numpy(), targets.var(0), rtol=1e-3, atol=1e-4)
    assert targets[:, -1].std() > 0  # the reward column is a real target here


def test_information_gain_falls_where_the_ensemble_was_trained(real_batch: Any) -> None:
    module = ri.make("infogain", real_batch.observation_space, real_batch.action_space, normalize="none", seed=2)
    rollout = real_batch.rollouts[0]
    valid = rollout.valid
    before = float(module.compute(rollout)[valid].mean())
    for _ in range(6):
        module.update(rollout)
    after = float(module.compute(rollout)[valid].mean())
    assert after < before - 0.2, (before, after)


def test_the_standardised_reward_has_running_mean_zero_and_std_one(nethack_batch: Any) -> None:
    module = ri.make("infogain", nethack_batch.observation_space, nethack_batch.action_space, seed=3)
    raw = ri.make("infogain", nethack_batch.observation_space, nethack_batch.action_space, normalize="none", seed=3)
    rollout = nethack_batch.rollouts[0]
    valid = rollout.valid
    gain = raw.compute(rollout)[valid].double()
    reward = module.compute(rollout)[valid].double()
    # First batch: the statistics are (nearly) the batch's own, so the reward is the batch's z-score.
    expected = (gain - gain.mean()) / math.sqrt(float(gain.var(unbiased=False)) + 1e-8)
    np.testing.assert_allclose(reward.numpy(), expected.numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_std": 0.0}, "noise_std"),
        ({"ensemble_size": 1}, "ensemble_size"),
        ({"normalize": "zscore"}, "'zscore'"),
    ],
)
def test_bad_options_are_refused(minigrid_batch: Any, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ri.make("infogain", minigrid_batch.observation_space, minigrid_batch.action_space, **kwargs)
