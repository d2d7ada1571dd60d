"""Periodic evaluation (SB3 EvalCallback semantics) and W&B tracking, checked on real runs: W&B in offline
mode, its run file read back record by record."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rove.agents import PPO
from rove.agents.common.evaluation import evaluate_policy
from rove.agents.common.trajectories import TRAJECTORY_FILE, read_meta, read_trajectories
from rove.cli import main
from rove.experiments.run_tools import make_eval_env
from rove.experiments.runs import read_jsonl

TINY = ["--n-envs", "2", "--n-steps", "32", "--batch-size", "64", "--device", "cpu", "--no-progress"]
ENV = "MiniGrid-Empty-5x5-v0"


def wandb_history(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The history rows and config of an offline W&B run file (``run-<id>.wandb``: a ``:W&B`` header, then
    LevelDB-log records of 32 KiB blocks, each a ``wandb_internal_pb2.Record``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    history, config = [], {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        parts = chunk if kind in (1, 2) else parts + chunk  # FULL/FIRST start a record, MIDDLE/LAST continue
        if kind not in (1, 4):
            continue
        record = pb.Record()
        record.ParseFromString(parts)
        if record.WhichOneof("record_type") == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif record.WhichOneof("record_type") == "run":
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            config["_run"] = {
                "project": record.run.project,
                "entity": record.run.entity,
                "name": record.run.display_name,
            }
    return history, config


def test_eval_and_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    base = ["train", ENV, "--steps", "256", *TINY]
    assert main([*base, "--out", str(tmp_path / "plain"), "--no-trajectories"]) == 0
    tracked = [*base, "--out", str(tmp_path / "tracked"), "--eval-freq", "128", "--eval-episodes", "2"]
    tracked += ["--trajectory-key", "pose_key"]
    assert (
        main(
            [
                *tracked,
                "--track",
                "--wandb-mode",
                "offline",
                "--wandb-project",
                "p",
                "--wandb-entity",
                "lab",
                "--wandb-name",
                "n",
            ]
        )
        == 0
    )
    (plain,) = (tmp_path / "plain").iterdir()
    (run,) = (tmp_path / "tracked").iterdir()

    # Trajectories: off on request, else of the key asked for; one row per transition.
    assert not (plain / TRAJECTORY_FILE).exists()
    assert read_meta(run)["key"] == "pose_key"
    assert len(read_trajectories(run)) == json.loads((run / "result.json").read_text())["total_timesteps"]

    # A separate eval env: training is exactly the run without evaluation or recording (same episodes, losses).
    assert read_jsonl(plain / "episodes.jsonl") == read_jsonl(run / "episodes.jsonl")
    strip = ("time", "sps", "time/sps")
    assert [{k: v for k, v in p.items() if k not in strip} for p in read_jsonl(plain / "progress.jsonl")] == [
        {k: v for k, v in p.items() if k not in strip} for p in read_jsonl(run / "progress.jsonl")
    ]

    # Every 128 steps, 2 episodes, after the first update at or past each multiple of 128 (steps count
    # transitions: autoreset rows are not counted, so updates need not end on multiples of 64); SB3's
    # evaluations.npz layout beside the JSON lines.
    updates = [p["step"] for p in read_jsonl(run / "progress.jsonl")]
    crossing = [min(s for s in updates if s >= k * 128) for k in range(1, updates[-1] // 128 + 1)]
    assert len(crossing) == 2  # the run reaches its 256 steps
    evals = read_jsonl(run / "evaluations.jsonl")
    assert [e["step"] for e in evals] == crossing
    npz = np.load(run / "evaluations.npz")
    assert npz["timesteps"].tolist() == crossing and npz["results"].shape == npz["ep_lengths"].shape == (2, 2)
    assert npz["results"].tolist() == [e["returns"] for e in evals]
    assert (run / "checkpoints" / "best.pt").is_file()

    # W&B (offline): the run file holds the training and evaluation metrics at their env steps, and the config.
    (wandb_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    history, config = wandb_history(wandb_file)
    by_step = {row["_step"]: row for row in history}
    assert set(by_step) == set(updates)
    for step, row in by_step.items():
        assert {"train/loss", "train/entropy", "time/total_timesteps"} <= set(row)
        assert row["time/total_timesteps"] == step
    for e in evals:
        assert by_step[e["step"]]["eval/mean_return"] == pytest.approx(e["mean_return"])
        assert by_step[e["step"]]["eval/success_rate"] == pytest.approx(e["success_rate"])
    assert config["env_id"] == f"Rove/{ENV}" and config["spec"]["total_timesteps"] == 256
    assert config["_run"] == {"project": "p", "entity": "lab", "name": "n"}
    assert (run / "wandb_id").read_text().strip() == wandb_file.stem.removeprefix("run-")


def test_deterministic_evaluation_repeats_itself() -> None:
    """Empty-5x5 always starts the same: greedy actions replay one episode, sampled ones wander."""
    torch.manual_seed(0)
    model = PPO("auto", f"Rove/{ENV}", n_envs=1, n_steps=16, seed=0, device="cpu")
    env = make_eval_env(f"Rove/{ENV}", {})
    greedy = evaluate_policy(model, env, 4, deterministic=True, seed=0)
    assert len(set(greedy["lengths"])) == 1 and len(set(greedy["returns"])) == 1
    sampled = evaluate_policy(model, env, 4, deterministic=False, seed=0)
    assert len(set(sampled["lengths"])) > 1
    env.close()


def test_bad_tool_options_fail_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", ENV, "--eval-freq", "-1"]) == 2
    assert "eval_freq must be >= 0" in capsys.readouterr().err
