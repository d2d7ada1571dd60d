"""NovelD (Zhang et al. 2021, "NovelD: A Simple yet Effective Exploration Criterion").

Rewards crossing the frontier from explored to unexplored territory:
``r_t = max(N(s_{t+1}) - alpha * N(s_t), 0) * 1[N_episode(s_{t+1}) == 1]``, where ``N(s) = ||f_hat(s) - f(s)||_2``
is the L2 norm of RND's prediction error (not its squared error: with squares, transitions with
``alpha < N(s')/N(s) < sqrt(alpha)`` would get 0 where NovelD pays, and the reward would scale with ``N^2``) and
the indicator pays only on the first visit of ``s_{t+1}`` within the episode, which stops the agent from
oscillating between a novel state and its neighbour.

The episodic first-visit test uses exact keys (Rove's ``state_key``, or a hash of the observation bytes)
counted by the numba tables of :mod:`rove.intrinsic.kernels`; like the count modules, it happens in
``compute``, which must therefore be called once per rollout, in order; :meth:`IntrinsicModule.reset_episodes`
clears it.

Reference: tianjunz/NovelD ``src/algos/bebold.py`` (``torch.norm(..., p=2)`` novelty, ``scale_fac`` alpha, the
``episode_state_count == 1`` indicator); facebookresearch/e3b keeps a copy for MiniHack.

Deviations:
    - The predictor trains on RND's squared error and schedule (:class:`~rove.intrinsic.rnd.RND`); the
      reference trains it inside IMPALA's learner step.
    - Networks: RND's (light encoders on codes) instead of the reference's ELU conv embedding of the partial
      view; the novelty formula is the reference's.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from rove.intrinsic.counts import state_keys
from rove.intrinsic.kernels import EpisodicCountTables
from rove.intrinsic.registry import register
from rove.intrinsic.rnd import RND
from rove.intrinsic.types import Rollout
from rove.obs import TensorObs, obs_flatten, obs_index


def _follows(obs: TensorObs, next_obs: TensorObs) -> bool:
    """Whether ``obs[t + 1] == next_obs[t]`` for every step (comparing is far cheaper than a forward pass)."""
    pairs: list[tuple[torch.Tensor, torch.Tensor]]
    if isinstance(obs, dict) and isinstance(next_obs, dict):
        pairs = [(obs[k], next_obs[k]) for k in obs]
    else:
        assert isinstance(obs, torch.Tensor) and isinstance(next_obs, torch.Tensor)
        pairs = [(obs, next_obs)]
    return all(torch.equal(a[1:], b[:-1]) for a, b in pairs)


@register("noveld")
class NovelD(RND):
    """NovelD on top of :class:`~rove.intrinsic.rnd.RND` (same networks, training and normalisation).

    Args:
        observation_space: Single-env observation space.
        action_space: Single-env action space (unused).
        alpha: Scale of the current state's novelty (paper: 0.5; E3B's code uses 0.1).
        **kwargs: RND's options (``embedding_dim``, ``learning_rate``, ...) and the base class's.
    """

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Space, *, alpha: float = 0.5, **kwargs: Any
    ) -> None:
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        super().__init__(observation_space, action_space, **kwargs)
        self.alpha = float(alpha)
        self.episodic = EpisodicCountTables()

    def error_prepared(self, x: TensorObs) -> torch.Tensor:
        """NovelD's novelty ``||f_hat(s) - f(s)||_2``, ``[N]`` (the predictor still trains on RND's loss)."""
        with torch.no_grad():
            target = self.networks.run(self.networks.target, x)
            return (self.networks.run(self.networks.predictor, x) - target).norm(dim=1)

    def _reset_episodes(self) -> None:
        self.episodic.reset()

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        shape = (rollout.num_steps, rollout.num_envs)
        next_obs = obs_flatten(rollout.next_obs)
        novelty_next = self.novelty(next_obs).reshape(shape)
        if _follows(rollout.obs, rollout.next_obs):
            # The usual [T+1, E] buffer: s_{t+1} is next_obs[t], so only s_0's novelty is new work.
            first = self.prediction_error(obs_index(rollout.obs, 0)).reshape(1, -1)
            novelty = torch.cat([first, novelty_next[:-1]])
        else:
            novelty = self.novelty(obs_flatten(rollout.obs)).reshape(shape)
        counts = self.episodic.increment(
            state_keys(next_obs).reshape(shape), rollout.valid.cpu().numpy(), rollout.dones.cpu().numpy()
        )
        first_visit = torch.as_tensor(counts == 1, device=self.device)
        return (novelty_next - self.alpha * novelty).clamp(min=0.0) * first_visit
