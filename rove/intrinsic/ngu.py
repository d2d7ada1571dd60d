"""Never Give Up's intrinsic reward (Badia et al. 2020, "Never Give Up: Learning Directed Exploration Strategies").

``r_t = r_episodic(s_{t+1}) * clip(alpha_t, 1, max_multiplier)`` with

- the episodic novelty from a k-nearest-neighbour kernel over the current episode's embeddings
  (paper's Algorithm 1): squared distances ``d`` to the k nearest embeddings, normalised by a running
  mean ``d_m^2`` of those distances, ``d_n = max(d / d_m^2 - xi, 0)``,
  ``K = eps / (d_n + eps)``, ``s = sqrt(sum K) + c``, ``r_episodic = 1 / s`` (0 when ``s > s_max``);
- the lifelong multiplier ``alpha_t = 1 + (err - mean(err)) / std(err)`` from RND's prediction error
  with running statistics.

Differences from the paper, on purpose: the embedding is a frozen, randomly initialised encoder of the
suite (:func:`rove.encoders.make_encoder`) instead of one trained by inverse dynamics (random features
keep this module free of an action model; RE3 shows they work as a kNN space), and the current state counts
as one of its own k neighbours (kernel 1; the paper's empty first-step memory would give ``1 / c = 1000``),
so a never-seen state gets ``1 / (1 + c)`` and the n-th exact visit in an episode ``1 / (sqrt(n) + c)``
for ``n <= k``, a pseudo-count. Episodic memory works in
``compute`` (call it once per rollout, in order), vectorised across envs, and clears at episode ends and
on ``reset_episodes()`` (the running kNN distance and RND error statistics are lifelong).

Reference: the paper's Algorithm 1 and Appendix (no code released by its authors); RLeXplore's
``rllte/xplore/reward/ngu.py`` for the lifelong RND factor. The RND part trains on RND's reference schedule
(:class:`~rove.intrinsic.rnd.RND`).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from rove.encoders import make_encoder
from rove.intrinsic.base import seeded
from rove.intrinsic.normalize import RunningMeanStd
from rove.intrinsic.registry import register
from rove.intrinsic.rnd import RND
from rove.intrinsic.types import Rollout
from rove.obs import obs_flatten


class EpisodicMemory:
    """Per-env embeddings of the current episode, ``[E, capacity, D]``, growing by doubling."""

    def __init__(self, dim: int, device: torch.device, capacity: int = 256) -> None:
        self.dim, self.device, self.initial = dim, device, capacity
        self.memory = torch.zeros(0, capacity, dim, device=device)
        self.sizes = torch.zeros(0, dtype=torch.long, device=device)

    def ensure(self, num_envs: int, extra: int) -> None:
        if self.memory.shape[0] != num_envs:
            if self.memory.shape[0] != 0:
                raise ValueError(f"episodic memory was built for {self.memory.shape[0]} envs, got {num_envs}")
            self.memory = torch.zeros(num_envs, self.initial, self.dim, device=self.device)
            self.sizes = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        needed = int(self.sizes.max()) + extra
        if needed > self.memory.shape[1]:
            capacity = self.memory.shape[1]
            while capacity < needed:
                capacity *= 2
            grown = torch.zeros(num_envs, capacity, self.dim, device=self.device)
            grown[:, : self.memory.shape[1]] = self.memory
            self.memory = grown

    def add(self, embeddings: torch.Tensor, mask: torch.Tensor) -> None:
        """Appends ``embeddings [E, D]`` for the envs where ``mask [E]`` is True."""
        envs = mask.nonzero(as_tuple=True)[0]
        self.memory[envs, self.sizes[envs]] = embeddings[envs]
        self.sizes[envs] += 1

    def clear(self, mask: torch.Tensor) -> None:
        self.sizes[mask] = 0


@register("ngu")
class NGU(RND):
    """NGU's episodic x lifelong novelty, built on :class:`~rove.intrinsic.rnd.RND` for the lifelong part.

    Args:
        observation_space: Single-env observation space.
        action_space: Single-env action space (unused).
        num_neighbors: ``k`` of the kNN (paper: 10).
        embedding_size: Size of the (frozen random) episodic embedding (paper: 32).
        kernel_epsilon: ``eps`` of the kernel (paper: 1e-3).
        cluster_distance: ``xi`` (paper: 8e-3).
        pseudo_count_constant: ``c`` (paper: 1e-3).
        max_similarity: ``s_max`` (paper: 8).
        max_multiplier: ``L``, the clip of the lifelong multiplier (paper: 5).
        normalize: Base-class normalisation; NGU's reward is already bounded, so ``"none"`` by default.
        **kwargs: RND's options and the base class's.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        num_neighbors: int = 10,
        embedding_size: int = 32,
        kernel_epsilon: float = 1e-3,
        cluster_distance: float = 8e-3,
        pseudo_count_constant: float = 1e-3,
        max_similarity: float = 8.0,
        max_multiplier: float = 5.0,
        normalize: Any = "none",
        **kwargs: Any,
    ) -> None:
        if not (isinstance(num_neighbors, int) and num_neighbors >= 1):
            raise ValueError(f"num_neighbors must be a positive integer, got {num_neighbors!r}")
        if not (isinstance(embedding_size, int) and embedding_size >= 1):
            raise ValueError(f"embedding_size must be a positive integer, got {embedding_size!r}")
        if not max_multiplier >= 1:
            raise ValueError(f"max_multiplier must be >= 1, got {max_multiplier}")
        for name, value in (("kernel_epsilon", kernel_epsilon), ("pseudo_count_constant", pseudo_count_constant),
                            ("max_similarity", max_similarity)):  # fmt: skip
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not cluster_distance >= 0:
            raise ValueError(f"cluster_distance must be >= 0, got {cluster_distance}")
        super().__init__(observation_space, action_space, normalize=normalize, **kwargs)
        self.k = num_neighbors
        self.kernel_epsilon = kernel_epsilon
        self.cluster_distance = cluster_distance
        self.pseudo_count_constant = pseudo_count_constant
        self.max_similarity = max_similarity
        self.max_multiplier = max_multiplier
        with seeded(None if self.seed is None else self.seed + 1):
            self.embedding = make_encoder(observation_space, embedding_size, light=True).to(self.device)
        self.embedding.requires_grad_(False)
        self.distance_stats = RunningMeanStd(()).to(self.device)  # d_m^2: mean squared kNN distance
        self.error_stats = RunningMeanStd(()).to(self.device)  # RND error, for the lifelong multiplier
        self.memory = EpisodicMemory(embedding_size, self.device)

    def _reset_episodes(self) -> None:
        # Episodic memory only; the running kNN distance and RND error statistics are lifelong.
        self.memory = EpisodicMemory(self.memory.dim, self.device)

    def episodic_reward(self, embeddings: torch.Tensor, valid: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Episodic novelty ``[T, E]`` of embeddings ``[T, E, D]``, updating each env's memory in time order."""
        num_steps, num_envs, _ = embeddings.shape
        self.memory.ensure(num_envs, num_steps)
        rewards = torch.zeros(num_steps, num_envs, device=self.device)
        for t in range(num_steps):
            self.memory.clear(~valid[t])  # autoreset: next_obs starts a new episode, not a visit
            # The state itself is one of its k neighbours (distance 0, kernel 1); the others come from the
            # episode so far, and only those feed the running mean distance.
            kernel_sum = torch.ones(num_envs, device=self.device)
            width = int(self.memory.sizes.max())
            k = min(self.k - 1, width)
            if k > 0:
                stored = self.memory.memory[:, :width]  # [E, M, D]
                distances = (stored - embeddings[t][:, None]).pow(2).sum(-1)  # [E, M]
                occupied = torch.arange(width, device=self.device)[None] < self.memory.sizes[:, None]
                distances = distances.masked_fill(~occupied, float("inf"))
                nearest = distances.topk(k, dim=1, largest=False).values  # [E, k], inf where memory is short
                found = torch.isfinite(nearest) & valid[t][:, None]
                self.distance_stats.update(nearest[found])
                mean_distance = self.distance_stats.mean.to(nearest.dtype).clamp(min=1e-8)
                normalised = (nearest / mean_distance - self.cluster_distance).clamp(min=0.0)
                kernel = torch.where(found, self.kernel_epsilon / (normalised + self.kernel_epsilon), 0.0)
                kernel_sum = kernel_sum + kernel.sum(1)
            similarity = kernel_sum.sqrt() + self.pseudo_count_constant
            reward = torch.where(similarity > self.max_similarity, 0.0, 1.0 / similarity)
            rewards[t] = reward * valid[t]
            self.memory.add(embeddings[t], valid[t])
            self.memory.clear(dones[t] & valid[t])
        return rewards

    def lifelong_multiplier(self, next_obs: Any, valid: torch.Tensor) -> torch.Tensor:
        """``clip(1 + (err - mean) / std, 1, L)`` per transition, ``[T, E]``."""
        error = self.novelty(next_obs).reshape(valid.shape)
        self.error_stats.update(error[valid])
        standardised = (error - self.error_stats.mean.float()) / self.error_stats.std.float()
        return (1.0 + standardised).clamp(1.0, self.max_multiplier)

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        next_obs = obs_flatten(rollout.next_obs)
        embeddings = self.embedding(next_obs).reshape(rollout.num_steps, rollout.num_envs, -1)
        episodic = self.episodic_reward(embeddings, rollout.valid, rollout.dones)
        return episodic * self.lifelong_multiplier(next_obs, rollout.valid)
