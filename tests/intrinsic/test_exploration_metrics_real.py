"""The exploration metrics on real MiniGrid, Crafter and NetHack rollouts (``conftest``'s random-action batches,
their ``state_key``), against a plain-Python computation of the same definitions with dicts and counters."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from rove.agents.common.trajectories import ROW_DTYPE, START, rollout_rows
from rove.experiments import exploration_metrics as xm


def real_rows(batch) -> np.ndarray:
    """The recorder's rows of a fixture's consecutive rollouts (as ``TrajectoryRecorder`` writes them)."""
    parts, steps = [], 0
    first_is_start = True
    for rollout in batch.rollouts:
        keys = rollout.obs["state_key"][..., 0].numpy()
        keys = np.concatenate([keys, rollout.next_obs["state_key"][-1:, :, 0].numpy()])
        valid = rollout.valid.numpy()
        starts = np.zeros_like(valid)
        starts[0] = first_is_start
        starts[1:] = ~valid[:-1]  # obs[t] begins an episode iff step t - 1 was an autoreset step
        rows = rollout_rows(keys, rollout.actions.numpy(), valid, rollout.dones.numpy(), starts, steps)
        first_is_start = False
        steps += len(rows)
        parts.append(rows)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=ROW_DTYPE)


def python_metrics(rows: np.ndarray, support: int) -> tuple[list[float], list[float], dict[int, float]]:
    """Per-episode entropy and information gain, and the empowerment of deterministic states, with dicts."""
    episodes: list[list[np.void]] = []
    current: dict[int, list[np.void]] = {}
    for row in rows:
        env = int(row["env"])
        if row["flags"] & START or env not in current:
            current[env] = []
            episodes.append(current[env])
        current[env].append(row)
    counts: Counter = Counter()
    pairs: Counter = Counter()
    gain_of_step = {}
    for row in rows:
        key = (int(row["state"]), int(row["action"]))
        a_j, a_0 = counts[(*key, int(row["next_state"]))] + 1.0, pairs[key] + float(support)
        # prior 1: psi(a_j + 1) - psi(a_0 + 1) = -sum_{i=1}^{a_0 - a_j} 1 / (a_j + i) (integer-spaced arguments)
        gain = math.log(a_0 / a_j) - sum(1.0 / (a_j + i) for i in range(1, int(a_0 - a_j) + 1))
        gain_of_step[int(row["step"])] = gain
        counts[(*key, int(row["next_state"]))] += 1
        pairs[key] += 1
    entropies, gains = [], []
    for ep in episodes:
        visits = Counter([int(ep[0]["state"])] + [int(r["next_state"]) for r in ep])
        total = sum(visits.values())
        entropies.append(-sum(c / total * math.log(c / total) for c in visits.values()))
        gains.append(sum(gain_of_step[int(r["step"])] for r in ep))
    outcomes: dict[int, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        outcomes[int(row["state"])][int(row["action"])].add(int(row["next_state"]))
    power = {
        s: math.log(len(set().union(*by_action.values())))
        for s, by_action in outcomes.items()
        if all(len(v) == 1 for v in by_action.values())
    }
    return entropies, gains, power


@pytest.mark.parametrize("suite", ["minigrid", "crafter", "nethack"])
def test_metrics_of_real_rollouts_match_python(suite: str, request: pytest.FixtureRequest) -> None:
    batch = request.getfixturevalue(f"{suite}_batch")
    rows = real_rows(batch)
    num_actions = int(batch.action_space.n)
    metrics = xm.compute_metrics(rows, num_actions)
    entropies, gains, power = python_metrics(rows, support=num_actions)
    assert len(metrics.entropy) == len(entropies)
    np.testing.assert_allclose(np.sort(metrics.entropy), np.sort(entropies), atol=1e-9)
    np.testing.assert_allclose(np.sort(metrics.information_gain), np.sort(gains), atol=1e-9)
    states, capacity = xm.state_empowerment(rows["state"], rows["action"].astype(np.int64), rows["next_state"])
    estimated = dict(zip(states.tolist(), capacity.tolist(), strict=True))
    assert power and len(estimated) >= len(power)
    for state, value in power.items():
        assert estimated[state] == pytest.approx(value, abs=1e-12)
    assert (metrics.entropy > 0).any() and (metrics.information_gain > 0).all()
