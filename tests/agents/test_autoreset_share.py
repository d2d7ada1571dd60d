"""Smoke test of experiments/autoreset_share.py: a short CartPole run has autoreset rows, and they are counted."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "autoreset_share.py"


def test_autoreset_share_script_counts_the_rows_that_are_not_transitions() -> None:
    spec = importlib.util.spec_from_file_location("autoreset_share", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules["autoreset_share"] = script  # dataclasses look their module up there
    spec.loader.exec_module(script)
    shares = script.main(script.Args(steps=200, envs=("CartPole-v1",), n_epochs=1))
    # A random CartPole policy ends an episode every ~20 steps: about 1 row in 20 is an autoreset row.
    assert 0.01 < shares["CartPole-v1"] < 0.15
