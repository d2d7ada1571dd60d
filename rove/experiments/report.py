"""``rove report``: run folders -> results tables (Markdown + CSV) and learning-curve PNGs.

Per env x method, over seeds: the mean and a 95% percentile-bootstrap confidence interval of the mean of
each run's final metrics, and the interquartile mean (IQM; Agarwal et al. 2021, "Deep RL at the Edge of the
Statistical Precipice") where there are at least :data:`IQM_MIN_RUNS` runs. Crafter runs also get the
Crafter score and the per-achievement success rates over all training episodes (see ``crafter_score``);
NetHack runs their in-game score and dungeon depth. Runs that recorded their trajectories (``trajectories.bin``,
on by default in ``rove train`` and ``rove sweep``) get the exploration metrics of
:mod:`rove.experiments.exploration_metrics` (entropy, information gain, empowerment): a table of their values
early and late in training and a curve of each over training.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rove.experiments.crafter_score import ACHIEVEMENTS, PUBLISHED_SCORES, crafter_score, success_rates
from rove.experiments.exploration_metrics import METRIC_NAMES, ExplorationMetrics, run_metrics, window_values
from rove.experiments.figures import FigureStyle, Panel, band_note, crafter_score_curve, plot_env
from rove.experiments.runs import Run, episode_metrics, find_runs, read_jsonl

EVAL_FILE = "evaluations.jsonl"  # rove.agents.common.evaluation.EVAL_JSONL

IQM_MIN_RUNS = 4
SOLVED_SUCCESS = 0.5  # a run "solves" a sparse task when its final success rate is above this
CONFIDENCE = 0.95
# (key in episode_metrics, column title), in table order; a column appears when any run has the key.
METRICS: tuple[tuple[str, str], ...] = (
    ("final_return", "final return"),
    ("final_success", "final success rate"),
    ("crafter_score", "Crafter score (%)"),
    ("final_score", "NetHack score"),
    ("final_depth", "final depth"),
    ("max_depth", "max depth"),
    ("final_eval_return", "final eval return (greedy)"),
    ("final_eval_success", "final eval success (greedy)"),
)
# Exploration metrics (rove.experiments.exploration_metrics) of runs with trajectories: name -> title.
EXPLORATION_TITLES = {
    "entropy": "entropy (nats)",
    "information_gain": "information gain (nats)",
    "empowerment": "empowerment (nats)",
}
EXPLORATION_KEYS = tuple(f"{when}_{name}" for name in METRIC_NAMES for when in ("initial", "final"))
# Episode fields plotted as learning curves, when the env logs them.
CURVE_KEYS: tuple[tuple[str, str], ...] = (
    ("return", "episode return"),
    ("success", "success rate"),
    ("score", "score"),
)


def bootstrap_ci(
    values: Sequence[float], confidence: float = CONFIDENCE, n_resamples: int = 5000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``.

    Resamples ``values`` with replacement ``n_resamples`` times and takes the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of the resampled means. One value gives ``(v, v)``.

    Raises:
        ValueError: Empty ``values`` or ``confidence`` outside (0, 1).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean after cutting ``floor(n / 4)`` values from each end (``scipy.stats.trim_mean``
    with 0.25, as rliable computes it)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        raise ValueError("iqm needs at least one value")
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


@dataclass
class Summary:
    """Statistics of one metric over the runs (seeds) of one env x method."""

    values: list[float]
    mean: float
    ci: tuple[float, float]
    iqm: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        vals = [float(v) for v in values]
        return cls(vals, float(np.mean(vals)), bootstrap_ci(vals), iqm(vals) if len(vals) >= IQM_MIN_RUNS else None)

    def text(self, digits: int = 3) -> str:
        low, high = self.ci
        return f"{self.mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


@dataclass
class Group:
    """All runs of one env x method."""

    env_id: str
    method: str
    runs: list[Run]
    metrics: dict[str, Summary] = field(default_factory=dict)
    achievement_rates: dict[str, Summary] = field(default_factory=dict)  # percent, over seeds
    run_metrics: list[dict[str, Any]] = field(default_factory=list)
    exploration: dict[Path, ExplorationMetrics] = field(default_factory=dict)  # runs with trajectories


def group_runs(
    runs: Sequence[Run], budget: int | None = None, include_unfinished: bool = False
) -> tuple[list[Group], dict[Path, list[dict[str, Any]]]]:
    """Groups runs by (env, method) and computes each run's metrics from its episodes (within ``budget``).

    Returns the groups (sorted by env, method) and every used run's episodes (for the curves).
    """
    groups: dict[tuple[str, str], Group] = {}
    episodes_of: dict[Path, list[dict[str, Any]]] = {}
    for run in runs:
        if not (run.finished or include_unfinished):
            continue
        episodes = run.episodes()
        if budget is not None:
            episodes = [e for e in episodes if e.get("step", 0) <= budget]
        episodes_of[run.path] = episodes
        group = groups.setdefault((run.env_id, run.method), Group(run.env_id, run.method, []))
        group.runs.append(run)
        exploration = run_metrics(run.path, budget)
        if exploration is not None:
            group.exploration[run.path] = exploration
        group.run_metrics.append(
            {
                "run": run.path.name,
                "seed": run.seed,
                "finished": run.finished,
                **episode_metrics(episodes),
                **eval_metrics(evaluations(run, budget)),
                **(
                    {**window_values(exploration, last=False), **window_values(exploration)}
                    if exploration is not None
                    else {}
                ),
            }
        )
    for group in groups.values():
        for key in [k for k, _ in METRICS] + list(EXPLORATION_KEYS):
            values = [m[key] for m in group.run_metrics if isinstance(m.get(key), (int, float))]
            if values:
                group.metrics[key] = Summary.of(values)
        rates = [m["achievement_rates"] for m in group.run_metrics if m.get("achievement_rates")]
        if rates:
            group.achievement_rates = {a: Summary.of([r[a] for r in rates]) for a in ACHIEVEMENTS}
    return [groups[k] for k in sorted(groups)], episodes_of


def learning_curve(episodes: Sequence[Mapping[str, Any]], key: str, edges: np.ndarray) -> np.ndarray:
    """Mean of ``key`` over the episodes ending in each step interval ``(edges[i], edges[i+1]]``.

    An interval without episodes carries the previous value forward (NaN before the first episode).

    Returns:
        ``float64 [len(edges) - 1]``.
    """
    out = np.full(len(edges) - 1, np.nan)
    pairs = [(e["step"], float(e[key])) for e in episodes if isinstance(e.get(key), (bool, int, float))]
    if not pairs:
        return out
    steps = np.array([p[0] for p in pairs], dtype=np.float64)
    values = np.array([p[1] for p in pairs])
    bins = np.clip(np.searchsorted(edges, steps, side="left") - 1, 0, len(edges) - 2)
    sums = np.bincount(bins, weights=values, minlength=len(edges) - 1)
    counts = np.bincount(bins, minlength=len(edges) - 1)
    last = np.nan
    for i in range(len(out)):
        if counts[i]:
            last = sums[i] / counts[i]
        out[i] = last
    return out


def _curve_band(curves: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Mean and 95% bootstrap band across seeds (rows) per bin, ignoring seeds without data yet."""
    mean = np.full(curves.shape[1], np.nan)
    low, high = mean.copy(), mean.copy()
    for j in range(curves.shape[1]):
        column = curves[:, j][~np.isnan(curves[:, j])]
        if column.size:
            mean[j] = column.mean()
            low[j], high[j] = bootstrap_ci(column, n_resamples=n_resamples, seed=seed)
    return mean, low, high


def evaluations(run: Run, budget: int | None = None) -> list[dict[str, Any]]:
    """The run's greedy evaluations (``evaluations.jsonl``, from ``--eval-freq``), within ``budget`` steps."""
    records = read_jsonl(run.path / EVAL_FILE)
    return [r for r in records if budget is None or r.get("step", 0) <= budget]


def eval_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``final_eval_return`` / ``final_eval_success``: the last evaluation's means (empty without evaluations)."""
    if not records:
        return {}
    out = {"final_eval_return": float(records[-1]["mean_return"])}
    if "success_rate" in records[-1]:
        out["final_eval_success"] = float(records[-1]["success_rate"])
    return out


def _panels(groups: Sequence[Group], episodes_of: Mapping[Path, list[dict[str, Any]]]) -> list[Panel]:
    runs = [r for g in groups for r in g.runs]
    head = [e for r in runs for e in episodes_of[r.path][:50]]

    def training(key: str) -> Callable[[Run, np.ndarray], np.ndarray]:
        return lambda run, edges: learning_curve(episodes_of[run.path], key, edges)

    panels = [Panel(title, training(key)) for key, title in CURVE_KEYS if any(key in e for e in head)]
    if any(isinstance(e.get("achievements"), Mapping) for e in head):
        panels.append(Panel("Crafter score (%)", lambda run, edges: crafter_score_curve(episodes_of[run.path], edges)))
    exploration = {path: m.records() for g in groups for path, m in g.exploration.items()}

    def explored(name: str) -> Callable[[Run, np.ndarray], np.ndarray]:
        return lambda run, edges: learning_curve(exploration.get(run.path, []), name, edges)

    if exploration:
        panels += [Panel(EXPLORATION_TITLES[name], explored(name)) for name in METRIC_NAMES]
    evals = {r.path: [{**e, "return": e["mean_return"]} for e in evaluations(r)] for r in runs}
    if any(evals.values()):
        panels.append(
            Panel("eval return (greedy)", lambda run, edges: learning_curve(evals[run.path], "return", edges))
        )
    if any("success_rate" in e for v in evals.values() for e in v):
        success = {p: [{**e, "success": e["success_rate"]} for e in v if "success_rate" in e] for p, v in evals.items()}
        panels.append(
            Panel("eval success rate (greedy)", lambda run, edges: learning_curve(success[run.path], "success", edges))
        )
    return panels


def plot_curves(
    groups: Sequence[Group],
    episodes_of: Mapping[Path, list[dict[str, Any]]],
    path: Path,
    bins: int = 50,
    style: FigureStyle | None = None,
) -> Path | None:
    """One figure for one env (see :mod:`rove.experiments.figures`): training curves of each logged key, the
    Crafter score over time, and greedy-evaluation curves, a line (mean) and band (95% CI) per method.

    Writes ``path`` with each suffix of ``style.formats`` (default: PNG only); returns the first file.
    """
    written, _ = plot_figure(groups, episodes_of, path, bins, style or FigureStyle(formats=("png",)))
    return written[0] if written else None


def plot_figure(
    groups: Sequence[Group],
    episodes_of: Mapping[Path, list[dict[str, Any]]],
    path: Path,
    bins: int,
    style: FigureStyle,
) -> tuple[list[Path], list[str]]:
    """:func:`plot_curves`, returning every file written and the figure's warnings."""
    steps = [e["step"] for g in groups for r in g.runs for e in episodes_of[r.path]]
    steps += [e["step"] for g in groups for r in g.runs for e in evaluations(r)]
    max_step = max(steps, default=0)
    panels = _panels(groups, episodes_of)
    if max_step <= 0 or not panels:
        return [], []
    return plot_env(groups, panels, max_step, path, bins, style)


def short_count(value: float) -> str:
    """``1500 -> "1.5k"``, ``2_000_000 -> "2M"``: tick labels that do not run into each other."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.4g}{suffix}"
    return f"{value:.4g}"


def label_steps_axis(ax: Any) -> None:
    """Labels a plot's x axis as env steps, with short tick labels (``50k``, ``1.2M``)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xlabel("env steps")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: short_count(value)))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def results_markdown(groups: Sequence[Group], budget: int | None = None, style: FigureStyle | None = None) -> str:
    """The main table: a row per env x method, ``mean [95% CI]`` per metric, IQM of the first metric."""
    keys = [(k, t) for k, t in METRICS if any(k in g.metrics for g in groups)]
    # Sparse-reward tasks are won or lost per seed: say in how many runs the agent ends up solving the task.
    solved = any("final_success" in g.metrics for g in groups)
    header = ["env", "method", "runs", *(["solved"] if solved else []), *[f"{t} mean [95% CI]" for _, t in keys]]
    header.append("IQM final return")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + " |"]
    for g in groups:
        cells = [g.env_id, (style or FigureStyle()).label(g.method), str(len(g.runs))]
        if solved:
            cells.append(f"{solved_runs(g)} / {len(g.runs)}" if "final_success" in g.metrics else "")
        cells += [g.metrics[k].text() if k in g.metrics else "" for k, _ in keys]
        ret = g.metrics.get("final_return")
        cells.append(_fmt(ret.iqm) if ret is not None and ret.iqm is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"Final metrics: mean over each run's last 10% of training episodes"
        f"{f' within {budget} env steps' if budget else ''}; 95% percentile-bootstrap CI of the mean over runs"
        f" (seeds); IQM only where a method has >= {IQM_MIN_RUNS} runs."
        + (f" Solved: runs whose final success rate is above {SOLVED_SUCCESS}." if solved else "")
    )
    return "\n".join([*lines, "", note])


def solved_runs(group: Group) -> int:
    """How many of the group's runs end with a final success rate above :data:`SOLVED_SUCCESS`."""
    return sum(1 for m in group.run_metrics if m.get("final_success", 0.0) > SOLVED_SUCCESS)


def crafter_markdown(groups: Sequence[Group], style: FigureStyle | None = None) -> str:
    """Per-achievement success rates (percent of all training episodes; mean [95% CI] over seeds) and scores."""
    crafter = [g for g in groups if g.achievement_rates]
    if not crafter:
        return ""
    label = (style or FigureStyle()).label
    header = ["achievement", *[f"{g.env_id.split('/')[-1]} {label(g.method)}" for g in crafter]]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * len(crafter)) + " |"]
    for a in ACHIEVEMENTS:
        lines.append("| " + " | ".join([a, *[_rate_text(g.achievement_rates[a]) for g in crafter]]) + " |")
    lines.append("| **Crafter score** | " + " | ".join(g.metrics["crafter_score"].text(2) for g in crafter) + " |")
    published = ", ".join(f"{k} {v}" for k, v in PUBLISHED_SCORES.items())
    return "\n".join(
        [
            *lines,
            "",
            "Success rate: percent of training episodes in which the achievement was unlocked, mean [95% CI] "
            "over runs (the mean alone where a method has one run); score "
            "S = exp(mean_i ln(1 + s_i)) - 1 per run, mean [95% CI] over runs (Hafner 2021).",
            f"Published scores at 1M steps (%): {published}.",
        ]
    )


def _rate_text(rate: Summary) -> str:
    return f"{rate.mean:.1f}" if len(rate.values) == 1 else rate.text(1)


def exploration_markdown(groups: Sequence[Group], style: FigureStyle | None = None) -> str:
    """The exploration metrics early (first 10 % of episodes) and late (last 10 %) in training, mean [95% CI]
    over runs, for the groups whose runs recorded trajectories."""
    rows = [g for g in groups if g.exploration]
    if not rows:
        return ""
    label = (style or FigureStyle()).label
    header = ["env", "method", "runs"]
    for name in METRIC_NAMES:
        header += [f"{EXPLORATION_TITLES[name]}, first 10 %", "last 10 %"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + " |"]
    for g in rows:
        cells = [g.env_id, label(g.method), str(len(g.exploration))]
        cells += [g.metrics[k].text() if k in g.metrics else "" for k in EXPLORATION_KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "Per episode: entropy of the visited state keys; information gain summed over its transitions (KL of a "
        "Dirichlet world model's update); empowerment, the mean over its states of the channel capacity from "
        "the actions taken there to the next state (rove.experiments.exploration_metrics). Mean over the first / "
        "last 10 % of each run's episodes; 95% percentile-bootstrap CI of the mean over runs (seeds)."
    )
    return "\n".join([*lines, "", note])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v, 6) for k, v in row.items()})


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_report(
    runs_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    bins: int = 50,
    budget: int | None = None,
    include_unfinished: bool = False,
    style: FigureStyle | None = None,
) -> dict[str, Any]:
    """Writes ``report.md``, ``results.csv``, ``runs.csv``, ``crafter_achievements.csv`` (Crafter runs) and
    ``curves_<env>.{png,pdf,svg}`` per env into ``out_dir`` (default ``runs_dir/report``). ``style`` names and
    orders the methods (tables and figures) and sets the figures' formats and smoothing.

    Returns:
        ``{"markdown": path, "csv": path, "runs_csv": path, "pngs": [...], "figures": [every figure file],
        "warnings": [...], "groups": [...], "skipped": n}``.

    Raises:
        FileNotFoundError: ``runs_dir`` is missing.
        ValueError: No (finished) run folder under ``runs_dir``.
    """
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir is not None else runs_dir / "report"
    runs = [r for r in find_runs(runs_dir) if out not in r.path.parents]
    groups, episodes_of = group_runs(runs, budget=budget, include_unfinished=include_unfinished)
    skipped = sum(1 for r in runs if r.path not in episodes_of)
    if not groups:
        hint = f" ({skipped} unfinished: pass --include-unfinished)" if skipped else ""
        raise ValueError(f"no finished run folders under {runs_dir}{hint}")
    style = style or FigureStyle()
    style.check_methods([g.method for g in groups])
    groups = sorted(groups, key=lambda g: (g.env_id, style.sort_key(g.method)))
    out.mkdir(parents=True, exist_ok=True)

    pngs, figures, warnings = [], [], []
    for env_id in sorted({g.env_id for g in groups}):
        env_groups = [g for g in groups if g.env_id == env_id]
        written, notes = plot_figure(env_groups, episodes_of, out / f"curves_{_safe(env_id)}.png", bins, style)
        if written:
            figures += written
            pngs += [p for p in written if p.suffix == ".png"] or written[:1]
            warnings += notes

    rows, run_rows = [], []
    for g in groups:
        row: dict[str, Any] = {"env": g.env_id, "method": g.method, "runs": len(g.runs)}
        for key in [k for k, _ in METRICS] + list(EXPLORATION_KEYS):
            if key in g.metrics:
                s = g.metrics[key]
                row.update({f"{key}_mean": s.mean, f"{key}_ci_low": s.ci[0], f"{key}_ci_high": s.ci[1]})
                row[f"{key}_iqm"] = s.iqm
        rows.append(row)
        for m in g.run_metrics:
            flat = {k: v for k, v in m.items() if k != "achievement_rates"}
            run_rows.append({"env": g.env_id, "method": g.method, **flat})
    _write_csv(out / "results.csv", rows)
    _write_csv(out / "runs.csv", run_rows)

    sections = [f"# Results: {runs_dir}", "", results_markdown(groups, budget, style)]
    from rove.experiments.milestones import milestones_markdown  # imports this module

    if milestones := milestones_markdown(groups, episodes_of, budget, style.label):
        sections += ["", "## Steps to 50 % success", "", milestones]
    crafter = crafter_markdown(groups, style)
    if crafter:
        sections += ["", "## Crafter achievements", "", crafter]
        crafter_groups = [g for g in groups if g.achievement_rates]
        crafter_rows = []
        for a in ACHIEVEMENTS:
            row = {"achievement": a}
            for g in crafter_groups:
                rate, name = g.achievement_rates[a], f"{g.env_id}|{g.method}"
                row.update({name: rate.mean, f"{name}|ci_low": rate.ci[0], f"{name}|ci_high": rate.ci[1]})
            crafter_rows.append(row)
        _write_csv(out / "crafter_achievements.csv", crafter_rows)
    exploration = exploration_markdown(groups, style)
    if exploration:
        sections += ["", "## Exploration metrics", "", exploration]
    if pngs:
        sections += ["", "## Learning curves", "", *[f"![{p.stem}]({p.name})" for p in pngs]]
        sections += ["", band_note(style) + f" Files: curves_<env>.{{{','.join(style.formats)}}}."]
        sections += [f"\n**Warning:** {w}." for w in warnings]
    if skipped:
        sections += ["", f"{skipped} unfinished run folder(s) left out."]
    markdown = out / "report.md"
    markdown.write_text("\n".join(sections) + "\n")
    return {
        "markdown": markdown,
        "csv": out / "results.csv",
        "runs_csv": out / "runs.csv",
        "pngs": pngs,
        "figures": figures,
        "warnings": warnings,
        "groups": groups,
        "skipped": skipped,
    }


__all__ = [
    "Group",
    "Summary",
    "bootstrap_ci",
    "crafter_score",
    "iqm",
    "learning_curve",
    "plot_curves",
    "success_rates",
    "write_report",
]
