"""Random Distribution Distillation (Fang et al. 2025, "Exploration by Random Distribution Distillation",
arXiv 2505.11044): RND with a stochastic target.

For a state ``s`` the target's output is a *sample* from a per-state normal distribution
``N(mu(s), diag(sigma(s)^2))`` whose mean and scale come from a frozen random network; the predictor regresses
these samples, and the bonus is the standardised distance of the prediction to ``mu(s)``:
``b(s) = sqrt(mean_d (f_hat(s)_d - mu(s)_d)^2 / sigma(s)_d^2)``.

Status: **not the paper's method verbatim.** Only the paper's abstract could be read here (its method section
and any released code were not available): the target output is sampled from a normal distribution per state;
the bonus is the predictor-target difference; the paper proves it bounded by a pseudo-count term and a
discrepancy term. How ``mu`` and ``sigma`` are produced, the predictor's loss and the exact bonus above are
this module's assumptions, and its bound is not tested. Measured: with constant-lr Adam the bonus on a state
trained ``n`` times does not follow a ``1/sqrt(n)`` pseudo-count decay; it plateaus (0.021 from n = 32k to 96k,
issue 12). Everything else (observation whitening, return normalisation, the predictor's training schedule)
is RND's.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from rove.encoders import encode_preprocessed
from rove.intrinsic.registry import register
from rove.intrinsic.rnd import RND, DistillationNetworks
from rove.obs import TensorObs


class DistributionTargetNetworks(DistillationNetworks):
    """:class:`DistillationNetworks` whose frozen target also gives a per-state scale ``sigma(s)``."""

    def __init__(
        self, space: spaces.Space, embedding_dim: int, features_dim: int, hidden_dim: int, target_std: float
    ) -> None:
        super().__init__(space, embedding_dim, features_dim, hidden_dim)
        self.target_std = target_std
        self.scale_head = nn.Linear(features_dim, embedding_dim).requires_grad_(False)

    def distribution(self, x: TensorObs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(prediction, mu, sigma)`` of prepared inputs ``x`` (:meth:`prepare`), each ``[N, embedding_dim]``;
        mu and sigma carry no gradient."""
        with torch.no_grad():
            body, mean_head = self.target[0], self.target[1]
            features = encode_preprocessed(body, x)
            mean = mean_head(features)
            std = self.target_std * (nn.functional.softplus(self.scale_head(features)) + 0.1)
        return self.run(self.predictor, x), mean, std


@register("rdd")
class RDD(RND):
    """Random Distribution Distillation: RND whose target output is sampled from ``N(mu(s), sigma(s)^2)``.

    Args:
        observation_space: Single-env observation space.
        action_space: Single-env action space (unused).
        target_std: Overall scale of the target distribution's ``sigma(s)``.
        **kwargs: RND's options (``embedding_dim``, ``learning_rate``, ``update_proportion``, ...) and the
            base class's.
    """

    networks: DistributionTargetNetworks

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Space, *, target_std: float = 1.0, **kwargs: Any
    ) -> None:
        if not target_std > 0:
            raise ValueError(f"target_std must be > 0, got {target_std}")
        self._target_std = float(target_std)
        super().__init__(observation_space, action_space, **kwargs)

    def _build_networks(
        self, space: spaces.Space, embedding_dim: int, features_dim: int, hidden_dim: int
    ) -> DistributionTargetNetworks:
        return DistributionTargetNetworks(space, embedding_dim, features_dim, hidden_dim, self._target_std)

    def error_prepared(self, x: TensorObs) -> torch.Tensor:
        """The bonus ``[N]``: standardised root-mean-square distance of the prediction to ``mu(s)``."""
        prediction, mean, std = self.networks.distribution(x)
        return ((prediction - mean) / std).pow(2).mean(dim=1).sqrt()

    def target_prepared(self, x: TensorObs) -> torch.Tensor:
        """``[N, 2, D]``: the target distribution's ``mu(s)`` and ``sigma(s)`` per row."""
        _, mean, std = self.networks.distribution(x)
        return torch.stack([mean, std], dim=1)

    def loss_from(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error to a fresh sample ``mu + sigma * eps`` of the target distribution per row."""
        mean, std = target[:, 0], target[:, 1]
        noise = torch.randn(mean.shape, generator=self.generator).to(mean.device)
        return (prediction - (mean + std * noise)).pow(2).mean()
