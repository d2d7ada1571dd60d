"""`rove envs`, `rove --version`, and defaults shown in every `--help`."""

from __future__ import annotations

import argparse

import gymnasium as gym
import pytest

import rove
from rove.cli import build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"rove {rove.__version__}"


def test_envs_lists_every_id_by_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    listed = {line.strip() for line in out.splitlines() if line.startswith("  ")}
    assert listed == {k for k in gym.registry if k.startswith("Rove/")}
    assert (
        "NetHack (20)" in out
        and "MiniHack (158)" in out
        and "Crafter (2)" in out
        and "  Rove/MiniGrid-DoorKey-8x8-v0" in out
    )
    assert main(["envs", "--suite", "crafter"]) == 0
    assert capsys.readouterr().out.split() == ["Crafter", "(2)", "Rove/CrafterNoReward-v1", "Rove/CrafterReward-v1"]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    for name, sub in _commands().items():
        if name == "llm":
            continue
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for action in sub._actions:
            if not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS):
                continue
            assert f"(default: {action.default})" in text or "default" in (action.help or ""), (
                f"rove {name} --help does not show the default of {action.option_strings[0]}"
            )
        assert "(default: auto)" in text if name in ("train", "eval") else True
