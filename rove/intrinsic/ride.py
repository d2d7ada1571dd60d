"""Rewarding Impact-Driven Exploration (Raileanu & Rocktäschel 2020, "RIDE").

Reference: facebookresearch/impact-driven-exploration ``src/algos/ride.py`` (bonus and losses),
``src/losses.py`` (forward loss = L2 norm of the error), ``src/arguments.py`` (``forward_loss_coef`` 10,
``inverse_loss_coef`` 0.1, lr 1e-4), ``src/utils.py`` (exact episodic counts of the observation).

Deviations:
    - Adam instead of RMSprop (lr 1e-4 kept): Rove's modules share one optimiser recipe.
    - Encoder: Rove's light per-suite encoder with ELU (the reference: 3 ELU convs on the MiniGrid grid).
    - No normalisation by default in the reference; Rove keeps the base class's return-std normalisation
      (``normalize="return"``) so that one ``coef`` works across suites; ``normalize="none"`` is the reference.
    - The episode's first observation is not counted (as in the reference, whose count dict starts empty at
      each episode and counts ``s_{t+1}``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from rove.intrinsic.base import Normalization
from rove.intrinsic.dynamics import encode_rollout
from rove.intrinsic.icm import ICM
from rove.intrinsic.kernels import EpisodicCountTables, hash_rows, obs_bytes
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout, Step
from rove.obs import TensorObs

STATE_KEY = "state_key"  # rove.envs.core.STATE_KEY; repeated so that this file imports without the envs
CAPTION = "caption"  # what just happened, not where the agent is: left out of the observation's key


def episodic_keys(obs: TensorObs) -> np.ndarray:
    """An exact key per observation, ``int64 [E]``: Rove's ``state_key`` when present, else a 64-bit hash of
    the observation's bytes (collisions ~2^-64, unlike the kNN pseudo-counts of other RIDE implementations)."""
    if isinstance(obs, dict) and STATE_KEY in obs:
        return obs[STATE_KEY].reshape(obs[STATE_KEY].shape[0], -1)[:, 0].cpu().numpy().astype(np.int64)
    return hash_rows(obs_bytes(obs, skip=(CAPTION,)))


MAX_PENDING = 1_000_000  # steps of bonuses kept between computes


@register("ride")
class RIDE(ICM):
    """Impact bonus ``||phi(s_{t+1}) - phi(s_t)||_2 / sqrt(N_ep(s_{t+1}))``.

    ``phi`` is trained by the reference's loss ``forward_coef * mean ||f(phi(s), a) - phi(s')||_2 +
    inverse_coef * L_inv`` (10 and 0.1), with both gradients reaching the encoder; the forward model exists
    for that gradient only (the bonus does not use it). ``N_ep`` is an exact count of visits to ``s_{t+1}``
    in the current episode (numba tables from :mod:`rove.intrinsic.kernels`, keyed by :func:`episodic_keys`),
    taken in :meth:`observe` step by step and cleared at episode ends and by :meth:`reset_episodes`; as in
    the paper's code, an episode's first observation (arriving on the autoreset step) is not counted.

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Must be Discrete.
        lr: Adam learning rate (1e-4 in the paper).
        forward_coef: Weight of the forward loss (10 in the reference).
        inverse_coef: Weight of the inverse loss (0.1 in the reference).
        normalize: ``"return"`` by default (see the module docstring).
        **kwargs: ICM's network options (``features_dim``, ``hidden``, ``batch_size``, ``epochs``) and the base
            options (``coef``, ``gamma``, ``update_proportion``, ``device``, ``seed``).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        lr: float = 1e-4,
        forward_coef: float = 10.0,
        inverse_coef: float = 0.1,
        normalize: Normalization = "return",
        **kwargs: Any,
    ) -> None:
        for name in ("eta", "beta"):
            if name in kwargs:
                raise TypeError(
                    f"RIDE has no {name!r} (its bonus is not a forward-model error and its loss weights are "
                    "forward_coef and inverse_coef); scale the bonus with 'coef'"
                )
        if not (forward_coef >= 0 and inverse_coef >= 0 and forward_coef + inverse_coef > 0):
            raise ValueError(
                f"forward_coef and inverse_coef must be >= 0, not both 0; got {forward_coef}, {inverse_coef}"
            )
        super().__init__(observation_space, action_space, lr=lr, normalize=normalize, **kwargs)
        self.forward_coef, self.inverse_coef = float(forward_coef), float(inverse_coef)
        self.counts = EpisodicCountTables()
        self.pending: list[np.ndarray] = []  # episodic counts of next_obs per observed step, int64 [E] each

    def forward_loss(self, pred: torch.Tensor, next_phi: torch.Tensor) -> torch.Tensor:
        """The reference's ``mean ||f - phi'||_2`` (a norm, not ICM's squared error)."""
        return (pred - next_phi).norm(dim=1).mean()

    def total_loss(self, inverse_loss: torch.Tensor, forward_loss: torch.Tensor) -> torch.Tensor:
        return self.forward_coef * forward_loss + self.inverse_coef * inverse_loss

    def _reset_episodes(self) -> None:
        # Bonuses already observed belong to steps already taken: they stay pending for the next compute.
        self.counts.reset()

    def _observe(self, step: Step) -> None:
        keys = episodic_keys(step.next_obs)[None]
        valid = step.valid.cpu().numpy()[None]
        dones = step.dones.cpu().numpy()[None]
        self.pending.append(self.counts.increment(keys, valid, dones)[0])
        del self.pending[:-MAX_PENDING]  # bounded, for an agent that observes without computing

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        if len(self.pending) < rollout.num_steps:
            raise RuntimeError(
                f"RIDE counts visits in observe(): it saw {len(self.pending)} steps since the last compute but the "
                f"rollout has {rollout.num_steps}; call observe() on every step before compute()"
            )
        counts = torch.as_tensor(np.stack(self.pending[-rollout.num_steps :]), device=self.device)
        self.pending.clear()
        self.eval()
        phi, next_phi = encode_rollout(self.inverse, rollout)
        impact = (next_phi - phi).norm(dim=1)
        impact = impact.reshape(rollout.num_steps, rollout.num_envs)
        # Autoreset steps have count 0 (not a visit); their reward is masked to zero by the base class.
        return impact / counts.clamp(min=1).float().sqrt()

    # Episodic counts travel with the state dict, so a restored module continues the same episodes.
    def get_extra_state(self) -> dict[str, Any]:
        tables = self.counts
        return {
            "tables": [a.copy() for a in (tables.keys, tables.counts, tables.used, tables.sizes)],
            "pending": [p.copy() for p in self.pending],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        keys, counts, used, sizes = (a.copy() for a in state["tables"])
        self.counts.keys, self.counts.counts, self.counts.used, self.counts.sizes = keys, counts, used, sizes
        self.counts.num_envs = int(sizes.shape[0])
        self.pending = [p.copy() for p in state["pending"]]
