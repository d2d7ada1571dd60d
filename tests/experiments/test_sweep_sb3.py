"""A sweep method's ``agent = "sb3"``: Stable-Baselines3's PPO beside Rove's, same options, same run folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from stable_baselines3 import PPO as SB3PPO

from rove.agents import PPO
from rove.agents.common.trajectories import TRAJECTORY_FILE
from rove.experiments import sb3_runs
from rove.experiments.report import write_report
from rove.experiments.runs import RESULT_FILE, RunSpec, load_run, read_jsonl, train_run
from rove.experiments.sweep import _local_worker, parse_config

BOTH = {
    "name": "both",
    "envs": ["MiniGrid-Empty-5x5-v0"],
    "methods": ["none", {"label": "sb3", "agent": "sb3"}],
    "seeds": 1,
    "total_timesteps": 256,
    "n_envs": 2,
    "device": "cpu",
    "agent": {
        "n_steps": 32,
        "batch_size": 32,
        "n_epochs": 1,
        "policy_kwargs": {"net_arch": {"pi": [16], "vf": [16]}, "activation_fn": "tanh"},
    },
}


def test_one_sweep_trains_rove_and_sb3_alike_and_reports_both(tmp_path: Path) -> None:
    config = parse_config(BOTH)
    specs = config.specs()
    assert [s.agent for s in specs] == ["ppo", "sb3"]
    for spec in specs:  # what a sweep worker runs, with the sweep's run tools, in this process
        result = _local_worker(spec.to_dict(), str(tmp_path), 1, config.tools)
        assert "error" not in result, result.get("error")
    runs = {load_run(p).method: load_run(p) for p in tmp_path.iterdir() if p.is_dir()}
    assert sorted(runs) == ["none", "sb3"]
    # trajectories are recorded by default for Rove's agent; Rove callbacks do not plug into SB3's loop
    assert (runs["none"].path / TRAJECTORY_FILE).stat().st_size > 0
    assert not (runs["sb3"].path / TRAJECTORY_FILE).exists()
    results = {m: json.loads((r.path / RESULT_FILE).read_text()) for m, r in runs.items()}
    # Budgets count env transitions on both sides. SB3 autoresets inside step, so its 4 rollouts of 2 x 32
    # are 256 transitions; Rove's autoreset rows are no transitions, so it finishes the rollout that crosses
    # the budget (less than one rollout more). `rove report --budget 256` compares both on the same steps.
    assert results["sb3"]["total_timesteps"] == 256
    assert 256 <= results["none"]["total_timesteps"] < 256 + 64
    sb3 = runs["sb3"]
    assert (sb3.path / sb3_runs.CHECKPOINT).stat().st_size > 0 and sb3.config["algorithm"] == "stable_baselines3.PPO"
    episodes = sb3.episodes()
    assert episodes and all({"step", "env", "return", "length", "success"} <= set(e) for e in episodes)
    assert [e["step"] for e in episodes] == sorted(e["step"] for e in episodes) and episodes[-1]["step"] <= 256
    # Empty-5x5 pays 1 - 0.9 * length / max_steps on success, 0 otherwise: SB3's return is the env's
    assert all((e["return"] > 0) == bool(e["success"]) for e in episodes)
    progress = sb3.progress()
    assert [p["step"] for p in progress] == [64, 128, 192, 256] and "train/value_loss" in progress[-1]
    # the same network on both sides, read back from the checkpoints (Rove's extra V_int head: 16 + 1 parameters)
    rove_model = PPO.load(runs["none"].path / "checkpoints" / "last.pt", device="cpu")
    sb3_model = SB3PPO.load(sb3.path / sb3_runs.CHECKPOINT, device="cpu")
    count = lambda model: sum(p.numel() for p in model.policy.parameters())  # noqa: E731
    assert count(rove_model) == count(sb3_model) + 17
    assert isinstance(sb3_model.policy.mlp_extractor.policy_net[1], torch.nn.Tanh)
    report = write_report(tmp_path, budget=256)
    assert {g.method for g in report["groups"]} == {"none", "sb3"}
    assert all(m["episodes"] and m["episodes"] > 0 for g in report["groups"] for m in g.run_metrics)
    table = report["markdown"].read_text()
    assert "| Rove/MiniGrid-Empty-5x5-v0 | sb3 | 1 |" in table and "| Rove/MiniGrid-Empty-5x5-v0 | none | 1 |" in table


def test_a_killed_sb3_run_resumes_from_its_last_update(tmp_path: Path) -> None:
    spec = RunSpec("MiniGrid-Empty-5x5-v0", seed=1, total_timesteps=192, n_envs=2, agent="sb3", device="cpu")
    spec = dataclasses.replace(spec, agent_kwargs={"n_steps": 32, "batch_size": 32, "n_epochs": 1})
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(spec.to_dict()))
    model = sb3_runs.build_agent(spec, folder)
    sb3_runs.learn(model, dataclasses.replace(spec, total_timesteps=128), folder, resuming=False)  # then "killed"
    with (folder / "episodes.jsonl").open("a") as f:  # logged after the checkpoint, before the kill
        f.write(json.dumps({"step": 160, "env": 0, "return": 9.0, "length": 1}) + "\n")
    result = train_run(spec, tmp_path, run_dir=folder, resume=True)
    assert result["resumed"] and result["total_timesteps"] == 192
    steps = [e["step"] for e in read_jsonl(folder / "episodes.jsonl")]
    assert steps == sorted(steps) and all(e["return"] != 9.0 for e in read_jsonl(folder / "episodes.jsonl"))
    assert [p["step"] for p in read_jsonl(folder / "progress.jsonl")] == [64, 128, 192]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": [{"label": "x", "agent": "sb2"}]}, r"unknown agent 'sb2'.*valid: ppo, sb3"),
        ({"methods": [{"agent": "sb3", "intrinsic": "rnd"}]}, "agent 'sb3' runs plain PPO"),
        ({"methods": [{"agent": "sb3"}], "agent": {"int_coef": 0.1}}, r"agent options \(sb3\).*'int_coef'"),
        ({"methods": [{"agent": "sb3"}], "agent": {"policy_kwargs": {"activation_fn": "swish"}}}, "'swish'"),
        ({"methods": [{"agent": "sb3"}], "env_kwargs": {"mode": "subprocess"}}, "rove.make_vec option"),
        ({"methods": [{"agent": "sb3"}], "eval": {"freq": 100}}, "takes no \\[eval\\] or \\[track\\]"),
        ({"methods": ["none", {"agent": "sb3"}, {"label": "sb3", "agent": "sb3"}]}, "labels must be unique"),
    ],
)
def test_bad_sb3_methods_are_refused_before_any_run(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_config({**BOTH, **change})


def test_sb3_run_specs_keep_ppo_specs_unchanged() -> None:
    """Finished Rove runs are matched by their saved spec: adding the SB3 agent must not change a PPO spec."""
    spec = parse_config({**BOTH, "methods": ["none"]}).specs()[0]
    assert spec.to_dict()["agent"] == "ppo" and spec.method == "none" and spec.checkpoint.name == "last.pt"
    sb3 = parse_config({**BOTH, "methods": [{"agent": "sb3"}]}).specs()[0]
    assert sb3.method == "sb3" and sb3.label is None and sb3.checkpoint.name == "last.zip"


def test_a_methods_agent_kwargs_override_the_agent_table_for_that_method_only() -> None:
    methods = ["none", {"label": "vf1", "agent_kwargs": {"vf_coef": 1.0, "n_epochs": 2}}]
    by_label = {s.method: s.agent_kwargs for s in parse_config({**BOTH, "methods": methods}).specs()}
    assert by_label["vf1"]["vf_coef"] == 1.0 and by_label["vf1"]["n_epochs"] == 2 and by_label["vf1"]["n_steps"] == 32
    assert "vf_coef" not in by_label["none"] and by_label["none"]["n_epochs"] == 1
    with pytest.raises(ValueError, match="agent_kwargs must be a table"):
        parse_config({**BOTH, "methods": [{"label": "x", "agent_kwargs": 3}]})
    with pytest.raises(ValueError, match="vf_coeff"):
        parse_config({**BOTH, "methods": [{"label": "x", "agent_kwargs": {"vf_coeff": 1.0}}]})
