"""AIRS (Fusion operator="select"): the UCB choice rule, the bandit reward from real rollouts, the credit of the
previous choice, a controlled bandit, the identity member, logging, and bad options."""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove
import rove.intrinsic as ri
from rove.experiments.plugins import import_plugin
from rove.intrinsic import IntrinsicModule, Rollout
from rove.intrinsic.bandit import SlidingWindowUCB
from rove.intrinsic.fusion import AIRS, Fusion
from rove.obs import to_tensor

BOX = spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = spaces.Discrete(2)


class Constant(IntrinsicModule):
    """A member whose reward is ``value`` everywhere: which member was selected shows in the fused reward."""

    name = "constant"

    def __init__(self, value: float, **kwargs: Any) -> None:
        super().__init__(BOX, ACTIONS, normalize="none", **kwargs)
        self.value = value

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        return torch.full((rollout.num_steps, rollout.num_envs), self.value)


def selector(num: int, **kwargs: Any) -> Fusion:
    """A select fusion of members ``Constant(1), Constant(2), ...``: the fused reward is the chosen index + 1."""
    return Fusion(BOX, ACTIONS, modules=[Constant(i + 1.0) for i in range(num)], operator="select", **kwargs)


def box_rollout(rewards: torch.Tensor, dones: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> Rollout:
    steps, envs = rewards.shape
    obs = torch.zeros(steps, envs, 3)
    return Rollout(
        obs,
        torch.zeros(steps, envs, dtype=torch.long),
        obs,
        rewards,
        torch.zeros(steps, envs, dtype=torch.bool) if dones is None else dones,
        torch.ones(steps, envs, dtype=torch.bool) if valid is None else valid,
    )


@dataclass
class Batch:
    """Consecutive rollouts of one vector env (as ``conftest.Batch``)."""

    observation_space: spaces.Space
    action_space: spaces.Space
    rollouts: list[Rollout]


def chosen(module: Fusion, rollout: Rollout) -> int:
    return int(module.compute(rollout)[0, 0].item()) - 1


# ----- the UCB rule, against an independent implementation -----


class ReferenceUCB:
    """UCB1 with per-arm sliding windows, written from the formula Q(i) + c sqrt(ln t / N(i)), untried first."""

    def __init__(self, num_arms: int, c: float, window: int) -> None:
        self.c = c
        self.recent = [deque(maxlen=window) for _ in range(num_arms)]
        self.pulls = [0] * num_arms

    def scores(self) -> list[float]:
        t = sum(self.pulls)
        out = []
        for recent, n in zip(self.recent, self.pulls, strict=True):
            out.append(math.inf if n == 0 else sum(recent) / len(recent) + self.c * math.sqrt(math.log(t) / n))
        return out

    def select(self) -> int:
        scores = self.scores()
        return scores.index(max(scores))

    def update(self, arm: int, reward: float) -> None:
        self.recent[arm].append(reward)
        self.pulls[arm] += 1


@pytest.mark.parametrize(("c", "window"), [(1.0, 10), (0.3, 3), (2.5, 1)])
def test_ucb_choices_and_scores_equal_an_independent_implementation(c: float, window: int) -> None:
    rng = np.random.default_rng(0)
    means = [0.2, 0.5, 0.45, 0.1]
    bandit, reference = SlidingWindowUCB(4, c, window), ReferenceUCB(4, c, window)
    choices = []
    for _ in range(200):
        arm = bandit.select()
        assert arm == reference.select()
        np.testing.assert_allclose(bandit.scores().numpy(), reference.scores(), rtol=1e-12)
        reward = float(rng.normal(means[arm], 0.3))
        bandit.update(arm, reward)
        reference.update(arm, reward)
        choices.append(arm)
    assert choices[:4] == [0, 1, 2, 3], "each arm is tried once, in order, first"
    assert len(set(choices[4:])) > 1, "the bonus makes the bandit come back to other arms"


def test_ucb_scores_for_given_statistics() -> None:
    """Arm 0: rewards [1, 3] then 5 (window 2 keeps [3, 5]); arm 1: [2]; t = 4."""
    bandit = SlidingWindowUCB(3, c=0.5, window=2)
    for arm, reward in [(0, 1.0), (1, 2.0), (0, 3.0), (0, 5.0)]:
        bandit.update(arm, reward)
    expected = [4.0 + 0.5 * math.sqrt(math.log(4) / 3), 2.0 + 0.5 * math.sqrt(math.log(4) / 1), math.inf]
    np.testing.assert_allclose(bandit.scores().numpy(), expected)
    assert bandit.select() == 2
    bandit.update(2, -10.0)
    assert bandit.select() == 0


# ----- the bandit reward: extrinsic returns of real rollouts -----


def episode_returns_by_hand(rollouts: list[Rollout]) -> tuple[list[list[float]], list[float]]:
    """Per rollout, the undiscounted extrinsic returns of the episodes that ended in it (an episode summed
    across rollouts, autoreset rows left out); and each env's return so far in its unfinished episode."""
    num_envs = rollouts[0].num_envs
    running = [0.0] * num_envs
    ended: list[list[float]] = []
    for rollout in rollouts:
        done_here = []
        for t in range(rollout.num_steps):
            for e in range(num_envs):
                if not bool(rollout.valid[t, e]):
                    continue
                running[e] += float(rollout.rewards[t, e])
                if bool(rollout.dones[t, e]):
                    done_here.append(running[e])
                    running[e] = 0.0
        ended.append(done_here)
    return ended, running


def scripted_minigrid(max_steps: int = 12, num_envs: int = 4, num_steps: int = 20) -> Batch:
    """Two real rollouts of Empty-5x5 where env ``e`` waits ``e`` steps then walks to the goal (forward x2, right,
    forward x2): rewarded episodes of several lengths, timeouts, and autoreset rows, across the rollout boundary."""
    envs = rove.make_vec(
        "Rove/MiniGrid-Empty-5x5-v0", num_envs, seed=0, max_steps=max_steps, observation_keys=("image", "state_key")
    )
    obs, _ = envs.reset(seed=0)
    plans = [[5] * (2 * e) + [2, 2, 1, 2, 2] for e in range(num_envs)]  # 5: toggle (nothing to toggle: a wait)
    cursor = [0] * num_envs
    rollouts = []
    for _ in range(2):
        frames, actions, rewards, dones, valid = [obs], [], [], [], []
        for _ in range(num_steps):
            action = np.array([plans[e][cursor[e] % len(plans[e])] for e in range(num_envs)])
            obs, reward, terminated, truncated, infos = envs.step(action)
            for e in range(num_envs):
                cursor[e] = 0 if terminated[e] or truncated[e] else cursor[e] + 1
            frames.append(obs)
            actions.append(action)
            rewards.append(reward)
            dones.append(terminated | truncated)
            valid.append(~np.asarray(infos["autoreset"]))
        stacked = to_tensor({k: np.stack([f[k] for f in frames]) for k in frames[0]})
        rollouts.append(
            Rollout(
                {k: v[:-1] for k, v in stacked.items()},
                torch.as_tensor(np.stack(actions)),
                {k: v[1:] for k, v in stacked.items()},
                torch.as_tensor(np.stack(rewards), dtype=torch.float32),
                torch.as_tensor(np.stack(dones)),
                torch.as_tensor(np.stack(valid)),
            )
        )
    space, action_space = envs.single_observation_space, envs.single_action_space
    envs.close()
    return Batch(space, action_space, rollouts)


@pytest.fixture(scope="module")
def minigrid_goals() -> Batch:
    return scripted_minigrid()


def check_bandit_reward(batch: Batch) -> None:
    module = ri.make("airs", batch.observation_space, batch.action_space, candidates=["none"], seed=0)
    assert isinstance(module, Fusion)
    ended, running = episode_returns_by_hand(batch.rollouts)
    for rollout, returns in zip(batch.rollouts, ended, strict=True):
        got = module.bandit_reward(rollout)
        if returns:
            assert got == pytest.approx(float(np.mean(returns)), abs=1e-9)
        else:
            assert got is None
    assert module.episode_returns is not None
    np.testing.assert_allclose(module.episode_returns.numpy(), running, atol=1e-9)
    by_rollout = ri.make(
        "airs", batch.observation_space, batch.action_space, candidates=["none"], select_by="rollout_return"
    )
    for rollout in batch.rollouts:
        per_env = [
            sum(float(rollout.rewards[t, e]) for t in range(rollout.num_steps) if bool(rollout.valid[t, e]))
            for e in range(rollout.num_envs)
        ]
        assert by_rollout.bandit_reward(rollout) == pytest.approx(float(np.mean(per_env)), abs=1e-9)


def test_bandit_reward_is_the_extrinsic_episode_return_of_a_real_minigrid_rollout(minigrid_goals: Batch) -> None:
    ended, _ = episode_returns_by_hand(minigrid_goals.rollouts)
    rewarded = [r for returns in ended for r in returns if r > 0]
    assert ended[0] and ended[1] and len(rewarded) >= 3, "the scripted rollouts must end rewarded episodes"
    assert len({round(r, 6) for r in rewarded}) > 1, "episodes of different lengths earn different returns"
    assert not bool(minigrid_goals.rollouts[1].valid.all()), "autoreset rows must be present"
    check_bandit_reward(minigrid_goals)


def test_bandit_reward_is_the_extrinsic_return_on_every_suite(real_batch: Any) -> None:
    """Crafter's and NetHack's random-action rollouts earn real rewards (and few episode ends)."""
    check_bandit_reward(real_batch)


def test_reset_episodes_forgets_the_unfinished_returns() -> None:
    module = selector(1)
    module.bandit_reward(box_rollout(torch.ones(3, 2)))  # episodes unfinished: 3 so far in each env
    end = torch.zeros(2, 2, dtype=torch.bool)
    end[-1] = True
    assert module.bandit_reward(box_rollout(torch.ones(2, 2), end)) == 5.0
    module.bandit_reward(box_rollout(torch.ones(3, 2)))
    module.reset_episodes()  # the envs were reset: those episodes will never end
    assert module.bandit_reward(box_rollout(torch.ones(2, 2), end)) == 2.0


# ----- the choice and its credit -----


def test_a_rollout_credits_the_choice_that_shaped_the_update_before_it() -> None:
    module = selector(2)
    end = torch.zeros(2, 1, dtype=torch.bool)
    end[-1] = True
    assert chosen(module, box_rollout(torch.tensor([[9.0], [9.0]]), end)) == 0  # first rollout: nobody credited
    assert int(module.bandit.counts.sum()) == 0  # type: ignore[union-attr]
    assert chosen(module, box_rollout(torch.tensor([[0.0], [3.0]]), end)) == 1  # credits arm 0 with 3, tries arm 1
    assert module.bandit.counts.tolist() == [1, 0]  # type: ignore[union-attr]
    assert module.bandit.values()[0] == 3.0  # type: ignore[union-attr]
    chosen(module, box_rollout(torch.tensor([[1.0], [0.0]]), end))  # credits arm 1 with 1
    assert module.bandit.counts.tolist() == [1, 1]  # type: ignore[union-attr]
    assert module.bandit.values().tolist() == [3.0, 1.0]  # type: ignore[union-attr]


def test_no_ended_episode_gives_no_credit_and_keeps_the_choice() -> None:
    module = selector(3)
    first = chosen(module, box_rollout(torch.ones(4, 2)))
    for _ in range(3):
        assert chosen(module, box_rollout(torch.ones(4, 2))) == first
    assert int(module.bandit.rounds) == 0  # type: ignore[union-attr]


def test_the_arm_with_the_higher_extrinsic_return_is_chosen_most() -> None:
    """A controlled bandit: the rollout after choosing arm i ends one episode per env with return ~ N(mu_i, 0.1)."""
    means = [0.1, 0.7, 0.4]
    module = selector(3, ucb_c=0.5)
    gen = torch.Generator().manual_seed(0)
    end = torch.zeros(4, 8, dtype=torch.bool)
    end[-1] = True
    choice, counts = None, [0, 0, 0]
    for _ in range(120):
        rewards = torch.zeros(4, 8)
        if choice is not None:
            rewards[-1] = means[choice] + 0.1 * torch.randn(8, generator=gen)
        choice = chosen(module, box_rollout(rewards, end))
        counts[choice] += 1
    assert counts[1] > 0.7 * sum(counts), counts
    assert counts[1] > counts[2] > counts[0], counts


def test_identity_member_adds_nothing_and_members_all_train_and_log() -> None:
    module = Fusion(BOX, ACTIONS, modules=["none", ("rnd", {"normalize": "none"})], operator="select", seed=0)
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(5, 2, 3, generator=gen)
    rollout = Rollout(
        obs[:-1], torch.zeros(4, 2, dtype=torch.long), obs[1:], torch.zeros(4, 2),
        torch.zeros(4, 2, dtype=torch.bool), torch.ones(4, 2, dtype=torch.bool),
    )  # fmt: skip
    assert torch.equal(module.compute(rollout), torch.zeros(4, 2))  # "none" is tried first
    losses = module.update(rollout)
    assert any(k.startswith("rnd/") for k in losses), "an unselected member trains too"
    assert losses["select/choice"] == 0.0
    assert losses["select/none/chosen"] == 1.0 and losses["select/rnd/chosen"] == 0.0
    assert losses["select/none/count"] == 0.0 and "select/none/value" not in losses
    ends = Rollout(*[getattr(rollout, f) for f in ("obs", "actions", "next_obs", "rewards")],
                   torch.ones(4, 2, dtype=torch.bool), rollout.valid)  # fmt: skip
    assert bool((module.compute(ends) > 0).all()), "'none' credited, rnd is tried next"
    losses = module.update(ends)
    assert losses["select/none/count"] == 1.0 and losses["select/none/value"] == 0.0
    assert losses["select/choice"] == 1.0 and losses["select/rnd/chosen"] == 1.0


def test_a_short_ppo_run_logs_the_choice_per_rollout(tmp_path: Path) -> None:
    from rove.agents import PPO

    model = PPO(
        "auto", "Rove/MiniGrid-DoorKey-5x5-v0", intrinsic="airs",
        intrinsic_kwargs={"candidates": ["none", "count"], "select_by": "rollout_return"},
        n_envs=2, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu", run_dir=tmp_path / "run", verbose=0,
    )  # fmt: skip
    model.learn(2 * 8 * 4)
    rows = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    choices = [row["intrinsic/airs/select/choice"] for row in rows]
    assert choices[:2] == [0.0, 1.0], "round robin first"
    credited = [row["intrinsic/airs/select/none/count"] + row["intrinsic/airs/select/count/count"] for row in rows]
    assert credited == [0.0, 1.0, 2.0, 3.0], "every rollout after the first credits the previous choice"
    # experiments/airs_arms.py reads the same log back: the share of rollouts each candidate shaped
    arms = import_plugin(str(Path(__file__).parents[2] / "experiments" / "airs_arms.py"))
    run = arms.read_run(tmp_path / "run")
    assert run.members == ["none", "count"] and run.choices.tolist() == [int(c) for c in choices]
    np.testing.assert_allclose(run.shares(2), [[0.5, 0.5], np.bincount(run.choices[2:], minlength=2) / 2])
    arms.write_report([run], tmp_path / "out", bins=2)
    assert "| run | none | 0.50 |" in (tmp_path / "out" / "arms.md").read_text()


def test_state_dict_and_training_state_restore_the_bandit_exactly() -> None:
    """Mid-episode and mid-window: a module restored from (state_dict, training state) chooses as the original."""
    gen = torch.Generator().manual_seed(1)

    def rollout(t: int) -> Rollout:
        dones = torch.zeros(3, 2, dtype=torch.bool)
        dones[-1, t % 2] = True  # each env ends an episode every other rollout: returns span rollouts
        return box_rollout(torch.rand(3, 2, generator=gen), dones)

    original = selector(3, ucb_c=0.2, ucb_window=2)
    for t in range(7):
        chosen(original, rollout(t))
    assert original.episode_returns is not None and bool((original.episode_returns > 0).any())
    restored = selector(3, ucb_c=0.2, ucb_window=2)
    restored.load_state_dict(original.state_dict())
    restored.set_training_state(original.get_training_state())
    for t in range(7, 15):
        data = rollout(t)
        assert chosen(restored, data) == chosen(original, data)
    for key, value in original.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value)


# ----- options -----


def test_bad_options_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"'pick'.*sum, product, max, cycle, select"):
        Fusion(BOX, ACTIONS, modules=["none"], operator="pick")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs candidates"):
        AIRS(BOX, ACTIONS, candidates=[])
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match=r"exploration constant.*ucb_c="):
            AIRS(BOX, ACTIONS, ucb_c=bad)  # type: ignore[arg-type]
    for bad_window in (0, 2.5):
        with pytest.raises(ValueError, match="window must be an int >= 1"):
            AIRS(BOX, ACTIONS, ucb_window=bad_window)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown select_by 'return'; choose one of episode_return, rollout_return"):
        AIRS(BOX, ACTIONS, select_by="return")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ucb_c only apply to operator='select', not 'sum'"):
        Fusion(BOX, ACTIONS, modules=["none"], operator="sum", ucb_c=1.0)
    with pytest.raises(ValueError, match="AIRS sets 'operator' itself"):
        AIRS(BOX, ACTIONS, operator="sum")
    with pytest.raises(KeyError, match="unknown intrinsic module 'rndd'"):
        AIRS(BOX, ACTIONS, candidates=["none", "rndd"])
