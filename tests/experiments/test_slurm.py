"""The SLURM launcher of `rove sweep`: real runs through submitit's local executor, and the sbatch script it
would submit on a cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rove.cli import main
from rove.experiments.runs import RunSpec, read_jsonl
from rove.experiments.slurm import SlurmOptions, TrainJob

CONFIG = """
name = "tiny"
envs = ["Rove/MiniGrid-Empty-5x5-v0"]
methods = ["job_bonus"]
seeds = 1
total_timesteps = 64
n_envs = 2
device = "cpu"
[agent]
n_steps = 32
batch_size = 64
n_epochs = 1
[eval]
freq = 64
episodes = 1
"""


PLUGIN = """
import rove.intrinsic as ri


@ri.register("job_bonus")
class JobBonus(ri.IntrinsicModule):
    def _compute(self, rollout):
        return 0.01 * rollout.valid.float().to(self.device)
"""


def test_a_sweep_through_submitits_local_executor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rove.experiments import plugins
    from rove.intrinsic import registry

    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.setattr(plugins, "_IMPORTED", {})
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    (tmp_path / "job_bonus.py").write_text(PLUGIN)  # a plugin outside the package: each job must import it
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    argv = ["sweep", str(config), "--launcher", "slurm", "--slurm-cluster", "local", "--out", str(out), "--no-progress"]
    argv += ["--import", str(tmp_path / "job_bonus.py")]
    assert main(argv) == 0
    runs = sorted(p for p in out.iterdir() if p.name.startswith("MiniGrid"))
    assert [p.name.split("__")[2] for p in runs] == ["0"]
    for run in runs:
        result = json.loads((run / "result.json").read_text())
        assert result["total_timesteps"] == 64
        assert [e["step"] for e in read_jsonl(run / "evaluations.jsonl")] == [64]  # [eval] reached the job
        assert read_jsonl(run / "progress.jsonl")[-1]["intrinsic/job_bonus/reward_mean"] > 0  # and the plugin
    logs = list((out / "slurm").glob("*_log.out"))
    assert len(logs) == 1  # one job per run, with its log in the sweep's folder
    capsys.readouterr()
    assert main(argv) == 0  # finished runs are not submitted again
    assert "0 runs finished, 0 failed, 1 skipped" in capsys.readouterr().out
    assert len(list((out / "slurm").glob("*_log.out"))) == 1


def test_a_timed_out_job_requeues_itself_as_the_same_run() -> None:
    spec = RunSpec("Rove/MiniGrid-Empty-5x5-v0", total_timesteps=64, n_envs=2)
    job = TrainJob(spec.to_dict(), "/shared/runs", 2)
    again = job.checkpoint()  # what submitit calls on a timeout or preemption
    assert isinstance(again.function, TrainJob) and again.function.spec == spec.to_dict()
    assert again.function.root == "/shared/runs" and again.function.threads == 2


def test_the_sbatch_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # submitit's SLURM executor refuses to start without `srun` on PATH; a stub lets it write the script here.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    options = SlurmOptions(partition="gpu", time_min=90, gpus_per_node=1, mem_gb=16, parallelism=4, account="lab")
    executor = options.executor(tmp_path / "sweep", threads=3)
    assert executor.cluster == "slurm"
    text = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=3",
        "#SBATCH --mem=16GB",
        "#SBATCH --account=lab",
        "#SBATCH --job-name=rove-sweep",
    ):
        assert line in text, f"{line!r} not in the sbatch script:\n{text}"
    assert executor._executor.parameters["array_parallelism"] == 4


def test_bad_slurm_options_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    assert main(["sweep", str(config), "--launcher", "slurm", "--slurm-time", "0"]) == 2
    assert "time_min must be >= 1, got 0" in capsys.readouterr().err


def test_eval_and_track_tables_of_a_sweep_config() -> None:
    from rove.experiments.sweep import parse_config

    base = {"envs": ["Rove/MiniGrid-Empty-5x5-v0"], "methods": ["none"], "seeds": 1, "total_timesteps": 64}
    config = parse_config({**base, "name": "s", "eval": {"freq": 100, "episodes": 3}, "track": {"mode": "offline"}})
    assert config.tools["eval_freq"] == 100 and config.tools["eval_episodes"] == 3
    assert config.tools["track"] and config.tools["wandb_mode"] == "offline" and config.tools["wandb_group"] == "s"
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['every'\] in \[eval\]; valid: \['episodes', 'freq'\]"):
        parse_config({**base, "eval": {"every": 100}})
    with pytest.raises(ValueError, match="unknown W&B mode 'offlin'"):
        parse_config({**base, "track": {"mode": "offlin"}})
