"""The UCB bandit of :class:`~rove.intrinsic.fusion.Fusion`'s ``"select"`` operator (AIRS, Yuan et al. 2023).

Its statistics are buffers, so that ``state_dict`` (and so every checkpoint) carries them exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SlidingWindowUCB(nn.Module):
    """UCB1 over ``num_arms`` arms, each arm's value the mean of its last ``window`` rewards.

    ``score(i) = Q(i) + c * sqrt(log(t) / N(i))``: ``Q(i)`` the mean of arm ``i``'s last ``min(N(i), window)``
    rewards, ``N(i)`` the rewards arm ``i`` has received, ``t`` those of all arms. An arm without a reward
    scores ``+inf``, so each arm is tried once, in order, before any is chosen again; ties go to the lowest index.

    Args:
        num_arms: How many arms (>= 1).
        c: The exploration constant (finite, >= 0).
        window: How many of an arm's latest rewards its value averages (>= 1): the return an intrinsic reward
            earns changes as the policy learns, so old rounds are forgotten.
    """

    counts: torch.Tensor
    history: torch.Tensor
    rounds: torch.Tensor

    def __init__(self, num_arms: int, c: float = 1.0, window: int = 10) -> None:
        super().__init__()
        if num_arms < 1:
            raise ValueError(f"a bandit needs at least one arm, got num_arms={num_arms}")
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c < 0:
            raise ValueError(f"the UCB exploration constant must be a finite number >= 0, got ucb_c={c!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"the UCB window must be an int >= 1, got ucb_window={window!r}")
        self.c = float(c)
        self.window = window
        self.register_buffer("counts", torch.zeros(num_arms, dtype=torch.long))
        # history[i, k]: arm i's reward number k, k+window, k+2*window, ... (a ring of its last `window`)
        self.register_buffer("history", torch.zeros(num_arms, window, dtype=torch.float64))
        self.register_buffer("rounds", torch.zeros((), dtype=torch.long))

    @property
    def num_arms(self) -> int:
        return int(self.counts.numel())

    def values(self) -> torch.Tensor:
        """``Q(i)`` of each arm, ``[num_arms]`` float64: the mean of its last ``window`` rewards (0 before any)."""
        filled = self.counts.clamp(max=self.window)
        mask = torch.arange(self.window, device=self.counts.device)[None, :] < filled[:, None]
        return (self.history * mask).sum(1) / filled.clamp(min=1)

    def scores(self) -> torch.Tensor:
        """The UCB score of each arm, ``[num_arms]`` float64 (``+inf`` for an arm not yet rewarded)."""
        counts = self.counts.to(torch.float64)
        log_t = math.log(max(int(self.rounds), 1))
        bonus = self.c * torch.sqrt(log_t / counts.clamp(min=1.0))
        return torch.where(self.counts > 0, self.values() + bonus, torch.full_like(counts, math.inf))

    def select(self) -> int:
        """The arm with the highest score (the first of equals)."""
        return int(torch.argmax(self.scores()))

    def update(self, arm: int, reward: float) -> None:
        """Gives ``reward`` to ``arm``."""
        if not 0 <= arm < self.num_arms:
            raise IndexError(f"arm {arm} out of range for {self.num_arms} arms")
        if not math.isfinite(reward):
            raise FloatingPointError(f"the bandit reward of arm {arm} is not finite: {reward}")
        self.history[arm, int(self.counts[arm]) % self.window] = reward
        self.counts[arm] += 1
        self.rounds += 1

    def extra_repr(self) -> str:
        return f"num_arms={self.num_arms}, c={self.c}, window={self.window}"
