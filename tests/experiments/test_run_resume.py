"""A run killed mid-way resumes in its own folder (sweeps and ``rove train --resume``); env_kwargs reach the envs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rove.experiments.runs import CHECKPOINT, RESULT_FILE, RunSpec, read_jsonl, resumable_run, train_run

SPEC = RunSpec(
    "Rove/MiniGrid-Empty-5x5-v0",
    intrinsic=("count",),
    total_timesteps=2048,
    n_envs=2,
    device="cpu",
    agent_kwargs={"n_steps": 32, "batch_size": 64, "n_epochs": 1},
)
UPDATE = 2 * 32

# Trains SPEC with every update slowed down, so that the test can kill it between two checkpoints.
SLOW_TRAIN = textwrap.dedent(
    """
    import json, sys, time
    from rove.agents.ppo.ppo import PPO
    from rove.experiments.runs import RunSpec, train_run

    update = PPO.train
    def slow_update(self):
        time.sleep(0.3)
        update(self)
    PPO.train = slow_update
    train_run(RunSpec.from_dict(json.loads(sys.argv[1])), sys.argv[2])
    """
)


def _kill_after_checkpoints(root: Path, updates: int, timeout: float = 120.0) -> Path:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_TRAIN, json.dumps(SPEC.to_dict()), str(root)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            folders = list(root.glob(f"{SPEC.prefix}*"))
            if (
                folders
                and (folders[0] / CHECKPOINT).exists()
                and len(read_jsonl(folders[0] / "progress.jsonl")) >= updates
            ):
                proc.kill()
                proc.wait()
                return folders[0]
            if proc.poll() is not None:
                raise AssertionError(
                    f"training exited before it was killed:\n{proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(0.1)
        raise AssertionError(f"no checkpoint after {timeout} s")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_killed_run_resumes_in_its_folder_up_to_the_total(tmp_path: Path) -> None:
    run = _kill_after_checkpoints(tmp_path, updates=3)
    assert not (run / RESULT_FILE).exists()
    assert resumable_run(tmp_path, SPEC) == run
    steps_at_kill = [r["step"] for r in read_jsonl(run / "progress.jsonl")]
    episodes_at_kill = len(read_jsonl(run / "episodes.jsonl"))

    lines: list[str] = []
    result = train_run(SPEC, tmp_path, resume=True, log=lines.append)
    (line,) = lines
    match = re.fullmatch(rf"resuming {re.escape(str(run))} from step (\d+) of {SPEC.total_timesteps}", line)
    assert match is not None, line
    # The checkpoint is written after the update's log line: the kill may fall between the two.
    checkpoint_step = int(match.group(1))
    assert checkpoint_step in steps_at_kill[-2:]

    assert Path(result["run_dir"]) == run  # no new folder
    assert [p.name for p in tmp_path.iterdir()] == [run.name]
    assert result["resumed"] is True
    # Transitions are counted (autoreset rows are not), so the run stops at the first update past the total.
    assert SPEC.total_timesteps <= result["total_timesteps"] < SPEC.total_timesteps + UPDATE
    steps = [r["step"] for r in read_jsonl(run / "progress.jsonl")]
    # The log goes on from the checkpoint: at most the update after the last checkpoint is repeated.
    assert steps[: len(steps_at_kill)] == steps_at_kill
    resumed = steps[len(steps_at_kill) :]
    assert resumed == sorted(resumed) and resumed[-1] == result["total_timesteps"]
    assert steps[-2] < SPEC.total_timesteps  # ... and not an update later
    if checkpoint_step == steps_at_kill[-1]:  # the next update (an update has at most UPDATE transitions)
        assert checkpoint_step < resumed[0] <= checkpoint_step + UPDATE
    else:  # the update logged after the checkpoint, repeated exactly (same transitions)
        assert resumed[0] == steps_at_kill[-1]
    assert len(read_jsonl(run / "episodes.jsonl")) > episodes_at_kill
    # A finished run is not resumed again.
    assert resumable_run(tmp_path, SPEC) is None


def test_resume_needs_the_same_spec_and_a_checkpoint(tmp_path: Path) -> None:
    run = _kill_after_checkpoints(tmp_path, updates=1)
    other_seed = RunSpec.from_dict({**SPEC.to_dict(), "seed": 1})
    other_steps = RunSpec.from_dict({**SPEC.to_dict(), "total_timesteps": 4096})
    assert resumable_run(tmp_path, other_seed) is None
    assert resumable_run(tmp_path, other_steps) is None  # same folder prefix, different spec
    (run / CHECKPOINT).unlink()
    assert resumable_run(tmp_path, SPEC) is None


def test_env_kwargs_reach_every_env(tmp_path: Path) -> None:
    spec = RunSpec.from_dict(
        {**SPEC.to_dict(), "intrinsic": [], "total_timesteps": 256, "env_kwargs": {"max_steps": 7}}
    )
    result = train_run(spec, tmp_path)
    lengths = [e["length"] for e in read_jsonl(Path(result["run_dir"]) / "episodes.jsonl")]
    assert lengths and max(lengths) <= 7
    with pytest.raises(TypeError, match="max_stepz"):
        train_run(RunSpec.from_dict({**spec.to_dict(), "env_kwargs": {"max_stepz": 7}}), tmp_path)


def test_train_run_checks_options_and_folders_before_training(tmp_path: Path) -> None:
    bad = RunSpec.from_dict({**SPEC.to_dict(), "agent_kwargs": {"n_step": 32}})
    with pytest.raises(ValueError, match="unknown option 'n_step'; did you mean 'n_steps'"):
        train_run(bad, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    spec = RunSpec.from_dict({**SPEC.to_dict(), "total_timesteps": 128})
    run = Path(train_run(spec, tmp_path)["run_dir"])
    result = (run / RESULT_FILE).read_text()
    with pytest.raises(ValueError, match="already holds a run"):
        train_run(spec, tmp_path, run_dir=run)
    with pytest.raises(ValueError, match="is a finished run"):
        train_run(spec, tmp_path, run_dir=run, resume=True)
    assert (run / RESULT_FILE).read_text() == result
    (run / RESULT_FILE).unlink()  # as if killed after its last checkpoint
    other = RunSpec.from_dict({**spec.to_dict(), "seed": 1})
    with pytest.raises(ValueError, match=r"holds a different run; its run.json differs in seed: 0 -> 1"):
        train_run(other, tmp_path, run_dir=run, resume=True)
