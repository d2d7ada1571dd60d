"""Random Encoders for Efficient Exploration (Seo et al. 2021, "State Entropy Maximization with Random
Encoders for Efficient Exploration").

Reference: younggyoseo/RE3 ``a2c_re3/torch-ac/torch_ac/algos/base.py`` (``compute_state_entropy``: exact
``torch.norm`` distances, ``kthvalue(k + 1)`` counting the point itself) and ``algos/a2c.py`` (the distance
divided by a running std of the distances, then ``log(1 + .)``; ``beta * (1 - rho) ** t`` coefficient).

Deviations:
    - Neighbours are taken among the rollout's valid next observations (the reference's A2C: the batch of
      the update), so an autoreset step's observation is never a neighbour.
    - The running statistics use the exact parallel update; the reference's ``update_mean_var_count_from_moments``
      adds ``batch_count / tot_count`` to the mean instead of scaling ``delta`` by it (a typo that skews
      later variances).
    - Encoder: Rove's light per-suite encoder, frozen at its random initialisation (the reference: a small
      random conv net on MiniGrid's grid).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from rove.encoders import make_encoder
from rove.intrinsic.base import IntrinsicModule, seeded
from rove.intrinsic.dynamics import encode, frozen
from rove.intrinsic.normalize import RunningMeanStd
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout

CANDIDATE_MARGIN = 8  # extra nearest candidates re-measured exactly (the expansion's error is ~1e-3)


@register("re3")
class RE3(IntrinsicModule):
    """State-entropy bonus ``r_t = log(1 + d_t / std(d))``, ``d_t = ||y_t - y_t^{(k)}||_2``, ``y = g(s_{t+1})``.

    ``g`` is a frozen random encoder; ``y^{(k)}`` is the k-th nearest neighbour of ``y_t`` among the rollout's
    other valid next-observations (a particle estimate of the state entropy), and ``std(d)`` the running std
    of those distances over all rollouts so far, updated before dividing (as the reference). The k-th distance
    is exact (the nearest candidates of the fast matmul expansion re-measured directly), so a state with ``k``
    or more exact duplicates gets exactly 0. Nothing
    trains: ``update`` returns no losses. The decaying coefficient of the paper is a schedule, which saves
    with the agent (``PPO.save``)::

        coef=rove.intrinsic.schedules.ExponentialDecay(beta=0.05, kappa=1e-5)  # per env step

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Unused (any space).
        k: Which neighbour (3 in the paper); with fewer than ``k + 1`` valid samples the farthest one is used.
        features_dim: Dimension of the random embedding.
        chunk: Rows of the distance matrix computed at once (bounds memory on large rollouts).
        **base_kwargs: ``coef``, ``normalize``, ``gamma``, ``update_proportion``, ``device``, ``seed``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        k: int = 3,
        features_dim: int = 128,
        chunk: int = 1024,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **base_kwargs)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.chunk = k, chunk
        with seeded(self.seed):
            self.encoder = frozen(make_encoder(observation_space, features_dim, light=True))
        self.distance_stats = RunningMeanStd(())
        self.to(self.device)

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        flat = rollout.flatten()
        valid = rollout.valid.reshape(-1)
        self.encoder.eval()
        y = encode(self.encoder, flat.next_obs, self.chunk)
        reward = torch.zeros(valid.shape[0], device=self.device)
        index = valid.nonzero(as_tuple=True)[0]
        n = int(index.shape[0])
        if n < 2:
            return reward.reshape(rollout.num_steps, rollout.num_envs)
        k = min(self.k, n - 1)
        y = y[index]
        kth = []
        candidates = min(k + 1 + CANDIDATE_MARGIN, n)
        for start in range(0, n, self.chunk):
            rows = y[start : start + self.chunk]
            # The fast matmul-expanded distances pick candidates; the exact distance to each candidate then
            # decides (the expansion alone leaves up to 2e-3 between exact duplicates).
            near = torch.cdist(rows, y).topk(candidates, dim=1, largest=False).indices  # [c, candidates]
            exact = (y[near] - rows[:, None]).norm(dim=2)
            kth.append(exact.topk(k + 1, dim=1, largest=False).values[:, k])  # column 0: the point itself
        distances = torch.cat(kth)
        self.distance_stats.update(distances)
        reward[index] = torch.log1p(distances / self.distance_stats.std.to(distances.dtype))
        return reward.reshape(rollout.num_steps, rollout.num_envs)
