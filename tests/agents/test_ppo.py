"""rove.agents.PPO: it learns, intrinsic rewards reach the loss, autoreset steps are masked, save/load, LSTM."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove.intrinsic as ri
from rove.agents import PPO
from rove.intrinsic import IntrinsicModule, Transitions, register
from rove.intrinsic.types import Rollout, Step
from rove.obs import obs_index


class ConstantEnv(gym.Env):
    """Zero extrinsic reward, a constant observation, 3 actions, episodes of 8 steps."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 0.0, self.t >= 8, False, {}


def constant_vec(n: int = 4) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([ConstantEnv for _ in range(n)])


@register("test_ppo_favour_action")
class FavourAction(IntrinsicModule):
    """Rewards action 2 only; records what the agent hands it."""

    def __init__(self, observation_space, action_space, **kwargs):
        kwargs.setdefault("normalize", "none")
        super().__init__(observation_space, action_space, **kwargs)
        self.steps: list[Step] = []
        self.updated = 0

    def _observe(self, step: Step) -> None:
        self.steps.append(step)

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        return (rollout.actions == 2).float()

    def _update(self, batch: Transitions) -> dict[str, float]:
        self.updated += len(batch)
        return {"loss": 0.0}


@register("test_ppo_memoryless")
class Memoryless(FavourAction):
    """FavourAction without episodic memory."""

    _observe = IntrinsicModule._observe


def small_ppo(env, **kwargs) -> PPO:
    defaults = {"n_steps": 32, "batch_size": 64, "n_epochs": 4, "learning_rate": 1e-3, "seed": 0, "verbose": 0}
    return PPO("auto", env, **{**defaults, **kwargs})


@torch.no_grad()
def prob_of(model: PPO, action: int) -> float:
    obs = torch.zeros(1, 2)
    logits, *_ = model.policy(obs)
    return float(torch.softmax(logits, -1)[0, action])


def test_solves_minigrid_empty_5x5() -> None:
    model = PPO(
        "auto",
        "Rove/MiniGrid-Empty-5x5-v0",
        n_envs=8,
        n_steps=64,
        batch_size=128,
        learning_rate=1e-3,
        gamma=0.99,
        seed=0,
        verbose=0,
    )
    model.learn(1024)
    first = np.mean([e["return"] for e in model.ep_info_buffer])
    model.learn(9216, reset_num_timesteps=False)
    last = list(model.ep_info_buffer)[-40:]
    mean_return = np.mean([e["return"] for e in last])
    assert mean_return >= 0.9, f"mean return {mean_return:.3f} after {model.num_timesteps} steps"  # optimum 0.955
    assert mean_return > first + 0.1
    assert all(e["success"] for e in last)


def test_intrinsic_reward_alone_shapes_the_policy() -> None:
    model = small_ppo(constant_vec(), intrinsic="test_ppo_favour_action", ent_coef=0.0)
    assert abs(prob_of(model, 2) - 1 / 3) < 0.05
    model.learn(3000)
    assert prob_of(model, 2) > 0.8
    # Without the intrinsic stream in the advantage, nothing moves the policy.
    control = small_ppo(constant_vec(), intrinsic="test_ppo_favour_action", int_coef=0.0, ent_coef=0.0)
    control.learn(3000)
    assert prob_of(control, 2) < 0.45


def test_autoreset_steps_are_masked_everywhere() -> None:
    env = constant_vec(3)
    model = small_ppo(env, intrinsic="test_ppo_favour_action", n_steps=20)
    module = model.intrinsic
    assert isinstance(module, FavourAction)
    model.learn(1)  # one rollout
    buf = model.rollout_buffer
    # Autoreset rows are not transitions: the step counter counts the valid rows only, as SB3 counts.
    assert model.num_timesteps == int(buf.valid.sum()) < 3 * 20
    # NEXT_STEP: the step after an episode end is the autoreset step, and nothing else is.
    assert torch.equal(~buf.valid[1:], buf.dones[:-1])
    assert (~buf.valid).any()
    assert module.updated == int(buf.valid.sum())
    # Intrinsic reward is zero on autoreset steps even though the action there may be 2.
    assert (buf.rewards_int[~buf.valid] == 0).all()
    # observe() saw every step in order, with the same valid flags.
    assert len(module.steps) == 20
    assert torch.equal(torch.stack([s.valid for s in module.steps]), buf.valid.cpu())
    # The autoreset step's next obs is what the env returned after resetting (episode start flag set).
    assert torch.equal(buf.episode_starts[1:], ~buf.valid)


def test_modules_observe_the_actions_taken_as_ordinary_tensors() -> None:
    model = small_ppo(constant_vec(3), intrinsic="test_ppo_favour_action", n_steps=20)
    model.learn(1)  # one rollout
    module = model.intrinsic
    assert isinstance(module, FavourAction)
    assert torch.equal(torch.stack([s.actions for s in module.steps]), model.rollout_buffer.actions)
    # The policy samples in inference mode; what a module keeps must still be usable with autograd.
    assert not any(s.actions.is_inference() for s in module.steps)


def test_only_modules_with_episodic_memory_are_shown_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import rove.agents.common.base as agent_base

    built: list[Step] = []
    monkeypatch.setattr(agent_base, "Step", lambda *args: built.append(Step(*args)) or built[-1])
    seen = small_ppo(constant_vec(2), intrinsic="test_ppo_favour_action", n_steps=16)
    seen.learn(1)
    assert seen.intrinsic.observes_steps and len(seen.intrinsic.steps) == len(built) == 16
    built.clear()
    skipped = small_ppo(constant_vec(2), intrinsic="test_ppo_memoryless", n_steps=16)
    skipped.learn(1)
    assert not skipped.intrinsic.observes_steps
    assert built == [] and skipped.intrinsic.updated > 0  # no Step built per env step; still computed and trained
    # Built-in modules: counts and RND keep no per-step memory; RIDE's episodic counts and E3B's covariance do,
    # and a fusion observes exactly when one of its members does.
    space, actions = spaces.Box(-1.0, 1.0, (4,), np.float32), spaces.Discrete(3)
    assert not ri.make("count", space, actions).observes_steps and not ri.make("rnd", space, actions).observes_steps
    assert ri.make("ride", space, actions).observes_steps and ri.make("e3b", space, actions).observes_steps
    assert ri.make("fusion", space, actions, modules=["count", "ride"]).observes_steps
    assert not ri.make("fusion", space, actions, modules=["count", "rnd"]).observes_steps


def test_rewards_enter_before_advantages() -> None:
    model = small_ppo(constant_vec(2), intrinsic="test_ppo_favour_action", n_steps=16)
    model._reset_env(0)
    from rove.agents.common.callbacks import BaseCallback

    model.collect_rollouts(BaseCallback())
    model._add_intrinsic_rewards()
    model.compute_advantages()
    buf = model.rollout_buffer
    took_2 = (buf.actions == 2) & buf.valid
    assert torch.equal(buf.rewards_int, took_2.float())
    assert buf.advantages_int.abs().sum() > 0
    combined = buf.combined_advantages(model.ext_coef, model.int_coef, True)
    torch.testing.assert_close(combined, 2.0 * buf.advantages_ext + 1.0 * buf.advantages_int)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    model = PPO("auto", "Rove/MiniGrid-Empty-5x5-v0", n_envs=2, n_steps=16, intrinsic="rnd", seed=1, verbose=0)
    model.learn(64)
    path = tmp_path / "model.pt"
    model.save(path)
    loaded = PPO.load(path, device="cpu")
    obs = obs_index(model.rollout_buffer.obs, slice(0, 5))
    obs_np = {k: v.reshape(-1, *v.shape[2:]).numpy() for k, v in obs.items()}
    a1, _ = model.predict(obs_np, deterministic=True)
    a2, _ = loaded.predict(obs_np, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    for (k, v), (k2, v2) in zip(
        model.intrinsic.state_dict().items(), loaded.intrinsic.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2), k
    assert loaded.num_timesteps == model.num_timesteps
    assert loaded.env is None and loaded.env_id == "Rove/MiniGrid-Empty-5x5-v0"
    single = {k: v[0] for k, v in obs_np.items()}
    action, _ = loaded.predict(single, deterministic=True)
    assert np.ndim(action) == 0


def test_lstm_update_replays_rollout_exactly() -> None:
    model = small_ppo(constant_vec(4), n_steps=20, policy_kwargs={"lstm": True, "lstm_hidden_size": 32})
    model.learn(80)  # one rollout + update; 8-step episodes end mid-rollout
    from rove.agents.common.callbacks import BaseCallback

    model.rollout_buffer.start_next()
    model.collect_rollouts(BaseCallback())
    buf = model.rollout_buffer
    assert buf.lstm_state is not None and buf.episode_starts[1:].any()
    with torch.no_grad():
        flat = buf.obs[:-1].reshape(-1, 2)
        logits, v_ext, _ = model.policy.evaluate_sequence(flat, buf.lstm_state, buf.episode_starts[:-1])
    log_probs = torch.distributions.Categorical(logits=logits).log_prob(buf.actions.reshape(-1))
    torch.testing.assert_close(log_probs, buf.log_probs.reshape(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v_ext, buf.values_ext[:-1].reshape(-1), atol=1e-5, rtol=1e-5)
    model.learn(80, reset_num_timesteps=False)  # the sequence update itself runs


def test_run_dir_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    model = small_ppo("Rove/MiniGrid-Empty-5x5-v0", n_envs=4, run_dir=str(run), intrinsic="count", verbose=1)
    model.learn(512, progress_bar=True)
    model.close()
    printed = capsys.readouterr()
    assert "| train/policy_loss" in printed.out and "| time/sps" in printed.out
    assert "512/512" in printed.err  # tqdm's bar
    config = json.loads((run / "config.json").read_text())
    assert config["env_id"] == "Rove/MiniGrid-Empty-5x5-v0" and config["intrinsic"] == "count"
    assert config["gamma"] == 0.999 and config["n_steps"] == 32
    episodes = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert episodes
    for ep in episodes:
        assert {"step", "env", "return", "length", "intrinsic_return", "success"} <= ep.keys()
    assert any(ep["intrinsic_return"] > 0 for ep in episodes)
    progress = [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]
    # One line per update at its step count: up to 128 transitions per rollout (autoreset rows are none).
    steps = [p["step"] for p in progress]
    increments = np.diff([0, *steps])
    assert steps[-1] >= 512 > steps[-2] and all(0 < d <= 128 for d in increments) and any(increments < 128)
    assert {"time", "sps", "train/policy_loss", "train/value_loss_int"} <= progress[-1].keys()
    assert any(k.startswith("intrinsic/count/") for k in progress[-1])
    assert list((run / "tb").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("env_id", ["Rove/CrafterReward-v1", "Rove/NetHackScore-v0"])
def test_suite_smoke_run(env_id: str) -> None:
    model = PPO("auto", env_id, n_envs=2, n_steps=64, batch_size=64, n_epochs=1, intrinsic="rnd", seed=0, verbose=0)
    model.learn(256)
    assert 256 <= model.num_timesteps <= 256 + 128
    assert model.policy.suite in ("pixels", "nethack")


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        PPO("LstmPolicy", "CartPole-v1", n_envs=1, verbose=0)
    with pytest.raises(NotImplementedError, match="Discrete action"):
        PPO("auto", "Pendulum-v1", n_envs=1, verbose=0)
    with pytest.raises(TypeError, match="vector env"):
        PPO("auto", gym.make("CartPole-v1"), verbose=0)


def test_callback_can_stop_training_and_learning_resumes() -> None:
    from rove.agents import BaseCallback

    class StopAfter(BaseCallback):
        def __init__(self, calls: int) -> None:
            super().__init__()
            self.calls = calls

        def _on_step(self) -> bool:
            self.calls -= 1
            return self.calls > 0

    model = small_ppo(constant_vec(2), n_steps=16)
    model.learn(1000, callback=StopAfter(10))
    # 10 steps of 2 envs, less the autoreset rows (valid[t] is ~episode_starts[t + 1]).
    assert model.num_timesteps == int((~model.rollout_buffer.episode_starts[1:11]).sum()) and model.num_updates == 0
    model.learn(1, reset_num_timesteps=False)
    assert model.num_updates == 1
    assert torch.equal(model.rollout_buffer.episode_starts[1:], ~model.rollout_buffer.valid)


def test_tensorboard_log_without_run_dir(tmp_path: Path) -> None:
    for expected in ("PPO_1", "PPO_2"):
        model = small_ppo(constant_vec(2), tensorboard_log=str(tmp_path))
        model.learn(64)
        model.close()
        assert list((tmp_path / expected).glob("events.out.tfevents.*"))


def test_episode_info_flattening_keeps_suite_metrics() -> None:
    from rove.agents.common.logger import flatten_episode_info

    info = {
        "r": np.array([1.0, 2.0]),
        "_r": np.array([True, True]),
        "achievements": {"collect_wood": np.array([0, 1]), "_collect_wood": np.array([True, True])},
        "end_reason": np.array(["", "DIED"], dtype=object),
        "depth": np.array([1, 3]),
    }
    assert flatten_episode_info(info, 1) == {"achievements": {"collect_wood": 1}, "end_reason": "DIED", "depth": 3}


def test_learn_flushes_subnormal_floats_and_restores_the_mode() -> None:
    from rove.agents import BaseCallback
    from rove.agents.common.utils import flushes_denormals

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")

    class RecordMode(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.modes: set[bool] = set()

        def _on_step(self) -> bool:
            self.modes.add(flushes_denormals())
            return True

    for flush in (True, False):
        record = RecordMode()
        small_ppo(constant_vec(2), n_steps=16, flush_denormals=flush).learn(64, callback=record)
        assert record.modes == {flush}
        assert not flushes_denormals()


def _adam_steps(model: PPO) -> int:
    return int(next(iter(model.optimizer.state.values()))["step"])


def test_target_kl_stops_the_epochs_before_the_step_that_exceeds_it() -> None:
    # 4 epochs x 2 minibatches = 8 steps per update without a limit. With a tiny target the first minibatch
    # (KL exactly 0: the policy is still the rollout's) steps, the second sees KL > 1.5 * target and stops.
    free = small_ppo(constant_vec(2), n_steps=64, batch_size=64, learning_rate=1e-2)
    free.learn(1)
    assert _adam_steps(free) == 8
    limited = small_ppo(constant_vec(2), n_steps=64, batch_size=64, learning_rate=1e-2, target_kl=1e-12)
    limited.learn(1)
    assert _adam_steps(limited) == 1
    with pytest.raises(ValueError, match="target_kl must be > 0"):
        small_ppo(constant_vec(2), target_kl=0.0)


def test_clip_range_vf_clips_each_value_head_around_its_rollout_value() -> None:
    def trained(**kwargs) -> dict[str, torch.Tensor]:
        model = small_ppo(constant_vec(2), intrinsic="test_ppo_favour_action", learning_rate=1e-2, **kwargs)
        model.learn(200)
        return model.policy.state_dict()

    unclipped, loose, tight = trained(), trained(clip_range_vf=1e6), trained(clip_range_vf=1e-6)
    # A clip never reached changes nothing but rounding (old + (v - old) is v up to one ulp); a tight one holds
    # the critics back.
    assert all(torch.allclose(unclipped[k], loose[k], atol=1e-5) for k in unclipped)
    critics = slice(3, 5)  # rows [logits x 3, v_ext, v_int] of the fused heads
    moved = (unclipped["heads.weight"][critics] - tight["heads.weight"][critics]).abs().max()
    assert moved > 1e-3


def test_sb3_policy_options_are_taken_or_refused_by_name(tmp_path: Path) -> None:
    model = small_ppo(
        constant_vec(2), policy_kwargs={"net_arch": [16], "activation_fn": torch.nn.Tanh}, stats_window_size=3
    )
    assert isinstance(model.policy.mlp[1], torch.nn.Tanh) and model.ep_info_buffer.maxlen == 3
    model.learn(64)
    assert len(model.ep_info_buffer) == 3
    model.save(tmp_path / "m.pt")
    loaded = PPO.load(tmp_path / "m.pt", device="cpu")
    assert isinstance(loaded.policy.mlp[1], torch.nn.Tanh) and loaded.ep_info_buffer.maxlen == 3
    with pytest.raises(ValueError, match=r"net_arch=\{'pi': \[64\], 'qf': \[64\]\}: unknown key"):
        small_ppo(constant_vec(2), policy_kwargs={"net_arch": {"pi": [64], "qf": [64]}})
    with pytest.raises(TypeError, match="use_sde"):
        small_ppo(constant_vec(2), use_sde=True)
