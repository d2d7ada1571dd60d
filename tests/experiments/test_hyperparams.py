"""Per-env tuned settings (rove/experiments/hyperparams/ppo.toml) and env options from the CLI and sweep TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from rove.cli import _train_spec, build_parser, main
from rove.experiments.hyperparams import HYPERPARAMS_FILE, default_env, tuned
from rove.experiments.runs import build_env
from rove.experiments.sweep import parse_config


def _spec(*argv: str):
    return _train_spec(build_parser().parse_args(["train", *argv]))


def test_naming_the_default_env_is_the_bare_default_run() -> None:
    bare = _spec()
    assert bare.env_id == default_env()
    for name in (bare.env_id, bare.env_id.removeprefix("Rove/")):
        assert _spec(name) == bare
    assert bare.intrinsic == ("count",) and bare.intrinsic_kwargs == {
        "mode": "episodic",
        "coef": 0.05,
        "key": "pose_key",
    }
    assert _spec("--seed", "3") == _spec(bare.env_id, "--seed", "3")


def test_known_envs_get_their_suites_settings_and_flags_override() -> None:
    crafter = _spec("CrafterReward-v1")
    assert crafter.total_timesteps == 1_000_000 and crafter.agent_kwargs["gamma"] == 0.95
    assert crafter.agent_kwargs["n_steps"] == 256 and crafter.intrinsic == ()
    nethack = _spec("NetHackScore-v0", "--intrinsic", "count", "--n-steps", "32", "--agent-kwargs", "gamma=0.9")
    assert nethack.intrinsic_kwargs == {"mode": "both"}  # the module's tuned options on this suite
    assert nethack.agent_kwargs["n_steps"] == 32 and nethack.agent_kwargs["gamma"] == 0.9
    assert nethack.agent_kwargs["ent_coef"] == 0.001
    assert tuned("Rove/MiniGrid-DoorKey-8x8-v0").source == "minigrid"
    assert tuned("Rove/MiniGrid-DoorKey-6x6-v0").source == "Rove/MiniGrid-DoorKey-6x6-v0"


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "ppo.toml"
    bad.write_text(HYPERPARAMS_FILE.read_text() + '\n["Rove/CrafterReward-v1"]\nn_step = 3\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['n_step'\] in \[Rove/CrafterReward-v1\]"):
        tuned("Rove/CrafterReward-v1", bad)


def test_env_kwargs_reach_the_vector_env_from_the_cli() -> None:
    spec = _spec("MiniGrid-Empty-5x5-v0", "--n-envs", "2", "--env-kwargs", "mode=subprocess,step_in_main=true")
    spec = type(spec)(**{**spec.to_dict(), "intrinsic": (), "env_kwargs": {**spec.env_kwargs, "max_steps": 7}})
    env = build_env(spec)
    try:
        assert env.mode == "subprocess" and env.num_envs == 2
        env.reset(seed=0)
        for _ in range(7):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample() * 0 + 2)  # forward, into the wall
        assert (terminated | truncated).all()  # max_steps=7 ended every episode at step 7
    finally:
        env.close()


def test_env_kwargs_in_a_sweep_config() -> None:
    config = parse_config(
        {
            "envs": ["Rove/MiniGrid-Empty-5x5-v0"],
            "methods": ["none"],
            "seeds": 1,
            "total_timesteps": 64,
            "env_kwargs": {"max_steps": 9, "mode": "subprocess", "step_in_main": True},
        }
    )
    (spec,) = config.specs()
    assert spec.env_kwargs == {"max_steps": 9, "mode": "subprocess", "step_in_main": True}


def test_a_bad_env_option_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "MiniGrid-Empty-5x5-v0", "--env-kwargs", "mode=threads", "--steps", "64", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "unknown vector env mode 'threads'" in capsys.readouterr().err


def test_a_bad_env_constructor_option_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "CrafterReward-v1", "--env-kwargs", "max_steps=-3", "--steps", "64", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "max_steps must be a positive int, got -3" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no run folder
