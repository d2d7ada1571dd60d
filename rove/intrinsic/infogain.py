"""MaxInfoRL's information-gain reward (Sukhija, Coros, Krause, Abbeel & Sferrazza 2024, arXiv 2412.12098).

MaxInfoRL rewards a transition by how much observing it would tell about the unknown dynamics and reward
``f``: for a Gaussian model of the outcome ``y = (s', r)`` the information gain is bounded by
``1/2 sum_j log(1 + sigma_epi,j^2(s, a) / sigma^2)``, with ``sigma_epi`` the epistemic std (here, the
disagreement of an ensemble) and ``sigma`` the aleatoric noise. Unlike plain disagreement (Pathak et al. 2019,
:mod:`rove.intrinsic.disagreement`), the ensemble also predicts the reward, predicts the *change* of the
features, works in normalised target units, and the variance enters through ``log(1 + var / sigma^2)``: a
ratio to the noise level, so that one unfamiliar output dimension cannot dominate the others by scale.

References (read for this module):
    - sukhijab/maxinforl_sb3 ``maxinforl_torch/models/ensembles.py`` (``EnsembleMLP.get_disagreement`` with
      ``use_entropy=True`` and no learned std: ``log(EPS + var)`` averaged over output dims, then
      ``- log(EPS)`` in ``MaxInfoSAC.get_intrinsic_reward``, i.e. ``mean_j log(1 + var_j / 1e-6)``) and
      ``commons/maxinfo_sac.py`` (targets ``phi(s') - phi(s)`` and the reward, normalised by running mean/std;
      the ensemble trained by MSE on every replay batch; the reward normalised by a running mean/std).
    - sukhijab/maxinforl_jax ``maxinforl_jax/models/ensemble_model.py`` (``DeterministicEnsemble.get_info_gain``:
      ``sigma = 1e-3`` in normalised output units, population std over members, mean over dims).

The reward of a transition, with ``y = [phi(s') - phi(s), r_ext]`` normalised per dimension by running
statistics and ``f_k`` the ``K`` members' predictions of it::

    r_t = mean_j log(1 + Var_k[f_k(phi(s_t), a_t)]_j / noise_std^2)

Deviations:
    - Features: a frozen randomly initialised light encoder (Disagreement's default), not the actor's
      features (the SB3 port) nor the raw state (the JAX code): Rove's modules are independent of the
      policy, and fixed features keep the targets stationary.
    - Mean over output dimensions without the bound's 1/2, as both reference codes do (a constant factor
      that the reward normalisation removes).
    - Targets are normalised with statistics updated once per rollout on its training transitions (the
      references: once per replay batch); their std is clipped at 1e-3 as in the JAX code. The inputs (a
      one-hot action and bounded random features) are not normalised.
    - The reward is standardised by a running mean/std over valid steps (``normalize="standardize"``, the
      references' normaliser), updated once per rollout instead of once per batch. It is negative on the less
      informative transitions: keep the intrinsic stream non-episodic (Rove's default), where a constant
      offset changes nothing, or pick another ``normalize``.
    - Members train on the same minibatches (as the references) unless ``bootstrap=True`` (Pathak et
      al.'s per-member bootstrap); one PPO rollout's valid transitions per update instead of a replay buffer.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from rove.encoders import encode_preprocessed, make_encoder, preprocess
from rove.intrinsic.base import IntrinsicModule, make_adam, seeded
from rove.intrinsic.dynamics import (
    EVAL_CHUNK,
    ForwardModel,
    encode,
    ensemble_forward,
    frozen,
    minibatches,
    require_discrete,
    training_frames,
)
from rove.intrinsic.normalize import RewardNormalizer, RunningMeanStd
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout
from rove.obs import obs_flatten, obs_index

MIN_TARGET_STD = 1e-3  # the JAX reference clips its normalisers' std here
NORMALIZATIONS = ("standardize", "return", "std", "none")


def information_gain(predictions: torch.Tensor, noise_std: float) -> torch.Tensor:
    """``mean_j log(1 + Var_k[predictions]_j / noise_std^2)`` for ``predictions [K, N, D]``: ``[N]``.

    The variance over members is the population variance (``ddof = 0``), as ``jnp.std`` in the JAX reference.
    """
    var = (predictions - predictions.mean(0)).pow(2).mean(0)  # contiguous: torch.var over dim 0 is strided
    return torch.log1p(var / noise_std**2).mean(1)


@register("infogain")
class InfoGain(IntrinsicModule):
    """Bonus = information gain about the dynamics and reward, from an ensemble's disagreement (MaxInfoRL).

    Pair it with ``PPO(..., int_coef="auto")``, MaxInfoRL's automatic weighting of the bonus (see
    :class:`rove.agents.PPO`); it also works as a plain module with a fixed coefficient.

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Must be Discrete (the members take a one-hot action).
        ensemble_size: Number of members (5 in both reference codes).
        features_dim: Dimension of the frozen random features ``phi``.
        hidden: Width of each member.
        noise_std: Aleatoric std ``sigma`` in normalised target units (1e-3 in both reference codes).
        predict_reward: Also predict the extrinsic reward (the references' default).
        bootstrap: Train each member on its own bootstrap of each minibatch (the references do not).
        lr: Adam learning rate of the members.
        batch_size: Minibatch size of ``update``.
        epochs: Passes over each rollout in ``update`` (4, as PPO's epochs: a rollout is all the data there is).
        normalize: ``"standardize"`` (default, the references'): minus the running mean, divided by the running
            std; or one of :class:`IntrinsicModule`'s (``"return"``, ``"std"``, ``"none"``).
        **base_kwargs: ``coef``, ``gamma``, ``update_proportion``, ``device``, ``seed``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        ensemble_size: int = 5,
        features_dim: int = 64,
        hidden: int = 64,
        noise_std: float = 1e-3,
        predict_reward: bool = True,
        bootstrap: bool = False,
        lr: float = 1e-3,
        batch_size: int = 256,
        epochs: int = 4,
        normalize: str = "standardize",
        **base_kwargs: Any,
    ) -> None:
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {normalize!r}")
        standardize = normalize == "standardize"
        super().__init__(observation_space, action_space, normalize="none" if standardize else normalize, **base_kwargs)  # type: ignore[arg-type]
        if ensemble_size < 2:
            raise ValueError(f"ensemble_size must be >= 2 for a variance, got {ensemble_size}")
        if not noise_std > 0:
            raise ValueError(f"noise_std must be > 0, got {noise_std}")
        num_actions = require_discrete(action_space, type(self).__name__)
        self.noise_std, self.predict_reward, self.bootstrap = float(noise_std), predict_reward, bootstrap
        self.batch_size, self.epochs = batch_size, epochs
        out_dim = features_dim + int(predict_reward)
        with seeded(self.seed):
            self.encoder = frozen(make_encoder(observation_space, features_dim, light=True))
            self.members = torch.nn.ModuleList(
                ForwardModel(features_dim, num_actions, hidden, out_dim) for _ in range(ensemble_size)
            )
        self.target_stats = RunningMeanStd((out_dim,))
        self.standardizer = RewardNormalizer(center=True) if standardize else None
        self.to(self.device)
        self.optimizer = make_adam(self.members.parameters(), lr)

    def predictions(self, obs: Any, actions: torch.Tensor) -> torch.Tensor:
        """``[K, N, D]`` members' predictions (normalised target units) for ``obs [N, ...]``, ``actions [N]``."""
        with torch.no_grad():
            phi = encode(self.encoder, obs)
        return ensemble_forward(self.members, phi, actions.reshape(-1))

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        self.eval()
        flat_obs, actions = obs_flatten(rollout.obs), rollout.actions.reshape(-1)
        n = len(actions)
        gains = [
            information_gain(
                self.predictions(obs_index(flat_obs, slice(i, i + EVAL_CHUNK)), actions[i : i + EVAL_CHUNK]),
                self.noise_std,
            )
            for i in range(0, n, EVAL_CHUNK)
        ]
        gain = torch.cat(gains).reshape(rollout.num_steps, rollout.num_envs)
        if self.standardizer is not None:
            gain = self.standardizer(gain, rollout.valid)
        return gain

    def targets(self, phi: torch.Tensor, next_phi: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """Raw targets ``[N, D]``: ``phi(s') - phi(s)``, then the reward when it is predicted."""
        delta = next_phi - phi
        return torch.cat([delta, rewards.reshape(-1, 1).to(delta)], 1) if self.predict_reward else delta

    def normalized(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets in the running statistics' units (std clipped at 1e-3)."""
        mean = self.target_stats.mean.to(targets.dtype)
        std = self.target_stats.std.to(targets.dtype).clamp(min=MIN_TARGET_STD)
        return (targets - mean) / std

    def _update_rollout(self, rollout: Rollout, index: torch.Tensor) -> dict[str, float]:
        frames, actions = training_frames(lambda x: preprocess(self.encoder, x), rollout, index)
        with torch.no_grad():
            phi_all = encode(lambda x: encode_preprocessed(self.encoder, x), frames.data)
            raw = self.targets(phi_all[frames.obs_rows], phi_all[frames.next_rows], rollout.rewards.reshape(-1)[index])
            self.target_stats.update(raw)
            targets = self.normalized(raw)
            phi = phi_all[frames.obs_rows]
        actions = actions.reshape(-1)
        k, total, count = len(self.members), 0.0, 0
        for _ in range(self.epochs):
            for rows in minibatches(len(index), self.batch_size, self.generator, self.device):
                pred = ensemble_forward(self.members, phi[rows], actions[rows])  # [K, n, D]
                errors = (pred - targets[rows]).pow(2).mean(2)  # [K, n]
                if self.bootstrap:
                    n = len(rows)
                    draws = torch.randint(n, (k, n), generator=self.generator).to(self.device)
                    weights = torch.zeros(k, n, device=self.device).scatter_add_(
                        1, draws, torch.ones(k, n, device=self.device)
                    )
                    loss = (weights * errors).sum() / (k * n)
                else:
                    loss = errors.mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += loss.item()
                count += 1
        return {"ensemble_loss": total / max(count, 1)}
