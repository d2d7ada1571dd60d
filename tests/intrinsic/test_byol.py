"""BYOL-Explore and BYOL-Hindsight on real MiniGrid, Crafter and NetHack rollouts: the properties that define them,
computed independently of the module's own code paths."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from gymnasium import spaces

import rove.intrinsic as ri
from rove.experiments.plugins import import_plugin
from rove.intrinsic import Rollout
from rove.intrinsic.byol import BYOLExplore, BYOLHindsight
from rove.obs import obs_flatten

NAMES = ["byol_explore", "byol_hindsight"]
SMALL = {"features_dim": 32, "hidden_dim": 32, "action_dim": 8, "predictor_hidden": 64}


def build(batch: Any, name: str, **kwargs: Any) -> BYOLExplore:
    options = {"seed": 0, "normalize": "none", **SMALL, **kwargs}
    module = ri.make(name, batch.observation_space, batch.action_space, **options)
    assert isinstance(module, BYOLExplore)
    return module


def with_boundary(rollout: Rollout, env: int, t: int, autoreset: bool = True) -> Rollout:
    """The rollout with an episode end at step ``t`` of ``env`` and the autoreset row after it (real frames, the
    boundary marked as Rove's NEXT_STEP vector env marks one); ``autoreset=False``: no autoreset row, step ``t+1``
    starts the next episode (Gymnasium's SAME_STEP mode)."""
    dones, valid = rollout.dones.clone(), rollout.valid.clone()
    dones[t, env] = True
    valid[t + 1, env] = not autoreset
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
    if name == "byol_hindsight" and real_batch.suite != "minigrid":
        pytest.skip("the world model (and its EMA) is byol_explore's; one suite keeps the default run short")
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
    rollout = with_boundary(with_boundary(real_batch.rollouts[1], 0, 5), 1, 12, autoreset=False)
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
@pytest.mark.parametrize("autoreset", [True, False], ids=["autoreset_row", "same_step"])
@pytest.mark.parametrize("name", NAMES)
def test_no_prediction_crosses_an_episode_end_or_an_autoreset_row(real_batch: Any, name: str, autoreset: bool) -> None:
    if name == "byol_hindsight" and real_batch.suite != "minigrid":
        pytest.skip("the same masking code as byol_explore's; one suite keeps the default run short")
    module = build(real_batch, name, horizon=6)
    module.update(real_batch.rollouts[0])
    t = 9  # episode ends at step t of env 0; step t + 1 is the autoreset row (or the next episode's first step)
    rollout = with_boundary(real_batch.rollouts[1], 0, t, autoreset)
    first = t + 2 if autoreset else t + 1  # the next episode's first transition
    reward = module.compute(rollout)
    if autoreset:
        assert reward[t + 1, 0] == 0
    # next_obs[t] is the first episode's last frame: replace what comes after it (obs[t + 1] is that same frame)
    after = module.compute(frames_replaced(rollout, 0, slice(first, None), 1))
    torch.testing.assert_close(after[: t + 1, 0], reward[: t + 1, 0], rtol=0, atol=0)
    assert not torch.equal(after[first:, 0], reward[first:, 0])
    before = module.compute(frames_replaced(rollout, 0, slice(0, t + 1), 1))  # the first episode changes
    torch.testing.assert_close(before[first:, 0], reward[first:, 0], rtol=0, atol=0)
    if not autoreset:
        return
    actions = rollout.actions.clone()
    actions[t + 1, 0] = (actions[t + 1, 0] + 1) % int(real_batch.action_space.n)  # the ignored action
    ignored = module.compute(Rollout(rollout.obs, actions, rollout.next_obs, rollout.rewards, rollout.dones,
                                     rollout.valid))  # fmt: skip
    torch.testing.assert_close(ignored, reward, rtol=0, atol=0)


# ----- the reward falls where the world model has trained -----
def time_shuffled(rollout: Rollout, seed: int = 0) -> Rollout:
    """The same frames, each ``next_obs`` taken from a random other step: transitions that never happened."""
    order = torch.randperm(rollout.num_steps, generator=torch.Generator().manual_seed(seed))
    next_obs = {k: v[order] for k, v in rollout.next_obs.items()}
    return Rollout(rollout.obs, rollout.actions, next_obs, rollout.rewards, rollout.dones, rollout.valid)


def trained_vs_unseen(batch: Any, name: str, unseen: Rollout, updates: int) -> tuple[float, float, float]:
    """Mean reward of a rollout before and after ``updates`` updates on it, and of ``unseen`` after them."""
    module = build(batch, name, num_epochs=1, num_minibatches=1)
    rollout, valid = batch.rollouts[0], batch.rollouts[0].valid
    before = float(module.compute(rollout)[valid].mean())
    for _ in range(updates):
        module.update(rollout)
    return before, float(module.compute(rollout)[valid].mean()), float(module.compute(unseen)[unseen.valid].mean())


@pytest.fixture(scope="module")
def lava_rollout() -> Rollout:
    """MiniGrid transitions of another task (LavaGap: lava, no door or key) in DoorKey's observation space."""
    spec = importlib.util.spec_from_file_location("byol_conftest", Path(__file__).with_name("conftest.py"))
    assert spec is not None and spec.loader is not None
    real = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = real  # its dataclass looks the module up there
    spec.loader.exec_module(real)  # the session fixtures' collector, for one more env
    real.SUITES["lavagap"] = ("Rove/MiniGrid-LavaGapS5-v0", real.SUITES["minigrid"][1])
    return real.collect("lavagap", num_envs=4, num_steps=80, num_rollouts=1).rollouts[0]


@pytest.mark.parametrize("name", ["byol_explore", pytest.param("byol_hindsight", marks=pytest.mark.slow)])
def test_reward_falls_on_trained_transitions_not_on_unseen_ones(
    minigrid_batch: Any, lava_rollout: Rollout, name: str
) -> None:
    before, trained, unseen = trained_vs_unseen(minigrid_batch, name, lava_rollout, updates=30)
    assert trained < 0.5 * before
    assert trained < 0.9 * unseen, (trained, unseen)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_reward_falls_on_trained_transitions_not_on_unseen_ones_nethack(nethack_batch: Any, name: str) -> None:
    # (Crafter is left out: after 60 updates BYOL-Explore rewarded its trained 32-step window and the same frames
    # time-shuffled alike, 0.035 vs 0.036; consecutive Crafter frames of a random agent differ little.)
    batch = nethack_batch
    before, trained, unseen = trained_vs_unseen(batch, name, time_shuffled(batch.rollouts[0]), updates=60)
    assert trained < 0.5 * before
    assert trained < 0.9 * unseen, (trained, unseen)


# ----- checkpoints: a restored module continues exactly as the original -----
@pytest.mark.parametrize("name", NAMES)
def test_restored_module_continues_bit_identical(minigrid_batch: Any, name: str) -> None:
    a = build(minigrid_batch, name, num_epochs=1, num_minibatches=2, normalize="std")
    a.compute(minigrid_batch.rollouts[0])
    a.update(minigrid_batch.rollouts[0])
    b = build(minigrid_batch, name, num_epochs=1, num_minibatches=2, normalize="std")
    saved = io.BytesIO()  # through bytes, as a checkpoint file (a live state dict shares a's tensors)
    torch.save({"state": a.state_dict(), "training": a.get_training_state()}, saved)
    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=False)
    b.load_state_dict(checkpoint["state"])
    b.set_training_state(checkpoint["training"])
    for module in (a, b):
        module.compute(minigrid_batch.rollouts[1])
        module.update(minigrid_batch.rollouts[1])
    for (key, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), key
    torch.testing.assert_close(a.compute(minigrid_batch.rollouts[0]), b.compute(minigrid_batch.rollouts[0]), rtol=0,
                               atol=0)  # fmt: skip


def test_bad_options_name_the_value(minigrid_batch: Any) -> None:
    space, actions = minigrid_batch.observation_space, minigrid_batch.action_space
    with pytest.raises(ValueError, match="horizon must be a positive integer, got 0"):
        ri.make("byol_explore", space, actions, horizon=0)
    with pytest.raises(ValueError, match=r"target_decay must be in \[0, 1\), got 1.5"):
        ri.make("byol_hindsight", space, actions, target_decay=1.5)
    with pytest.raises(ValueError, match="num_negatives must be an integer >= 2, got 1"):
        ri.make("byol_hindsight", space, actions, num_negatives=1)
    with pytest.raises(ValueError, match="Discrete action space"):
        ri.make("byol_explore", space, spaces.Box(-1, 1, (2,)))


# ----- Curiosity in Hindsight's claim: the noise is explained away, BYOL-Explore's reward follows it -----
def noisy_tv_ratios(names: list[str], out: Path, rollouts: int = 24, tail: int = 8) -> dict[str, float]:
    """Mean raw reward of the TV-switch transitions over that of the ordinary ones, over the last ``tail`` of
    ``rollouts`` random-agent rollouts of DoorKey-5x5 with a 16-channel ``NoisyTV`` (the three far rows of the
    view), each scored before the module trains on it: ``experiments/noisy_tv_curiosity.py``'s stream."""
    path = Path(__file__).resolve().parents[2] / "experiments" / "noisy_tv_curiosity.py"
    script = import_plugin(str(path))
    argv = ["--modules", ",".join(names), "--rollouts", str(rollouts), "--out", str(out), "--figure", ""]
    results = script.main(argv)
    ratios = {}
    for name in names:
        history = results["modules"][name]["history"][-tail:]
        ratios[name] = sum(h["noisy"] for h in history) / sum(h["ordinary"] for h in history)
    return ratios


@pytest.mark.slow
def test_hindsight_explains_the_noisy_tv_away_and_byol_explore_follows_it(tmp_path: Path) -> None:
    ratios = noisy_tv_ratios(NAMES, tmp_path / "ntv.json")
    # measured (experiments/noisy_tv_curiosity.py, 3 seeds x 80 rollouts): about 2.5 and 1.14
    assert ratios["byol_explore"] > 1.6, ratios
    assert ratios["byol_hindsight"] < 1.35, ratios
