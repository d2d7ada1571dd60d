"""What a checkpoint brings back: a module's own settings and training state, schedules' progress, the envs'
episodes (or, when they cannot come back, a fresh start with the module's episodic memory cleared)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import rove
from rove.agents import PPO, BaseCallback
from rove.agents.common.utils import get_rng_states, linear_schedule, set_rng_states
from rove.intrinsic import IntrinsicModule, register
from rove.intrinsic.rnd import RND
from rove.intrinsic.types import Rollout, Step
from rove.obs import get_device

ENV_ID = "Rove/MiniGrid-Empty-5x5-v0"


@register("test_checkpoint_episodic")
class EpisodicProbe(IntrinsicModule):
    """Counts the steps observed since its episodic memory was last cleared, and how often it was cleared."""

    def __init__(self, observation_space: Any, action_space: Any, **kwargs: Any) -> None:
        super().__init__(observation_space, action_space, normalize="none", **kwargs)
        self.remembered = 0
        self.cleared = 0

    def _observe(self, step: Step) -> None:
        self.remembered += 1

    def _reset_episodes(self) -> None:
        self.remembered = 0
        self.cleared += 1

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        return torch.zeros(rollout.num_steps, rollout.num_envs)


def small(env: Any = ENV_ID, **kwargs: Any) -> PPO:
    defaults = {"n_envs": 2, "n_steps": 8, "batch_size": 16, "n_epochs": 1, "seed": 0, "verbose": 0}
    return PPO("auto", env, **{**defaults, **kwargs})


def user_vec(n: int) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(n)])


def test_a_module_passed_as_an_instance_comes_back_with_its_own_settings(tmp_path: Path) -> None:
    probe = small(n_envs=1)
    space, actions = probe.observation_space, probe.action_space
    module = RND(space, actions, coef=0.1, update_proportion=1.0, learning_rate=1e-3, normalize="none", seed=7)
    model = small(intrinsic=module, run_dir=str(tmp_path / "run"))
    model.learn(1)
    model.save(tmp_path / "model.pt")
    loaded = PPO.load(tmp_path / "model.pt", device="cpu")
    back = loaded.intrinsic
    assert isinstance(back, RND) and back is not module
    assert back.coef(0) == 0.1 and back.update_proportion == 1.0 and back.normalize == "none"
    assert back.reward_normalizer is None and back.seed == 7
    assert [g["lr"] for g in back.optimizer.param_groups] == [1e-3]
    for key, value in module.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["intrinsic"] == "rnd"
    assert config["intrinsic_kwargs"]["coef"] == 0.1 and config["intrinsic_kwargs"]["learning_rate"] == 1e-3


def test_settings_that_cannot_be_saved_make_load_ask_for_the_module(tmp_path: Path) -> None:
    probe = small(n_envs=1)
    space, actions = probe.observation_space, probe.action_space
    model = small(intrinsic=RND(space, actions, coef=lambda steps: 0.1, normalize="none"))
    model.learn(1)
    with pytest.warns(UserWarning, match=r"settings of intrinsic module 'rnd' cannot be saved \(.*\); pass intrinsic="):
        model.save(tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"'rnd' were not saved .*pass intrinsic="):
        PPO.load(tmp_path / "model.pt", device="cpu")
    loaded = PPO.load(tmp_path / "model.pt", device="cpu", intrinsic=RND(space, actions, normalize="none"))
    for key, value in model.intrinsic.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(loaded.intrinsic.state_dict()[key], value), key  # type: ignore[union-attr]


def test_fusion_members_come_back_with_their_counters_optimisers_and_generators(tmp_path: Path) -> None:
    model = small(intrinsic="fusion", intrinsic_kwargs={"modules": ["rnd", "count", "noveld"]})
    model.learn(40)
    model.save(tmp_path / "model.pt")
    loaded = PPO.load(tmp_path / "model.pt", device="cpu")
    members = dict(model.intrinsic.member_items())  # type: ignore[union-attr]
    back = dict(loaded.intrinsic.member_items())  # type: ignore[union-attr]
    assert members["rnd"].num_steps_seen > 0
    for name, member in members.items():
        assert back[name].num_steps_seen == member.num_steps_seen, name
        assert torch.equal(back[name].generator.get_state(), member.generator.get_state()), name
    # NovelD keeps its episodic counts in a plain Python object (no state-dict hook): the walk finds it.
    tables, restored_tables = members["noveld"].episodic, back["noveld"].episodic  # type: ignore[union-attr]
    assert restored_tables is not tables and restored_tables.num_envs == tables.num_envs == 2
    for name in ("keys", "counts", "used", "sizes"):
        assert np.array_equal(getattr(restored_tables, name), getattr(tables, name)), name
    assert tables.sizes.sum() > 0
    saved_adam = members["rnd"].optimizer.state_dict()["state"]
    restored_adam = back["rnd"].optimizer.state_dict()["state"]
    assert saved_adam.keys() == restored_adam.keys() and len(saved_adam) > 0
    for index, state in saved_adam.items():
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(restored_adam[index][k])) for k, v in state.items())


def test_a_linear_learning_rate_continues_its_decay_after_resume(tmp_path: Path) -> None:
    class RecordLR(BaseCallback):
        def __init__(self, seen: list[tuple[int, float]], stop_after: int | None = None) -> None:
            super().__init__()
            self.seen, self.stop_after = seen, stop_after

        def _on_step(self) -> bool:
            assert self.model is not None
            return self.stop_after is None or self.model.num_updates < self.stop_after

        def _on_update_end(self) -> None:
            assert self.model is not None
            lr = self.model.optimizer.param_groups[0]["lr"]  # type: ignore[attr-defined]
            self.seen.append((self.model.num_timesteps, lr / 1e-3))

    total = 96
    before: list[tuple[int, float]] = []
    first = small(learning_rate=linear_schedule(1e-3))
    first.learn(total, callback=RecordLR(before, stop_after=3))  # stopped (as if killed) after 3 updates
    first.save(tmp_path / "part.pt")
    model = PPO.load(tmp_path / "part.pt", env=ENV_ID, device="cpu")
    after: list[tuple[int, float]] = []
    model.learn(total - model.num_timesteps, callback=RecordLR(after), reset_num_timesteps=False)
    assert len(before) == 3 and len(after) >= 2
    # Each update's rate is linear in the run's progress, num_timesteps / total, before and after the resume.
    for steps, ratio in before + after:
        assert ratio == pytest.approx(max(0.0, 1 - steps / total)), (steps, ratio)
    assert after[0][1] < before[-1][1]


def test_set_env_with_another_number_of_envs_keeps_learning(tmp_path: Path) -> None:
    model = small(intrinsic="rnd", n_envs=4)
    model.learn(1)
    model.save(tmp_path / "model.pt")
    loaded = PPO.load(tmp_path / "model.pt", device="cpu")
    loaded.set_env(rove.make_vec(ENV_ID, 2, seed=1, copy=False))
    loaded.learn(40, reset_num_timesteps=False)
    assert loaded.n_envs == 2 and loaded.rollout_buffer.valid.shape == (8, 2)
    model.set_env(user_vec(3))
    model.learn(40, reset_num_timesteps=False)
    assert model.n_envs == 3
    with pytest.raises(ValueError, match="observation space"):
        model.set_env(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")]))


def test_episodic_memory_comes_back_only_with_its_episodes(tmp_path: Path) -> None:
    model = small(intrinsic="test_checkpoint_episodic")
    model.learn(1)
    module = model.intrinsic
    assert isinstance(module, EpisodicProbe) and module.cleared == 1 and module.remembered == 8
    model.save(tmp_path / "model.pt")

    # A Rove vector env of the same id and size: the episodes continue, and so does their memory (plain
    # attributes travel in the module's training state).
    exact = PPO.load(tmp_path / "model.pt", env=ENV_ID, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        exact.learn(1, reset_num_timesteps=False)
    assert isinstance(exact.intrinsic, EpisodicProbe)
    assert exact.intrinsic.cleared == 1 and exact.intrinsic.remembered == 16

    # An env whose state cannot be restored: one warning, fresh episodes, the memory of the old ones gone.
    fresh = PPO.load(tmp_path / "model.pt", env=user_vec(2), device="cpu")
    with pytest.warns(RuntimeWarning, match=r"^resume: the envs start fresh episodes.*SyncVectorEnv has no set_state"):
        fresh.learn(1, reset_num_timesteps=False)
    assert isinstance(fresh.intrinsic, EpisodicProbe)
    assert fresh.intrinsic.cleared == 2 and fresh.intrinsic.remembered == 8

    # set_env, and a learn() interrupted mid-rollout, restart the episodes too.
    model.set_env(rove.make_vec(ENV_ID, 2, seed=5, copy=False))
    model.learn(1, reset_num_timesteps=False)
    assert module.cleared == 2 and module.remembered == 8

    class Interrupt(BaseCallback):
        def _on_step(self) -> bool:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.learn(8, callback=Interrupt(), reset_num_timesteps=False)
    model.learn(1, reset_num_timesteps=False)
    assert module.cleared == 3 and module.remembered == 8


def test_same_seed_gives_the_same_run_with_a_user_built_vector_env_and_a_warm_up() -> None:
    runs = []
    for _ in range(2):
        # RND whitens Box observations with statistics from random-action warm-up steps.
        env = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(2)])
        model = small(env, intrinsic="rnd", seed=0)
        assert model.intrinsic_warmup_steps > 0
        model.learn(32)
        runs.append((model.policy.state_dict(), model.intrinsic.state_dict()))  # type: ignore[union-attr]
    for a, b in zip(runs[0], runs[1], strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without CUDA")
def test_cuda_without_cuda_falls_back_to_the_cpu_with_a_warning_and_bad_names_are_refused() -> None:
    with pytest.warns(UserWarning, match="CUDA is not available: using the CPU"):
        model = small(device="cuda")
    assert model.device == torch.device("cpu") and model.intrinsic is None
    with pytest.warns(UserWarning, match="CUDA is not available"):
        assert get_device("cuda:1") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"unknown device 'gpu'; use 'auto', 'cpu', 'cuda'"):
        small(device="gpu")


def test_rng_state_saved_with_more_gpus_than_visible_restores_the_visible_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fault injection: a checkpoint from a 4-GPU machine restored where one GPU is visible.
    restored: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append(device))
    states = {**get_rng_states(), "cuda": [torch.zeros(8, dtype=torch.uint8)] * 4}
    set_rng_states(states)
    assert restored == [0]


def test_save_between_rollouts_holds_the_env_state_and_the_next_observation(tmp_path: Path) -> None:
    model = small(intrinsic="rnd")
    model.learn(1)
    model.save(tmp_path / "model.pt")
    saved = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=False)
    rollout = saved["rollout"]
    assert rollout["env"]["num_envs"] == 2 and [e["kind"] for e in rollout["env"]["envs"]] == ["pickle"] * 2
    assert torch.equal(rollout["obs"]["image"], model.rollout_buffer.obs["image"][0])
    assert np.array_equal(rollout["env"]["obs"]["image"], rollout["obs"]["image"].numpy())
