"""Smoke test of experiments/bench_envs.py: a --quick run produces a consistent table and JSON report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from rove.experiments.plugins import import_plugin

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench_envs.py"


def _load() -> ModuleType:
    return import_plugin(str(SCRIPT))


def _check_report(report: dict, out: Path, suites: list[str], stdout: str) -> None:
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    rows = report["rows"]
    assert [r for r in rows if "error" in r] == []
    for suite in suites:
        comparisons = [r["comparison"] for r in rows if r["suite"] == suite]
        assert comparisons[0] == "wrapper"
        assert "vector x8" in comparisons and "vector x8 vs plain loop" in comparisons
    for row in rows:
        assert row["baseline_sps"] > 0 and row["rove_sps"] > 0 and math.isfinite(row["ratio"])
        samples = row["samples"]
        assert len(samples["ratio"]) == report["repeats"] == 2
        # The ratio is the median of the paired per-repeat ratios, each rove/baseline of the same repeat.
        for base, ours, ratio in zip(samples["baseline_sps"], samples["rove_sps"], samples["ratio"], strict=True):
            assert ratio == pytest.approx(ours / base)
        assert min(samples["ratio"]) <= row["ratio"] <= max(samples["ratio"])
        expected = None if row["target"] is None else row["ratio"] >= row["target"]
        assert row["passed"] == expected
    targets = {(r["suite"], r["comparison"]): r["target"] for r in rows}
    assert targets[("nethack", "wrapper")] == 0.90 and targets[("nethack", "vector x8")] == 1.5
    assert targets[("minigrid", "wrapper")] == 0.95
    for suite in suites:  # the text view's cost (issue 15): a row without a target
        assert targets[(suite, "text view")] is None
    # The Markdown table: header, separator and one line per row, in the same order.
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| suite | comparison | baseline sps | rove sps | ratio | target | pass |")
    assert len(table) == 2 + len(rows)
    for line, row in zip(table[2:], rows, strict=True):
        assert line.startswith(f"| {row['suite']} | {row['comparison']} |")
        assert f"| {row['ratio']:.2f} |" in line


def test_quick_run_writes_a_consistent_table(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "bench.json"
    report = bench.main(["--quick", "--suites", "nethack,minigrid", "--out", str(out)])
    _check_report(report, out, ["nethack", "minigrid"], capsys.readouterr().out)
    # NetHack's vector rows also compare with SyncVectorEnv over the very envs make_vec builds.
    assert any(r["comparison"] == "vector x8, same envs" for r in report["rows"] if r["suite"] == "nethack")


@pytest.mark.slow
def test_quick_run_of_every_suite(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "bench.json"
    report = bench.main(["--quick", "--out", str(out)])
    _check_report(report, out, ["nethack", "minigrid", "crafter"], capsys.readouterr().out)


def test_arguments_have_help_and_bad_suites_are_rejected(capsys):
    bench = _load()
    with pytest.raises(SystemExit):
        bench.main(["--help"])
    help_text = capsys.readouterr().out
    for flag in ("--suites", "--repeats", "--scale", "--num-envs", "--seed", "--quick", "--out"):
        assert flag in help_text
    with pytest.raises(SystemExit, match="unknown suite"):
        bench.main(["--suites", "nethak", "--out", ""])
