"""experiments/configs/minigrid_rlzoo*.toml hold RL Zoo's MiniGrid PPO settings, the same on both agents."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch
import yaml
from stable_baselines3 import PPO as SB3PPO

from rove.experiments.sweep import load_config

ROOT = Path(__file__).resolve().parents[2]
ZOO_FILE = ROOT / "assets" / "rlzoo" / "ppo_minigrid.yml"
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("minigrid_rlzoo*.toml"))
# ppo.yml's keys that are PPO constructor options, under the same names in SB3 and Rove.
AGENT_KEYS = ("n_steps", "batch_size", "gae_lambda", "gamma", "n_epochs", "ent_coef", "learning_rate", "clip_range")


@pytest.fixture(scope="module")
def zoo() -> dict:
    header = ZOO_FILE.read_text().split("\n\n", 1)[0]
    assert "rl-zoo3 2.9.2" in header and "rl_zoo3/hyperparams/ppo.yml" in header  # version and source stated
    return yaml.safe_load(ZOO_FILE.read_text())


def test_both_configs_exist() -> None:
    assert [p.name for p in CONFIGS] == ["minigrid_rlzoo.toml", "minigrid_rlzoo_s3r1.toml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_values_are_the_zoos_on_both_agents(path: Path, zoo: dict) -> None:
    config = load_config(path)
    assert sorted(m.agent for m in config.methods) == ["ppo", "sb3"]
    for env in config.envs:
        entry = zoo[env.split("/", 1)[1]]
        assert config.n_envs == entry["n_envs"]
        assert config.total_timesteps == int(entry["n_timesteps"])
        assert entry["policy"] == "MlpPolicy"
        specs = [s for s in config.specs() if s.env_id == env]
        assert sorted({s.seed for s in specs}) == [0, 1, 2]
        for spec in specs:
            for key in AGENT_KEYS:
                assert spec.agent_kwargs[key] == entry[key], (spec.method, key)
        rove, sb3 = (next(s for s in specs if s.agent == a) for a in ("ppo", "sb3"))
        # SB3's value loss is mse, Rove's 0.5 * mse: Rove's vf_coef is twice SB3's default 0.5
        assert "vf_coef" not in sb3.agent_kwargs and rove.agent_kwargs["vf_coef"] == 2 * 0.5
        assert {k: v for k, v in rove.agent_kwargs.items() if k != "vf_coef"} == sb3.agent_kwargs
        assert rove.env_kwargs == sb3.env_kwargs and rove.total_timesteps == sb3.total_timesteps


def test_the_configs_network_is_sb3s_mlp_policy_default(zoo: dict) -> None:
    """The zoo's ``policy: MlpPolicy`` with no policy_kwargs: the configs spell out SB3's default network."""
    config = load_config(CONFIGS[0])
    stated = config.agent["policy_kwargs"]
    default = SB3PPO("MlpPolicy", gym.make("CartPole-v1"), device="cpu").policy
    assert stated["net_arch"] == default.net_arch
    assert stated["activation_fn"] == "tanh" and default.activation_fn is torch.nn.Tanh
