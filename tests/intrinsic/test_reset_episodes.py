"""``reset_episodes()``: every module with episodic memory forgets it and keeps its lifelong state.

After ``reset_episodes()`` a used module must give the same bonuses as a freshly built one holding the same
lifelong state (networks, normalisers, lifelong counts), on real MiniGrid, Crafter and NetHack rollouts.
"""

from __future__ import annotations

import copy

import pytest
import torch

import rove.intrinsic as ri
from rove.intrinsic.e3b import E3B
from rove.intrinsic.ride import RIDE

EPISODIC = {
    "count-episodic": ("count", {"mode": "episodic"}),
    "count-both": ("count", {"mode": "both"}),
    "simhash-episodic": ("simhash", {"mode": "episodic"}),
    "noveld": ("noveld", {}),
    "e3b": ("e3b", {}),
    "ride": ("ride", {}),
    "ngu": ("ngu", {}),
    "fusion": ("fusion", {"modules": [("count", {"mode": "episodic"}), "e3b"]}),
}


def lifelong_state(module: ri.IntrinsicModule) -> dict[str, torch.Tensor]:
    """``state_dict`` without the extra state of E3B and RIDE, which holds their episodic memory only."""
    episodic = {f"{name}._extra_state" if name else "_extra_state" for name, m in module.named_modules()
                if isinstance(m, (E3B, RIDE))}  # fmt: skip
    return {k: v for k, v in module.state_dict().items() if k not in episodic}


def run(module: ri.IntrinsicModule, rollout: ri.Rollout, train: bool = True) -> torch.Tensor:
    """What an agent does with a rollout: observe each step, compute, update."""
    for t in range(rollout.num_steps):
        module.observe(rollout.step(t))
    reward = module.compute(rollout)
    if train:
        module.update(rollout)
    return reward


@pytest.mark.parametrize("spec", list(EPISODIC), ids=list(EPISODIC))
def test_reset_episodes_gives_a_fresh_modules_bonuses(spec, real_batch):
    name, kwargs = EPISODIC[spec]
    space, actions = real_batch.observation_space, real_batch.action_space
    first, second = real_batch.rollouts

    def build() -> ri.IntrinsicModule:
        return ri.make(name, space, actions, seed=0, **kwargs)

    used = build()
    run(used, first)
    carried_on = copy.deepcopy(used)  # what the module did before it had the hook: keep the old episodes
    used.reset_episodes()
    fresh = build()
    fresh.load_state_dict(lifelong_state(used), strict=False)

    expected = run(fresh, second, train=False)
    torch.testing.assert_close(run(used, second, train=False), expected)
    assert not torch.allclose(run(carried_on, second, train=False), expected)  # the memory mattered
