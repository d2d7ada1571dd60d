"""``net_arch=dict(pi=[...], vf=[...])``: separate actor and critic MLPs, as Stable-Baselines3 builds them."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO as SB3PPO

import rove
from rove.agents import PPO
from rove.agents.ppo.policies import ActorCriticPolicy
from rove.agents.sb3 import rove_policy_kwargs

MINIGRID = "Rove/MiniGrid-DoorKey-5x5-v0"
KEYS = ("image", "direction")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("net_arch", [{"pi": [64, 64], "vf": [64, 64]}, {"pi": [32], "vf": [16, 8]}, {"pi": [16]}])
def test_parameter_count_is_sb3s_plus_the_intrinsic_value_head(net_arch: dict[str, list[int]]) -> None:
    env = gym.make("CartPole-v1")
    sb3 = SB3PPO("MlpPolicy", env, policy_kwargs={"net_arch": net_arch}, device="cpu")
    ours = ActorCriticPolicy(env.observation_space, env.action_space, net_arch=net_arch, activation_fn=torch.nn.Tanh)
    critic_out = (net_arch.get("vf") or [4])[-1]  # without vf layers both critics read CartPole's 4 inputs
    assert n_params(ours) == n_params(sb3.policy) + critic_out + 1


def test_minigrid_parameter_count_matches_sb3_with_rove_encoder() -> None:
    vec = rove.make_vec(MINIGRID, 2, seed=0, copy=False, observation_keys=KEYS)
    arch = {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh}
    ours = PPO("auto", vec, policy_kwargs=arch, n_steps=8, batch_size=16, verbose=0)
    env = gym.make(MINIGRID, observation_keys=KEYS)
    sb3 = SB3PPO("MultiInputPolicy", env, policy_kwargs=rove_policy_kwargs(**arch), device="cpu")
    assert n_params(ours.policy) == n_params(sb3.policy) + 65


def test_actor_and_critics_read_separate_networks() -> None:
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    policy = ActorCriticPolicy(space, gym.spaces.Discrete(4), net_arch={"pi": [8], "vf": [5]})
    obs = torch.randn(6, 3)
    logits, v_ext, v_int, state = policy(obs)
    assert logits.shape == (6, 4) and v_ext.shape == v_int.shape == (6,) and state is None
    # computed here from the layers: actor = Linear(pi MLP), critics = the two rows of one Linear on the vf MLP
    pi = torch.relu(policy.pi_mlp[0](obs))
    vf = torch.relu(policy.vf_mlp[0](obs))
    torch.testing.assert_close(logits, pi @ policy.actor.weight.T + policy.actor.bias)
    values = vf @ policy.critics.weight.T + policy.critics.bias
    torch.testing.assert_close(torch.stack([v_ext, v_int], -1), values)
    # moving the critic's weights leaves the actor alone, and the reverse
    with torch.no_grad():
        policy.vf_mlp[0].weight.add_(1.0)
    assert torch.equal(policy(obs)[0], logits) and not torch.equal(policy(obs)[1], v_ext)
    with torch.no_grad():
        policy.pi_mlp[0].weight.add_(1.0)
    assert not torch.equal(policy(obs)[0], logits)


def test_heads_are_initialised_like_sb3s() -> None:
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    policy = ActorCriticPolicy(space, gym.spaces.Discrete(4), net_arch={"pi": [8], "vf": [8]})
    assert torch.count_nonzero(policy.actor.bias) == 0 and torch.count_nonzero(policy.critics.bias) == 0
    # orthogonal rows of norm 0.01 (actor) and 1 (each critic row, initialised on its own)
    torch.testing.assert_close(policy.actor.weight.norm(dim=1), torch.full((4,), 0.01))
    torch.testing.assert_close(policy.critics.weight.norm(dim=1), torch.ones(2))


def test_lstm_core_feeds_both_networks() -> None:
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    policy = ActorCriticPolicy(
        space, gym.spaces.Discrete(2), features_dim=None, net_arch={"pi": [8], "vf": [8]}, lstm=True, lstm_hidden_size=6
    )
    assert policy.pi_mlp[0].in_features == policy.vf_mlp[0].in_features == 6
    logits, v_ext, _, state = policy(torch.randn(2, 3))
    assert logits.shape == (2, 2) and v_ext.shape == (2,) and state is not None


def test_training_and_checkpoint_round_trip(tmp_path: Path) -> None:
    vec = rove.make_vec(MINIGRID, 2, seed=1, copy=False, observation_keys=KEYS)
    arch = {"net_arch": {"pi": [16], "vf": [16, 16]}, "activation_fn": torch.nn.Tanh}
    model = PPO(
        "auto", vec, policy_kwargs=arch, intrinsic="rnd", n_steps=8, batch_size=8, n_epochs=1, seed=0, verbose=0
    )
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(32)
    assert any(not torch.equal(before[k], v) for k, v in model.policy.state_dict().items() if k.startswith("pi_mlp"))
    assert any(not torch.equal(before[k], v) for k, v in model.policy.state_dict().items() if k.startswith("vf_mlp"))
    model.save(tmp_path / "m.pt")
    loaded = PPO.load(tmp_path / "m.pt", device="cpu")
    assert loaded.policy.separate and isinstance(loaded.policy.pi_mlp[1], torch.nn.Tanh)
    assert [m.out_features for m in loaded.policy.vf_mlp if isinstance(m, torch.nn.Linear)] == [16, 16]
    saved, restored = model.policy.state_dict(), loaded.policy.state_dict()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)


@pytest.mark.parametrize(
    ("net_arch", "match"),
    [
        ({"pi": [64], "qf": [64]}, r"unknown key\(s\) \['qf'\]"),
        ({"pi": [64], "vf": 64}, r"net_arch\['vf'\]=64: expected a list"),
        ({"pi": [0]}, r"net_arch\['pi'\]=\[0\]"),
        ([64, "64"], r"net_arch=\[64, '64'\]"),
        ([dict(pi=[64], vf=[64])], r"expected a list of positive layer sizes"),  # SB3 < 1.8's mixed form
    ],
)
def test_bad_net_arch_is_refused_by_name(net_arch: object, match: str) -> None:
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(ValueError, match=match):
        ActorCriticPolicy(space, gym.spaces.Discrete(2), net_arch=net_arch)  # type: ignore[arg-type]


def test_features_dim_is_refused_where_the_dict_form_flattens() -> None:
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(ValueError, match="features_dim=32: with net_arch="):
        ActorCriticPolicy(space, gym.spaces.Discrete(2), features_dim=32, net_arch={"pi": [8], "vf": [8]})
