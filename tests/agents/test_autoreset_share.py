"""Smoke test of experiments/autoreset_share.py: a short CartPole run has autoreset rows, and they are counted."""

from pathlib import Path

from rove.experiments.plugins import import_plugin

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "autoreset_share.py"


def test_autoreset_share_script_counts_the_rows_that_are_not_transitions() -> None:
    script = import_plugin(str(SCRIPT))
    shares = script.main(script.Args(steps=200, envs=("CartPole-v1",), n_epochs=1))
    # A random CartPole policy ends an episode every ~20 steps: about 1 row in 20 is an autoreset row.
    assert 0.01 < shares["CartPole-v1"] < 0.15
