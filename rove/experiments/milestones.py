"""Steps to a success milestone per method: the "steps to 50 % success" table of ``rove report``.

A run reaches the milestone at the training step where the success rate of its last ``window`` finished
episodes first reaches ``threshold`` (at least ``window`` episodes must have finished: a lucky first few do not
count). Per env x method, over seeds: the mean and a 95 % percentile-bootstrap CI of those steps when every run
reached it; each run's step, a run that never reached it shown as ``>budget`` (its steps trained, capped by
``rove report --budget``). A mean over only the runs that reached it would flatter a method that mostly fails,
so none is given then: the row says how many runs reached it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rove.experiments.report import Group, Summary, short_count

THRESHOLD = 0.5
WINDOW = 100  # episodes, as SB3's and Rove's rollout statistics (stats_window_size)


def steps_to_success(
    episodes: Sequence[Mapping[str, Any]], threshold: float = THRESHOLD, window: int = WINDOW
) -> int | None:
    """The ``step`` of the episode at which the mean ``success`` of the last ``window`` episodes (those that
    log ``success``, in logged order) first reaches ``threshold``; None if it never does."""
    if window < 1 or not 0.0 < threshold <= 1.0:
        raise ValueError(f"window must be >= 1 and threshold in (0, 1], got {window}, {threshold}")
    logged = [e for e in episodes if "success" in e]
    if len(logged) < window:
        return None
    successes = np.cumsum([0.0] + [float(bool(e["success"])) for e in logged])
    in_window = successes[window:] - successes[:-window]  # [i]: episodes i .. i + window - 1
    reached = np.flatnonzero(in_window >= threshold * window - 1e-9)
    return int(logged[reached[0] + window - 1]["step"]) if reached.size else None


@dataclass
class Milestone:
    """One env x method: each run's step to the milestone (None: not reached) and its budget."""

    env_id: str
    method: str
    steps: list[int | None]
    budgets: list[int]

    @property
    def reached(self) -> int:
        return sum(s is not None for s in self.steps)

    def summary(self) -> Summary | None:
        """Mean and CI over the runs, only when every run reached the milestone."""
        if not self.steps or self.reached < len(self.steps):
            return None
        return Summary.of([float(s) for s in self.steps if s is not None])

    def per_run(self) -> str:
        pairs = zip(self.steps, self.budgets, strict=True)
        return ", ".join(short_count(s) if s is not None else f">{short_count(b)}" for s, b in pairs)


def _budget(run: Any, episodes: Sequence[Mapping[str, Any]], budget: int | None) -> int:
    trained = (run.result or {}).get("total_timesteps")
    if not isinstance(trained, int):
        trained = max((int(e.get("step", 0)) for e in episodes), default=0)
    return min(trained, budget) if budget is not None else trained


def milestones(
    groups: Sequence[Group],
    episodes_of: Mapping[Path, list[dict[str, Any]]],
    budget: int | None = None,
    threshold: float = THRESHOLD,
    window: int = WINDOW,
) -> list[Milestone]:
    """A :class:`Milestone` per group whose runs log ``success`` (``episodes_of``: as ``group_runs`` returns)."""
    out = []
    for g in groups:
        episodes = [episodes_of.get(run.path, []) for run in g.runs]
        if not any("success" in e for eps in episodes for e in eps):
            continue
        steps = [steps_to_success(eps, threshold, window) for eps in episodes]
        budgets = [_budget(run, eps, budget) for run, eps in zip(g.runs, episodes, strict=True)]
        out.append(Milestone(g.env_id, g.method, steps, budgets))
    return out


def milestones_markdown(
    groups: Sequence[Group],
    episodes_of: Mapping[Path, list[dict[str, Any]]],
    budget: int | None = None,
    label: Any = str,
    threshold: float = THRESHOLD,
    window: int = WINDOW,
) -> str:
    """The table (``""`` when no run logs ``success``); ``label`` names a method (``FigureStyle.label``)."""
    rows = milestones(groups, episodes_of, budget, threshold, window)
    if not rows:
        return ""
    percent = f"{threshold:.0%}"
    lines = [
        f"| env | method | runs reaching {percent} | steps to {percent} success mean [95% CI] | per run |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for m in rows:
        s = m.summary()
        text = f"{short_count(s.mean)} [{short_count(s.ci[0])}, {short_count(s.ci[1])}]" if s else ""
        lines.append(f"| {m.env_id} | {label(m.method)} | {m.reached} / {len(m.steps)} | {text} | {m.per_run()} |")
    note = (
        f"Steps to {percent} success: the training step at which a run's success rate over its last {window} "
        f"episodes first reaches {percent}; '>N': not reached in the N steps it trained. Mean and 95% "
        "percentile-bootstrap CI over runs (seeds) only where every run reached it."
    )
    return "\n".join([*lines, "", note])
