"""BYOL-Explore and BYOL-Hindsight on real MiniGrid, Crafter and NetHack rollouts: the properties that define them,
computed independently of the module's own code paths."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import rove.intrinsic as ri
from rove.intrinsic import Rollout
from rove.intrinsic.byol import BYOLExplore, BYOLHindsight
from rove.obs import obs_flatten

NAMES = ["byol_explore", "byol_hindsight"]
SMALL = {"features_dim": 32, "hidden_dim": 32, "action_dim": 8, "predictor_hidden": 64}


def build(batch: Any, name: str, **kwargs: Any) -> BYOLExplore:
    module = ri.make(name, batch.observation_space, batch.action_space, seed=0, normalize="none", **SMALL, **kwargs)
    assert isinstance(module, BYOLExplore)
    return module


def with_boundary(rollout: Rollout, env: int, t: int) -> Rollout:
    """The rollout with an episode end at step ``t`` of ``env`` and the autoreset row after it (real frames, the
    boundary marked as the vector env marks one)."""
    dones, valid = rollout.dones.clone(), rollout.valid.clone()
    dones[t, env], valid[t + 1, env] = True, False
    return Rollout(rollout.obs, rollout.actions, rollout.next_obs, rollout.rewards, dones, valid)


def frames_replaced(rollout: Rollout, env: int, steps: slice, source_env: int) -> Rollout:
    """``obs`` and ``next_obs`` of ``env`` at ``steps`` taken from ``source_env`` (other real frames)."""

    def swap(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[steps, env] = x[steps, source_env]
        return x

    obs = {k: swap(v) for k, v in rollout.obs.items()}
    next_obs = {k: swap(v) for k, v in rollout.next_obs.items()}
    return Rollout(obs, rollout.actions, next_obs, rollout.rewards, rollout.dones, rollout.valid)


# ----- the target network is the EMA of the online one -----
@pytest.mark.parametrize("name", NAMES)
def test_target_encoder_is_the_ema_of_the_online_encoder(real_batch: Any, name: str) -> None:
    module = build(real_batch, name, num_epochs=1, num_minibatches=1, target_decay=0.9)
    wm = module.world_model
    old_target = {k: v.clone() for k, v in wm.target_encoder.state_dict().items()}
    old_online = {k: v.clone() for k, v in wm.encoder.state_dict().items()}
    module.update(real_batch.rollouts[0])  # exactly one Adam step, then one EMA step
    new_online = wm.encoder.state_dict()
    assert any(not torch.equal(old_online[k], new_online[k]) for k in old_online), "the online encoder did not train"
    for key, value in wm.target_encoder.state_dict().items():
        expected = 0.9 * old_target[key] + 0.1 * new_online[key]
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=key)


# ----- the reward: the losses of the predictions of each step, summed per target step -----
def reference_reward(module: BYOLExplore, rollout: Rollout) -> torch.Tensor:
    """BYOL-Explore's reward written out step by step, per env, with explicit episode bookkeeping."""
    wm, horizon = module.world_model, module.horizon
    steps, num_envs = rollout.num_steps, rollout.num_envs
    cell = torch.nn.GRUCell(wm.closed_loop.input_size, wm.closed_loop.hidden_size)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in wm.closed_loop.state_dict().items()})
    with torch.no_grad():
        online = wm.embed(wm.encoder, wm.preprocess(obs_flatten(rollout.obs))).reshape(steps, num_envs, -1)
        target = wm.embed(wm.target_encoder, wm.preprocess(obs_flatten(rollout.next_obs)))
        target = (target - wm.target_mean).reshape(steps, num_envs, -1)
        reward = torch.zeros(steps, num_envs)
        none = torch.tensor([wm.num_actions])
        for e in range(num_envs):
            state = torch.zeros(1, cell.hidden_size)
            for p in range(steps):
                first = p == 0 or not bool(rollout.valid[p - 1, e]) or bool(rollout.dones[p - 1, e])
                prev = none if first else rollout.actions[p - 1, e].reshape(1).long()
                if first:
                    state = torch.zeros(1, cell.hidden_size)
                state = cell(torch.cat([online[p, e][None], wm.action_embed(prev)], 1), state)
                belief = state
                for k in range(1, horizon + 1):
                    j = p + k - 1  # the transition whose next_obs this prediction targets
                    if j >= steps or not bool(rollout.valid[j, e]) or (k > 1 and bool(rollout.dones[j - 1, e])):
                        break
                    action = wm.action_embed(rollout.actions[j, e].reshape(1).long())
                    before, belief = belief, wm.open_loop(action, belief)
                    if isinstance(module, BYOLHindsight):
                        z_in = torch.cat([before, action, target[j, e][None], torch.zeros(1, module.noise_dim)], 1)
                        pred = module.predictor(torch.cat([belief, module.hindsight_generator(z_in)], 1))
                    else:
                        pred = module.predictor(belief)
                    loss = (F.normalize(pred[0], dim=0) - F.normalize(target[j, e], dim=0)).pow(2).sum()
                    reward[j, e] += loss
    return reward


@pytest.mark.parametrize("name", NAMES)
def test_reward_is_the_sum_of_the_losses_of_the_predictions_of_each_step(real_batch: Any, name: str) -> None:
    module = build(real_batch, name, horizon=4, num_epochs=1, num_minibatches=2)
    module.update(real_batch.rollouts[0])  # trained weights and a non-zero target mean
    rollout = with_boundary(with_boundary(real_batch.rollouts[1], 0, 5), 1, 12)
    expected = reference_reward(module, rollout)
    torch.testing.assert_close(module.compute(rollout), expected, rtol=1e-4, atol=1e-5)


def test_every_step_is_the_target_of_up_to_horizon_predictions(minigrid_batch: Any) -> None:
    module = build(minigrid_batch, "byol_explore", horizon=3)
    rollout = with_boundary(minigrid_batch.rollouts[0], 0, 10)
    counts = module.world_model.unroll(
        *module._prepared(rollout), rollout.actions, rollout.dones, rollout.valid
    ).mask.sum(0)  # predictions starting at each step
    # episode end at step 10 of env 0 (its next_obs is a fair target), autoreset row 11
    assert counts[0, 1] == 3 and counts[8, 0] == 3 and counts[9, 0] == 2 and counts[10, 0] == 1 and counts[11, 0] == 0
    assert counts[-1, 1] == 1 and counts[-2, 1] == 2


# ----- no prediction crosses an episode end or an autoreset row -----
@pytest.mark.parametrize("name", NAMES)
def test_no_prediction_crosses_an_episode_end_or_an_autoreset_row(real_batch: Any, name: str) -> None:
    module = build(real_batch, name, horizon=6)
    module.update(real_batch.rollouts[0])
    t = 9  # episode ends at step t of env 0; step t + 1 is the autoreset row
    rollout = with_boundary(real_batch.rollouts[1], 0, t)
    reward = module.compute(rollout)
    assert reward[t + 1, 0] == 0
    after = module.compute(frames_replaced(rollout, 0, slice(t + 2, None), 1))  # the next episode changes
    torch.testing.assert_close(after[: t + 1, 0], reward[: t + 1, 0], rtol=0, atol=0)
    assert not torch.equal(after[t + 2 :, 0], reward[t + 2 :, 0])
    before = module.compute(frames_replaced(rollout, 0, slice(0, t + 1), 1))  # the first episode changes
    torch.testing.assert_close(before[t + 2 :, 0], reward[t + 2 :, 0], rtol=0, atol=0)
    actions = rollout.actions.clone()
    actions[t + 1, 0] = (actions[t + 1, 0] + 1) % int(real_batch.action_space.n)  # the ignored action
    ignored = module.compute(Rollout(rollout.obs, actions, rollout.next_obs, rollout.rewards, rollout.dones,
                                     rollout.valid))  # fmt: skip
    torch.testing.assert_close(ignored, reward, rtol=0, atol=0)
