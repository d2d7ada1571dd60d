"""Live suite metrics: what each suite's papers report, computed over the agent's recent episodes (the last
100, SB3's ``ep_info_buffer``) and logged with every update, so TensorBoard and W&B show them while training.

- MiniGrid: ``rollout/success_rate`` (logged by the agent itself).
- NetHack: ``rollout/score_mean`` (in-game score), ``rollout/depth_mean`` and ``rollout/depth_max`` (dungeon level).
- Crafter: ``rollout/crafter_score`` (Hafner 2021's score over these episodes, percent) and
  ``rollout/achievements/<name>`` (percent of these episodes that unlocked it). The report's Crafter score is
  the paper's, over *all* training episodes; this one is a moving window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def _numbers(episodes: list[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.asarray(
        [e[key] for e in episodes if isinstance(e.get(key), (int, float)) and not isinstance(e.get(key), bool)],
        dtype=np.float64,
    )


def suite_metrics(episodes: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The suite metrics of ``episodes`` (records as in ``episodes.jsonl``), keyed as logged."""
    episodes = list(episodes)
    out: dict[str, float] = {}
    scores = _numbers(episodes, "score")
    if scores.size:
        out["rollout/score_mean"] = float(scores.mean())
    depths = _numbers(episodes, "depth")
    if depths.size:
        out["rollout/depth_mean"] = float(depths.mean())
        out["rollout/depth_max"] = float(depths.max())
    if any(isinstance(e.get("achievements"), Mapping) for e in episodes):
        from rove.experiments.crafter_score import crafter_score, success_rates

        rates = success_rates(episodes)
        out["rollout/crafter_score"] = crafter_score(rates)
        out.update({f"rollout/achievements/{name}": rate for name, rate in rates.items()})
    return out


def progress_postfix(episodes: Iterable[Mapping[str, Any]]) -> str:
    """``"return 0.55 | success 1.00"`` over recent episodes, for the progress bar (empty before the first)."""
    episodes = list(episodes)
    if not episodes:
        return ""
    parts = [f"return {np.mean([e['return'] for e in episodes]):.3g}"]
    successes = [float(e["success"]) for e in episodes if isinstance(e.get("success"), (bool, int, float))]
    if successes:
        parts.append(f"success {np.mean(successes):.2f}")
    scores = _numbers(episodes, "score")
    if scores.size:
        parts.append(f"score {scores.mean():.3g}")
    return " | ".join(parts)
