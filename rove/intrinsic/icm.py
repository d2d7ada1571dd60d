"""Intrinsic Curiosity Module (Pathak et al. 2017, "Curiosity-driven Exploration by Self-supervised Prediction").

Reference: pathak22/noreward-rl ``src/model.py`` (``StateActionPredictor``) and ``src/a3c.py`` (the predictor
loss), ``src/constants.py`` (``PREDICTION_BETA`` 0.01, ``FORWARD_LOSS_WT`` 0.2).

Deviations:
    - Forward error summed over the features (the reference takes ``0.5 * mean * 288`` with 288 features,
      i.e. the same sum): the scale does not depend on ``features_dim`` differently from the paper's formula.
    - Encoder: Rove's light per-suite encoder with ELU (the reference's 4-layer ELU conv net on 42x42 frames),
      so the module costs under half an env step on CPU.
    - Adam with ``lr`` 1e-3 on minibatches of each rollout (the reference: Adam 1e-3 inside A3C's 20-step
      updates, predictor gradients scaled by ``PREDICTION_LR_SCALE`` 10).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from rove.intrinsic.base import IntrinsicModule, Normalization, make_adam, seeded
from rove.intrinsic.dynamics import (
    ForwardModel,
    Frames,
    InverseDynamics,
    encode_rollout,
    obs_cat,
    pair_minibatches,
    require_discrete,
    training_frames,
    transition_frames,
)
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout, Transitions
from rove.obs import TensorObs

DEFAULT_ETA = 0.01  # the paper's PREDICTION_BETA


@register("icm")
class ICM(IntrinsicModule):
    """Curiosity as the error of a forward model in an inverse-dynamics feature space.

    ``r_t = eta * 0.5 * ||f(phi(s_t), a_t) - phi(s_{t+1})||^2``; the module minimises
    ``(1 - beta) * L_inv + beta * L_fwd`` and the gradient of both losses reaches the encoder ``phi``, as in the
    reference (ELU features keep ``phi`` informative, see :class:`~rove.intrinsic.dynamics.InverseDynamics`).
    All transitions of a rollout are scored in one batch (no per-env loop).

    ``eta`` is the paper's scale of the raw bonus and only means something when the bonus is not normalised,
    which is ICM's default (``normalize="none"``, as in the paper's A3C). Under ``normalize="return"`` or
    ``"std"`` the normaliser divides any constant scale out, so ``eta`` is refused there: scale with ``coef``.

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Must be Discrete.
        eta: Scale of the raw bonus (0.01 in the paper); only with ``normalize="none"``.
        beta: Weight of the forward loss (0.2 in the paper).
        features_dim: Dimension of ``phi``. 128 with ``hidden`` 128 and ``batch_size`` 512 stays under half an env
            step's time per transition on one CPU core even on NetHack (``experiments/bench_intrinsic.py``).
        hidden: Width of the forward and inverse heads.
        lr: Adam learning rate (1e-3 in the paper's code).
        batch_size: Minibatch size of ``update``.
        epochs: Passes over each rollout in ``update``.
        normalize: ``"none"`` by default (the paper's raw ``eta``-scaled bonus); see :class:`IntrinsicModule`.
        **base_kwargs: ``coef``, ``gamma``, ``update_proportion``, ``device``, ``seed``
            (see :class:`IntrinsicModule`).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        eta: float | None = None,
        beta: float = 0.2,
        features_dim: int = 128,
        hidden: int = 128,
        lr: float = 1e-3,
        batch_size: int = 512,
        epochs: int = 1,
        normalize: Normalization = "none",
        **base_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, normalize=normalize, **base_kwargs)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if eta is not None and normalize != "none":
            raise ValueError(
                f"eta={eta} has no effect under normalize={normalize!r} (the normaliser divides it out); "
                "use normalize='none' to keep the paper's eta-scaled bonus, or scale the normalised one with coef"
            )
        if eta is not None and not eta > 0:
            raise ValueError(f"eta must be > 0, got {eta}")
        num_actions = require_discrete(action_space, type(self).__name__)
        self.eta = DEFAULT_ETA if eta is None else float(eta)
        self.beta, self.batch_size, self.epochs = beta, batch_size, epochs
        with seeded(self.seed):
            self.inverse = InverseDynamics(observation_space, num_actions, features_dim, hidden)
            self.forward_model = ForwardModel(features_dim, num_actions, hidden)
        self.to(self.device)
        self.optimizer = make_adam(self.parameters(), lr)

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        self.eval()
        phi, next_phi = encode_rollout(self.inverse, rollout)
        actions = rollout.actions.reshape(-1, *rollout.actions.shape[2:])
        error = (self.forward_model(phi, actions) - next_phi).pow(2).sum(1)
        return (self.eta * 0.5 * error).reshape(rollout.num_steps, rollout.num_envs)

    def losses(self, batch: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_inv, L_fwd)`` on a batch, both differentiable in the encoder (see :meth:`forward_loss`)."""
        pre = obs_cat([self.inverse.preprocess(batch.obs), self.inverse.preprocess(batch.next_obs)])
        return self._losses(pre, batch.actions)

    def forward_loss(self, pred: torch.Tensor, next_phi: torch.Tensor) -> torch.Tensor:
        """ICM's ``0.5 * ||f - phi'||^2`` averaged over the batch; ``pred, next_phi [N, d]``."""
        return 0.5 * (pred - next_phi).pow(2).sum(1).mean()

    def total_loss(self, inverse_loss: torch.Tensor, forward_loss: torch.Tensor) -> torch.Tensor:
        """ICM's ``(1 - beta) * L_inv + beta * L_fwd``."""
        return (1.0 - self.beta) * inverse_loss + self.beta * forward_loss

    def _losses(self, pre: TensorObs, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`losses` of preprocessed ``s_t`` rows stacked on ``s_{t+1}`` rows (``[2N, ...]``): one pass of
        the encoder over both. Nothing is detached: the forward loss trains ``phi`` too."""
        phi, next_phi = self.inverse.features(pre).chunk(2)
        inverse_loss = self.inverse.loss(phi, next_phi, actions)
        forward_loss = self.forward_loss(self.forward_model(phi, actions), next_phi)
        return inverse_loss, forward_loss

    def _update(self, batch: Transitions) -> dict[str, float]:
        return self._train(transition_frames(self.inverse.preprocess, batch), batch.actions)

    def _update_rollout(self, rollout: Rollout, index: torch.Tensor) -> dict[str, float]:
        # The parameter-free part of the encoder runs once over the rollout's distinct frames, not per minibatch.
        return self._train(*training_frames(self.inverse.preprocess, rollout, index))

    def _train(self, frames: Frames, actions: torch.Tensor) -> dict[str, float]:
        """Minibatch training on the transitions of ``frames`` (preprocessed observations), ``actions [N]``."""
        totals = {"inverse_loss": 0.0, "forward_loss": 0.0, "loss": 0.0}
        count = 0
        for _ in range(self.epochs):
            for pre, index in pair_minibatches(frames, self.batch_size, self.generator, self.device):
                inverse_loss, forward_loss = self._losses(pre, actions[index])
                loss = self.total_loss(inverse_loss, forward_loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                totals["inverse_loss"] += inverse_loss.item()
                totals["forward_loss"] += forward_loss.item()
                totals["loss"] += loss.item()
                count += 1
        return {k: v / max(count, 1) for k, v in totals.items()}
