"""Random Network Distillation (Burda et al. 2019, "Exploration by Random Network Distillation").

A frozen, randomly initialised target network ``f`` embeds observations; a predictor ``f_hat`` (deeper than
the target) is trained to match it on the states the agent visits. The bonus of a transition is the
prediction error on its next observation, ``||f_hat(s') - f(s')||^2``: high where the predictor has seen
little data.

Pixel and plain Box observations are whitened by a running mean/std and clipped to [-5, 5] before both
networks; the statistics are warmed up by the agent through ``warm_up(obs)`` (the paper uses 128 x 50
random steps) and then follow every next observation of each ``update``. Categorical observations (MiniGrid
codes, NetHack glyphs) go through the per-suite embedding encoders of :mod:`rove.encoders` instead.

Reference: openai/random-network-distillation ``ppo_agent.py`` (the predictor loss inside every PPO epoch and
minibatch, on a random ``proportion_of_exp_used_for_predictor_update`` = 0.25 mask; ``ob_rms`` updated on
every rollout observation), ``policies/cnn_gru_policy_dynamics.py`` (networks), and CleanRL
``ppo_rnd_envpool.py`` (the same schedule: ``update_epochs`` 4 x ``num_minibatches`` 4).

Deviations:
    - The predictor trains in the module's own ``update`` (once per rollout), on ``num_epochs`` shuffled passes
      of ``num_minibatches`` minibatches with a fresh 25 % mask each: the reference's 16 optimiser steps per
      rollout at PPO's 4 x 4, without coupling the module to the agent's minibatches (the agent's own epochs
      and minibatch count can differ). Only the masked rows are run through the networks (same gradient as
      the reference's masked mean, a quarter of the work).
    - MiniGrid and NetHack codes go through light embedding encoders, not whitening + the paper's CNN (there
      is nothing to whiten in categorical codes); output 128 there instead of 512 (cost, see ``embedding_dim``).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from rove.encoders import MLPEncoder, PixelEncoder, encode_preprocessed, make_encoder, preprocess, suite_of
from rove.intrinsic.base import IntrinsicModule, Normalization, make_adam, seeded
from rove.intrinsic.dynamics import EVAL_CHUNK, encode
from rove.intrinsic.normalize import ObservationNormalizer
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout, Transitions
from rove.obs import TensorObs, obs_batch_size, obs_flatten, obs_index

CATEGORICAL_EMBEDDING_DIM = 128  # RND's default output size on MiniGrid/NetHack (see RND's embedding_dim)


class NormalizedInput(nn.Module):
    """Picks the tensor RND whitens (a Box observation, or the ``image`` of a pixel dict) and whitens it.

    Returns ``[N, ...]`` float32 clipped to ``[-clip, clip]``. Only for the ``box`` and ``pixels`` suites.
    """

    def __init__(self, space: spaces.Space, clip: float = 5.0) -> None:
        super().__init__()
        self.key = "image" if isinstance(space, spaces.Dict) else None
        box = space["image"] if isinstance(space, spaces.Dict) else space
        if not isinstance(box, spaces.Box):
            raise TypeError(f"observation normalisation needs a Box, got {box}")
        self.shape = tuple(box.shape)
        self.normalizer = ObservationNormalizer(self.shape, clip)

    def select(self, obs: TensorObs) -> torch.Tensor:
        return obs[self.key] if isinstance(obs, dict) and self.key else obs  # type: ignore[return-value]

    def update(self, obs: TensorObs) -> None:
        self.normalizer.update(self.select(obs))

    def forward(self, obs: TensorObs) -> torch.Tensor:
        return self.normalizer(self.select(obs))


def needs_normalization(space: spaces.Space) -> bool:
    """RND whitens pixels and plain Boxes; categorical codes (MiniGrid, NetHack) are embedded instead."""
    return suite_of(space) in ("pixels", "box")


def make_body(space: spaces.Space, features_dim: int) -> nn.Module:
    """The feature extractor of a target or predictor network: observations -> ``[N, features_dim]``."""
    if needs_normalization(space):
        box = space["image"] if isinstance(space, spaces.Dict) else space
        assert isinstance(box, spaces.Box)
        # Inputs arrive whitened: no /255 for pixels; LeakyReLU as in Burda et al.
        if suite_of(space) == "pixels":
            return PixelEncoder(box, features_dim, scale=1.0, activation=nn.LeakyReLU)
        return MLPEncoder(box, features_dim, activation=nn.LeakyReLU)
    return make_encoder(space, features_dim, light=True)


class DistillationNetworks(nn.Module):
    """RND's frozen target and trained predictor (and the observation whitening in front of both).

    Args:
        space: Single-env observation space.
        embedding_dim: Output size of both networks (512 in the paper).
        features_dim: Size of each network's body output.
        hidden_dim: Width of the predictor's extra layers (the predictor is deeper than the target).
    """

    def __init__(self, space: spaces.Space, embedding_dim: int, features_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.input = NormalizedInput(space) if needs_normalization(space) else None
        self.target = nn.Sequential(make_body(space, features_dim), nn.Linear(features_dim, embedding_dim))
        self.predictor = nn.Sequential(
            make_body(space, features_dim),
            nn.Linear(features_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, embedding_dim),
        )  # fmt: skip
        self.target.requires_grad_(False)

    def prepare(self, obs: TensorObs) -> TensorObs:
        """The parameter-free part of both networks, computed once for the two: whitening (pixels, Box) or the
        light encoder's preprocessing (codes, crop; target and predictor bodies preprocess alike)."""
        x = self.input(obs) if self.input is not None else obs
        return preprocess(self.target[0], x)

    def update_statistics(self, obs: TensorObs) -> None:
        if self.input is not None:
            self.input.update(obs)

    @staticmethod
    def run(network: nn.Sequential, x: TensorObs) -> torch.Tensor:
        """``network`` (body, then the head layers) on prepared inputs ``x``."""
        return network[1:](encode_preprocessed(network[0], x))

    def forward(self, obs: TensorObs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prediction, target)``, each ``[N, embedding_dim]``; the target carries no gradient."""
        x = self.prepare(obs)
        with torch.no_grad():
            target = self.run(self.target, x)
        return self.run(self.predictor, x), target


@register("rnd")
class RND(IntrinsicModule):
    """Random Network Distillation: bonus = ``||f_hat(s') - f(s')||^2`` (mean over the embedding).

    Args:
        observation_space: Single-env observation space (Box or Rove's Dict).
        action_space: Single-env action space (unused).
        embedding_dim: Output size of target and predictor. Default: the paper's 512 for pixels and Box
            observations; 128 for the categorical MiniGrid and NetHack encoders, whose bodies output 128
            features anyway (a 512-wide output there only multiplies the cost: it was a third of RND's
            matmul time on NetHack, where the module must stay under half an env step on one CPU core).
        features_dim: Body output size of each network.
        hidden_dim: Width of the predictor's two extra layers.
        learning_rate: Adam step size of the predictor (paper: 1e-4).
        num_epochs: Shuffled passes over the rollout per ``update`` (paper: 4, one per PPO epoch).
        num_minibatches: Minibatches per pass (paper: 4, PPO's); ``num_epochs * num_minibatches`` optimiser steps
            per rollout.
        update_obs_stats: Whether ``update`` also feeds every valid next observation of the rollout to the
            whitening statistics (the paper does; warm-up itself only ever comes from ``warm_up``).
        normalize: ``"return"`` (paper): divide by the running std of the intrinsic return along time.
        update_proportion: Fraction of each minibatch the predictor's loss keeps, a fresh random mask per
            minibatch (paper: 0.25 with 128+ envs).
        **base_kwargs: ``coef``, ``gamma``, ``device``, ``seed`` (see the base class).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        embedding_dim: int | None = None,
        features_dim: int = 128,
        hidden_dim: int = 256,
        learning_rate: float = 1e-4,
        num_epochs: int = 4,
        num_minibatches: int = 4,
        update_obs_stats: bool = True,
        normalize: Normalization = "return",
        update_proportion: float = 0.25,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, normalize=normalize, update_proportion=update_proportion, **base_kwargs
        )
        if embedding_dim is None:
            embedding_dim = 512 if needs_normalization(observation_space) else CATEGORICAL_EMBEDDING_DIM
        for name, value in (("embedding_dim", embedding_dim), ("features_dim", features_dim), ("hidden_dim", hidden_dim),
                            ("num_epochs", num_epochs), ("num_minibatches", num_minibatches)):  # fmt: skip
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        self.num_epochs = num_epochs
        self.num_minibatches = num_minibatches
        self.update_obs_stats = update_obs_stats
        with seeded(self.seed):
            self.networks = self._build_networks(observation_space, embedding_dim, features_dim, hidden_dim)
        self.to(self.device)
        self.optimizer = make_adam(self.trainable_parameters(), learning_rate)

    # ----- what subclasses may change -----
    def _build_networks(
        self, space: spaces.Space, embedding_dim: int, features_dim: int, hidden_dim: int
    ) -> DistillationNetworks:
        return DistillationNetworks(space, embedding_dim, features_dim, hidden_dim)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.networks.parameters() if p.requires_grad]

    def prediction_error(self, obs: TensorObs) -> torch.Tensor:
        """Novelty of each observation of a ``[N, ...]`` batch, ``[N]`` (RND: mean squared prediction error)."""
        return self.error_prepared(self.networks.prepare(obs))

    def predictor_loss(self, obs: TensorObs) -> torch.Tensor:
        """The loss minimised by ``update`` on a minibatch of next observations."""
        return self.loss_prepared(self.networks.prepare(obs))

    def squared_error_prepared(self, x: TensorObs) -> torch.Tensor:
        """``mean_d (f_hat(s)_d - f(s)_d)^2``, ``[N]``, of prepared inputs (``networks.prepare(obs)``)."""
        with torch.no_grad():
            target = self.networks.run(self.networks.target, x)
        return (self.networks.run(self.networks.predictor, x) - target).pow(2).mean(dim=1)

    def error_prepared(self, x: TensorObs) -> torch.Tensor:
        """:meth:`prediction_error` of prepared inputs (subclasses change the novelty here)."""
        return self.squared_error_prepared(x)

    def loss_prepared(self, x: TensorObs) -> torch.Tensor:
        """:meth:`predictor_loss` of prepared inputs."""
        return self.loss_from(self.networks.run(self.networks.predictor, x), self.target_prepared(x))

    def target_prepared(self, x: TensorObs) -> torch.Tensor:
        """What the predictor regresses, per row of prepared inputs (RND: the frozen target's output ``[N, D]``);
        computed once per rollout by ``update``, then indexed per minibatch."""
        with torch.no_grad():
            return self.networks.run(self.networks.target, x)

    def loss_from(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The predictor's loss on a minibatch: RND's mean squared error."""
        return (prediction - target).pow(2).mean()

    # ----- hooks -----
    def _warm_up(self, obs: TensorObs) -> None:
        self.networks.update_statistics(obs)

    def novelty(self, obs: TensorObs) -> torch.Tensor:
        """:meth:`prediction_error` of a large batch ``[N, ...]``, ``EVAL_CHUNK`` rows at a time: the same
        values, with activations small enough for the allocator to reuse (see :data:`EVAL_CHUNK`)."""
        return encode(self.prediction_error, obs, EVAL_CHUNK)

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        error = self.novelty(obs_flatten(rollout.next_obs))
        return error.reshape(rollout.num_steps, rollout.num_envs)

    def _update_index(self, rollout: Rollout) -> torch.Tensor:
        # Every valid transition: the statistics see all of them, and update_proportion masks each minibatch.
        return rollout.valid.reshape(-1).nonzero(as_tuple=True)[0]

    def _update(self, batch: Transitions) -> dict[str, float]:
        return self._train_on(batch.next_obs)

    def _update_rollout(self, rollout: Rollout, index: torch.Tensor) -> dict[str, float]:
        # Only next observations train RND: copy those rows, not the whole transitions.
        return self._train_on(obs_index(obs_flatten(rollout.next_obs), index))

    def _train_on(self, next_obs: TensorObs) -> dict[str, float]:
        if self.update_obs_stats:
            self.networks.update_statistics(next_obs)
        # The parameter-free part (whitening with the updated statistics, code lookups, the NetHack crop) runs
        # once over the rollout; the minibatches index it.
        prepared = self.networks.prepare(next_obs)
        targets = encode(self.target_prepared, prepared, EVAL_CHUNK)  # one pass of the frozen target, not 16
        return {"predictor_loss": self._train_predictor(prepared, targets, obs_batch_size(next_obs))}

    def _train_predictor(self, x: TensorObs, targets: torch.Tensor, n: int) -> float:
        """``num_epochs`` shuffled passes of ``num_minibatches`` steps, each on a random ``update_proportion`` of
        its minibatch (at least one row)."""
        losses = []
        for _ in range(self.num_epochs):
            order = torch.randperm(n, generator=self.generator)
            for rows in order.chunk(self.num_minibatches):
                keep = torch.rand(rows.numel(), generator=self.generator) < self.update_proportion
                if not bool(keep.any()):
                    keep[torch.randint(rows.numel(), (1,), generator=self.generator)] = True
                kept = rows[keep].to(self.device)
                loss = self.loss_from(self.networks.run(self.networks.predictor, obs_index(x, kept)), targets[kept])
                # Gradients are zeroed in place: reallocating them at each of the 16 small steps cost more.
                self.optimizer.zero_grad(set_to_none=False)
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
        return float(sum(losses) / len(losses))
