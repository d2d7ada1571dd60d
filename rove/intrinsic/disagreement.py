"""Self-supervised exploration via disagreement (Pathak, Gandhi & Gupta 2019).

Reference: pathak22/exploration-by-disagreement ``dynamics.py`` (an ensemble of forward models on the
features, each trained on its own bootstrap of the batch; reward = variance across the members).

Deviations:
    - Features: a frozen random light encoder by default (the reference's default "random features" setting
      on its CNN), or ``features="inverse"`` for an inverse-dynamics encoder.
    - The members' first layers run as one matmul and the second as one batched matmul (same values).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from gymnasium import spaces
from torch import nn

from rove.encoders import encode_preprocessed, make_encoder, preprocess
from rove.intrinsic.base import IntrinsicModule, make_adam, seeded
from rove.intrinsic.dynamics import (
    EVAL_CHUNK,
    ForwardModel,
    Frames,
    InverseDynamics,
    encode,
    ensemble_forward,
    frozen,
    pair_minibatches,
    require_discrete,
    training_frames,
    transition_frames,
)
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout, Transitions
from rove.obs import TensorObs, obs_index

Features = Literal["random", "inverse"]


@register("disagreement")
class Disagreement(IntrinsicModule):
    """Bonus = variance across an ensemble of forward models' predictions of ``phi(s_{t+1})``.

    ``r_t = mean_j Var_k[f_k(phi(s_t), a_t)_j]``: members agree where they were trained and disagree on
    unseen transitions, and, unlike a single model's error, the variance does not reward stochastic
    transitions forever. Each member trains on its own bootstrap (sampling with replacement) of each batch.

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Must be Discrete (the members take a one-hot action).
        ensemble_size: Number of forward models (5 in the paper).
        features: ``"random"``: a frozen randomly initialised encoder (the paper's default);
            ``"inverse"``: an encoder trained by inverse dynamics as in ICM.
        features_dim: Dimension of ``phi``. 64 (with ``hidden`` 64 and ``batch_size`` 512) keeps the module under
            half an env step's time per transition on one CPU core even on NetHack (``experiments/bench_intrinsic.py``);
            raise them on a GPU.
        hidden: Width of each forward model.
        lr: Adam learning rate.
        batch_size: Minibatch size of ``update``.
        epochs: Passes over each rollout in ``update``.
        **base_kwargs: ``coef``, ``normalize``, ``gamma``, ``update_proportion``, ``device``, ``seed``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        ensemble_size: int = 5,
        features: Features = "random",
        features_dim: int = 64,
        hidden: int = 64,
        lr: float = 1e-4,
        batch_size: int = 512,
        epochs: int = 1,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **base_kwargs)
        if ensemble_size < 2:
            raise ValueError(f"ensemble_size must be >= 2 for a variance, got {ensemble_size}")
        if features not in ("random", "inverse"):
            raise ValueError(f"features must be 'random' or 'inverse', got {features!r}")
        num_actions = require_discrete(action_space, type(self).__name__)
        self.features, self.batch_size, self.epochs = features, batch_size, epochs
        with seeded(self.seed):
            self.inverse: InverseDynamics | None = None
            if features == "inverse":
                self.inverse = InverseDynamics(observation_space, num_actions, features_dim, hidden)
                self.encoder: nn.Module = self.inverse
            else:
                self.encoder = frozen(make_encoder(observation_space, features_dim, light=True))
            self.members = nn.ModuleList(ForwardModel(features_dim, num_actions, hidden) for _ in range(ensemble_size))
        self.to(self.device)
        self.optimizer = make_adam((p for p in self.parameters() if p.requires_grad), lr)

    def _phi(self, obs: Any) -> torch.Tensor:
        return encode(self.encoder, obs)

    def _predictions(self, phi: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[K, N, d]`` predictions of the K members."""
        return ensemble_forward(self.members, phi, actions)

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        flat = rollout.flatten()
        self.eval()
        actions = flat.actions.reshape(-1)
        n = len(actions)
        # In chunks: [K, N, d] predictions of a whole rollout are a fresh multi-megabyte buffer per call.
        bonus = [self._disagreement(obs_index(flat.obs, rows), actions[rows]) for rows in _chunks(n, EVAL_CHUNK)]
        return torch.cat(bonus).reshape(rollout.num_steps, rollout.num_envs)

    def _disagreement(self, obs: TensorObs, actions: torch.Tensor) -> torch.Tensor:
        """``[N]`` mean over features of the variance across members of their predictions."""
        preds = self._predictions(self._phi(obs), actions)
        # Var over members from the contiguous deviations: torch.var over the leading dim is a strided
        # reduction, ~20x slower on CPU.
        return (preds - preds.mean(0)).pow(2).mean(0).mean(1)

    def _update(self, batch: Transitions) -> dict[str, float]:
        frames = transition_frames(self._preprocess, batch)
        return self._train(self._training_frames(frames), batch.actions.reshape(-1))

    def _update_rollout(self, rollout: Rollout, index: torch.Tensor) -> dict[str, float]:
        frames, actions = training_frames(self._preprocess, rollout, index)
        return self._train(self._training_frames(frames), actions.reshape(-1))

    def _preprocess(self, obs: TensorObs) -> TensorObs:
        """The parameter-free part of the feature encoder (random or inverse-dynamics)."""
        return self.inverse.preprocess(obs) if self.inverse is not None else preprocess(self.encoder, obs)

    def _training_frames(self, frames: Frames) -> Frames:
        """What ``_train`` indexes: preprocessed frames, or their ``phi [F, d]`` when the features are random
        (frozen: each distinct frame is encoded once, not once per minibatch and side)."""
        if self.inverse is not None:
            return frames
        with torch.no_grad():
            phi = encode(lambda x: encode_preprocessed(self.encoder, x), frames.data)
        return Frames(phi, frames.obs_rows, frames.next_rows)

    def _train(self, frames: Frames, actions: torch.Tensor) -> dict[str, float]:
        """Minibatch training on the transitions of ``frames`` (preprocessed observations, or already ``phi``
        with random features), ``actions [N]``."""
        totals = {"forward_loss": 0.0, "inverse_loss": 0.0}
        count = 0
        k = len(self.members)
        for _ in range(self.epochs):
            for rows, index in pair_minibatches(frames, self.batch_size, self.generator, self.device):
                n = len(index)
                both = self._phi_of_preprocessed(rows)
                phi, next_phi = both[:n], both[n:]
                part_actions = actions[index]
                # Each member's bootstrap (n draws with replacement) as multiplicities: the same loss as
                # gathering the drawn rows, with all members on one shared input batch.
                boot = torch.randint(n, (k, n), generator=self.generator).to(self.device)
                ones = torch.ones(k, n, device=self.device)
                weights = torch.zeros(k, n, device=self.device).scatter_add_(1, boot, ones)
                pred = self._predictions(phi.detach(), part_actions)  # [K, n, d]
                errors = 0.5 * (pred - next_phi.detach()).pow(2).sum(2)  # [K, n]
                forward_loss = (weights * errors).sum() / (k * n)
                loss = forward_loss
                if self.inverse is not None:
                    inverse_loss = self.inverse.loss(phi, next_phi, part_actions)
                    loss = loss + inverse_loss
                    totals["inverse_loss"] += inverse_loss.item()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                totals["forward_loss"] += forward_loss.item()
                count += 1
        if self.inverse is None:
            del totals["inverse_loss"]
        return {k: v / max(count, 1) for k, v in totals.items()}

    def _phi_of_preprocessed(self, rows: TensorObs) -> torch.Tensor:
        if self.inverse is None:
            assert isinstance(rows, torch.Tensor)
            return rows  # already phi (see _update_rollout)
        return self.inverse.features(rows)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, i + size) for i in range(0, n, size)]
