"""The ``rove`` command: train/eval end to end on a tiny MiniGrid id, help texts, bad input, bench."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from rove.cli import DEFAULT_TRAIN, CLIError, _train_spec, build_parser, main, parse_intrinsic, parse_kwargs
from rove.experiments.runs import read_jsonl

TINY = ["--steps", "256", "--n-envs", "2", "--n-steps", "64", "--batch-size", "64", "--device", "cpu", "--no-progress"]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_train_then_eval_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    args = ["train", "MiniGrid-Empty-5x5-v0", "--intrinsic", "count", "--agent-kwargs", "n_epochs=1", "--out", str(out)]
    assert main(args + TINY) == 0
    printed = capsys.readouterr().out
    (run,) = list(out.iterdir())
    assert run.name.startswith("MiniGrid-Empty-5x5-v0__count__0__")
    assert list((run / "tb").glob("events.out.tfevents.*")), "no TensorBoard event file"
    episodes = read_jsonl(run / "episodes.jsonl")
    assert episodes and all({"step", "return", "length", "intrinsic_return"} <= set(e) for e in episodes)
    assert read_jsonl(run / "progress.jsonl")
    config = json.loads((run / "config.json").read_text())
    assert config["env_id"] == "Rove/MiniGrid-Empty-5x5-v0" and config["intrinsic"] == "count"
    result = json.loads((run / "result.json").read_text())
    assert result["total_timesteps"] >= 256 and result["episodes"] == len(episodes)
    # The printed result and learning-curve PNG.
    assert "final success rate" in printed and f"learning curve: {run / 'curve.png'}" in printed
    from PIL import Image

    with Image.open(run / "curve.png") as image:
        assert image.size[0] > 100 and image.size[1] > 100

    gif = tmp_path / "ep.gif"
    evaluate = ["eval", str(run), "--episodes", "2", "--gif", str(gif), "--out", str(tmp_path / "e.json")]
    assert main([*evaluate, "--device", "cpu"]) == 0
    evaluation = json.loads((tmp_path / "e.json").read_text())
    assert evaluation["episodes"] == 2 and 0.0 <= evaluation["success_rate"] <= 1.0
    assert len(evaluation["per_episode"]) == 2
    with Image.open(gif) as image:
        assert image.n_frames > 1
    assert main(["eval", str(tmp_path / "nothing")]) == 2


def test_fused_modules_build_a_fusion(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["train", "MiniGrid-Empty-5x5-v0", "--intrinsic", "count,rnd", "--intrinsic-kwargs", "operator=max"]
    args += ["--intrinsic-kwargs", "rnd.update_proportion=0.5", "--out", str(out), *TINY, "--steps", "128"]
    assert main(args) == 0  # the last --steps wins
    (run,) = list(out.iterdir())
    assert run.name.startswith("MiniGrid-Empty-5x5-v0__count+rnd__0__")
    config = json.loads((run / "config.json").read_text())
    assert config["intrinsic"] == "fusion"
    assert config["intrinsic_kwargs"]["operator"] == "max"


def test_no_arguments_means_the_embedded_default() -> None:
    args = build_parser().parse_args(["train"])
    spec = _train_spec(args)
    assert spec.env_id == DEFAULT_TRAIN["env_id"] and spec.intrinsic == DEFAULT_TRAIN["intrinsic"]
    assert spec.total_timesteps == DEFAULT_TRAIN["total_timesteps"]
    # Flags still override the default, and an explicit env means plain PPO unless --intrinsic is given.
    spec = _train_spec(build_parser().parse_args(["train", "--steps", "1000", "--intrinsic", "rnd"]))
    assert spec.total_timesteps == 1000 and spec.intrinsic == ("rnd",) and spec.env_id == DEFAULT_TRAIN["env_id"]
    assert spec.intrinsic_kwargs == {}  # the default module's options do not follow another module
    spec = _train_spec(build_parser().parse_args(["train", "MiniGrid-Empty-5x5-v0"]))
    assert spec.intrinsic == () and spec.method == "none"


def test_every_option_has_a_help_line(capsys: pytest.CaptureFixture[str]) -> None:
    for name, sub in _subcommands().items():
        if name == "llm":
            continue
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for action in sub._actions:
            assert action.help, f"rove {name}: {action.dest} has no help"
            for flag in action.option_strings:
                assert flag in text, f"rove {name} --help does not list {flag}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "MiniGrid-DorKey-8x8-v0"], "Did you mean"),
        (["train", "--intrinsic", "rnb"], "Did you mean 'rnd'"),
        (["train", "--intrinsic", "nope"], "Available: airs, byol_explore, "),
        (["train", "--intrinsic", "nope"], "'none' for plain PPO"),
        (["train", "--intrinsic-kwargs", "oops"], "expected key=value"),
        (["train", "--intrinsic-kwargs", "{bad json"], "not valid JSON"),
        (["train", "MiniGrid-Empty-5x5-v0", "--intrinsic-kwargs", "mode=episodic"], "without an intrinsic module"),
        (["train", "--steps", "0"], "must be >= 1"),
        (["eval", "somewhere", "--episodes", "0"], "--episodes must be >= 1"),
    ],
)
def test_bad_input_fails_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_choices_are_argparse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["train", "--agent", "dqn"], ["bench", "gpu"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "invalid choice" in capsys.readouterr().err


def test_option_parsers() -> None:
    assert parse_kwargs(["a=1,b=x", '{"c": [1, 2]}', "m.k=0.5"], "kw") == {
        "a": 1,
        "b": "x",
        "c": [1, 2],
        "m": {"k": 0.5},
    }
    assert parse_intrinsic(None) is None and parse_intrinsic(["none"]) == ()
    assert parse_intrinsic(["rnd", "count+icm"]) == ("rnd", "count", "icm")
    with pytest.raises(CLIError, match="twice"):
        parse_intrinsic(["rnd,rnd"])


def test_bench_quick_runs_one_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = "--suites minigrid --modules count --count-keys 20000 --repeats 1"
    assert main(["bench", "intrinsic", "--quick", "--out-dir", str(tmp_path), "--extra", extra]) == 0
    saved = json.loads((tmp_path / "bench_intrinsic.json").read_text())
    assert set(saved["suites"]) == {"minigrid"}
    assert "bench intrinsic: exit 0" in capsys.readouterr().out


# ----- resume, step counts, misconfigurations refused up front -----

SMALL = ["--n-envs", "2", "--n-steps", "32", "--batch-size", "64", "--agent-kwargs", "n_epochs=1", "--device", "cpu"]


def _interrupt_at_update(monkeypatch: pytest.MonkeyPatch, update: int) -> None:
    """Ctrl-C (KeyboardInterrupt) during the ``update``-th PPO update of this process."""
    from rove.agents.ppo.ppo import PPO

    train, calls = PPO.train, []

    def interrupted(self: PPO) -> None:
        calls.append(1)
        if len(calls) == update:
            raise KeyboardInterrupt
        train(self)

    monkeypatch.setattr(PPO, "train", interrupted)


def _only_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]


def test_ctrl_c_says_how_to_resume_and_resume_uses_the_runs_own_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs"
    _interrupt_at_update(monkeypatch, 4)
    argv = ["train", "MiniGrid-Empty-5x5-v0", "--intrinsic", "count", "--seed", "3", "--steps", "512", *SMALL]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 130
    printed = capsys.readouterr()
    (run,) = list(out.iterdir())
    assert f"run folder: {run}" in printed.out  # printed when training starts
    # Steps count transitions (autoreset rows are not), so they are read from the log, not assumed.
    logged = [json.loads(line)["step"] for line in (run / "progress.jsonl").read_text().splitlines()]
    checkpoint_step = logged[2]  # the 4th update was interrupted: the checkpoint holds the 3rd
    match = re.search(r"interrupted at step (\d+) \(its checkpoint holds step (\d+)\)", printed.err)
    assert match is not None, printed.err
    assert int(match.group(2)) == checkpoint_step < int(match.group(1)) <= 4 * 64
    assert f"resume with: rove train --resume --run-dir {run}" in printed.err
    monkeypatch.undo()

    # Resuming names no option: the run's own run.json (seed 3, 512 steps, count) is what continues.
    assert main(["train", "--resume", "--run-dir", str(run)]) == 0
    printed = capsys.readouterr()
    assert f"resuming {run} from step {checkpoint_step} of 512" in printed.out
    assert f" {checkpoint_step}/512 " in printed.err, "the progress bar starts at the resumed step"
    assert [p.name for p in out.iterdir()] == [run.name]
    result = json.loads((run / "result.json").read_text())
    assert result["resumed"] is True and 512 <= result["total_timesteps"] < 512 + 64 and result["seed"] == 3
    assert json.loads((run / "run.json").read_text())["seed"] == 3

    # A finished run says so; nothing is trained or rewritten.
    before = (run / "result.json").read_text()
    assert main(["train", "--resume", "--run-dir", str(run)]) == 2
    assert f"is finished ({result['total_timesteps']} steps" in _only_line(capsys.readouterr().err)
    assert (run / "result.json").read_text() == before
    assert main(["train", "--resume", "--out", str(out)]) == 2
    assert f"the runs under {out} are finished ({run})" in _only_line(capsys.readouterr().err)
    # Training into a folder that holds a run needs --resume.
    assert main(["train", "MiniGrid-Empty-5x5-v0", "--run-dir", str(run), *SMALL]) == 2
    assert "already holds a run" in _only_line(capsys.readouterr().err)


def test_resume_refuses_contradicting_options_and_nothing_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs"
    _interrupt_at_update(monkeypatch, 2)
    argv = ["train", "MiniGrid-Empty-5x5-v0", "--seed", "3", "--steps", "512", *SMALL, "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 130
    monkeypatch.undo()
    (run,) = list(out.iterdir())
    capsys.readouterr()
    # Steps count transitions (autoreset rows are not): the checkpoint holds the step of the 1st update.
    (checkpoint_step,) = [json.loads(line)["step"] for line in (run / "progress.jsonl").read_text().splitlines()]
    for extra, message in [
        (["--seed", "0"], "--seed gives seed = 0, the run has 3"),
        (["--steps", "1e5"], "--steps gives total_timesteps = 100000, the run has 512"),
        (["--intrinsic", "rnd"], "--intrinsic gives intrinsic = ['rnd'], the run has []"),
        (["--agent-kwargs", "n_epochs=4"], "--agent-kwargs gives agent_kwargs.n_epochs = 4, the run has 1"),
    ]:
        assert main(["train", "--resume", "--run-dir", str(run), *extra]) == 2
        assert message in _only_line(capsys.readouterr().err)
    # Options that agree with run.json are fine to repeat; the newest unfinished run under --out is found.
    assert not (run / "result.json").exists()
    empty = tmp_path / "empty"
    assert main(["train", "--resume", "--out", str(empty)]) == 2
    assert f"no unfinished run with a checkpoint under {empty}" in _only_line(capsys.readouterr().err)
    assert main(["train", "--resume", "--out", str(out), "--seed", "4"]) == 2
    assert "no unfinished run with a checkpoint matching --seed" in _only_line(capsys.readouterr().err)
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "nowhere")]) == 2
    assert "holds no run to resume" in _only_line(capsys.readouterr().err)
    assert not empty.exists() and not (tmp_path / "nowhere").exists()
    assert main(["train", "--resume", "--out", str(out), "--seed", "3", "--no-progress"]) == 0
    assert f"resuming {run} from step {checkpoint_step} of 512" in capsys.readouterr().out
    # The run ends at the first update that reaches the total; its result is the last logged step.
    logged = [json.loads(line)["step"] for line in (run / "progress.jsonl").read_text().splitlines()]
    total = json.loads((run / "result.json").read_text())["total_timesteps"]
    assert logged[0] == checkpoint_step and logged[-2] < 512 <= logged[-1] == total


@pytest.mark.parametrize(
    ("text", "steps"), [("1e6", 10**6), ("100k", 10**5), ("1_000_000", 10**6), ("2.5M", 25 * 10**5)]
)
def test_step_counts_accept_the_usual_spellings(text: str, steps: int) -> None:
    assert _train_spec(build_parser().parse_args(["train", "--steps", text])).total_timesteps == steps


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--steps", "1.5"], "--steps: a step count must be a whole number"),
        (["--steps", "lots"], "not a step count: 'lots'"),
        (["--agent-kwargs", "n_step=64"], "agent options: unknown option 'n_step'; did you mean 'n_steps'?"),
        (["--agent-kwargs", "ent_coef=high"], "agent options: ent_coef must be a number, 'auto' or 'auto_<initial"),
        (["--agent-kwargs", "int_coef=auto"], "agent options: int_coef='auto' tunes the intrinsic weight: it needs"),
        (["--agent-kwargs", "seed=1"], "'seed' is set by the run, not here: use --seed"),
        (["--intrinsic", "count", "--intrinsic-kwargs", "mod=episodic"], "unknown option 'mod'; did you mean 'mode'?"),
        (
            ["--intrinsic", "count", "--intrinsic-kwargs", "mode=episodc"],
            "unknown value 'episodc'; did you mean 'episodic'?",
        ),
        (
            ["--intrinsic", "rnd", "--intrinsic-kwargs", "normalize=retrun"],
            "unknown value 'retrun'; did you mean 'return'?",
        ),
        (
            ["--intrinsic", "count,rnd", "--intrinsic-kwargs", "operator=prod"],
            "unknown value 'prod'; did you mean 'product'?",
        ),
        (["--intrinsic", "count,rnd", "--intrinsic-kwargs", "icm.coef=1"], "module 'icm', which is not in the fusion"),
        (["--intrinsic", "count,rnd", "--intrinsic-kwargs", "rdn.coef=1"], "unknown module 'rdn'; did you mean 'rnd'?"),
        (
            ["--intrinsic", "count,rnd", "--intrinsic-kwargs", "rnd.cof=1"],
            "of 'rnd': unknown option 'cof'; did you mean 'coef'?",
        ),
        (
            ["--intrinsic", "rnd", "--intrinsic-kwargs", "count.mode=episodic"],
            "module 'count', which is not in this run",
        ),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    ],
)
def test_misconfigurations_are_one_line_exit_2_before_any_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    out = tmp_path / "runs"
    assert main(["train", "MiniGrid-Empty-5x5-v0", *options, "--out", str(out), "--no-progress"]) == 2
    line = _only_line(capsys.readouterr().err)
    assert line.startswith("rove train: error: ") and message in line
    assert not out.exists(), "a refused run must leave no folder"


def test_device_cuda_without_cuda_behaves_as_from_python(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    import torch

    from rove.agents import PPO

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            PPO("auto", "Rove/MiniGrid-Empty-5x5-v0", n_envs=1, n_steps=8, batch_size=8, device="cuda", verbose=0)
            python_error = None
        except Exception as err:  # what Python users get
            python_error = err
    out = tmp_path / "runs"
    code = main(["train", "MiniGrid-Empty-5x5-v0", "--device", "cuda", "--steps", "64", *SMALL[:6], "--out", str(out)])
    err = capsys.readouterr().err
    if python_error is not None:  # an error from Python: one line and exit 2 from the CLI, before any folder
        assert code == 2 and "device 'cuda'" in _only_line(err) and not out.exists()
    else:  # a fallback to the CPU with a warning from Python: the same warning from the CLI, and it trains
        assert caught and code == 0 and str(caught[0].message).splitlines()[0] in err


def test_eval_refuses_an_env_that_does_not_match_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(["train", "MiniGrid-Empty-5x5-v0", "--steps", "64", *SMALL, "--out", str(out), "--no-progress"]) == 0
    (run,) = list(out.iterdir())
    capsys.readouterr()
    assert main(["eval", str(run), "--env", "CrafterReward-v1", "--episodes", "1", "--device", "cpu"]) == 2
    line = _only_line(capsys.readouterr().err)
    assert "Rove/CrafterReward-v1 does not match the agent (trained on Rove/MiniGrid-Empty-5x5-v0)" in line
    assert main(["eval", str(run), "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in _only_line(capsys.readouterr().err)
    # Another MiniGrid task has the same spaces: evaluating a policy there (transfer) is allowed.
    assert main(["eval", str(run), "--env", "MiniGrid-Empty-6x6-v0", "--episodes", "1", "--device", "cpu"]) == 0


def test_argparse_errors_are_one_line_with_close_matches(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (["trian"], "invalid choice: 'trian'"),
        (["train", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["bench", "agnets"], "did you mean 'agents'?"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in _only_line(capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["trian"])
    assert "did you mean 'train'?" in capsys.readouterr().err


def test_a_value_only_the_agent_refuses_leaves_no_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    argv = ["train", "MiniGrid-Empty-5x5-v0", "--intrinsic", "rnd", "--intrinsic-kwargs", "update_proportion=2"]
    assert main([*argv, *SMALL, "--out", str(out), "--no-progress"]) == 2
    assert "update_proportion must be in (0, 1], got 2" in _only_line(capsys.readouterr().err)
    assert not out.exists() or not list(out.iterdir())
