"""The README's custom-module example: registers, builds through ``make``, rewards each new caption once."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove.intrinsic as ri
from rove.envs.core import caption_space, encode_caption
from rove.experiments.plugins import import_plugin

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "custom_intrinsic.py"
SPACE = spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8), "caption": caption_space()})


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return import_plugin(str(SCRIPT))


def caption_rollout(texts: list[list[str]], valid: list[list[bool]]) -> ri.Rollout:
    """``texts[t][e]``: the caption of ``next_obs`` at step t in env e."""
    num_steps, num_envs = len(texts), len(texts[0])
    captions = torch.as_tensor(np.array([[encode_caption(c) for c in row] for row in texts]))
    obs = {"image": torch.zeros(num_steps, num_envs, 7, 7, 3, dtype=torch.uint8), "caption": captions}
    return ri.Rollout(
        obs,
        torch.zeros(num_steps, num_envs, dtype=torch.long),
        obs,
        torch.zeros(num_steps, num_envs),
        torch.zeros(num_steps, num_envs, dtype=torch.bool),
        torch.tensor(valid),
    )


def test_example_module_is_short(example: ModuleType) -> None:
    lines = SCRIPT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("@ri.register"))
    end = next(i for i, line in enumerate(lines) if line.startswith("def main"))
    assert len([line for line in lines[start:end] if line.strip()]) < 30


def test_new_captions_earn_one_exactly_once(example: ModuleType) -> None:
    module = ri.make("new_caption", SPACE, spaces.Discrete(7))
    assert isinstance(module, example.NewCaptionBonus)
    rollout = caption_rollout(
        [["You open the door.", ""], ["You open the door.", "You see a key."], ["A wall.", "A wall."]],
        [[True, True], [True, True], [False, True]],
    )
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # repeats, empty and autoreset steps earn 0
    torch.testing.assert_close(module.compute(rollout), expected)
    assert module.compute(rollout).sum() == 0  # nothing is new the second time


def test_memory_travels_with_the_state_dict(example: ModuleType) -> None:
    first = ri.make("new_caption", SPACE, spaces.Discrete(7))
    first.compute(caption_rollout([["Hello."]], [[True]]))
    second = ri.make("new_caption", SPACE, spaces.Discrete(7))
    second.load_state_dict(first.state_dict())
    assert second.compute(caption_rollout([["Hello."], ["Bye."]], [[True], [True]])).flatten().tolist() == [0.0, 1.0]


def test_script_runs_on_minigrid_and_rewards_each_distinct_caption(example: ModuleType) -> None:
    result = example.main(["--steps", "64", "--num-envs", "4"])
    assert result["distinct_captions"] > 0
    assert result["reward_sum"] == result["distinct_captions"]
