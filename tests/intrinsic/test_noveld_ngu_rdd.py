"""NovelD, NGU and RDD: the properties their papers claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rove.intrinsic import Rollout
from rove.intrinsic.ngu import NGU
from rove.intrinsic.noveld import NovelD
from rove.intrinsic.rdd import RDD

ACTIONS = spaces.Discrete(3)
BOX = spaces.Box(-10, 10, (8,), np.float32)


def rollout_of(obs, next_obs, dones=None, valid=None) -> Rollout:
    t, e = next_obs.shape[:2]
    dones = torch.zeros(t, e, dtype=torch.bool) if dones is None else torch.as_tensor(dones)
    valid = torch.ones(t, e, dtype=torch.bool) if valid is None else torch.as_tensor(valid)
    return Rollout(obs, torch.zeros(t, e, dtype=torch.long), next_obs, torch.zeros(t, e), dones, valid)


def path(states: torch.Tensor, sequence: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(obs, next_obs)`` ``[T, 1, D]`` of one env walking through ``states[sequence]``."""
    visited = states[sequence]
    return visited[:-1, None], visited[1:, None]


STATES = torch.randn(6, 8, generator=torch.Generator().manual_seed(0)) * 3


# ----- NovelD -----
def test_noveld_is_zero_on_a_state_revisited_within_the_episode():
    module = NovelD(BOX, ACTIONS, alpha=0.0, normalize="none", seed=0)
    obs, next_obs = path(STATES, [0, 1, 2, 1, 3, 2, 4])  # next states 1, 2, 1, 3, 2, 4
    reward = module.compute(rollout_of(obs, next_obs))[:, 0]
    revisits = torch.tensor([False, False, True, False, True, False])
    assert bool((reward[revisits] == 0).all())
    assert bool((reward[~revisits] > 0).all())  # alpha = 0: every first visit pays its RND novelty


def test_noveld_first_visit_memory_resets_at_episode_end():
    module = NovelD(BOX, ACTIONS, alpha=0.0, normalize="none", seed=0)
    obs, next_obs = path(STATES, [0, 1, 2, 1, 1, 2])  # next states 1, 2, 1, 1, 2
    dones = torch.tensor([[False], [True], [False], [False], [False]])
    valid = torch.tensor([[True], [True], [False], [True], [True]])  # step 2 is the autoreset
    reward = module.compute(rollout_of(obs, next_obs, dones, valid))[:, 0]
    assert float(reward[0]) > 0 and float(reward[1]) > 0
    assert float(reward[2]) == 0  # autoreset step
    assert float(reward[3]) > 0  # state 1 again, but in a new episode: a first visit
    assert float(reward[4]) > 0  # state 2: first visit of the new episode


@pytest.mark.parametrize("contiguous", [True, False], ids=["obs-follow-next_obs", "unrelated-obs"])
def test_noveld_matches_its_formula(contiguous):
    module = NovelD(BOX, ACTIONS, alpha=0.5, normalize="none", seed=1)
    obs, next_obs = path(STATES, [0, 1, 2, 3, 4, 5])
    if not contiguous:
        obs = obs.flip(0)
    reward = module.compute(rollout_of(obs, next_obs))[:, 0]
    with torch.no_grad():
        expected = (module.prediction_error(next_obs[:, 0]) - 0.5 * module.prediction_error(obs[:, 0])).clamp(min=0)
    torch.testing.assert_close(reward, expected)


# ----- NGU -----
def test_ngu_episodic_bonus_is_a_pseudo_count_and_resets_at_episode_end():
    k, c = 5, 1e-3
    module = NGU(BOX, ACTIONS, num_neighbors=k, max_multiplier=1.0, seed=0)  # L = 1: episodic part alone
    next_obs = torch.cat([STATES[:1].repeat(8, 1), STATES[:1].repeat(3, 1)])[:, None]
    dones = torch.zeros(11, 1, dtype=torch.bool)
    dones[7] = True  # the first episode ends after 8 visits of the same state
    reward = module.compute(rollout_of(next_obs, next_obs, dones))[:, 0].double()
    visits = torch.tensor([1, 2, 3, 4, 5, 5, 5, 5, 1, 2, 3], dtype=torch.float64)  # capped at k neighbours
    torch.testing.assert_close(reward, 1 / (visits.sqrt() + c), rtol=1e-5, atol=1e-6)


def test_ngu_rewards_new_states_more_than_revisited_ones_and_bounds_the_multiplier():
    max_multiplier = 5.0
    module = NGU(BOX, ACTIONS, max_multiplier=max_multiplier, seed=0)
    next_obs = torch.cat([STATES[:1].repeat(6, 1), STATES[1:6]])[:, None]  # 6 revisits, then 5 new states
    reward = module.compute(rollout_of(next_obs, next_obs))[:, 0]
    assert float(reward[6:].min()) > float(reward[5])
    assert bool((reward <= max_multiplier / (1 + 1e-3) + 1e-5).all()) and bool((reward > 0).all())


# ----- RDD -----
def one_hot(i: int, n: int = 8) -> torch.Tensor:
    x = torch.zeros(1, n)
    x[0, i] = 1.0
    return x


def test_rdd_bonus_is_lower_on_more_visited_states():
    module = RDD(BOX, ACTIONS, normalize="none", learning_rate=1e-3, update_proportion=1.0, seed=0)
    module.warm_up(torch.eye(8).repeat(8, 1))

    def bonus(i: int) -> float:
        return float(module.compute(rollout_of(one_hot(i)[None], one_hot(i)[None]))[0, 0])

    start = [bonus(i) for i in range(3)]
    # Visit state 0 four times as often as state 1; state 2 never.
    batch = torch.cat([one_hot(0).repeat(16, 1), one_hot(1).repeat(4, 1)])[:, None]
    for _ in range(10):  # 10 x 16 optimiser steps
        module.update(rollout_of(batch, batch))
    end = [bonus(i) for i in range(3)]
    assert end[0] < end[1] < end[2]
    assert end[0] < 0.5 * start[0]
    assert end[2] > 0.5 * start[2]


# ----- options -----
@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (NovelD, {"alpha": -1.0}, "alpha must be >= 0"),
        (NGU, {"num_neighbors": 0}, "num_neighbors must be a positive integer"),
        (NGU, {"max_multiplier": 0.5}, "max_multiplier must be >= 1"),
        (NGU, {"kernel_epsilon": 0.0}, "kernel_epsilon must be > 0"),
        (RDD, {"target_std": 0.0}, "target_std must be > 0"),
    ],
)
def test_bad_options_raise_clear_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(BOX, ACTIONS, **kwargs)


def test_noveld_is_the_l2_formula_of_its_reference_on_real_batches(real_batch):
    """tianjunz/NovelD ``bebold.py``: N = ||f_hat - f||_2 (a norm, not RND's squared error), paid on first visits."""
    module = NovelD(real_batch.observation_space, real_batch.action_space, alpha=0.5, normalize="none", seed=0)
    rollout = real_batch.rollouts[0]
    reward = module.compute(rollout)
    nets = module.networks

    def norm(obs) -> torch.Tensor:
        with torch.no_grad():
            x = nets.prepare({k: v.flatten(0, 1) for k, v in obs.items()})
            error = nets.run(nets.predictor, x) - nets.run(nets.target, x)
        return torch.sqrt((error**2).sum(1)).reshape(rollout.valid.shape)

    keys = rollout.next_obs["state_key"][..., 0]
    first_visit = torch.zeros(rollout.valid.shape, dtype=torch.bool)
    seen: list[set[int]] = [set() for _ in range(rollout.num_envs)]
    for t in range(rollout.num_steps):
        for e in range(rollout.num_envs):
            if not rollout.valid[t, e]:
                seen[e] = set()
                continue
            first_visit[t, e] = int(keys[t, e]) not in seen[e]
            seen[e].add(int(keys[t, e]))
            if rollout.dones[t, e]:
                seen[e] = set()
    expected = (norm(rollout.next_obs) - 0.5 * norm(rollout.obs)).clamp(min=0) * first_visit * rollout.valid
    torch.testing.assert_close(reward, expected)
    assert bool((~first_visit & rollout.valid).any())  # revisits happen in these rollouts: the indicator matters
