"""``rove report`` with recorded trajectories: the exploration metrics table (early and late, intervals over
seeds), the CSV columns and the curves over training."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rove.agents.common.trajectories import DONE, ROW_DTYPE, START, TRAJECTORY_FILE
from rove.experiments.figures import FigureStyle
from rove.experiments.report import _panels, bootstrap_ci, group_runs, write_report
from rove.experiments.runs import find_runs


def write_run(root: Path, method: str, seed: int, sizes: list[int] | None) -> None:
    """A finished run folder; with ``sizes``, trajectories whose i-th episode walks a chain of ``sizes[i]``
    distinct states (entropy ln sizes[i]), and the matching episodes.jsonl."""
    path = root / f"MiniGrid-Empty-5x5-v0__{method}__{seed}__20250101-000000"
    path.mkdir(parents=True)
    env = "Rove/MiniGrid-Empty-5x5-v0"
    (path / "config.json").write_text(json.dumps({"env_id": env, "intrinsic": None if method == "none" else method}))
    (path / "result.json").write_text(json.dumps({"env_id": env, "method": method, "seed": seed}))
    rows, episodes, step, state = [], [], 0, 1000 * seed
    for size in sizes or [3] * 20:
        for i in range(size - 1):
            step += 1
            flags = (START if i == 0 else 0) | (DONE if i == size - 2 else 0)
            rows.append((step, state + i, state + i + 1, 0, 0, flags))
        state += size
        episodes.append({"step": step, "return": 0.0, "length": size - 1})
    (path / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    if sizes is not None:
        (path / TRAJECTORY_FILE).write_bytes(np.array(rows, dtype=ROW_DTYPE).tobytes())


def test_report_shows_exploration_metrics_per_method_and_over_training(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    growth = {0: [2 + i for i in range(20)], 1: [3 + 2 * i for i in range(20)]}
    for seed, sizes in growth.items():
        write_run(runs, "count", seed, sizes)
        write_run(runs, "none", seed, None)  # a run without trajectories: no exploration row
    out = write_report(runs, tmp_path / "report", bins=5, style=FigureStyle(formats=("png",)))

    count = next(g for g in out["groups"] if g.method == "count")
    none = next(g for g in out["groups"] if g.method == "none")
    assert not none.exploration and "final_entropy" not in none.metrics
    # First / last 10 % of 20 episodes: two episodes each, entropy ln(size).
    initial = [np.mean([math.log(s) for s in sizes[:2]]) for sizes in growth.values()]
    final = [np.mean([math.log(s) for s in sizes[-2:]]) for sizes in growth.values()]
    assert count.metrics["initial_entropy"].mean == pytest.approx(np.mean(initial))
    assert count.metrics["final_entropy"].mean == pytest.approx(np.mean(final))
    assert count.metrics["final_entropy"].ci == pytest.approx(bootstrap_ci(final))
    assert count.metrics["final_empowerment"].mean == pytest.approx(0.0)  # one action, one outcome per state

    text = out["markdown"].read_text()
    section = text.split("## Exploration metrics")[1].split("##")[0].splitlines()
    (row,) = [line for line in section if line.startswith("| Rove/")]  # only the method with trajectories
    assert row.startswith("| Rove/MiniGrid-Empty-5x5-v0 | count | 2 | ")
    low, high = bootstrap_ci(final)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == f"{np.mean(final):.3f} [{low:.3f}, {high:.3f}]"  # entropy, last 10 %
    results = {r["method"]: r for r in csv.DictReader((tmp_path / "report" / "results.csv").read_text().splitlines())}
    assert float(results["count"]["final_entropy_mean"]) == pytest.approx(np.mean(final))
    assert results["none"]["final_entropy_mean"] == ""

    # Over training: one panel per metric, each run's curve the mean per bin of the episodes ending in it.
    groups, episodes_of = group_runs(find_runs(runs))
    panels = {p.title: p for p in _panels(groups, episodes_of)}
    assert {"entropy (nats)", "information gain (nats)", "empowerment (nats)"} <= set(panels)
    run = next(r for g in groups if g.method == "count" for r in g.runs if r.seed == 0)
    edges = np.array([0.0, 60.0, 1e9])
    curve = panels["entropy (nats)"].curve_of(run, edges)
    steps = np.cumsum([s - 1 for s in growth[0]])
    entropies = np.log(growth[0])
    np.testing.assert_allclose(curve, [entropies[steps <= 60].mean(), entropies[steps > 60].mean()])
    assert out["pngs"] and out["pngs"][0].is_file()
