"""The trajectory recorder: rows that replay the real run, crash safety, resume.

The recorded rows are checked against a replay of the same seeded envs with the recorded actions (the keys
each env returns must be the recorded ones) on MiniGrid (Crafter and NetHack: ``-m slow``). The metrics on
real rows: ``tests/intrinsic/test_exploration_metrics_real.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rove
from rove.agents import PPO
from rove.agents.common.trajectories import (
    DONE,
    ROW_DTYPE,
    START,
    TRAJECTORY_FILE,
    TrajectoryRecorder,
    read_trajectories,
)
from rove.experiments.runs import CHECKPOINT, RunSpec, read_jsonl, train_run

SUITES = {
    "minigrid": ("Rove/MiniGrid-DoorKey-5x5-v0", {"max_steps": 12}),
    "crafter": ("Rove/CrafterReward-v1", {"max_steps": 20}),
    "nethack": ("Rove/NetHackScore-v0", {"max_steps": 20}),
}


def recorded_run(suite: str, path: Path, seed: int = 0) -> tuple[PPO, np.ndarray]:
    env_id, kwargs = SUITES[suite]
    envs = rove.make_vec(env_id, 2, seed=seed, copy=False, **kwargs)
    model = PPO("auto", envs, n_steps=16, batch_size=32, n_epochs=1, seed=seed, device="cpu", run_dir=str(path))
    model.learn(3 * 2 * 16, callback=TrajectoryRecorder())
    model.close()
    return model, read_trajectories(path)


def replay(suite: str, rows: np.ndarray, seed: int = 0) -> None:
    """Steps fresh envs of the same seed with the recorded actions; every key must be the recorded one."""
    env_id, kwargs = SUITES[suite]
    envs = rove.make_vec(env_id, 2, seed=seed, **kwargs)
    obs, _ = envs.reset(seed=seed)
    queues = {e: list(rows[rows["env"] == e]) for e in range(2)}
    pending_reset = np.zeros(2, dtype=bool)
    for e in range(2):
        assert queues[e][0]["state"] == obs["state_key"][e, 0]
        assert queues[e][0]["flags"] & START
    while any(queues.values()):
        actions = np.array([0 if pending_reset[e] or not queues[e] else int(queues[e][0]["action"]) for e in range(2)])
        obs, _, terminated, truncated, infos = envs.step(actions)
        for e in range(2):
            if infos["autoreset"][e]:
                pending_reset[e] = False
                if queues[e]:
                    assert queues[e][0]["state"] == obs["state_key"][e, 0]
                    assert queues[e][0]["flags"] & START
                continue
            if not queues[e]:
                continue
            row = queues[e].pop(0)
            assert row["next_state"] == obs["state_key"][e, 0]
            ended = bool(terminated[e] or truncated[e])
            assert bool(row["flags"] & DONE) == ended
            pending_reset[e] = ended
            if queues[e] and not ended:
                assert queues[e][0]["state"] == row["next_state"]
    envs.close()


@pytest.mark.parametrize(
    "suite",
    ["minigrid", pytest.param("crafter", marks=pytest.mark.slow), pytest.param("nethack", marks=pytest.mark.slow)],
)
def test_recorded_rows_replay_the_run(suite: str, tmp_path: Path) -> None:
    model, rows = recorded_run(suite, tmp_path)
    assert len(rows) == model.num_timesteps  # one row per transition, autoreset steps are none
    np.testing.assert_array_equal(rows["step"], np.arange(1, len(rows) + 1))
    assert (rows["flags"] & DONE).any()  # episodes ended (max_steps) within the run
    replay(suite, rows)


def test_torn_last_row_is_dropped(tmp_path: Path) -> None:
    rows = np.zeros(3, dtype=ROW_DTYPE)
    rows["step"] = [1, 2, 3]
    (tmp_path / TRAJECTORY_FILE).write_bytes(rows.tobytes() + rows[:1].tobytes()[:-5])
    np.testing.assert_array_equal(read_trajectories(tmp_path), rows)
    assert len(read_trajectories(tmp_path / "missing")) == 0


SPEC = RunSpec(
    "Rove/MiniGrid-Empty-5x5-v0",
    total_timesteps=16 * 12,
    n_envs=2,
    device="cpu",
    env_kwargs={"max_steps": 10},
    agent_kwargs={"n_steps": 8, "batch_size": 16, "n_epochs": 1},
)

# Trains SPEC and SIGKILLs itself inside the 4th PPO update: after that rollout's rows were written (at
# on_rollout_end) and before its checkpoint, the window a resume must cut back.
KILLED_TRAIN = textwrap.dedent(
    """
    import json, os, signal, sys
    from rove.agents.ppo.ppo import PPO
    from rove.agents.common.trajectories import TrajectoryRecorder
    from rove.experiments.runs import RunSpec, train_run

    update = PPO.train
    def dying_update(self):
        if self.num_updates == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        update(self)
    PPO.train = dying_update
    train_run(RunSpec.from_dict(json.loads(sys.argv[1])), sys.argv[2], run_dir=sys.argv[3],
              callbacks=[TrajectoryRecorder()])
    """
)


def test_killed_run_file_is_readable_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    train_run(SPEC, tmp_path, run_dir=tmp_path / "whole", callbacks=[TrajectoryRecorder()])
    whole = read_trajectories(tmp_path / "whole")
    assert len(whole) >= SPEC.total_timesteps  # the last rollout may overshoot the target
    np.testing.assert_array_equal(whole["step"], np.arange(1, len(whole) + 1))

    run = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_TRAIN, json.dumps(SPEC.to_dict()), str(tmp_path), str(run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    killed = read_trajectories(run)
    checkpointed = max(r["step"] for r in read_jsonl(run / "progress.jsonl"))  # the 3rd update's step
    assert (run / CHECKPOINT).exists() and len(killed) > checkpointed  # rows of the 4th rollout, not checkpointed
    np.testing.assert_array_equal(killed, whole[: len(killed)])  # what was written is the run's prefix
    with open(run / TRAJECTORY_FILE, "ab") as f:  # as if the kill had torn a row in half
        f.write(whole[-1:].tobytes()[:7])

    train_run(SPEC, tmp_path, run_dir=run, resume=True, callbacks=[TrajectoryRecorder()])
    np.testing.assert_array_equal(read_trajectories(run), whole)


def test_runs_record_by_default_and_options_are_checked() -> None:
    from rove.experiments.run_tools import RunTools, callbacks

    recorders = [cb for cb in callbacks(SPEC, RunTools()) if isinstance(cb, TrajectoryRecorder)]
    assert len(recorders) == 1 and recorders[0].key == "state_key"
    assert not [cb for cb in callbacks(SPEC, RunTools(trajectories=False)) if isinstance(cb, TrajectoryRecorder)]
    (recorder,) = [
        cb for cb in callbacks(SPEC, RunTools(trajectory_key="pose_key")) if isinstance(cb, TrajectoryRecorder)
    ]
    assert recorder.key == "pose_key"
    with pytest.raises(ValueError, match=r"unknown run tool option\(s\) \['trajectory'\].*'trajectories'"):
        RunTools.from_dict({"trajectory": False})
    with pytest.raises(ValueError, match="trajectories must be true or false, got 'no'"):
        RunTools(trajectories="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trajectory_key must be an observation key name"):
        RunTools(trajectory_key="")
