"""rove.experiments.sweep: config parsing, grid expansion, resume, and the local and Ray launchers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rove.cli import main
from rove.experiments.runs import RESULT_FILE, SPEC_FILE, RunSpec, load_run, new_run_dir, read_jsonl
from rove.experiments.sweep import load_config, parse_config, plan, run_ray, run_sweep
from rove.llm.envgen_train import EnvGenConfig

TINY = """
name = "tiny"
envs = ["MiniGrid-Empty-5x5-v0"]
methods = ["none", "count"]
seeds = 1
total_timesteps = 128
n_envs = 2
device = "cpu"

[agent]
n_steps = 32
batch_size = 64
n_epochs = 1
"""


def _config(tmp_path: Path, text: str = TINY) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_repository_configs_parse() -> None:
    folder = Path(__file__).resolve().parents[2] / "experiments" / "configs"
    names = {p.stem for p in folder.glob("*.toml")}
    assert {"smoke", "minigrid_hard", "crafter_1m", "nethack"} <= names
    for path in folder.glob("*.toml"):
        if path.stem.startswith("envgen"):  # `rove envgen` configs, not sweeps
            assert EnvGenConfig.from_toml(path).total_timesteps > 0, path
            continue
        config = load_config(path)
        assert config.specs(), path


def test_grid_expansion_labels_and_fusion_kwargs() -> None:
    config = parse_config(
        {
            "envs": ["MiniGrid-Empty-5x5-v0", "Rove/MiniGrid-DoorKey-5x5-v0"],
            "methods": [
                "none",
                "rnd",
                "count+rnd",
                {"label": "count-ep", "intrinsic": ["count"], "kwargs": {"mode": "episodic"}},
            ],
            "seeds": [3, 4],
            "total_timesteps": 1000,
            "intrinsic_kwargs": {"rnd": {"update_proportion": 0.5}},
        }
    )
    specs = config.specs()
    assert len(specs) == 2 * 4 * 2
    assert {s.env_id for s in specs} == {"Rove/MiniGrid-Empty-5x5-v0", "Rove/MiniGrid-DoorKey-5x5-v0"}
    by_method = {s.method: s for s in specs}
    assert set(by_method) == {"none", "rnd", "count+rnd", "count-ep"}
    assert by_method["rnd"].intrinsic_kwargs == {"update_proportion": 0.5}
    assert by_method["count+rnd"].intrinsic == ("count", "rnd")
    assert by_method["count+rnd"].intrinsic_kwargs == {"rnd": {"update_proportion": 0.5}}
    assert by_method["count-ep"].intrinsic_kwargs == {"mode": "episodic"}
    assert by_method["count-ep"].prefix == "MiniGrid-Empty-5x5-v0__count-ep__3__" or by_method["count-ep"].seed == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"envs": ["MiniGrid-DorKey-5x5-v0"]}, "Did you mean"),
        ({"methods": ["rdn"]}, "unknown intrinsic module 'rdn'"),
        ({"methods": ["rnd", "rnd"]}, "unique"),
        ({"epochs": 3}, "unknown key"),
        ({"envs": []}, "'envs' is empty"),
        ({"seeds": 0}, "'seeds' is empty"),
        ({"record": {"trajectory": False}}, r"unknown key\(s\) \['trajectory'\] in \[record\]"),
        ({"record": {"trajectories": "no"}}, "trajectories must be true or false"),
        ({"record": False}, "'record' must be a dict"),
    ],
)
def test_bad_configs_fail_clearly(change: dict, message: str) -> None:
    data = {"envs": ["MiniGrid-Empty-5x5-v0"], "methods": ["none"], "seeds": 1, "total_timesteps": 10, **change}
    with pytest.raises(Exception, match=message):
        parse_config(data)


def test_plan_skips_finished_runs_only(tmp_path: Path) -> None:
    specs = [RunSpec("Rove/MiniGrid-Empty-5x5-v0", ("count",), seed=s, total_timesteps=64) for s in range(3)]
    finished = new_run_dir(tmp_path, specs[0])
    (finished / SPEC_FILE).write_text(json.dumps(specs[0].to_dict()))
    (finished / RESULT_FILE).write_text("{}")
    unfinished = new_run_dir(tmp_path, specs[1])  # started, killed before result.json
    (unfinished / SPEC_FILE).write_text(json.dumps(specs[1].to_dict()))
    changed = RunSpec("Rove/MiniGrid-Empty-5x5-v0", ("count",), seed=2, total_timesteps=64)
    other = new_run_dir(tmp_path, changed)
    (other / SPEC_FILE).write_text(json.dumps({**changed.to_dict(), "total_timesteps": 999}))
    (other / RESULT_FILE).write_text("{}")
    todo, done = plan(specs, tmp_path)
    assert done == [finished]
    assert todo == specs[1:]  # unfinished, and finished with a different budget


def test_local_sweep_runs_in_parallel_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    out = tmp_path / "runs"
    assert main(["sweep", str(config), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name.split("__")[:3] for p in runs] == [
        ["MiniGrid-Empty-5x5-v0", "count", "0"],
        ["MiniGrid-Empty-5x5-v0", "none", "0"],
    ]
    for path in runs:
        result = json.loads((path / RESULT_FILE).read_text())
        assert result["total_timesteps"] >= 128
        assert list((path / "tb").glob("events.out.tfevents.*"))
        assert all("return" in e and "step" in e for e in read_jsonl(path / "episodes.jsonl"))
        assert read_jsonl(path / "progress.jsonl")
        assert (path / "checkpoints" / "last.pt").stat().st_size > 0
        assert load_run(path).finished
    capsys.readouterr()
    # Resume: everything is finished, nothing runs and no folder is added.
    summary = run_sweep(load_config(config), out, workers=2, progress=False, log=lambda _: None)
    assert summary["results"] == [] and len(summary["skipped"]) == 2
    assert sorted(p for p in out.iterdir() if p.is_dir()) == runs
    assert main(["sweep", str(config), "--out", str(out), "--dry-run"]) == 0
    assert "0 to run, 2 finished" in capsys.readouterr().out
    # And the report reads what the sweep wrote.
    assert main(["report", str(out)]) == 0
    assert "| Rove/MiniGrid-Empty-5x5-v0 | count | 1 |" in (out / "report" / "report.md").read_text()


def test_ray_launcher_lands_runs_in_the_same_layout(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    spec = RunSpec(
        "Rove/MiniGrid-Empty-5x5-v0",
        ("count",),
        total_timesteps=64,
        n_envs=2,
        device="cpu",
        agent_kwargs={"n_steps": 32, "batch_size": 64, "n_epochs": 1},
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = run_ray([spec], tmp_path, progress=False)
    finally:
        ray.shutdown()
    (result,) = results
    assert "error" not in result, result.get("error")
    path = Path(result["run_dir"])
    assert path.parent == tmp_path and path.name.startswith(spec.prefix)
    assert (path / RESULT_FILE).is_file() and (path / "config.json").is_file()
    assert (path / "episodes.jsonl").is_file() and read_jsonl(path / "progress.jsonl")
    assert list((path / "tb").glob("events.out.tfevents.*"))
    assert plan([spec], tmp_path) == ([], [path])


def test_sweep_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "no such sweep config" in capsys.readouterr().err
    bad = _config(tmp_path, TINY.replace('"count"', '"cuont"'))
    assert main(["sweep", str(bad)]) == 2
    assert "unknown intrinsic module 'cuont'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", str(bad), "--launcher", "pbs"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "[intrinsic_kwargs.cuont]\nmode = 'episodic'\n",
            "[intrinsic_kwargs.cuont]: unknown intrinsic module 'cuont'; did you mean 'count'?",
        ),
        ("[intrinsic_kwargs.rnd]\ncoef = 0.5\n", "[intrinsic_kwargs.rnd] is used by no method (methods use: count)"),
        (
            "[intrinsic_kwargs.count]\nmode = 'episodc'\n",
            "method 'count': intrinsic options of 'count': mode: unknown value 'episodc'",
        ),
        ("[intrinsic_kwargs.count]\ncof = 0.5\n", "unknown option 'cof'; did you mean 'coef'?"),
        ("[agent.policy_kwargs]\nlstm = true\n[intrinsic_kwargs.count]\nmode = 'lifelong'\n", None),
    ],
)
def test_intrinsic_kwargs_sections_are_checked(tmp_path: Path, change: str, message: str | None) -> None:
    config = _config(tmp_path, TINY + change)
    if message is None:
        assert load_config(config).specs()[1].intrinsic_kwargs == {"mode": "lifelong"}
        return
    with pytest.raises(ValueError) as info:
        load_config(config)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "n_steps = 32",
            "n_step = 32",
            "method 'none': agent options: unknown option 'n_step'; did you mean 'n_steps'?",
        ),
        ("n_epochs = 1", "n_epochs = 1\nn_envs = 4", "'n_envs' is set by the run, not here"),
        (
            "n_epochs = 1",
            "n_epochs = 1\npolicy_kwargs = { lsmt = true }",
            "policy_kwargs: unknown option 'lsmt'; did you mean 'lstm'?",
        ),
        ('"count"]', '{ intrinsic = "count", kwargs = { mode = "episodc" } }]', "unknown value 'episodc'"),
        ('"count"]', '{ intrinsic = ["count", "rnd"], kwargs = { operator = "prod" } }]', "did you mean 'product'?"),
        (
            '"count"]',
            '{ intrinsic = ["count", "rnd"], kwargs = { icm = { coef = 1 } } }]',
            "'icm', which is not in the fusion",
        ),
        (
            '"count"]',
            '{ intrinsic = "count", kwarg = {} }]',
            "unknown key in a methods table 'kwarg'; did you mean 'kwargs'?",
        ),
        (
            "total_timesteps = 128",
            "total_timestep = 128",
            "unknown key 'total_timestep'; did you mean 'total_timesteps'?",
        ),
        ('device = "cpu"', 'device = "gpu"', "unknown device 'gpu'"),
        ("total_timesteps = 128", "total_timesteps = 1.5", "total_timesteps: a step count must be a whole number"),
    ],
)
def test_sweep_misconfigurations_exit_2_in_one_line_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    assert old in TINY
    config = _config(tmp_path, TINY.replace(old, new))
    out = tmp_path / "runs"
    for extra in (["--dry-run"], ["--no-progress"]):
        assert main(["sweep", str(config), "--out", str(out), *extra]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert not out.exists(), "a refused sweep must leave no run folder"


def test_step_counts_in_configs_and_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for text, steps in (('"100k"', 100_000), ("1e6", 1_000_000), ("1_000_000", 1_000_000)):
        assert load_config(_config(tmp_path, TINY.replace("128", text))).total_timesteps == steps
    assert main(["sweep", str(_config(tmp_path)), "--steps", "2e3", "--dry-run", "--out", str(tmp_path / "r")]) == 0
    assert "(2000 steps)" in capsys.readouterr().out


def test_a_misspelt_env_option_is_refused_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _config(tmp_path, TINY + "\n[env_kwargs]\nmax_step = 5\n")
    with pytest.raises(ValueError, match=r"bad env option for Rove/MiniGrid-Empty-5x5-v0 .*'max_step'"):
        load_config(bad)
    out = tmp_path / "runs"
    assert main(["sweep", str(bad), "--dry-run", "--out", str(out)]) == 2
    assert "max_step" in capsys.readouterr().err and not out.exists()
    good = _config(tmp_path, TINY + "\n[env_kwargs]\nmax_steps = 5\n")
    assert load_config(good).specs()[0].env_kwargs == {"max_steps": 5}


def test_a_record_table_sets_trajectory_recording_for_every_run() -> None:
    from rove.agents.common.trajectories import TrajectoryRecorder
    from rove.experiments.run_tools import RunTools, callbacks

    base = {"envs": ["MiniGrid-Empty-5x5-v0"], "methods": ["none"], "seeds": 1, "total_timesteps": 10}
    recorders = lambda config: [  # noqa: E731
        c for c in callbacks(config.specs()[0], RunTools.from_dict(config.tools)) if isinstance(c, TrajectoryRecorder)
    ]
    assert len(recorders(parse_config(base))) == 1  # on by default
    assert recorders(parse_config({**base, "record": {"trajectories": False}})) == []
    (recorder,) = recorders(parse_config({**base, "record": {"key": "pose_key"}}))
    assert recorder.key == "pose_key"
