"""The motif preset: Motif's reward mix on Rove's PPO (facebookresearch/motif README "RL training")."""

import numpy as np
import pytest

import rove
from rove.llm.presets import motif_preset, scale_clip
from rove.llm.reward_model import CaptionRewardModel


def test_motif_preset_sets_motifs_reward_mix(tmp_path):
    path = tmp_path / "rm.pt"
    CaptionRewardModel().save(path)
    envs = rove.make_vec("Rove/MiniGrid-DoorKey-5x5-v0", 2, seed=0, observation_keys=["image", "direction", "caption"])
    model = motif_preset(envs, str(path), task="sparse", n_envs=2, n_steps=16, n_epochs=1, seed=0, verbose=0)
    assert (model.ext_coef, model.int_coef, model.int_episodic) == (10.0, 0.1, True)  # Motif: 10 on sparse tasks
    assert model.gamma == model.gamma_int  # one discount, one episodic return
    assert model.intrinsic.beta == 3.0 and model.intrinsic.name == "motif"
    model.learn(32)
    assert model.num_timesteps >= 32
    envs.close()
    assert np.allclose(scale_clip(np.array([500.0, -3.0, 1.0])), [10.0, -0.3, 0.1])  # clip(0.1 r, +-10)
    with pytest.raises(ValueError, match="choose from"):
        motif_preset(envs, str(path), task="oracle")
    with pytest.raises(ValueError, match="sets"):
        motif_preset(envs, str(path), int_coef=1.0)
