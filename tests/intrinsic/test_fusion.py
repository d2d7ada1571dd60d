"""Fusion (HIRE-style hybrid rewards): operators, weights, decay, forwarding, losses, state dict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove.intrinsic as ri
from rove.intrinsic import IntrinsicModule, Rollout, Step, Transitions
from rove.intrinsic.fusion import Fusion

BOX = spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = spaces.Discrete(2)
T, E = 2, 2
A = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
B = torch.tensor([[4.0, 0.5], [-2.0, 6.0]])


class Fixed(IntrinsicModule):
    """Returns the same ``[T, E]`` reward every time; counts observed steps; reports one fixed loss."""

    name = "fixed"

    def __init__(self, values: torch.Tensor, loss: float = 0.0, **kwargs: Any) -> None:
        super().__init__(BOX, ACTIONS, **{"normalize": "none", **kwargs})
        self.values, self.loss, self.observed = values, loss, 0

    def _observe(self, step: Step) -> None:
        self.observed += 1

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        return self.values.clone()

    def _update(self, batch: Transitions) -> dict[str, float]:
        return {"loss": self.loss, "seen": float(len(batch))}


def rollout(valid: torch.Tensor | None = None) -> Rollout:
    obs = torch.zeros(T, E, 3)
    return Rollout(
        obs,
        torch.zeros(T, E, dtype=torch.long),
        obs,
        torch.zeros(T, E),
        torch.zeros(T, E, dtype=torch.bool),
        torch.ones(T, E, dtype=torch.bool) if valid is None else valid,
    )


def fuse(operator: str, **kwargs: Any) -> Fusion:
    return Fusion(BOX, ACTIONS, modules=[Fixed(A), Fixed(B)], operator=operator, weights=[2.0, 0.5], **kwargs)


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("sum", 2.0 * A + 0.5 * B),
        ("product", (2.0 * A) * (0.5 * B)),
        ("max", torch.maximum(2.0 * A, 0.5 * B)),
    ],
)
def test_operators_match_hand_computed_values(operator: str, expected: torch.Tensor) -> None:
    torch.testing.assert_close(fuse(operator).compute(rollout()), expected)


def test_cycle_switches_the_active_module_at_each_compute() -> None:
    module = fuse("cycle")
    got = [module.compute(rollout()) for _ in range(3)]
    for reward, expected in zip(got, [2.0 * A, 0.5 * B, 2.0 * A], strict=True):
        torch.testing.assert_close(reward, expected)


def test_decay_counts_computes_as_hire_does() -> None:
    """RLeXplore's BaseReward: weight beta * (1 - kappa) ** global_step, global_step += 1 per compute."""
    module = fuse("sum", decay=[(1.0, 0.5), None])
    rewards = [module.compute(rollout()) for _ in range(3)]  # 4 valid env steps per compute
    for n, reward in enumerate(rewards):
        torch.testing.assert_close(reward, 2.0 * A * 0.5**n + 0.5 * B)
    shared = fuse("sum", decay=(3.0, 0.25))  # one pair for every member
    shared.compute(rollout())
    torch.testing.assert_close(shared.compute(rollout()), 3.0 * 0.75 * (2.0 * A + 0.5 * B))


def test_decay_in_env_steps_when_its_unit_says_so() -> None:
    module = fuse("sum", decay=[ri.schedules.ExponentialDecay(1.0, 0.5, unit="env_step"), None])
    module.compute(rollout())
    torch.testing.assert_close(module.compute(rollout()), 2.0 * A * 0.5**4 + 0.5 * B)  # 4 valid steps seen
    with pytest.raises(ValueError, match="unit must be one of"):
        ri.schedules.ExponentialDecay(1.0, 0.5, unit="rollout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per-compute decays belong in Fusion"):
        Fixed(A, coef=ri.schedules.ExponentialDecay(1.0, 0.5, unit="compute"))


def test_decay_accepts_schedules() -> None:
    module = fuse("sum", decay=[ri.schedules.linear(1.0, 0.0, 8), lambda step: 2.0])
    module.compute(rollout())
    torch.testing.assert_close(module.compute(rollout()), 2.0 * A * 0.5 + 0.5 * B * 2.0)


def test_members_are_normalised_by_their_own_normaliser_first() -> None:
    alone = Fixed(A, normalize="std")
    fused = Fusion(BOX, ACTIONS, modules=[Fixed(A, normalize="std")])
    for _ in range(3):
        torch.testing.assert_close(fused.compute(rollout()), alone.compute(rollout()))


def test_invalid_steps_are_zero() -> None:
    valid = torch.tensor([[True, False], [True, True]])
    reward = fuse("max").compute(rollout(valid))
    assert reward[0, 1] == 0 and reward[0, 0] != 0


def test_observe_and_update_reach_every_member_and_losses_are_prefixed() -> None:
    module = Fusion(BOX, ACTIONS, modules=[Fixed(A, loss=1.5), Fixed(B, loss=2.5)])
    data = rollout(torch.tensor([[True, False], [True, True]]))
    for t in range(T):
        module.observe(data.step(t))
    assert [m.observed for m in module.members.values()] == [T, T]
    losses = module.update(data)
    assert losses == {"fixed/loss": 1.5, "fixed/seen": 3.0, "fixed_1/loss": 2.5, "fixed_1/seen": 3.0}


def test_members_built_from_names_and_fused_module_round_trips_its_state_dict() -> None:
    specs = [("icm", {}), ("e3b", {"features_dim": 32}), "re3"]
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(T + 1, E, 3, generator=gen)
    data = Rollout(
        obs[:-1], torch.randint(2, (T, E), generator=gen), obs[1:], torch.zeros(T, E),
        torch.zeros(T, E, dtype=torch.bool), torch.ones(T, E, dtype=torch.bool),
    )  # fmt: skip
    trained = ri.make("fusion", BOX, ACTIONS, modules=specs, operator="cycle", seed=0)
    assert list(trained.members) == ["icm", "e3b", "re3"]
    for t in range(T):
        trained.observe(data.step(t))
    trained.compute(data)
    losses = trained.update(data)
    assert {"icm/inverse_loss", "icm/forward_loss", "e3b/inverse_loss"} <= set(losses)
    restored = ri.make("fusion", BOX, ACTIONS, modules=specs, operator="cycle", seed=1)
    restored.load_state_dict(trained.state_dict())
    for module in (trained, restored):
        for t in range(T):
            module.observe(data.step(t))
    # e3b is active in both, and its episodic memory (mid-episode here) travels with the state dict
    torch.testing.assert_close(restored.compute(data), trained.compute(data))


def test_bad_options_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="sum, product, max, cycle"):
        fuse("mean")
    with pytest.raises(ValueError, match="weights has 1 entries for 2 modules"):
        Fusion(BOX, ACTIONS, modules=[Fixed(A), Fixed(B)], weights=[1.0])
    with pytest.raises(ValueError, match="needs modules"):
        Fusion(BOX, ACTIONS)
