"""Smoke test of experiments/bench_intrinsic.py: a --quick run over a few modules writes a complete table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rove.experiments.plugins import import_plugin

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench_intrinsic.py"


def load_script():
    return import_plugin(str(SCRIPT))


def test_quick_run_reports_ratios_failures_and_counting_speedup(tmp_path, capsys):
    bench = load_script()
    out = tmp_path / "bench.json"
    results = bench.main(
        ["--quick", "--suites", "minigrid", "--modules", "count,simhash,rnd,no_such_module", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved["suites"].keys() == results["suites"].keys() == {"minigrid"}
    suite = saved["suites"]["minigrid"]
    assert {row["module"] for row in suite["rows"]} == {"count", "simhash", "rnd"}
    for row in suite["rows"]:
        assert row["ratio"] > 0 and row["seconds"] > 0
    assert suite["rows"][0]["target"] is not None
    assert "no_such_module" in suite["failures"]  # reported, not fatal
    counting = saved["counting"]
    assert counting["numba_keys_per_s"] > 0 and counting["dict_keys_per_s"] > 0
    printed = capsys.readouterr().out
    assert "| count |" in printed and "numba table vs Python dict" in printed


def test_unknown_suite_is_rejected(tmp_path):
    bench = load_script()
    with pytest.raises(SystemExit, match="unknown suite"):
        bench.main(["--quick", "--suites", "atari", "--out", str(tmp_path / "x.json")])
