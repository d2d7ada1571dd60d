"""Entropy, information gain and empowerment of recorded trajectories, per episode and over training.

After Lidayan, Du, Kosoy, Rufova, Abbeel and Gopnik, "Intrinsically-Motivated Humans and Agents in Open-World
Exploration" (arXiv 2503.23631, 2025; data: alyd/humans_in_crafter_data, a simplified Crafter:
alyd/simple-crafter). The paper compares adults, children and agents in Crafter through three intrinsic
objectives: entropy, information gain and empowerment. It reports that entropy and empowerment correlate
positively with human exploration progress while information gain does not consistently, and that across
humans and agents entropy rises quickly then plateaus while empowerment keeps rising.

What could be read here: the abstract and the two repositories' READMEs (npz gameplay logs of humans, three
DQN agents and a random agent; 1M-step DQN runs with 5 evaluation episodes every 20k steps). The paper's
method section could not be retrieved and the data repository ships no analysis code, so the estimators
below are our own textbook definitions, each chosen so that it is exact where the answer is known:

- **Entropy** of an episode: the plug-in Shannon entropy (nats) of the empirical distribution of the state
  keys it visits (``s_0`` and every ``s_{t+1}``). Uniform visits of N states give ``ln N``; one state, 0.
- **Information gain** of a transition: the KL divergence from the prior to the posterior belief of a
  count-based (tabular, Bayesian) world model about ``p(s' | s, a)`` when it sees ``(s, a, s')``. The belief
  per ``(s, a)`` is a Dirichlet over ``support`` next-state outcomes with a symmetric prior ``prior`` per
  outcome, updated on the run's transitions in the order they happened (one model per run, all envs). For
  ``Dir(alpha) -> Dir(alpha + e_j)`` the KL has the closed form
  ``ln(alpha_0 / alpha_j) + psi(alpha_j + 1) - psi(alpha_0 + 1)`` (``alpha_0 = sum alpha``), so only the counts
  ``n(s, a, s')`` and ``n(s, a)`` seen before are needed. An episode's information gain is the sum over its
  transitions (what the model learned from it); it falls as the world becomes known.
- **Empowerment** of a state: the ``horizon``-step channel capacity ``max_p I(A^n; S_{t+n} | s)`` of the
  empirical channel from the action sequences taken at ``s`` to the state reached ``n`` steps later, with
  ``p(s_{t+n} | s, a^n)`` estimated from all of the run's transitions. Capacity by Blahut-Arimoto (exact
  ``ln(#distinct outcomes)`` when every action sequence tried at ``s`` always led to one state). An episode's
  empowerment is the mean over the states it visits.

Choices where the paper is silent (or unread), and why:

- States are Rove's ``state_key`` by default (the recorder's key): Crafter position, facing and inventory,
  NetHack dungeon/level/position, MiniGrid the exact grid state (``pose_key`` for the agent's pose and carried
  object only). Crafter's inventory is the abstraction Crafter's achievements are about.
- Empowerment is estimated from the actions the agent *took*: actions never tried at a state are absent from
  its channel, so in a deterministic env the estimate is a lower bound of the true empowerment (a channel
  restricted to fewer inputs has no more capacity), exact once every action was tried there. A state visited
  once has estimate 0; policies that revisit states with varied actions score higher. The learned module
  :mod:`rove.intrinsic.empowerment` generalises across states instead.
- ``support`` (default: the number of actions, the most distinct successors one state's actions can have in
  a deterministic env) and ``prior`` 1 (Laplace) fix the world model's prior; they scale information gain, not
  its trend.
- Per-episode entropy and summed information gain grow with the episode's length (more states visited,
  more transitions learned from); compare methods whose episodes have similar lengths, or read them with
  the length (``ExplorationMetrics.length``).
- Over training: ``rove report`` bins the per-episode values by the step each episode ended at, as it bins
  returns (:func:`rove.experiments.report.learning_curve`), so the curves read like learning curves.

All estimators are vectorised NumPy over the run's rows (sorting and counting), except Blahut-Arimoto on the
few states whose observed channel is not deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rove.agents.common.trajectories import DONE, START, read_meta, read_trajectories

METRIC_NAMES = ("entropy", "information_gain", "empowerment")


def entropy(keys: np.ndarray) -> float:
    """Plug-in Shannon entropy (nats) of the empirical distribution of ``keys [N]``; 0 for no keys."""
    if len(keys) == 0:
        return 0.0
    _, counts = np.unique(keys, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def _unique_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, inverse, counts)`` of the distinct tuples of the int64 columns: ``np.unique(axis=0)``'s result,
    computed by one ``lexsort`` (several times faster than ``np.unique`` on rows)."""
    table = np.stack([np.asarray(c, dtype=np.int64) for c in columns], axis=1)
    if len(table) == 0:
        return table, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort(table.T[::-1])  # sorted by the first column, then the second, ...
    ordered = table[order]
    first = np.r_[True, (ordered[1:] != ordered[:-1]).any(1)]
    ids = np.cumsum(first) - 1
    inverse = np.empty(len(table), dtype=np.int64)
    inverse[order] = ids
    return ordered[first], inverse, np.bincount(ids)


def _group_ids(*columns: np.ndarray) -> np.ndarray:
    """``int64 [N]`` id of each row's tuple of column values (equal tuples, equal ids)."""
    return _unique_rows(*columns)[1]


def _seen_before(ids: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows have the same id (``int64 [N]``)."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    first = np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(ids)), 0))
    out = np.empty(len(ids), dtype=np.int64)
    out[order] = np.arange(len(ids)) - group_start
    return out


def dirichlet_information_gain(
    count_outcome: np.ndarray, count_total: np.ndarray, support: int, prior: float
) -> np.ndarray:
    """``KL(Dir(alpha + e_j) || Dir(alpha))`` for a symmetric Dirichlet(``prior``) over ``support`` outcomes
    after ``count_total`` observations of which ``count_outcome`` were outcome ``j`` (arrays, float64)."""
    alpha_j = np.asarray(count_outcome, dtype=np.float64) + prior
    alpha_0 = np.asarray(count_total, dtype=np.float64) + prior * support
    digamma = torch.special.digamma
    gain = (
        np.log(alpha_0 / alpha_j)
        + (digamma(torch.from_numpy(alpha_j + 1.0)) - digamma(torch.from_numpy(alpha_0 + 1.0))).numpy()
    )
    return np.asarray(gain, dtype=np.float64)


def information_gain(
    states: np.ndarray, actions: np.ndarray, next_states: np.ndarray, support: int, prior: float = 1.0
) -> np.ndarray:
    """Information gain (nats) of each transition, in order, about the tabular model ``p(s' | s, a)``.

    Returns:
        ``float64 [N]``: the KL from the model's belief before the transition to the belief after it.
    """
    if support < 1 or not prior > 0:
        raise ValueError(f"support must be >= 1 and prior > 0, got {support}, {prior}")
    n = len(states)
    if n == 0:
        return np.zeros(0)
    triple = _seen_before(_group_ids(states, actions, next_states))
    pair = _seen_before(_group_ids(states, actions))
    return dirichlet_information_gain(triple, pair, support, prior)


def channel_capacity(channel: np.ndarray, tol: float = 1e-9, max_iter: int = 1000) -> float:
    """Capacity (nats) of a discrete memoryless channel ``p(y | x)``, rows ``x``, by Blahut-Arimoto."""
    p_yx = np.asarray(channel, dtype=np.float64)
    p_yx = p_yx / p_yx.sum(1, keepdims=True)
    p_x = np.full(p_yx.shape[0], 1.0 / p_yx.shape[0])
    log_p = np.log(np.where(p_yx > 0, p_yx, 1.0))
    low = 0.0
    for _ in range(max_iter):
        q_y = p_x @ p_yx
        log_q = np.log(np.where(q_y > 0, q_y, 1.0))
        divergence = (p_yx * (log_p - log_q)).sum(1)  # D(p(.|x) || q) per input
        low, high = float(p_x @ divergence), float(divergence.max())
        if high - low < tol:
            break
        p_x = p_x * np.exp(divergence - divergence.max())
        p_x /= p_x.sum()
    return max(low, 0.0)


def state_empowerment(sources: np.ndarray, inputs: np.ndarray, outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel capacity from ``inputs`` (action sequences) to ``outcomes`` at each source state.

    Args:
        sources, inputs, outcomes: ``int64 [N]`` samples ``(s, a^n, s_{t+n})``.

    Returns:
        ``(states, capacity)``: the sorted distinct source states ``int64 [S]`` and the capacity (nats) of each
        one's empirical channel ``float64 [S]``.
    """
    if len(sources) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    triples, _, counts = _unique_rows(sources, inputs, outcomes)
    s, a, o = triples[:, 0], triples[:, 1], triples[:, 2]
    states, state_start = np.unique(s, return_index=True)
    # Deterministic sources (one outcome per input): capacity ln(#distinct outcomes), counted without a loop.
    pair_first = np.r_[True, (s[1:] != s[:-1]) | (a[1:] != a[:-1])]
    outcomes_per_pair = np.bincount(np.cumsum(pair_first) - 1)
    stochastic = np.isin(states, s[pair_first][outcomes_per_pair > 1])
    pairs = _unique_rows(s, o)[0]
    distinct = np.bincount(np.searchsorted(states, pairs[:, 0]), minlength=len(states))
    capacity = np.log(distinct.astype(np.float64))
    ends = np.r_[state_start[1:], len(s)]
    for i in np.flatnonzero(stochastic):
        lo, hi = int(state_start[i]), int(ends[i])
        a_ids = np.unique(a[lo:hi], return_inverse=True)[1].reshape(-1)
        o_ids = np.unique(o[lo:hi], return_inverse=True)[1].reshape(-1)
        channel = np.zeros((a_ids.max() + 1, o_ids.max() + 1))
        np.add.at(channel, (a_ids, o_ids), counts[lo:hi])
        capacity[i] = channel_capacity(channel)
    return states, capacity


def lookup(states: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` of ``queries`` in the sorted ``states`` (NaN where absent)."""
    out = np.full(len(queries), np.nan)
    if len(states) == 0:
        return out
    pos = np.minimum(np.searchsorted(states, queries), len(states) - 1)
    found = states[pos] == queries
    out[found] = values[pos[found]]
    return out


def episode_ids(rows: np.ndarray) -> np.ndarray:
    """``int64 [N]`` episode index of each row (numbered env by env): an episode begins at an env's first row
    and at every row flagged START."""
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    env = rows["env"].astype(np.int64)
    order = np.argsort(env, kind="stable")
    flags = rows["flags"][order]
    env_sorted = env[order]
    new_env = np.r_[True, env_sorted[1:] != env_sorted[:-1]]
    # The row after an episode's end always has START (the recorder copies the agent's episode_starts).
    begins = new_env | ((flags & START) > 0)
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.cumsum(begins) - 1
    return ids


def sequence_samples(rows: np.ndarray, episodes: np.ndarray, horizon: int, num_actions: int) -> tuple[np.ndarray, ...]:
    """``(sources, inputs, outcomes)``: ``(s_t, a_t..a_{t+n-1}, s_{t+n})`` for every ``t`` whose ``n`` steps lie in
    one episode; the action sequence is one int64 (base ``num_actions``)."""
    if horizon == 1 or len(rows) == 0:
        return rows["state"], rows["action"].astype(np.int64), rows["next_state"]
    order = np.lexsort((np.arange(len(rows)), episodes))  # rows of each episode, in time order
    ep, act = episodes[order], rows["action"][order].astype(np.int64)
    n = len(order) - horizon + 1
    if n <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    same = ep[:n] == ep[horizon - 1 :]
    base = max(num_actions, int(act.max()) + 2, 2)
    seq = np.zeros(n, dtype=np.int64)
    for i in range(horizon):
        seq = seq * base + (act[i : i + n] + 1)
    sources = rows["state"][order][:n][same]
    outcomes = rows["next_state"][order][horizon - 1 :][same]
    return sources, seq[same], outcomes


@dataclass
class ExplorationMetrics:
    """Per-episode metrics of one run, episodes in the order they ended (their last transition's step).

    Attributes:
        step: ``int64 [M]`` the run's transition count at each episode's last transition.
        length: ``int64 [M]`` transitions per episode.
        entropy: ``float64 [M]`` entropy (nats) of the episode's state visits.
        information_gain: ``float64 [M]`` summed information gain (nats) of its transitions.
        empowerment: ``float64 [M]`` mean empowerment (nats) of its states (NaN without samples).
        finished: ``bool [M]`` the episode's end was recorded.
    """

    step: np.ndarray
    length: np.ndarray
    entropy: np.ndarray
    information_gain: np.ndarray
    empowerment: np.ndarray
    finished: np.ndarray

    def records(self) -> list[dict[str, float]]:
        """One dict per finished episode (``step`` and each metric), for learning curves."""
        return [
            {"step": int(self.step[i]), **{k: float(getattr(self, k)[i]) for k in METRIC_NAMES}}
            for i in np.flatnonzero(self.finished)
        ]


def compute_metrics(
    rows: np.ndarray,
    num_actions: int,
    *,
    horizon: int = 1,
    support: int | None = None,
    prior: float = 1.0,
) -> ExplorationMetrics:
    """Entropy, information gain and empowerment of every episode of a run's rows (see the module docstring).

    Args:
        rows: ``ROW_DTYPE`` rows (:func:`rove.agents.common.trajectories.read_trajectories`).
        num_actions: Size of the Discrete action space (0 when unknown: taken from the rows).
        horizon: Steps of the empowerment channel (1: one-step empowerment).
        support: Next-state outcomes of the world model's Dirichlet per ``(s, a)``; default ``num_actions``.
        prior: Its symmetric Dirichlet parameter.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    num_actions = max(int(num_actions), int(rows["action"].max()) + 1 if len(rows) else 1, 1)
    support = num_actions if support is None else int(support)
    episodes = episode_ids(rows)
    num = int(episodes.max()) + 1 if len(rows) else 0
    gain = information_gain(rows["state"], rows["action"], rows["next_state"], support, prior)
    row_power = lookup(*state_empowerment(*sequence_samples(rows, episodes, horizon, num_actions)), rows["state"])

    # Entropy of each episode's visits (s_0 and every s_{t+1}): H = ln N - sum_s n_s ln n_s / N per episode.
    first = np.unique(episodes, return_index=True)[1]
    visit_ep = np.r_[episodes[first], episodes]
    visit_key = np.r_[rows["state"][first], rows["next_state"]]
    pairs, _, n = _unique_rows(visit_ep, visit_key)
    total = np.bincount(pairs[:, 0], weights=n, minlength=num)
    n_log_n = np.bincount(pairs[:, 0], weights=n * np.log(n), minlength=num)
    ent = np.log(np.maximum(total, 1)) - n_log_n / np.maximum(total, 1)
    known = np.isfinite(row_power)
    power_sum = np.bincount(episodes[known], weights=row_power[known], minlength=num)
    power_n = np.bincount(episodes[known], minlength=num)
    with np.errstate(invalid="ignore", divide="ignore"):
        emp = np.where(power_n > 0, power_sum / np.maximum(power_n, 1), np.nan)
    length = np.bincount(episodes, minlength=num)
    last = np.zeros(num, dtype=np.int64)
    np.maximum.at(last, episodes, np.arange(len(rows)))
    by_end = np.argsort(rows["step"][last], kind="stable")
    return ExplorationMetrics(
        step=rows["step"][last][by_end].astype(np.int64),
        length=length[by_end].astype(np.int64),
        entropy=ent[by_end],
        information_gain=np.bincount(episodes, weights=gain, minlength=num)[by_end],
        empowerment=emp[by_end],
        finished=(rows["flags"][last][by_end] & DONE) > 0,
    )


def run_metrics(run_dir: str | Path, budget: int | None = None, horizon: int = 1) -> ExplorationMetrics | None:
    """:func:`compute_metrics` of a run folder's ``trajectories.bin`` (its first ``budget`` transitions; None
    when it has none)."""
    rows = read_trajectories(run_dir)
    if budget is not None:
        rows = rows[rows["step"] <= budget]
    if len(rows) == 0:
        return None
    return compute_metrics(rows, int(read_meta(run_dir).get("num_actions", 0)), horizon=horizon)


def window_values(metrics: ExplorationMetrics, fraction: float = 0.1, last: bool = True) -> dict[str, float]:
    """Each metric's mean over the last (``last``) or first ``fraction`` of the finished episodes, keyed
    ``final_<metric>`` or ``initial_<metric>``."""
    done = np.flatnonzero(metrics.finished)
    if done.size == 0:
        return {}
    size = max(1, round(fraction * done.size))
    window = done[-size:] if last else done[:size]
    prefix = "final" if last else "initial"
    out = {}
    for name in METRIC_NAMES:
        values = getattr(metrics, name)[window]
        if np.isfinite(values).any():
            out[f"{prefix}_{name}"] = float(np.nanmean(values))
    return out
