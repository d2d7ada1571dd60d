"""Behaviour of ICM, E3B, Disagreement, RIDE and RE3: each does what its paper says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove.intrinsic as ri
from rove.intrinsic import Rollout, Transitions
from rove.intrinsic.dynamics import encode_rollout, shares_frames
from rove.intrinsic.e3b import E3B
from rove.intrinsic.icm import ICM
from rove.intrinsic.ride import RIDE

BOX = spaces.Box(-1.0, 1.0, (6,), np.float32)
ACTIONS = spaces.Discrete(4)


def box_rollout(obs: torch.Tensor, actions: torch.Tensor, dones: torch.Tensor, valid: torch.Tensor) -> Rollout:
    """``obs [T+1, E, 6]`` -> a rollout of ``T`` steps."""
    return Rollout(obs[:-1], actions, obs[1:], torch.zeros(dones.shape), dones, valid)


def observe_all(module: ri.IntrinsicModule, rollout: Rollout) -> None:
    for t in range(rollout.num_steps):
        module.observe(rollout.step(t))


def action_dynamics(n: int, seed: int = 0) -> Transitions:
    """Deterministic transitions: action a moves the first coordinates by a fixed offset."""
    gen = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 6, generator=gen) - 0.5
    actions = torch.randint(4, (n,), generator=gen)
    offsets = torch.tensor([[0.5, 0, 0, 0, 0, 0], [-0.5, 0, 0, 0, 0, 0], [0, 0.5, 0, 0, 0, 0], [0, -0.5, 0, 0, 0, 0]])
    return Transitions(obs, actions, obs + offsets[actions], torch.zeros(n, dtype=torch.bool))


def as_rollout(batch: Transitions) -> Rollout:
    """One-env rollout holding the transitions (no episode ends)."""
    n = len(batch)
    ones = torch.ones(n, 1, dtype=torch.bool)
    return Rollout(batch.obs[:, None], batch.actions[:, None], batch.next_obs[:, None], torch.zeros(n, 1), ~ones, ones)


# ----- ICM -----
def test_icm_forward_and_inverse_losses_fall_on_a_fixed_batch() -> None:
    module = ICM(BOX, ACTIONS, seed=0, batch_size=64)
    batch = action_dynamics(64)
    with torch.no_grad():
        inverse_before, forward_before = (float(x) for x in module.losses(batch))
    rollout = as_rollout(batch)
    for _ in range(150):
        module.update(rollout)
    with torch.no_grad():
        inverse_after, forward_after = (float(x) for x in module.losses(batch))
    assert inverse_after < 0.5 * inverse_before
    assert forward_after < 0.5 * forward_before


def test_icm_bonus_is_eta_half_squared_forward_error() -> None:
    module = ICM(BOX, ACTIONS, seed=0, eta=0.05, normalize="none")
    batch = action_dynamics(8)
    reward = module.compute(as_rollout(batch))[:, 0]
    with torch.no_grad():
        phi, next_phi = module.inverse(batch.obs), module.inverse(batch.next_obs)
        expected = 0.05 * 0.5 * (module.forward_model(phi, batch.actions) - next_phi).pow(2).sum(1)
    torch.testing.assert_close(reward, expected)


def test_shared_frames_are_encoded_once_with_the_same_features() -> None:
    module = ICM(BOX, ACTIONS, seed=0)
    obs = torch.rand(5, 3, 6)  # [T+1, E, 6]: obs and next_obs are views of one buffer
    dones, valid = torch.zeros(4, 3, dtype=torch.bool), torch.ones(4, 3, dtype=torch.bool)
    shared = box_rollout(obs, torch.zeros(4, 3, dtype=torch.long), dones, valid)
    assert shares_frames(shared)
    # Equal frames in separate memory share too (found by comparing them rather than by their storage).
    copied = Rollout(shared.obs.clone(), shared.actions, shared.next_obs.clone(), shared.rewards, dones, valid)
    assert shares_frames(copied)
    apart = Rollout(shared.obs, shared.actions, shared.next_obs + 0.1, shared.rewards, dones, valid)
    assert not shares_frames(apart)
    with torch.no_grad():
        for rollout in (shared, apart):
            phi, next_phi = encode_rollout(module.inverse, rollout)
            flat = rollout.flatten()
            torch.testing.assert_close(phi, module.inverse(flat.obs))
            torch.testing.assert_close(next_phi, module.inverse(flat.next_obs))


@pytest.mark.parametrize("name", ["icm", "e3b", "ride", "disagreement"])
def test_modules_with_action_models_reject_continuous_actions(name: str) -> None:
    with pytest.raises(ValueError, match="Discrete action space"):
        ri.make(name, BOX, spaces.Box(-1, 1, (2,)))


# ----- E3B -----
def e3b_reference(module: E3B, rollout: Rollout) -> torch.Tensor:
    """Bonuses by direct inversion: ``b = phi'^T (ridge I + sum_episode phi phi^T)^{-1} phi'``, one env at a time."""
    with torch.no_grad():
        phi = module.inverse(rollout.obs.reshape(-1, 6)).double().reshape(rollout.num_steps, rollout.num_envs, -1)
        nxt = module.inverse(rollout.next_obs.reshape(-1, 6)).double().reshape(phi.shape)
    eye = torch.eye(phi.shape[-1], dtype=torch.float64) * module.ridge
    expected = torch.zeros(rollout.num_steps, rollout.num_envs, dtype=torch.float64)
    for e in range(rollout.num_envs):
        memory = [phi[0, e]]  # the env's first observation, from env.reset
        for t in range(rollout.num_steps):
            if not rollout.valid[t, e]:
                memory = [nxt[t, e]]  # autoreset: a new episode starts at next_obs, with no bonus
                continue
            cov = eye + sum(torch.outer(p, p) for p in memory)
            expected[t, e] = nxt[t, e] @ torch.linalg.inv(cov) @ nxt[t, e]
            memory.append(nxt[t, e])
            if rollout.dones[t, e]:
                memory = []
    return expected


def test_e3b_bonus_equals_direct_inversion_over_episodes() -> None:
    torch.manual_seed(0)
    num_steps, num_envs = 12, 3
    obs = torch.rand(num_steps + 1, num_envs, 6) - 0.5
    dones = torch.zeros(num_steps, num_envs, dtype=torch.bool)
    valid = torch.ones(num_steps, num_envs, dtype=torch.bool)
    dones[3, 0], valid[4, 0] = True, False
    dones[6, 1], valid[7, 1] = True, False
    dones[9, 0], valid[10, 0] = True, False
    rollout = box_rollout(obs, torch.randint(4, (num_steps, num_envs)), dones, valid)
    module = E3B(BOX, ACTIONS, seed=0, features_dim=16, normalize="none")
    observe_all(module, rollout)
    reward = module.compute(rollout)
    expected = e3b_reference(module, rollout)
    torch.testing.assert_close(reward.double(), expected, rtol=1e-5, atol=1e-6)
    assert bool((reward[~valid] == 0).all())


def test_e3b_memory_resets_at_episode_end_and_not_otherwise() -> None:
    module = E3B(BOX, ACTIONS, seed=0, features_dim=16, normalize="none")
    start, repeat = torch.full((6,), 0.1), torch.full((6,), -0.3)
    # one env: reset obs `start`, then `repeat` five times; the episode ends at step 2 and autoresets at step 3
    obs = torch.stack([start, repeat, repeat, repeat, start, repeat, repeat])[:, None]
    dones = torch.zeros(6, 1, dtype=torch.bool)
    valid = torch.ones(6, 1, dtype=torch.bool)
    dones[2, 0], valid[3, 0] = True, False
    rollout = box_rollout(obs, torch.zeros(6, 1, dtype=torch.long), dones, valid)
    observe_all(module, rollout)
    reward = module.compute(rollout)[:, 0]
    assert reward[0] > reward[1] > reward[2] > 0  # a revisited state is less novel within an episode
    assert reward[3] == 0  # the autoreset step carries the new episode's first observation
    # after the reset the episode sees (start, repeat, repeat) again: the same bonuses as the first time
    torch.testing.assert_close(reward[4:6], reward[0:2])


# ----- Disagreement -----
def test_disagreement_is_higher_on_unseen_transitions_than_on_trained_ones() -> None:
    module = ri.make("disagreement", BOX, ACTIONS, seed=0, lr=1e-3, normalize="none")
    trained = action_dynamics(64, seed=0)
    rollout = as_rollout(trained)
    for _ in range(100):
        module.update(rollout)
    unseen = action_dynamics(64, seed=1)
    unseen = Transitions(unseen.obs * 6 + 3, unseen.actions, unseen.next_obs * 6 + 3, unseen.dones)
    seen_bonus = module.compute(rollout).mean()
    unseen_bonus = module.compute(as_rollout(unseen)).mean()
    assert unseen_bonus > 3 * seen_bonus


def test_disagreement_members_train_on_different_bootstraps() -> None:
    module = ri.make("disagreement", BOX, ACTIONS, seed=0, ensemble_size=2)
    # same initial weights for both members: only their own bootstrap samples can pull them apart
    module.members[1].load_state_dict(module.members[0].state_dict())
    module.update(as_rollout(action_dynamics(64)))
    w0, w1 = (m.net[0].weight for m in module.members)
    assert not torch.equal(w0, w1)


# ----- RIDE -----
def minigrid_like(keys: list[int]) -> tuple[spaces.Dict, dict[str, torch.Tensor]]:
    space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (7, 7, 3), np.uint8),
            "state_key": spaces.Box(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (1,), np.int64),
        }
    )
    gen = torch.Generator().manual_seed(0)
    n = len(keys)
    obs = {
        "image": torch.randint(0, 11, (n, 1, 7, 7, 3), generator=gen, dtype=torch.uint8),
        "state_key": torch.tensor(keys).reshape(n, 1, 1),
    }
    return space, obs


def test_ride_divides_impact_by_sqrt_of_exact_episodic_count() -> None:
    keys = [0, 1, 2, 1, 1, 3, 2, 1, 1]  # state keys of s_0..s_8; the episode ends at s_5, s_6 starts the next
    space, obs = minigrid_like(keys)
    num_steps = len(keys) - 1
    dones = torch.zeros(num_steps, 1, dtype=torch.bool)
    valid = torch.ones(num_steps, 1, dtype=torch.bool)
    dones[4, 0], valid[5, 0] = True, False
    rollout = Rollout(
        {k: v[:-1] for k, v in obs.items()},
        torch.zeros(num_steps, 1, dtype=torch.long),
        {k: v[1:] for k, v in obs.items()},
        torch.zeros(num_steps, 1),
        dones,
        valid,
    )
    module = RIDE(space, spaces.Discrete(7), seed=0, normalize="none")
    observe_all(module, rollout)
    reward = module.compute(rollout)[:, 0]
    with torch.no_grad():
        flat = {k: v[:, 0] for k, v in obs.items()}
        phi = module.inverse(flat)
        impact = (phi[1:] - phi[:-1]).norm(dim=1)
    # counts of next_obs keys within their episode: 1,1,2,3,1 | autoreset (not a visit) | 1,2
    counts = torch.tensor([1, 1, 2, 3, 1, 1, 1, 2], dtype=torch.float32)
    expected = impact / counts.sqrt()
    expected[5] = 0.0
    torch.testing.assert_close(reward, expected)


def test_ride_counts_identical_observations_exactly_without_a_state_key() -> None:
    module = RIDE(BOX, ACTIONS, seed=0, normalize="none")
    a, b = torch.full((6,), 0.2), torch.full((6,), 0.2)
    b[5] = 0.2000001  # a different float: a different state
    obs = torch.stack([a, b, a, b, a, b, a])[:, None]
    rollout = box_rollout(obs, torch.zeros(6, 1, dtype=torch.long), *_no_ends(6))
    observe_all(module, rollout)
    module.compute(rollout)
    # next_obs: b a b a b a -> counts 1 1 2 2 3 3 (the reset observation is not counted, as in RIDE's code)
    observe_all(module, rollout)
    counts = torch.as_tensor(np.stack(module.pending))[:, 0]
    assert counts.tolist() == [4, 4, 5, 5, 6, 6]


def _no_ends(num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(num_steps, 1, dtype=torch.bool), torch.ones(num_steps, 1, dtype=torch.bool)


# ----- RE3 -----
def test_re3_rewards_the_isolated_state_most() -> None:
    """The formula itself (running std, exact distances) is checked on real batches in test_re3_schedules.py."""
    module = ri.make("re3", BOX, ACTIONS, seed=0, k=3, normalize="none")
    gen = torch.Generator().manual_seed(0)
    cluster = 0.05 * torch.randn(9, 6, generator=gen)
    for distance in (0.5, 1.0, 2.0, 4.0):
        points = torch.cat([cluster, torch.full((1, 6), distance)])  # the last point moves away
        batch = Transitions(points, torch.zeros(10, dtype=torch.long), points, torch.zeros(10, dtype=torch.bool))
        reward = module.compute(as_rollout(batch))[:, 0]
        assert reward[-1] == reward.max() and bool((reward[:-1] < reward[-1]).all())
