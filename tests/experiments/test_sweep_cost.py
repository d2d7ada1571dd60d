"""experiments/sweep_cost.py: a config's steps per CPU second per method, and the budget that fits."""

import json
from pathlib import Path

import pytest

from rove.experiments.plugins import import_plugin

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

CONFIG = """
name = "cost"
envs = ["MiniGrid-Empty-5x5-v0"]
methods = ["none", "count"]
seeds = 3
total_timesteps = 1000
n_envs = 2
device = "cpu"

[agent]
n_steps = 16
batch_size = 32
n_epochs = 1
"""


def _load():
    return import_plugin(str(EXPERIMENTS / "sweep_cost.py"))


def test_cost_of_a_tiny_sweep(tmp_path: Path) -> None:
    config = tmp_path / "cost.toml"
    config.write_text(CONFIG)
    out = tmp_path / "cost.json"
    argv = ["--config", str(config), "--steps", "64", "--hours", "1", "--cores", "2", "--out", str(out)]
    result = _load().main(argv)
    rows, summary = result["rows"], result["summary"]
    assert [r["method"] for r in rows] == ["none", "count"] and all(r["steps"] >= 64 for r in rows)
    assert all(r["steps_per_cpu_s"] == pytest.approx(r["steps"] / r["cpu_s"]) for r in rows)
    per_step = sum(3 / r["steps_per_cpu_s"] for r in rows)  # 3 seeds of each method
    assert summary["runs"] == 6 and summary["cpu_s_per_budget_step"] == pytest.approx(per_step)
    assert summary["largest_budget"] == int(3600 * 2 / per_step)
    assert json.loads(out.read_text())["summary"] == summary


def test_unknown_method_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "cost.toml"
    config.write_text(CONFIG)
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['rnd'\]"):
        _load().main(["--config", str(config), "--methods", "none,rnd", "--out", str(tmp_path / "x.json")])
