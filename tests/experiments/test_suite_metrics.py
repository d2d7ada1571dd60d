"""Live suite metrics in TensorBoard (NetHack score and depth, Crafter score and achievements, MiniGrid success)
and on the progress bar, from real short runs; expected values recomputed from episodes.jsonl."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rove.agents.common.suite_metrics import progress_postfix
from rove.cli import main
from rove.experiments.crafter_score import ACHIEVEMENTS
from rove.experiments.runs import read_jsonl

TINY = ["--steps", "128", "--n-envs", "2", "--n-steps", "32", "--batch-size", "64", "--device", "cpu", "--no-progress"]


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _train(tmp_path: Path, env: str, max_steps: int) -> Path:
    assert main(["train", env, "--env-kwargs", f"max_steps={max_steps}", "--out", str(tmp_path), *TINY]) == 0
    (run,) = tmp_path.iterdir()
    return run


def _window(run: Path) -> list[dict]:
    """The episodes the agent's buffer held at the last update (the last 100 finished)."""
    return read_jsonl(run / "episodes.jsonl")[-100:]


def test_crafter_score_and_achievements_are_live(tmp_path: Path) -> None:
    run = _train(tmp_path, "CrafterReward-v1", 50)  # Crafter's world generation makes resets the cost
    scalars = _scalars(run)
    episodes = _window(run)
    assert episodes
    rates = {a: 100.0 * np.mean([e["achievements"][a] >= 1 for e in episodes]) for a in ACHIEVEMENTS}
    expected = math.exp(np.mean([math.log(1 + r) for r in rates.values()])) - 1
    last_update = read_jsonl(run / "progress.jsonl")[-1]["step"]  # transitions: the first update past 128
    assert last_update >= 128
    assert scalars["rollout/crafter_score"][-1] == (last_update, pytest.approx(expected, rel=1e-5))
    for name in ACHIEVEMENTS:
        assert scalars[f"rollout/achievements/{name}"][-1][1] == pytest.approx(rates[name], rel=1e-5)


def test_nethack_score_and_depth_are_live(tmp_path: Path) -> None:
    run = _train(tmp_path, "NetHackScore-v0", 16)
    scalars = _scalars(run)
    episodes = _window(run)
    assert episodes
    assert scalars["rollout/score_mean"][-1][1] == pytest.approx(np.mean([e["score"] for e in episodes]))
    assert scalars["rollout/depth_mean"][-1][1] == pytest.approx(np.mean([e["depth"] for e in episodes]))
    assert scalars["rollout/depth_max"][-1][1] == max(e["depth"] for e in episodes)


def test_progress_bar_shows_return_and_success() -> None:
    episodes = [{"return": 1.0, "success": True}, {"return": 0.0, "success": False}]
    assert progress_postfix(episodes) == "return 0.5 | success 0.50"
    assert progress_postfix([{"return": 2.0, "score": 40}]) == "return 2 | score 40"
    assert progress_postfix([]) == ""
