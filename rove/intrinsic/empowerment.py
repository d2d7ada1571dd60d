"""Empowerment as an intrinsic reward: a variational lower bound of the one-step channel capacity.

References: Mohamed & Rezende 2015, "Variational Information Maximisation for Intrinsically Motivated
Reinforcement Learning" (NeurIPS; no public code): empowerment ``E(s) = max_w I(a; s' | s)`` is bounded below
by ``E_{w(a|s) p(s'|s,a)}[ln q(a | s, s') - ln w(a | s)]`` with an inverse ("planning") model ``q`` and a
source distribution ``w``; Karl et al. 2017, "Unsupervised Real-Time Control through Variational
Empowerment" (arXiv 1710.05101): the same bound with a learned latent forward model in place of the
environment. The Humans-in-Crafter study (Lidayan, Du et al. 2025, arXiv 2503.23631) found empowerment
keeps rising with human exploration progress; its trajectory estimator is in
:mod:`rove.experiments.exploration_metrics`.

What Rove computes, per state ``s`` (scored at ``s_{t+1}``, the state the action led to):

    E_hat(s) = ln sum_a q(a | phi(s), f(phi(s), a))

``phi`` is an inverse-dynamics encoder (:class:`~rove.intrinsic.dynamics.InverseDynamics`, Rove's light
per-suite encoders), ``q`` its inverse head, ``f`` a latent forward model
(:class:`~rove.intrinsic.dynamics.ForwardModel`) that imagines ``phi(s')`` for every action. For a fixed
``q`` the source that maximises the bound is ``w*(a | s) = q_a / sum_b q_b`` with ``q_a = q(a | s, s'_a)``,
and the bound at ``w*`` is ``ln sum_a q_a``: no source network is needed. In a deterministic environment with
an exact ``q`` and ``f``, actions whose outcomes coincide share ``q``'s mass (it sums to 1 over each group,
whatever the training policy's action frequencies), so ``sum_a q_a`` is the number of distinct outcomes and
the estimate is the exact one-step empowerment ``ln #outcomes`` (an open room scores more than a corridor).
Training is ICM's: ``(1 - beta) * L_inv + beta * L_fwd`` on the agent's transitions, both reaching ``phi``.

Deviations:
    - The source is optimal in closed form per state (above) instead of a trained source network, since
      discrete actions let the bound be summed over every action exactly.
    - One step; Mohamed & Rezende use K-step action sequences (open loop). Longer horizons need ``|A|^K``
      imagined rollouts per state.
    - ``q`` is trained on the agent's own transitions (on-policy samples), not on samples from ``w``;
      the grouping argument above makes the optimum independent of the training action distribution as
      long as every action is tried (PPO's entropy bonus keeps them).
    - The estimate is clamped to ``[0, ln |A|]``, the range of the true one-step empowerment.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gymnasium import spaces

from rove.intrinsic.base import Normalization
from rove.intrinsic.dynamics import (
    EVAL_CHUNK,
    encode,
    encode_rollout,
    require_discrete,
)
from rove.intrinsic.icm import ICM
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout
from rove.obs import TensorObs


@register("empowerment")
class Empowerment(ICM):
    """One-step variational empowerment of ``s_{t+1}`` (see the module docstring): ICM's inverse and forward
    models, trained as ICM trains them (inherited), with the empowerment bound as the reward.

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Must be Discrete.
        beta: Weight of the forward loss in ``(1 - beta) * L_inv + beta * L_fwd`` (ICM's 0.2).
        features_dim: Dimension of ``phi``.
        hidden: Width of the forward and inverse heads.
        lr: Adam learning rate.
        batch_size: Minibatch size of ``update``.
        epochs: Passes over each rollout in ``update``.
        normalize: See :class:`IntrinsicModule` (Rove's default, the running std of the intrinsic return).
        **base_kwargs: ``coef``, ``gamma``, ``update_proportion``, ``device``, ``seed``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        beta: float = 0.2,
        features_dim: int = 128,
        hidden: int = 128,
        lr: float = 1e-3,
        batch_size: int = 512,
        epochs: int = 1,
        normalize: Normalization = "return",
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            beta=beta,
            features_dim=features_dim,
            hidden=hidden,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            normalize=normalize,
            **base_kwargs,
        )
        self.num_actions = require_discrete(action_space, type(self).__name__)

    def empowerment_of_features(self, phi: torch.Tensor) -> torch.Tensor:
        """``E_hat`` of states with features ``phi [N, d]``: ``ln sum_a q(a | phi, f(phi, a))``, ``[N]``."""
        n, k = phi.shape[0], self.num_actions
        actions = torch.arange(k, device=phi.device).repeat(n)  # [N * A]: every action of every state
        phi_rep = phi.repeat_interleave(k, 0)
        imagined = self.forward_model(phi_rep, actions)
        logits = self.inverse.head(torch.cat([phi_rep, imagined], dim=1))
        log_q = logits.log_softmax(1).gather(1, actions[:, None]).reshape(n, k)  # ln q(a | s, s'_a)
        return torch.logsumexp(log_q, 1).clamp(0.0, math.log(k))

    @torch.no_grad()
    def empowerment(self, obs: TensorObs) -> torch.Tensor:
        """``E_hat`` (nats) of each observation ``[N, ...]`` -> ``[N]`` (raw: not normalised or scaled)."""
        self.eval()
        obs = self._prepare(obs, "empowerment")
        phi = encode(self.inverse, obs)
        return torch.cat([self.empowerment_of_features(p) for p in phi.split(EVAL_CHUNK)])

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        self.eval()
        _, next_phi = encode_rollout(self.inverse, rollout)
        power = torch.cat([self.empowerment_of_features(p) for p in next_phi.split(EVAL_CHUNK)])
        return power.reshape(rollout.num_steps, rollout.num_envs)
