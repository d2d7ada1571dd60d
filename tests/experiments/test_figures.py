"""Paper figures from `rove report`: PDF/SVG/PNG, labels and order, smoothing, the legend off the data, the band
stated (and a warning under 3 seeds), the Crafter score over time, and greedy-evaluation curves."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from rove.cli import main
from rove.experiments.crafter_score import ACHIEVEMENTS
from rove.experiments.figures import FigureStyle, crafter_score_curve, draw_env, smooth_curve
from rove.experiments.report import _panels, group_runs
from rove.experiments.runs import find_runs

ENV = "Rove/MiniGrid-DoorKey-8x8-v0"


def _write_run(root: Path, env: str, method: str, seed: int, episodes: list[dict], evals: list[dict] = ()) -> Path:
    path = root / f"{env.split('/')[-1]}__{method}__{seed}__20250101-000000"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"env_id": env}))
    (path / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    (path / "evaluations.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    (path / "result.json").write_text(json.dumps({"env_id": env, "method": method, "seed": seed}))
    return path


def _runs(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for method, skill, seeds in (("none", 0.2, 2), ("count", 1.0, 3)):
        for seed in range(seeds):
            episodes = [
                {"step": 100 * (i + 1), "return": float(s), "length": 50, "success": bool(s)}
                for i, s in enumerate(rng.random(40) < skill * np.arange(40) / 40)
            ]
            evals = [
                {"step": 1000 * k, "mean_return": skill * k / 4 + seed, "success_rate": min(1.0, skill * k / 4)}
                for k in range(1, 5)
            ]
            _write_run(root, ENV, method, seed, episodes, evals)
    return root


def _svg_texts(path: Path) -> list[str]:
    return [t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text()) if t.strip()]


def test_report_writes_paper_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _runs(tmp_path / "runs")
    argv = ["report", str(runs), "--out", str(tmp_path / "rep"), "--labels", "none=PPO,count=PPO + counts"]
    assert main([*argv, "--order", "count,none", "--smooth", "3", "--bins", "10"]) == 0
    err = capsys.readouterr().err
    stem = tmp_path / "rep" / "curves_Rove_MiniGrid-DoorKey-8x8-v0"
    assert stem.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    pdf = stem.with_suffix(".pdf").read_bytes()
    assert b"/Subtype /CIDFontType2" in pdf and b"/Subtype /Type3" not in pdf  # TrueType text, no Type 3 fonts
    assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    texts = _svg_texts(stem.with_suffix(".svg"))
    legend = [t for t in texts if t.endswith("runs)")]
    assert legend == ["PPO + counts (3 runs)", "PPO (2 runs)"]  # labels, in the order asked for
    assert {"episode return", "success rate", "eval return (greedy)", "eval success rate (greedy)"} <= set(texts)
    joined = " ".join(texts)
    assert "bands: 95% percentile-bootstrap CI of that mean" in joined and "trailing average over 3 bins" in joined
    assert "Warning: PPO on MiniGrid-DoorKey-8x8-v0 has 2 run(s)" in joined
    assert "PPO on MiniGrid-DoorKey-8x8-v0 has 2 run(s)" in err  # and on the terminal
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "**Warning:** PPO on MiniGrid-DoorKey-8x8-v0 has 2 run(s)" in report
    # The last evaluation per run, averaged over seeds: count (skill 1): 1 + seed -> 2.0; none: 0.2 + seed -> 0.7.
    assert "| PPO + counts | 3 |" in report and "final eval return (greedy) mean" in report
    row = next(line for line in report.splitlines() if "| PPO + counts |" in line)
    assert " 2.000 [" in row


def test_unknown_labels_or_formats_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _runs(tmp_path / "runs")
    assert main(["report", str(runs), "--labels", "rnd=RND"]) == 2
    assert "unknown method(s) ['rnd']; the runs have ['count', 'none']" in capsys.readouterr().err
    assert main(["report", str(runs), "--formats", "png,jpg"]) == 2
    assert "unknown figure format(s) ['jpg']" in capsys.readouterr().err


def test_the_legend_is_off_the_data(tmp_path: Path) -> None:
    groups, episodes_of = group_runs(find_runs(_runs(tmp_path / "runs")))
    fig, legend, _ = draw_env(groups, _panels(groups, episodes_of), 4000, 10, FigureStyle())
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent()), "the legend covers a panel"


def test_smoothing_is_a_trailing_mean() -> None:
    curve = np.array([0.0, 3.0, 6.0, 3.0, 0.0, np.nan, 9.0])
    assert smooth_curve(curve, 1) is curve
    expected = [0.0, 1.5, 3.0, 4.0, 3.0, 1.5, 4.5]  # means of the last 3 non-NaN values in each window
    assert smooth_curve(curve, 3).tolist() == pytest.approx(expected)


def test_crafter_score_over_time(tmp_path: Path) -> None:
    def ep(step: int, *names: str) -> dict:
        return {"step": step, "achievements": {a: int(a in names) for a in ACHIEVEMENTS}}

    episodes = [ep(10, "collect_wood"), ep(20), ep(150, "collect_wood", "place_table")]
    curve = crafter_score_curve(episodes, np.array([0.0, 100.0, 200.0, 300.0]))
    first = math.exp((math.log(1 + 50) + 21 * math.log(1)) / 22) - 1  # wood in 1 of 2 episodes
    second = math.exp((2 * math.log(1 + 100) + 20 * math.log(1)) / 22) - 1
    assert curve[0] == pytest.approx(first) and curve[1] == pytest.approx(second) and math.isnan(curve[2])
    # A Crafter run's figure gets the panel.
    _write_run(tmp_path, "Rove/CrafterReward-v1", "none", 0, [{**e, "return": 1.0, "length": 9} for e in episodes])
    groups, episodes_of = group_runs(find_runs(tmp_path))
    assert [p.title for p in _panels(groups, episodes_of)] == ["episode return", "Crafter score (%)"]
