"""MaxInfoRL's automatic coefficients on PPO: ``int_coef="auto"`` and ``ent_coef="auto"``.

The dual step is checked against Adam written out by hand; the slack each step is fed is recomputed from a
real MiniGrid rollout with the updated policy, step by step, independently of the agent's batched pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rove.agents import PPO, BaseCallback
from rove.agents.common.dual import BOUND, DualCoef, parse_coef

ENV = "Rove/MiniGrid-DoorKey-5x5-v0"
SMALL = {"n_envs": 4, "n_steps": 16, "batch_size": 32, "n_epochs": 2, "learning_rate": 1e-3, "verbose": 0}


def adam_by_hand(init: float, lr: float, slacks: list[float]) -> list[float]:
    """Values after each Adam step on ``log c`` with gradient ``slack`` (torch's defaults: 0.9, 0.999, 1e-8)."""
    x, m, v, out = math.log(init), 0.0, 0.0, []
    for t, g in enumerate(slacks, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x -= lr * (m / (1 - 0.9**t)) / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
        out.append(math.exp(x))
    return out


def test_a_dual_step_is_adam_on_the_log_and_the_weight_rises_below_target_and_falls_above() -> None:
    slacks = [-0.3, -0.1, -0.2, 0.5, 0.2, 0.4, 0.3]
    coef = DualCoef(1.0, lr=0.1)
    values = [coef.step(s) for s in slacks]
    np.testing.assert_allclose(values, adam_by_hand(1.0, 0.1, slacks), rtol=1e-12)
    assert values[0] > 1.0 and values[2] > values[1] > values[0]  # below target (slack < 0): rises
    assert values[-1] < values[-2] < values[-3]  # above target: falls


def test_a_dual_weight_stays_within_its_bounds() -> None:
    coef = DualCoef(0.5, lr=1.0)
    for _ in range(30):
        coef.step(-1.0)
    assert coef.value == pytest.approx(0.5 * BOUND)
    for _ in range(60):
        coef.step(1.0)
    assert coef.value == pytest.approx(0.5 / BOUND)


class Capture(BaseCallback):
    """After every update: the rollout the update trained on and the slacks the agent logged for it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []

    def _on_update_end(self) -> None:
        model = self.model
        buf = model.rollout_buffer
        assert model.run_dir is not None
        logged = json.loads((model.run_dir / "progress.jsonl").read_text().splitlines()[-1])
        self.rows.append(
            {
                "obs": {k: v[:-1].clone() for k, v in buf.obs.items()},
                "actions": buf.actions.clone(),
                "log_probs": buf.log_probs.clone(),
                "rewards_int": buf.rewards_int.clone(),
                "valid": buf.valid.clone(),
                "policy": {k: v.clone() for k, v in model.policy.state_dict().items()},
                "logged": logged,
            }
        )


def recompute(model: PPO, row: dict[str, Any]) -> tuple[float, float]:
    """``(int slack, mean entropy)`` of the updated policy on the captured rollout, one step at a time."""
    policy = model.policy
    policy.load_state_dict(row["policy"])
    num_steps = row["actions"].shape[0]
    ratios, rewards, entropies = [], [], []
    with torch.no_grad():
        for t in range(num_steps):
            logits = policy({k: v[t] for k, v in row["obs"].items()})[0].double()
            probs = torch.softmax(logits, -1).numpy()
            for e in np.nonzero(row["valid"][t].numpy())[0]:
                a = int(row["actions"][t, e])
                ratios.append(probs[e, a] / math.exp(float(row["log_probs"][t, e])))
                rewards.append(float(row["rewards_int"][t, e]))
                entropies.append(-float(np.sum(probs[e] * np.log(probs[e]))))
    r = np.array(rewards)
    slack = float(np.mean((np.array(ratios) - 1.0) * (r - r.mean())))
    return slack, float(np.mean(entropies))


def test_the_slacks_equal_a_recomputation_from_the_rollout_and_drive_the_logged_weights(tmp_path: Path) -> None:
    capture = Capture()
    model = PPO(
        "auto",
        ENV,
        intrinsic="infogain",
        int_coef="auto",
        ent_coef="auto_0.05",
        dual_lr=0.1,
        target_entropy_ratio=0.8,
        seed=1,
        run_dir=str(tmp_path),
        **SMALL,
    )
    model.learn(4 * 16 * 4, callback=capture)
    assert len(capture.rows) == 4
    int_slacks, ent_slacks = [], []
    for row in capture.rows:
        slack, entropy = recompute(model, row)
        assert row["logged"]["train/int_coef_slack"] == pytest.approx(slack, rel=1e-4, abs=1e-7)
        assert row["logged"]["train/ent_coef_slack"] == pytest.approx(entropy - 0.8 * math.log(7), rel=1e-5)
        int_slacks.append(row["logged"]["train/int_coef_slack"])
        ent_slacks.append(row["logged"]["train/ent_coef_slack"])
    int_coefs = [row["logged"]["train/int_coef"] for row in capture.rows]
    ent_coefs = [row["logged"]["train/ent_coef"] for row in capture.rows]
    np.testing.assert_allclose(int_coefs, adam_by_hand(1.0, 0.1, int_slacks), rtol=1e-9)
    np.testing.assert_allclose(ent_coefs, adam_by_hand(0.05, 0.1, ent_slacks), rtol=1e-9)
    assert model.int_coef == pytest.approx(int_coefs[-1]) and model.ent_coef == pytest.approx(ent_coefs[-1])
    assert any(s != 0 for s in int_slacks)


@pytest.mark.parametrize(("ratio", "direction"), [(1.0, 1), (0.05, -1)])
def test_the_entropy_coefficient_moves_the_entropy_toward_its_target(ratio: float, direction: int) -> None:
    # The uniform policy's entropy is the maximum: a target at it can only be approached from below (the
    # coefficient rises), a target near 0 is far below the young policy's entropy (it falls).
    model = PPO("auto", ENV, ent_coef="auto", dual_lr=0.3, target_entropy_ratio=ratio, seed=2, **SMALL)
    model.learn(4 * 16 * 4)
    assert (model.ent_coef - 0.01) * direction > 0
    assert model.ent_coef == pytest.approx(0.01 * math.exp(direction * 0.3 * 4), rel=0.3)  # a consistent sign


def test_a_resumed_auto_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    kwargs = {**SMALL, "intrinsic": "infogain", "int_coef": "auto_0.5", "ent_coef": "auto", "dual_lr": 0.1, "seed": 4}
    steps = 4 * 16
    whole = PPO("auto", ENV, **kwargs)
    whole.learn(3 * steps)

    first = PPO("auto", ENV, **kwargs)
    first.learn(2 * steps)
    first.save(tmp_path / "ckpt.pt")
    resumed = PPO.load(tmp_path / "ckpt.pt", env=ENV)
    assert resumed.int_coef == first.int_coef != 0.5 and resumed.ent_coef == first.ent_coef
    resumed.learn(steps, reset_num_timesteps=False)

    for name in ("int_coef", "ent_coef"):
        assert getattr(resumed, name) == getattr(whole, name)
        a, b = resumed._dual_coefs()[name].state_dict(), whole._dual_coefs()[name].state_dict()
        assert torch.equal(a["log_value"], b["log_value"])
        assert torch.equal(a["optimizer"]["state"][0]["exp_avg_sq"], b["optimizer"]["state"][0]["exp_avg_sq"])
    for (key, x), y in zip(resumed.policy.state_dict().items(), whole.policy.state_dict().values(), strict=True):
        assert torch.equal(x, y), key


def test_a_checkpoint_without_the_tuned_coefficients_is_refused(tmp_path: Path) -> None:
    fixed = PPO("auto", ENV, intrinsic="count", seed=0, **SMALL)
    fixed.save(tmp_path / "fixed.pt")
    with pytest.raises(ValueError, match="tunes no coefficient"):
        PPO.load(tmp_path / "fixed.pt", env=ENV, int_coef="auto")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"intrinsic": "count", "int_coef": "automatic"}, ValueError, "'automatic'"),
        ({"intrinsic": "count", "int_coef": "auto_-1"}, ValueError, "positive"),
        ({"intrinsic": "count", "ent_coef": "auto_x"}, ValueError, "ent_coef='auto_x'"),
        ({"intrinsic": "count", "int_coef": True}, TypeError, "int_coef"),
        ({"int_coef": "auto"}, ValueError, "intrinsic is None"),
        ({"ent_coef": "auto", "target_entropy_ratio": -0.5}, ValueError, "target_entropy_ratio"),
        ({"ent_coef": "auto", "target_entropy_ratio": 1.5}, ValueError, "target_entropy_ratio"),
        ({"intrinsic": "count", "int_coef": "auto", "dual_lr": 0.0}, ValueError, "dual_lr"),
    ],
)
def test_bad_coefficients_are_refused_naming_the_value(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        PPO("auto", ENV, n_envs=2, n_steps=8, verbose=0, **kwargs)


def test_auto_strings_parse_to_their_start_values() -> None:
    assert parse_coef("auto", "int_coef", 1.0) == (1.0, True)
    assert parse_coef("auto_0.25", "int_coef", 1.0) == (0.25, True)
    assert parse_coef(2, "int_coef", 1.0) == (2.0, False)


def test_a_sweep_config_passes_auto_through_its_agent_table() -> None:
    import tomllib

    from rove.experiments.sweep import parse_config

    path = Path(__file__).parents[2] / "experiments" / "configs" / "maxinfo_doorkey6_auto.toml"
    config = parse_config(tomllib.loads(path.read_text()), str(path))
    spec = config.specs()[0]
    assert spec.agent_kwargs["int_coef"] == "auto" and spec.intrinsic == ("infogain",)
