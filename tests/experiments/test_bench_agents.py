"""Smoke runs of the agent benchmark script (``--quick``): it runs end to end and writes its outputs."""

import json
from pathlib import Path

import pytest

from rove.experiments.plugins import import_plugin

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _load(name: str):
    return import_plugin(str(EXPERIMENTS / f"{name}.py"))


def test_bench_agents_quick(tmp_path: Path) -> None:
    bench = _load("bench_agents")
    out = tmp_path / "bench.json"
    results = bench.main(["--quick", "--rows", "cartpole,minigrid_rnd", "--out", str(out)])
    assert [r["row"] for r in results] == ["cartpole", "minigrid_rnd"]
    assert {r["preset"] for r in results} == {"quick"}
    for r in results:
        assert r["rove_sps"] > 0 and r["sb3_sps"] > 0
        assert r["ratio"] == pytest.approx(r["rove_sps_all"][0] / r["sb3_sps_all"][0])
        # like with like: the same network on both sides, Rove's only extra being its V_int head (64 + 1)
        assert r["rove_params"] == r["sb3_params"] + 65 and "64-64" in r["architecture"]
    saved = json.loads(out.read_text())
    assert saved["results"][1]["intrinsic"] == "rnd"


def test_bench_agents_late_row_trains_both_agents_before_timing(tmp_path: Path) -> None:
    bench = _load("bench_agents")
    argv = ["--quick", "--rows", "minigrid_late", "--late-warmup", "192", "--out", str(tmp_path / "late.json")]
    (result,) = bench.main(argv)
    assert result["warmup_steps"] == 192 and result["intrinsic"] is None
    # 192 warm-up steps, then one timed call of 128 (quick: 2 envs x 32-step rollouts)
    assert result["rove_trained_steps"] == result["sb3_trained_steps"] == 192 + 128


def test_bench_agents_rejects_unknown_row_before_timing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _load("bench_agents")
    timed_rows: list[str] = []
    monkeypatch.setattr(bench, "run_row", lambda row, *_: timed_rows.append(row))
    with pytest.raises(ValueError, match="unknown row 'pong'"):
        bench.main(["--quick", "--rows", "cartpole,pong", "--out", str(tmp_path / "x.json")])
    assert timed_rows == []  # refused before the valid row ran


def test_bench_agents_rejects_unknown_preset_before_timing(tmp_path: Path) -> None:
    bench = _load("bench_agents")
    with pytest.raises(ValueError, match="unknown preset 'atari'"):
        bench.main(["--presets", "zoo,atari", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
