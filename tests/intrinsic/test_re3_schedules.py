"""RE3 as younggyoseo/RE3 computes it, and coefficient schedules that save with the agent."""

from __future__ import annotations

import pickle

import pytest
import torch

from rove.agents import PPO
from rove.intrinsic import schedules
from rove.intrinsic.re3 import RE3


def test_re3_divides_exact_knn_distances_by_their_running_std(real_batch):
    module = RE3(real_batch.observation_space, real_batch.action_space, normalize="none", seed=0)
    stds = []
    for rollout in real_batch.rollouts:
        reward = module.compute(rollout)
        with torch.no_grad():
            y = module.encoder({k: v.flatten(0, 1) for k, v in rollout.next_obs.items()})
        y = y[rollout.valid.reshape(-1)].double()
        # The reference: torch.norm distances, kthvalue(k + 1) (the point itself is its own nearest).
        distances = torch.norm(y[:, None] - y[None], dim=-1).kthvalue(module.k + 1, dim=1).values
        stds.append(distances)
        seen = torch.cat(stds)
        # Running std over every rollout so far, from the reference's prior (mean 0, var 1, count 1e-4).
        prior, n = 1e-4, seen.numel()
        mean = seen.sum() / (prior + n)
        var = (prior * 1.0 + (seen**2).sum()) / (prior + n) - mean**2
        std = torch.sqrt(var + 1e-8)
        expected = torch.log1p(distances / std).float()
        torch.testing.assert_close(reward[rollout.valid], expected, rtol=1e-4, atol=1e-5)


def test_re3_is_exactly_zero_on_a_state_with_k_duplicates(minigrid_batch):
    module = RE3(minigrid_batch.observation_space, minigrid_batch.action_space, normalize="none", seed=0)
    rollout = minigrid_batch.rollouts[0]
    # A real observation repeated in four envs (k = 3 duplicates each), next to the others.
    next_obs = {k: v.clone() for k, v in rollout.next_obs.items()}
    for k in next_obs:
        next_obs[k][:, :] = next_obs[k][:, :1]
    duplicated = type(rollout)(rollout.obs, rollout.actions, next_obs, rollout.rewards, rollout.dones, rollout.valid)
    reward = module.compute(duplicated)
    assert bool((reward[rollout.valid.all(1)] == 0).all())


@pytest.mark.parametrize(
    "schedule",
    [schedules.constant(0.5), schedules.linear(1.0, 0.0, 100), schedules.exponential_decay(0.05, 1e-5)],
    ids=["constant", "linear", "exponential_decay"],
)
def test_schedules_pickle_and_keep_their_values(schedule):
    copy = pickle.loads(pickle.dumps(schedule))
    assert [copy(n) for n in (0, 10, 1000)] == [schedule(n) for n in (0, 10, 1000)]


def test_re3_with_its_decaying_coefficient_saves_and_loads_with_ppo(tmp_path):
    """The RE3 docstring's recommended usage: a PPO agent holding an exponential-decay coefficient."""
    coef = schedules.ExponentialDecay(beta=0.05, kappa=1e-3)
    model = PPO(
        "auto", "Rove/MiniGrid-Empty-5x5-v0", n_envs=2, n_steps=16, intrinsic="re3",
        intrinsic_kwargs={"coef": coef}, seed=0, verbose=0,
    )  # fmt: skip
    model.learn(32)
    path = tmp_path / "re3.pt"
    model.save(path)
    loaded = PPO.load(path, env="Rove/MiniGrid-Empty-5x5-v0")
    assert loaded.intrinsic is not None and model.intrinsic is not None
    assert loaded.intrinsic.coef == coef
    assert loaded.intrinsic.num_steps_seen == model.intrinsic.num_steps_seen > 0
    n = loaded.intrinsic.num_steps_seen
    assert loaded.intrinsic.coef(n) == pytest.approx(0.05 * 0.999**n)
