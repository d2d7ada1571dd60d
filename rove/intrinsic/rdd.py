"""Random Distribution Distillation (Fang, Yang, Tao, Lyu, Li, Shen, Li 2025, "Exploration by Random
Distribution Distillation", arXiv 2505.11044): RND whose target output is a fresh Gaussian sample.

The method, as the paper states it (section 4; read second-hand, see "Sources"):

- **Target sampling.** Each time a state ``s`` trains the predictor, its target output is drawn afresh,
  ``f_tar(s) ~ N(mu(s), sigma^2 I)``, where ``mu(s)`` is a frozen, randomly initialised network (RND's target)
  and ``sigma`` one fixed value for every state ("in the actual implementation of the algorithm, we did not
  assign a unique variance to each distribution; instead, we set them all to a fixed value of sigma^2").
- **Predictor loss.** ``L(theta) = ||f_theta(s) - f_tar(s)||^2`` on the sampled target.
- **Reward.** ``b(s) = (1/d) ||f_theta(s) - mu(s)||^2``: the distance to the distribution's *mean*, not to a
  sample (eq. 11).
- **The bound.** The least-squares predictor of a state drawn ``n`` times is the mean of its draws,
  ``f*_n(s) = (1/n) sum_i f_tar^i(s)``, and ``z_n(s) = ||f*_n(s) - mu(s)||^2 / sigma^2`` is an unbiased,
  consistent estimator of ``1/n`` (lemma 4.1). Through ``f*_n`` the reward splits into a pseudo-count term
  ``(1/d) ||f*_n - mu||^2`` (expectation ``sigma^2 / n``) and a discrepancy term ``(1/d) ||f_theta - f*_n||^2``
  (how far the trained predictor is from the least-squares one); by the triangle inequality
  ``sqrt(b) <= sqrt(pseudo-count term) + sqrt(discrepancy term)`` (section 4.4).

What this means in practice: the pseudo-count term decays as ``1/n`` by construction, but the discrepancy term
is whatever the optimiser leaves. With a constant-step Adam the predictor tracks a moving average of the recent
draws rather than the mean of all of them, so the discrepancy term stops shrinking and **the reward on a state
trained many times plateaus** (0.021 from n = 32k to 96k, issue 12). The pseudo-count decay is a property of the
bound's first term, not a promise about the reward.

Sources: the paper's HTML (arxiv.org/html/2505.11044v1) could be read only up to its abstract here, and no
released code was found. The formulas above come from two independent third-party research notes that quote
its method section (the sampling sentence, eq. 11, lemma 4.1, section 4.4), and the design follows the same
group's released DRND code (yk7333/DRND ``online/agents.py``: a fresh target draw per minibatch row inside
RND's PPO-epoch schedule). Not recovered: the exact constants of the section 4.4 bound, the algorithm box, and
what the ablation's "target mean 1" refers to; the reward here does not depend on them.

Deviations (each deliberate):

- The loss is averaged over the ``d`` output dimensions (RND's and DRND's MSE), not summed: a constant factor
  ``d`` that Adam's step normalisation all but cancels.
- Default ``sigma = 1`` (the quoted implementation value) and RND's learning rate ``1e-4`` (the paper's Atari
  value; it reports 3e-4 for state-based tasks).
- Everything else is RND's, as in DRND: observation whitening, the intrinsic-return normalisation, the frozen
  target's architecture, and the predictor's schedule (4 epochs x 4 minibatches per rollout on a 25 % mask);
  a target is drawn for each kept row at each optimiser step.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from rove.intrinsic.registry import register
from rove.intrinsic.rnd import RND


@register("rdd")
class RDD(RND):
    """Random Distribution Distillation: the predictor regresses fresh draws of ``N(mu(s), sigma^2 I)``; the
    reward is ``(1/d) ||f_theta(s) - mu(s)||^2``.

    Args:
        observation_space: Single-env observation space.
        action_space: Single-env action space (unused).
        target_std: ``sigma``, the one standard deviation of every state's target distribution (paper: 1).
        **kwargs: RND's options (``embedding_dim``, ``learning_rate``, ``update_proportion``, ...) and the
            base class's.
    """

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Space, *, target_std: float = 1.0, **kwargs: Any
    ) -> None:
        if not target_std > 0:
            raise ValueError(f"target_std must be > 0, got {target_std}")
        self.target_std = float(target_std)
        super().__init__(observation_space, action_space, **kwargs)

    def sample_targets(self, mean: torch.Tensor) -> torch.Tensor:
        """One fresh draw of ``N(mean, target_std^2 I)`` per row of ``mean`` ``[N, D]`` (the frozen target's
        outputs ``mu(s)``)."""
        noise = torch.randn(mean.shape, generator=self.generator).to(mean.device)
        return mean + self.target_std * noise

    def loss_from(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error to a fresh sample of each row's target distribution (``target`` holds ``mu(s)``)."""
        return (prediction - self.sample_targets(target)).pow(2).mean()
