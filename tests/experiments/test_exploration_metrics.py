"""The exploration metrics on hand-built trajectories whose answers are known, and on real recorded ones.

Each expected value is computed here independently of ``rove.experiments.exploration_metrics``: entropies by
counting in Python, information gain by the general Dirichlet KL formula (with a digamma of our own), channel
capacities from closed forms (ln of the number of distinct outcomes; the Z channel).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from rove.agents.common.trajectories import DONE, ROW_DTYPE, START
from rove.experiments import exploration_metrics as xm


def make_rows(transitions: list[tuple[int, int, int, int]], ends: set[int] = frozenset()) -> np.ndarray:
    """Rows from ``(env, state, action, next_state)`` in order; an env's first row and every row after one of
    its ``ends`` (row indices) start an episode, and the rows in ``ends`` end theirs."""
    rows = np.zeros(len(transitions), dtype=ROW_DTYPE)
    seen_done: dict[int, bool] = {}
    for i, (env, s, a, s2) in enumerate(transitions):
        start = seen_done.get(env, True)
        rows[i] = (i + 1, s, s2, env, a, (START if start else 0) | (DONE if i in ends else 0))
        seen_done[env] = i in ends
    return rows


def digamma(x: float) -> float:
    """psi(x) by recurrence up to x >= 6 and the asymptotic series (error < 1e-12 there)."""
    acc = 0.0
    while x < 6.0:
        acc -= 1.0 / x
        x += 1.0
    inv2 = 1.0 / (x * x)
    return acc + math.log(x) - 0.5 / x - inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252 - inv2 / 240)))


def dirichlet_kl(beta: list[float], alpha: list[float]) -> float:
    """KL(Dir(beta) || Dir(alpha)), the general formula over every component."""
    b0, a0 = sum(beta), sum(alpha)
    out = math.lgamma(b0) - math.lgamma(a0)
    out += sum(math.lgamma(a) - math.lgamma(b) for a, b in zip(alpha, beta, strict=True))
    out += sum((b - a) * (digamma(b) - digamma(b0)) for a, b in zip(alpha, beta, strict=True))
    return out


def test_entropy_of_uniform_visits_is_log_n():
    # One episode cycling through N states, each visited equally often (s_0 .. s_{3N-1}, then back to s_0
    # is not visited: 3N states in all, N distinct, each 3 times).
    n = 7
    path = [i % n for i in range(3 * n)]
    rows = make_rows([(0, path[i], 0, path[i + 1]) for i in range(len(path) - 1)], ends={len(path) - 2})
    metrics = xm.compute_metrics(rows, num_actions=1)
    assert metrics.entropy.shape == (1,)
    assert metrics.entropy[0] == pytest.approx(math.log(n), abs=1e-12)


def test_entropy_per_episode_matches_counting():
    rng = np.random.default_rng(0)
    transitions, ends, true = [], set(), []
    for _ in range(5):
        states = rng.integers(0, 6, size=rng.integers(3, 30)).tolist()
        for s, s2 in itertools.pairwise(states):
            transitions.append((0, s, 0, s2))
        ends.add(len(transitions) - 1)
        counts = Counter(states)
        total = sum(counts.values())
        true.append(-sum(c / total * math.log(c / total) for c in counts.values()))
    metrics = xm.compute_metrics(make_rows(transitions, ends), num_actions=1)
    np.testing.assert_allclose(metrics.entropy, true, atol=1e-12)
    assert metrics.finished.all()


def test_episodes_of_interleaved_envs():
    # Two envs, rows time-major: env 0 has episodes of 2 and 3 transitions, env 1 one of 4 and an unfinished one.
    transitions, ends = [], set()
    plan = {0: [2, 3], 1: [4, 1]}
    left = {e: list(v) for e, v in plan.items()}
    remaining = {e: left[e].pop(0) for e in plan}
    while any(remaining.values()):
        for env in (0, 1):
            if remaining[env] == 0:
                continue
            transitions.append((env, 10 * env, 0, 10 * env + 1))
            remaining[env] -= 1
            if remaining[env] == 0:
                if env == 0 or left[env]:  # env 1's last episode stays unfinished
                    ends.add(len(transitions) - 1)
                remaining[env] = left[env].pop(0) if left[env] else 0
    metrics = xm.compute_metrics(make_rows(transitions, ends), num_actions=1)
    assert (np.diff(metrics.step) > 0).all()  # in the order they ended
    # Rows 0..9 alternate env 0, env 1: env 0's episodes end at rows 2 and 8, env 1's at row 7 and row 9.
    assert list(zip(metrics.length.tolist(), metrics.finished.tolist(), strict=True)) == [
        (2, True),
        (4, True),
        (3, True),
        (1, False),
    ]


def test_information_gain_is_the_dirichlet_kl_of_each_update():
    support, prior = 5, 0.5
    rng = np.random.default_rng(1)
    transitions = [(0, int(rng.integers(3)), int(rng.integers(2)), int(rng.integers(4))) for _ in range(200)]
    rows = make_rows(transitions)
    gain = xm.information_gain(rows["state"], rows["action"], rows["next_state"], support, prior)
    # Independent: a dict of outcome counts per (s, a); outcomes get slots in the order they appear.
    counts: dict[tuple[int, int], list[float]] = {}
    slots: dict[tuple[int, int], dict[int, int]] = {}
    for i, (_, s, a, s2) in enumerate(transitions):
        alpha = counts.setdefault((s, a), [prior] * support)
        slot = slots.setdefault((s, a), {}).setdefault(s2, len(slots[(s, a)]))
        beta = list(alpha)
        beta[slot] += 1.0
        assert gain[i] == pytest.approx(dirichlet_kl(beta, alpha), abs=1e-9)
        alpha[slot] += 1.0
    # Seeing the same transition again teaches less each time.
    same = make_rows([(0, 1, 0, 2)] * 6)
    repeated = xm.information_gain(same["state"], same["action"], same["next_state"], support, prior)
    assert (np.diff(repeated) < 0).all()


def test_information_gain_per_episode_is_the_sum_over_its_transitions():
    transitions = [(0, 0, 0, 1), (0, 1, 0, 2), (0, 2, 1, 0), (0, 0, 0, 1), (0, 1, 1, 1)]
    rows = make_rows(transitions, ends={2, 4})
    metrics = xm.compute_metrics(rows, num_actions=2)
    per_step = xm.information_gain(rows["state"], rows["action"], rows["next_state"], support=2, prior=1.0)
    np.testing.assert_allclose(metrics.information_gain, [per_step[:3].sum(), per_step[3:].sum()])
    # The repeated transition (0, 0 -> 1) gains less the second time: ln 2 + psi(2) - psi(3) then ln(3/2) + ...
    assert per_step[0] == pytest.approx(math.log(2) + digamma(2) - digamma(3))
    assert per_step[3] == pytest.approx(math.log(3 / 2) + digamma(3) - digamma(4))


def test_empowerment_of_a_deterministic_star_and_corridor():
    # Open room: 4 actions from state 0 reach 4 different states. Corridor: from state 10, actions 0 and 1
    # reach 11, actions 2 and 3 stay: 2 distinct outcomes. Each tried once, in separate episodes.
    transitions, ends = [], set()
    for a, s2 in enumerate([1, 2, 3, 4]):
        transitions.append((0, 0, a, s2))
        ends.add(len(transitions) - 1)
    for a, s2 in enumerate([11, 11, 10, 10]):
        transitions.append((0, 10, a, s2))
        ends.add(len(transitions) - 1)
    rows = make_rows(transitions, ends)
    states, power = xm.state_empowerment(rows["state"], rows["action"].astype(np.int64), rows["next_state"])
    assert dict(zip(states.tolist(), power.tolist(), strict=True)) == pytest.approx({0: math.log(4), 10: math.log(2)})
    metrics = xm.compute_metrics(rows, num_actions=4)
    np.testing.assert_allclose(metrics.empowerment, [math.log(4)] * 4 + [math.log(2)] * 4)


def test_empowerment_of_the_z_channel():
    # Action 0 always reaches state 1; action 1 reaches 1 or 2 with probability 1/2 each (8 tries of each).
    # The Z channel's capacity: ln(1 + (1 - p) p^(p / (1 - p))) with p = 1/2, i.e. ln(5/4).
    transitions = [(0, 0, 0, 1)] * 8 + [(0, 0, 1, 1), (0, 0, 1, 2)] * 4
    rows = make_rows(transitions, ends=set(range(len(transitions))))
    states, power = xm.state_empowerment(rows["state"], rows["action"].astype(np.int64), rows["next_state"])
    assert states.tolist() == [0]
    assert power[0] == pytest.approx(math.log(5 / 4), abs=1e-7)


def test_two_step_empowerment_of_a_line():
    # Positions on a line, actions left/stay/right: every 2-step sequence from 0, each its own episode.
    # Reachable after 2 steps: -2..2, five states: ln 5 (one-step from 0: three states, ln 3).
    transitions, ends = [], set()
    for a in range(3):
        for b in range(3):
            mid = a - 1
            transitions += [(0, 100, a, 100 + mid), (0, 100 + mid, b, 100 + mid + b - 1)]
            ends.add(len(transitions) - 1)
    rows = make_rows(transitions, ends)
    episodes = xm.episode_ids(rows)
    states, power = xm.state_empowerment(*xm.sequence_samples(rows, episodes, 2, 3))
    assert dict(zip(states.tolist(), power.tolist(), strict=True)) == pytest.approx({100: math.log(5)})
    states, power = xm.state_empowerment(*xm.sequence_samples(rows, episodes, 1, 3))
    assert dict(zip(states.tolist(), power.tolist(), strict=True))[100] == pytest.approx(math.log(3))


def test_records_and_final_values():
    metrics = xm.ExplorationMetrics(
        step=np.array([10, 20, 30, 40]),
        length=np.array([10, 10, 10, 10]),
        entropy=np.array([1.0, 2.0, 3.0, 5.0]),
        information_gain=np.zeros(4),
        empowerment=np.array([np.nan, 1.0, 2.0, 4.0]),
        finished=np.array([True, True, True, False]),
    )
    records = metrics.records()  # the unfinished episode is left out
    assert [r["step"] for r in records] == [10, 20, 30]
    assert [r["entropy"] for r in records] == [1.0, 2.0, 3.0]
    final = xm.window_values(metrics, fraction=0.5)
    assert final["final_entropy"] == pytest.approx(2.5)
    assert final["final_empowerment"] == pytest.approx(1.5)
    initial = xm.window_values(metrics, fraction=0.5, last=False)
    assert initial["initial_entropy"] == pytest.approx(1.5)
    assert initial["initial_empowerment"] == pytest.approx(1.0)  # NaN left out of the mean
