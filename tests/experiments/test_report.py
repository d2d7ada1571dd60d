"""rove.experiments.report / crafter_score: statistics, the Crafter score, and the report files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rove.cli import main
from rove.experiments.crafter_score import ACHIEVEMENTS, crafter_score, success_rates
from rove.experiments.report import bootstrap_ci, iqm, learning_curve, write_report
from rove.experiments.runs import episode_metrics, read_jsonl


def _write_run(root: Path, env: str, method: str, seed: int, episodes: list[dict], finished: bool = True) -> Path:
    path = root / f"{env.split('/')[-1]}__{method}__{seed}__20250101-000000"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"env_id": env, "intrinsic": None if method == "none" else method}))
    (path / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    if finished:
        (path / "result.json").write_text(json.dumps({"env_id": env, "method": method, "seed": seed}))
    return path


def _minigrid_episodes(rng: np.random.Generator, skill: float, n: int = 40) -> list[dict]:
    out = []
    for i in range(n):
        success = bool(rng.random() < skill * i / n)
        out.append({"step": 100 * (i + 1), "return": 0.9 * success, "length": 50, "success": success})
    return out


def test_crafter_achievements_match_crafter_package() -> None:
    crafter_constants = pytest.importorskip("crafter.constants")
    assert tuple(crafter_constants.achievements) == ACHIEVEMENTS


def test_crafter_score_matches_hand_computation(tmp_path: Path) -> None:
    # 4 episodes: wood in all 4 (100%), place_table in 2 (50%), wake_up in 1 (25%), the other 19 never (0%).
    def ep(step: int, *names: str) -> dict:
        return {"step": step, "return": 1.0, "length": 10, "achievements": {a: int(a in names) for a in ACHIEVEMENTS}}

    episodes = [
        ep(10, "collect_wood", "place_table", "wake_up"),
        ep(20, "collect_wood", "place_table"),
        ep(30, "collect_wood"),
        ep(40, "collect_wood"),
    ]
    rates = success_rates(episodes)
    assert rates["collect_wood"] == 100.0 and rates["place_table"] == 50.0 and rates["wake_up"] == 25.0
    assert sum(rates.values()) == 175.0
    hand = math.exp((math.log(101) + math.log(51) + math.log(26) + 19 * math.log(1)) / 22) - 1
    assert crafter_score(rates) == pytest.approx(hand, rel=1e-12)
    # Budget: only episodes that ended within it count.
    assert success_rates(episodes, budget=20)["place_table"] == 100.0
    # Through a run folder and the report.
    for seed in range(2):
        _write_run(tmp_path / "runs", "Rove/CrafterReward-v1", "none", seed, episodes)
    out = write_report(tmp_path / "runs", tmp_path / "report")
    (group,) = out["groups"]
    assert group.metrics["crafter_score"].mean == pytest.approx(hand)
    text = out["markdown"].read_text()
    assert "Crafter score" in text and "| collect_wood | 100.0 [100.0, 100.0] |" in text
    rows = list(csv.DictReader((tmp_path / "report" / "crafter_achievements.csv").read_text().splitlines()))
    assert len(rows) == 22


def test_crafter_achievement_rates_carry_an_interval_over_seeds(tmp_path: Path) -> None:
    # Seed 0 places a table in 2 of 2 episodes, seed 1 in 1 of 2: 100 % and 50 %. Resampling two values
    # gives the means 50, 75, 100 with probabilities 1/4, 1/2, 1/4, so the 95 % percentile interval is [50, 100].
    def ep(step: int, *names: str) -> dict:
        return {"step": step, "return": 1.0, "length": 10, "achievements": {a: int(a in names) for a in ACHIEVEMENTS}}

    _write_run(tmp_path / "runs", "Rove/CrafterReward-v1", "none", 0, [ep(10, "place_table"), ep(20, "place_table")])
    _write_run(tmp_path / "runs", "Rove/CrafterReward-v1", "none", 1, [ep(10, "place_table"), ep(20)])
    out = write_report(tmp_path / "runs", tmp_path / "report")
    assert "| place_table | 75.0 [50.0, 100.0] |" in out["markdown"].read_text()
    rows = {r["achievement"]: r for r in csv.DictReader((tmp_path / "report" / "crafter_achievements.csv").open())}
    name = "Rove/CrafterReward-v1|none"
    row = rows["place_table"]
    assert (float(row[name]), float(row[f"{name}|ci_low"]), float(row[f"{name}|ci_high"])) == (75.0, 50.0, 100.0)
    # One run has no interval to show: its table cell is the rate alone.
    _write_run(tmp_path / "one", "Rove/CrafterReward-v1", "none", 0, [ep(10, "place_table"), ep(20)])
    assert "| place_table | 50.0 |" in write_report(tmp_path / "one", tmp_path / "r1")["markdown"].read_text()


def test_crafter_score_rejects_fractions_and_empty() -> None:
    with pytest.raises(ValueError, match="percentages"):
        crafter_score([0.5, 120.0])
    with pytest.raises(ValueError, match="at least one"):
        crafter_score([])
    assert crafter_score([0.0] * 22) == pytest.approx(0.0)
    assert crafter_score([100.0] * 22) == pytest.approx(100.0)


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_seeds() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.normal(1.0, 1.0, 5), rng.normal(1.0, 1.0, 200)
    for values in (few, many):
        low, high = bootstrap_ci(values)
        assert low <= values.mean() <= high and low < high
    assert np.ptp(bootstrap_ci(many)) < np.ptp(bootstrap_ci(few))
    assert np.ptp(bootstrap_ci(few, confidence=0.5)) < np.ptp(bootstrap_ci(few, confidence=0.95))
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_iqm_is_the_quartile_trimmed_mean() -> None:
    assert iqm([1, 2, 3, 4, 100]) == pytest.approx(3.0)  # one value cut at each end
    assert iqm([100, 1, 2, 3, 4, 5, 6, -50]) == pytest.approx(3.5)  # two cut at each end
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(1).normal(size=13)
    assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_learning_curve_bins_and_carries_forward() -> None:
    episodes = [{"step": 10, "return": 1.0}, {"step": 20, "return": 3.0}, {"step": 75, "return": 5.0}]
    curve = learning_curve(episodes, "return", np.array([0, 25, 50, 75, 100]))
    assert np.isnan(learning_curve([], "return", np.array([0, 1]))).all()
    np.testing.assert_allclose(curve, [2.0, 2.0, 5.0, 5.0])


def test_episode_metrics_use_the_last_tenth() -> None:
    episodes = [{"step": i, "return": float(i >= 90), "length": 1, "success": i >= 90} for i in range(100)]
    m = episode_metrics(episodes)
    assert m["final_return"] == 1.0 and m["final_success"] == 1.0 and m["mean_return"] == pytest.approx(0.1)
    assert m["first_success_step"] == 90


def test_read_jsonl_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_jsonl(path)


def test_report_tables_curves_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    runs = tmp_path / "runs"
    env = "Rove/MiniGrid-DoorKey-8x8-v0"
    for seed in range(4):
        _write_run(runs, env, "count", seed, _minigrid_episodes(rng, 1.0))
    for seed in range(2):
        _write_run(runs, env, "none", seed, _minigrid_episodes(rng, 0.2))
    _write_run(runs, env, "none", 9, _minigrid_episodes(rng, 0.2), finished=False)
    nethack = [
        {"step": 100 * i, "return": float(i), "length": 9, "score": 10.0 * i, "depth": 1 + i % 3} for i in range(1, 20)
    ]
    _write_run(runs, "Rove/NetHackScore-v0", "none", 0, nethack)

    assert main(["report", str(runs), "--out", str(tmp_path / "rep"), "--bins", "10"]) == 0
    printed = capsys.readouterr().out
    rep = tmp_path / "rep"
    text = (rep / "report.md").read_text()
    assert f"| {env} | count | 4 |" in text and f"| {env} | none | 2 |" in text  # the unfinished run is left out
    # Runs that end above 0.5 success are counted as solved; NetHack logs no success, so its cell stays empty.
    assert f"| {env} | count | 4 | 4 / 4 |" in text and f"| {env} | none | 2 | 0 / 2 |" in text
    assert "| Rove/NetHackScore-v0 | none | 1 |  |" in text
    assert "1 unfinished run folder(s) left out" in text and "NetHack score" in text
    rows = list(csv.DictReader((rep / "results.csv").read_text().splitlines()))
    assert {(r["env"], r["method"]) for r in rows} == {(env, "count"), (env, "none"), ("Rove/NetHackScore-v0", "none")}
    count = next(r for r in rows if r["method"] == "count")
    none = next(r for r in rows if r["method"] == "none" and r["env"] == env)
    assert (
        float(count["final_return_ci_low"]) <= float(count["final_return_mean"]) <= float(count["final_return_ci_high"])
    )
    assert count["final_return_iqm"] != "" and none["final_return_iqm"] == ""  # IQM needs >= 4 runs
    assert float(count["final_success_mean"]) > float(none["final_success_mean"])
    nh = next(r for r in rows if r["env"] == "Rove/NetHackScore-v0")
    assert float(nh["max_depth_mean"]) == 3.0
    assert len(list(csv.DictReader((rep / "runs.csv").read_text().splitlines()))) == 7
    import matplotlib.image

    pngs = sorted(rep.glob("curves_*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 0 for p in pngs)
    assert matplotlib.image.imread(pngs[0]).ndim == 3
    assert str(pngs[0]) in printed
    # --include-unfinished adds the run without result.json.
    out = write_report(runs, tmp_path / "rep2", include_unfinished=True)
    assert sum(len(g.runs) for g in out["groups"]) == 8 and out["skipped"] == 0


def test_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such runs folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no finished run folders" in capsys.readouterr().err


def test_step_ticks_are_short_labels() -> None:
    from rove.experiments.report import short_count

    assert [short_count(v) for v in (0, 999, 1500, 50_000, 125_000, 1_000_000, 2_500_000)] == [
        "0",
        "999",
        "1.5k",
        "50k",
        "125k",
        "1M",
        "2.5M",
    ]
