"""rove.experiments.milestones: steps to 50 % success per run, and the table ``rove report`` prints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rove.experiments.milestones import milestones, steps_to_success
from rove.experiments.report import group_runs, write_report
from rove.experiments.runs import RunSpec, find_runs


def episodes_of(successes: list[int], every: int = 100) -> list[dict]:
    return [
        {"step": every * (i + 1), "return": float(s), "length": 10, "success": bool(s)} for i, s in enumerate(successes)
    ]


def brute_force(successes: list[int], threshold: float, window: int, every: int = 100) -> int | None:
    for end in range(window, len(successes) + 1):
        if sum(successes[end - window : end]) / window >= threshold:
            return every * end
    return None


def test_first_full_window_at_the_threshold() -> None:
    # windows of 4: [0,0,0,1] = 0.25, then [0,0,1,1] = 0.5 at the 5th episode
    assert steps_to_success(episodes_of([0, 0, 0, 1, 1, 0, 0]), 0.5, 4) == 500
    # a lucky start does not count before the window is full, and a window never at 50 % is no milestone
    assert steps_to_success(episodes_of([1, 1, 0]), 0.5, 4) is None
    assert steps_to_success(episodes_of([1, 0, 0, 0, 1, 0, 0, 0]), 0.5, 4) is None
    # episodes without a success field (another suite) are not counted
    mixed = [{"step": 1, "return": 0.0}, *episodes_of([1, 1])]
    assert steps_to_success(mixed, 0.5, 2) == 200


@pytest.mark.parametrize("seed", range(5))
def test_matches_a_brute_force_rolling_mean(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.linspace(0.0, 0.8, 600)  # a learning curve: success grows with training
    successes = [int(x) for x in rng.random(600) < p]
    for window, threshold in ((100, 0.5), (20, 0.5), (50, 0.3)):
        assert steps_to_success(episodes_of(successes), threshold, window) == brute_force(successes, threshold, window)


def test_bad_window_or_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="window must be >= 1"):
        steps_to_success([], 0.5, 0)
    with pytest.raises(ValueError, match="threshold in"):
        steps_to_success([], 1.5, 10)


def write_run(root: Path, method: str, seed: int, successes: list[int], total: int) -> None:
    spec = RunSpec("MiniGrid-DoorKey-5x5-v0", seed=seed, total_timesteps=total, label=method)
    folder = root / f"{spec.prefix}20260101-000000"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(spec.to_dict()))
    (folder / "config.json").write_text(json.dumps({"env_id": "Rove/MiniGrid-DoorKey-5x5-v0"}))
    lines = [json.dumps(e) for e in episodes_of(successes, every=total // max(len(successes), 1))]
    (folder / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "result.json").write_text(json.dumps({"total_timesteps": total}))


def test_report_prints_steps_to_half_success_with_censored_runs(tmp_path: Path) -> None:
    learns = [0] * 150 + [1] * 150  # 50 % over the last 100 episodes at the 200th: step 200 * 1000
    for seed, shift in enumerate((0, 20, 40)):
        write_run(tmp_path, "solver", seed, [0] * shift + learns[: 300 - shift], 300_000)
    write_run(tmp_path, "mixed", 0, learns, 300_000)
    write_run(tmp_path, "mixed", 1, [0] * 300, 300_000)
    groups, episodes = group_runs(find_runs(tmp_path))
    rows = {m.method: m for m in milestones(groups, episodes)}
    assert rows["solver"].steps == [200_000, 220_000, 240_000] and rows["solver"].reached == 3
    assert rows["mixed"].steps == [200_000, None] and rows["mixed"].summary() is None
    table = write_report(tmp_path)["markdown"].read_text()
    assert "## Steps to 50 % success" in table
    assert "| MiniGrid-DoorKey-5x5-v0 | mixed | 1 / 2 |  | 200k, >300k |" in table
    solver = next(line for line in table.splitlines() if "| solver | 3 / 3 |" in line)
    assert "| 220k [" in solver and "200k, 220k, 240k" in solver
    # a report budget caps what a run had: the same runs within 210k steps
    capped = write_report(tmp_path, tmp_path / "capped", budget=210_000)["markdown"].read_text()
    assert "| solver | 1 / 3 |  | 200k, >210k, >210k |" in capped


def test_no_table_without_success(tmp_path: Path) -> None:
    spec = RunSpec("CrafterReward-v1", total_timesteps=100)
    folder = tmp_path / f"{spec.prefix}20260101-000000"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(spec.to_dict()))
    (folder / "config.json").write_text(json.dumps({"env_id": "Rove/CrafterReward-v1"}))
    (folder / "episodes.jsonl").write_text(json.dumps({"step": 50, "return": 1.0, "length": 50}) + "\n")
    (folder / "result.json").write_text(json.dumps({"total_timesteps": 100}))
    assert "Steps to 50 % success" not in write_report(tmp_path)["markdown"].read_text()
