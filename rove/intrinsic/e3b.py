"""Exploration via Elliptical Episodic Bonuses (Henaff et al. 2022, "Exploration via Elliptical Episodic
Bonuses"), vectorised across envs.

Reference: facebookresearch/e3b ``minihack/src/utils.py`` (``act``: ``C^{-1} = I / ridge`` at each episode
start, rank-1 Sherman-Morrison update per step) and ``minihack/src/algos/e3b.py`` (inverse-dynamics
training, the bonus divided by its running std), ``minihack/src/arguments.py`` (ridge 0.1).

Deviations:
    - Rove scores ``s_{t+1}``, the observation the action led to, where the reference scores the step's
      current observation ``s_t``: the reward then credits the action that reached the novel state, as every
      other module here does. Kept on purpose; not compared in a learning run.
    - All envs update at once on an ``[E, d, d]`` float64 tensor instead of one Python loop per actor.
    - Encoder: Rove's light per-suite encoder with ELU (the reference: its NetHack/MiniGrid embedding nets).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from rove.intrinsic.base import IntrinsicModule, Normalization, make_adam, seeded
from rove.intrinsic.dynamics import (
    EpisodeBoundaries,
    Frames,
    InverseDynamics,
    pair_minibatches,
    require_discrete,
    training_frames,
    transition_frames,
)
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout, Step, Transitions

MAX_PENDING = 1_000_000  # steps of bonuses kept between computes


@register("e3b")
class E3B(IntrinsicModule):
    """Elliptical episodic bonus ``b_t = phi(s_{t+1})^T C_t^{-1} phi(s_{t+1})``.

    ``C_t = ridge * I + sum of phi(s) phi(s)^T`` over the observations of the current episode seen so far,
    the episode's first observation included. ``C^{-1}`` starts at ``I / ridge`` and takes a rank-1
    Sherman-Morrison update ``C^{-1} -= u u^T / (1 + b)`` with ``u = C^{-1} phi`` per step; it resets at each
    episode's end, and the episode's first observation earns no bonus (it arrives on the autoreset step,
    whose reward is zero). All envs update at once on an ``[E, d, d]`` tensor, in float64 so that thousands of
    rank-1 updates stay equal to a direct inverse.

    The bonuses are computed in :meth:`observe` (each step, in order, with the encoder of that moment, as in
    the paper); :meth:`compute` returns those of the rollout's steps. ``phi`` is an inverse-dynamics encoder
    trained by :meth:`update`.

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Must be Discrete.
        ridge: Initial ``C = ridge * I`` (0.1 in the paper).
        features_dim: Dimension of ``phi``.
        hidden: Width of the inverse head.
        lr: Adam learning rate.
        batch_size: Minibatch size of ``update``.
        epochs: Passes over each rollout in ``update``.
        normalize: Defaults to ``"std"``: the paper divides the bonus by its running std.
        **base_kwargs: ``coef``, ``gamma``, ``update_proportion``, ``device``, ``seed``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        ridge: float = 0.1,
        features_dim: int = 256,
        hidden: int = 256,
        lr: float = 1e-4,
        batch_size: int = 256,
        epochs: int = 1,
        normalize: Normalization = "std",
        **base_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, normalize=normalize, **base_kwargs)
        if ridge <= 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        num_actions = require_discrete(action_space, type(self).__name__)
        self.ridge, self.features_dim, self.batch_size, self.epochs = ridge, features_dim, batch_size, epochs
        with seeded(self.seed):
            self.inverse = InverseDynamics(observation_space, num_actions, features_dim, hidden)
        self.to(self.device)
        self.optimizer = make_adam(self.parameters(), lr)
        self.cov_inverse = torch.zeros(0, features_dim, features_dim, dtype=torch.float64, device=self.device)
        self.boundaries = EpisodeBoundaries()
        self.pending: list[torch.Tensor] = []  # bonuses of the steps observed since the last compute, [E] each

    def _features(self, obs: Any) -> torch.Tensor:
        self.eval()
        with torch.no_grad():
            return self.inverse(obs).to(torch.float64)

    def _add(self, phi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores ``phi [E, d]`` against each env's ``C^{-1}`` and adds it to those where ``mask``; returns ``b [E]``."""
        u = torch.bmm(self.cov_inverse, phi.unsqueeze(2)).squeeze(2)  # C^{-1} is symmetric, so u^T = phi^T C^{-1}
        b = (u * phi).sum(1)
        scaled = u * (mask / (1.0 + b)).unsqueeze(1)
        self.cov_inverse.baddbmm_(scaled.unsqueeze(2), u.unsqueeze(1), alpha=-1.0)  # C^{-1} -= u u^T / (1 + b)
        return b

    def _observe(self, step: Step) -> None:
        num_envs = step.dones.shape[0]
        if self.cov_inverse.shape[0] != num_envs:
            self.cov_inverse = self._identity(num_envs)
        reset, first_is_obs = self.boundaries.step(step.dones, step.valid)
        if bool(reset.any()):
            self.cov_inverse[reset] = self._identity(int(reset.sum()))
        if bool(first_is_obs.any()):
            self._add(self._features(step.obs), first_is_obs)
        # On autoreset steps next_obs is the new episode's first observation: remembered, never rewarded.
        bonus = self._add(self._features(step.next_obs), torch.ones_like(step.valid))
        self.pending.append(torch.where(step.valid, bonus, torch.zeros_like(bonus)).float())
        del self.pending[:-MAX_PENDING]  # bounded, for an agent that observes without computing

    def _reset_episodes(self) -> None:
        # The next observed step starts a fresh episode in every env: C^{-1} = I / ridge, first obs remembered.
        self.cov_inverse = self.cov_inverse.new_zeros(0, self.features_dim, self.features_dim)
        self.boundaries = EpisodeBoundaries()

    def _identity(self, num_envs: int) -> torch.Tensor:
        eye = torch.eye(self.features_dim, dtype=torch.float64, device=self.device) / self.ridge
        return eye.expand(num_envs, -1, -1).clone()

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        if len(self.pending) < rollout.num_steps:
            raise RuntimeError(
                f"E3B computes its bonus in observe(): it saw {len(self.pending)} steps since the last compute "
                f"but the rollout has {rollout.num_steps}; call observe() on every step before compute()"
            )
        bonus = torch.stack(self.pending[-rollout.num_steps :])
        self.pending.clear()
        return bonus

    def _update(self, batch: Transitions) -> dict[str, float]:
        return self._train(transition_frames(self.inverse.preprocess, batch), batch.actions)

    def _update_rollout(self, rollout: Rollout, index: torch.Tensor) -> dict[str, float]:
        # The parameter-free part of the encoder runs once over the rollout's distinct frames, not per minibatch.
        return self._train(*training_frames(self.inverse.preprocess, rollout, index))

    def _train(self, frames: Frames, actions: torch.Tensor) -> dict[str, float]:
        """Inverse-dynamics training on the transitions of ``frames`` (preprocessed observations)."""
        total, count = 0.0, 0
        for _ in range(self.epochs):
            for pre, index in pair_minibatches(frames, self.batch_size, self.generator, self.device):
                phi, next_phi = self.inverse.features(pre).chunk(2)
                loss = self.inverse.loss(phi, next_phi, actions[index])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += loss.item()
                count += 1
        return {"inverse_loss": total / max(count, 1)}

    # Episodic memory travels with the state dict, so a restored module continues the same episodes.
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "cov_inverse": self.cov_inverse.clone(),
            "needs_reset": self.boundaries.state(),
            "pending": [p.clone() for p in self.pending],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.cov_inverse = state["cov_inverse"].to(self.device).clone()
        self.boundaries.load(state["needs_reset"].to(self.device))
        self.pending = [p.to(self.device).clone() for p in state["pending"]]
