"""BYOL-Explore (Guo et al. 2022, "BYOL-Explore: Exploration by Bootstrapped Prediction", arXiv 2206.08332) and
BYOL-Hindsight (Jarrett et al. 2023, "Curiosity in Hindsight: Intrinsic Exploration in Stochastic Environments",
ICML, arXiv 2211.10515).

What the papers say (read: both abstracts and introductions in full; the method sections as recalled and
cross-checked against two public re-implementations, since the stored copies of the papers could be read only
to their introductions; DeepMind released no code):

- BYOL-Explore. An online encoder ``f_theta`` embeds each observation; a closed-loop RNN integrates the past,
  ``b_t = h_c(b_{t-1}, f_theta(o_t), a_{t-1})``; an open-loop RNN rolls it forward on the actions only,
  ``b_{t,k} = h_o(b_{t,k-1}, a_{t+k-1})``, ``b_{t,0} = b_t``, for ``k = 1..K``; a predictor ``g`` maps
  ``b_{t,k}`` to a guess of the *target* embedding ``f_phi(o_{t+k})``, where ``phi`` is an exponential moving
  average of ``theta`` (``phi <- alpha phi + (1 - alpha) theta`` after each optimiser step). The loss of one
  prediction is the squared distance of the two unit vectors, ``L(t, k) = ||g/|g| - f_phi/|f_phi| ||^2``
  (``= 2 - 2 cos``), averaged over the batch's ``(t, k)``. The intrinsic reward of the transition into
  ``o_{t+1}`` is the sum of the losses of every prediction that targets ``o_{t+1}``:
  ``r_t = sum_{p + k = t + 1} L(p, k)``; it is divided by a running estimate of its standard deviation.
  Open-loop horizon ``K = 8`` (Atari; the offline re-implementation below defaults to the same).
- BYOL-Hindsight. The realised future gives a hindsight vector
  ``Z_{t,k} ~ p(. | b_{t,k-1}, a_{t+k-1}, f_phi(o_{t+k}))`` (a generator fed Gaussian noise) that the predictor
  also receives: ``g(b_{t,k}, Z_{t,k})`` reconstructs ``f_phi(o_{t+k})`` (the same normalised loss). A critic
  ``C`` scores ``((b_{t,k-1}, a_{t+k-1}), Z)`` pairs; the contrastive (InfoNCE) bound on the mutual
  information of ``Z`` and ``(b, a)`` is maximised by the critic and minimised by the generator, so that ``Z``
  ends up independent of the past: it can then carry only what the past could not predict (the noise of a
  structural causal model ``o' = F(b, a, eps)``), never the predictable part, and the reconstruction error
  (the reward, summed per target step as in BYOL-Explore) measures only the predictable novelty. The world
  model minimises ``L_rec + lambda * L_inv``.

Implementations read: a public offline "Curiosity in Hindsight on top of BYOL-Explore" world model (liftoff
configs; the code index did not name its repository) with ``WorldModel``/``HindsightBYOL``: GRU closed loop, K-step
GRU open loop from every step, generator on ``[eps, b_{t,k-1}, a, target]``, reconstructor and critic on
``[b_{t,k}, a, Z]``, EMA 0.99, ``inv_coeff`` 1.0 (it adds the contrastive term to one minimised loss: no critic
ascent step, unlike the paper's min-max);
a community ``byol_explore`` package (``BYOLHindSight``: per-step generator, critic and world model); and
Ziksby/MetaLearnCuriosity ``byol_minigrid.py`` (one-step BYOL-Explore-lite in JAX, EMA 0.99, reward-norm 0.99).
Rove's code is its own.

Deviations:
    - Sequences are Rove's rollouts ``[T, E]``: the closed loop starts from ``b = 0`` at the first step of each
      rollout and of each episode (no recurrent state carried across rollouts: the agent hands a module one
      rollout at a time, and a stored state would go stale as the networks train). Predictions never cross an
      episode end or an autoreset row: ``(p, k)`` is kept only if the transitions ``p .. p+k-1`` are all
      valid and none of ``p .. p+k-2`` ends its episode; near the rollout's end fewer horizons are kept.
    - The reward is divided by its running std over all rewards so far (``normalize="std"``, E3B's normaliser)
      instead of an EMA of it; no reward "prioritisation" (clipping below a running mean) is applied.
    - Target embeddings are centred by an EMA of their mean (decay ``target_decay``, tracked on each training
      minibatch) before the normalised-L2 loss. Measured on a real DoorKey batch: the light encoder's random
      embeddings of MiniGrid views share a large common component (mean pairwise cosine 0.89 at init), and
      without centring the loss stayed at the "predict the mean embedding" level (with a fixed random encoder,
      after 100 updates the reward of real transitions equalled that of time-shuffled, impossible ones, 0.84 vs
      0.87); with the centring (and a trained encoder), 0.38 vs 0.55.
    - The online encoder learns 10x slower than the rest of the world model (``encoder_lr_scale`` 0.1; the paper
      uses one learning rate). BYOL escapes collapse only while its predictor keeps up with the representation
      (Tian et al. 2021, "Understanding self-supervised learning dynamics without contrastive pairs"); at
      Rove's scale it did not: with one learning rate (1e-3) the encoder collapsed within 40 updates on a real
      DoorKey batch (effective rank of its embeddings 14.8 -> 6.9) and the reward of another env's (LavaGap)
      transitions equalled that of the trained ones (0.26 vs 0.26); at 0.1x, 3.0 vs 4.1 after 60 updates.
    - Networks sized for CPU: Rove's light per-suite encoder (ELU) plus a linear layer (the papers: a ResNet on
      Atari/DM-HARD-8 frames), GRUs of ``hidden_dim`` 128 and a one-hidden-layer MLP predictor (the papers'
      are larger).
    - The world model trains in ``update``: ``num_epochs`` passes over the rollout's envs split into
      ``num_minibatches`` groups of whole sequences, one Adam step and one EMA step per group.
    - BYOL-Hindsight's critic is separable, ``C(x, z) = u(x) . v(z)``, scored against every other ``Z`` of up to
      ``num_negatives`` kept predictions of the minibatch (the paper's critic is an MLP on the concatenation);
      the critic sees ``(b, a)`` detached, so the invariance term shapes the generator, not the world model's
      state (a choice: the papers' texts available here do not say which side it trains).
    - BYOL-Hindsight scores a transition with the generator's noise at its mean (``eps = 0``), so that the reward
      is a function of the transition and the networks only (restored or re-seeded modules agree); training
      samples ``eps``.
    - ``update_proportion < 1`` keeps only the predictions whose target transition is in the sampled subset.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rove.encoders import encode_preprocessed, make_encoder, preprocess
from rove.intrinsic.base import IntrinsicModule, Normalization, make_adam, seeded
from rove.intrinsic.dynamics import mlp, require_discrete
from rove.intrinsic.registry import register
from rove.intrinsic.types import Rollout
from rove.obs import TensorObs, obs_flatten, obs_map


def prediction_mask(valid: torch.Tensor, dones: torch.Tensor, horizon: int) -> torch.Tensor:
    """Which open-loop predictions stay inside one episode: ``[K, T, E]`` bool, entry ``[k-1, p, e]`` for the
    prediction made at step ``p`` of ``o_{p+k}`` (the ``next_obs`` of transition ``p+k-1``).

    Kept iff transitions ``p .. p+k-1`` are valid (no autoreset row) and none of ``p .. p+k-2`` ends its episode
    (the last one may: its ``next_obs`` is the episode's final observation, a fair target)."""
    steps = valid.shape[0]
    cont = valid & ~dones
    masks = [valid.clone()]
    for k in range(2, horizon + 1):
        prev = masks[-1]
        mask = torch.zeros_like(valid)
        if steps >= k:
            mask[: steps - k + 1] = prev[: steps - k + 1] & cont[k - 2 : steps - 1] & valid[k - 1 :]
        masks.append(mask)
    return torch.stack(masks)


def per_target(losses: torch.Tensor) -> torch.Tensor:
    """``r[j] = sum_k losses[k-1, j-k+1]``: the losses ``[K, T, E]`` of predictions (indexed by their start step)
    summed onto the transition each targets, ``[T, E]``."""
    horizon, steps = losses.shape[:2]
    reward = torch.zeros_like(losses[0])
    for k in range(1, min(horizon, steps) + 1):
        reward[k - 1 :] += losses[k - 1, : steps - k + 1]
    return reward


def normalized_l2(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``|| p/|p| - y/|y| ||^2`` over the last dimension (BYOL's loss, ``2 - 2 cos``)."""
    return (F.normalize(prediction, dim=-1) - F.normalize(target, dim=-1)).pow(2).sum(-1)


@dataclass(frozen=True)
class Unrolled:
    """The world model run over a rollout's sequences (``K`` horizons, ``T`` steps, ``E`` envs).

    Attributes:
        before: ``b_{p,k-1}`` ``[K, T, E, M]`` (the state each prediction's last step starts from).
        after: ``b_{p,k}`` ``[K, T, E, M]``.
        actions: embedding of ``a_{p+k-1}``, ``[K, T, E, A]``.
        targets: ``f_phi(o_{p+k})``, ``[K, T, E, D]`` (no gradient).
        mask: ``[K, T, E]`` bool, see :func:`prediction_mask`.
    """

    before: torch.Tensor
    after: torch.Tensor
    actions: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor


def run_segments(rnn: nn.GRU, inputs: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """``rnn`` over ``inputs [T, E, I]`` restarting from a zero state wherever ``starts [T, E]`` (``starts[0]``
    must be all True): each segment runs as one packed sequence of one ``nn.GRU`` call (a Python loop of GRU
    cells over time cost 10x more on CPU, mostly in its backward pass). Returns the outputs ``[T, E, H]``."""
    steps, num_envs = starts.shape
    flat_starts = starts.t().reshape(-1)  # env-major: each env's steps in order
    segment = torch.cumsum(flat_starts.long(), 0) - 1  # [E*T] segment of each step
    num_segments = int(segment[-1].item()) + 1
    order = torch.arange(steps * num_envs, device=starts.device)
    first = torch.zeros(num_segments, dtype=torch.long, device=starts.device)
    first[segment[flat_starts]] = order[flat_starts]
    position = order - first[segment]
    lengths = torch.bincount(segment, minlength=num_segments)
    padded = inputs.new_zeros(int(lengths.max().item()), num_segments, inputs.shape[2])
    padded[position, segment] = inputs.transpose(0, 1).reshape(-1, inputs.shape[2])
    packed = nn.utils.rnn.pack_padded_sequence(padded, lengths.cpu(), enforce_sorted=False)
    out, _ = nn.utils.rnn.pad_packed_sequence(rnn(packed)[0])
    return out[position, segment].reshape(num_envs, steps, -1).transpose(0, 1)


@dataclass(frozen=True)
class Losses:
    """What a module's forward pass over :class:`Unrolled` gives.

    Attributes:
        per_prediction: ``L(p, k)`` ``[K, T, E]``, the normalised-L2 loss of each prediction (the reward's terms).
        extra: further training terms, already weighted (BYOL-Hindsight's invariance term).
        hindsight: BYOL-Hindsight's ``Z`` ``[K, T, E, hindsight_dim]`` (``None`` for BYOL-Explore).
    """

    per_prediction: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    hindsight: torch.Tensor | None = None


class LatentWorldModel(nn.Module):
    """BYOL-Explore's networks: online encoder, its EMA target, closed- and open-loop GRUs, action embedding.

    Args:
        space: Single-env observation space (the encoder comes from :func:`rove.encoders.make_encoder`).
        num_actions: Size of the Discrete action space (one more embedding row stands for "no previous action").
        features_dim: Size of the embeddings ``f(o)``.
        hidden_dim: Size of the GRU states ``b``.
        action_dim: Size of the action embedding.
        horizon: Open-loop steps ``K``.
    """

    target_mean: torch.Tensor
    target_mean_seen: torch.Tensor

    def __init__(
        self, space: spaces.Space, num_actions: int, features_dim: int, hidden_dim: int, action_dim: int, horizon: int
    ) -> None:
        super().__init__()
        self.horizon, self.num_actions = horizon, num_actions
        # A linear layer after the light encoder's ELU: embeddings can point anywhere on the sphere (with only the
        # ELU output they were nearly parallel, and every normalised-L2 loss near 0 from the start).
        self.encoder = nn.Sequential(
            make_encoder(space, features_dim, light=True, activation=nn.ELU), nn.Linear(features_dim, features_dim)
        )
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.action_embed = nn.Embedding(num_actions + 1, action_dim)
        # Running mean of the target embeddings, subtracted from them (see the module docstring's deviations).
        self.register_buffer("target_mean", torch.zeros(features_dim))
        self.register_buffer("target_mean_seen", torch.zeros((), dtype=torch.bool))
        self.closed_loop = nn.GRU(features_dim + action_dim, hidden_dim)
        self.open_loop = nn.GRUCell(action_dim, hidden_dim)

    def preprocess(self, obs: TensorObs) -> TensorObs:
        """The encoder's parameter-free part (the same for the online and the target encoder)."""
        return preprocess(self.encoder[0], obs)

    @staticmethod
    def embed(encoder: nn.Module, x: TensorObs) -> torch.Tensor:
        """``f(o)`` of preprocessed observations with the online or the target ``encoder``, ``[N, D]``."""
        assert isinstance(encoder, nn.Sequential)
        return encoder[1](encode_preprocessed(encoder[0], x))

    def online_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("target_encoder.")]

    @torch.no_grad()
    def track_target_mean(self, target: torch.Tensor, decay: float) -> None:
        """Moves :attr:`target_mean` towards the mean of raw target embeddings ``[N, D]`` (EMA with ``decay``;
        the first batch sets it)."""
        if target.shape[0] == 0:
            return
        mean = target.mean(0)
        if bool(self.target_mean_seen):
            self.target_mean.mul_(decay).add_(mean, alpha=1.0 - decay)
        else:
            self.target_mean.copy_(mean)
            self.target_mean_seen.fill_(True)

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """``phi <- decay * phi + (1 - decay) * theta`` for every parameter and float buffer of the encoder."""
        for phi, theta in zip(self.target_encoder.parameters(), self.encoder.parameters(), strict=True):
            phi.mul_(decay).add_(theta.detach(), alpha=1.0 - decay)
        for buffer, source in zip(self.target_encoder.buffers(), self.encoder.buffers(), strict=True):
            if buffer.is_floating_point():
                buffer.mul_(decay).add_(source, alpha=1.0 - decay)
            else:
                buffer.copy_(source)

    def unroll(
        self,
        obs: TensorObs,
        next_obs: TensorObs,
        actions: torch.Tensor,
        dones: torch.Tensor,
        valid: torch.Tensor,
        track_decay: float | None = None,
    ) -> Unrolled:
        """Runs the closed loop over ``T`` steps and the open loop ``K`` steps ahead of every step.

        ``obs``/``next_obs`` are preprocessed (:meth:`preprocess`) and ``[T, E, ...]``; ``actions [T, E]``. With
        ``track_decay``, the valid targets first update :attr:`target_mean` (training).
        """
        steps, num_envs = dones.shape
        horizon = self.horizon
        features = self.embed(self.encoder, obs_flatten(obs)).reshape(steps, num_envs, -1)
        with torch.no_grad():
            target = self.embed(self.target_encoder, obs_flatten(next_obs)).reshape(steps, num_envs, -1)
            if track_decay is not None:
                self.track_target_mean(target[valid], track_decay)
            target = target - self.target_mean
        actions = actions.long().reshape(steps, num_envs)
        none = torch.full_like(actions[0], self.num_actions)
        # The closed loop restarts from b = 0 at the rollout's first step and after an episode end or an
        # autoreset row; there the "previous action" is the extra embedding row.
        starts = torch.ones_like(valid)
        starts[1:] = ~(valid[:-1] & ~dones[:-1])
        previous = torch.cat([none.unsqueeze(0), actions[:-1]])
        previous = torch.where(starts, none.unsqueeze(0), previous)
        inputs = torch.cat([features, self.action_embed(previous)], dim=2)
        belief = run_segments(self.closed_loop, inputs, starts).reshape(steps * num_envs, -1)  # b_p, time-major
        # a_{p+k-1} for k = 1..K; beyond the rollout the action is padding (those predictions are masked).
        padded = torch.cat([actions, none.expand(horizon, num_envs)])
        before, after, embedded, targets = [], [], [], []
        pad = target.new_zeros(horizon, num_envs, target.shape[2])
        target_padded = torch.cat([target, pad])
        for k in range(1, horizon + 1):
            action = self.action_embed(padded[k - 1 : k - 1 + steps].reshape(-1))
            before.append(belief)
            belief = self.open_loop(action, belief)
            after.append(belief)
            embedded.append(action)
            targets.append(target_padded[k - 1 : k - 1 + steps].reshape(steps * num_envs, -1))

        def shape(parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(parts).reshape(horizon, steps, num_envs, -1)

        mask = prediction_mask(valid, dones, horizon)
        return Unrolled(shape(before), shape(after), shape(embedded), shape(targets), mask)


@register("byol_explore")
class BYOLExplore(IntrinsicModule):
    """BYOL-Explore: reward = the normalised-L2 losses of the open-loop latent predictions that target each step.

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Must be Discrete (actions are embedded).
        horizon: Open-loop steps ``K`` (8, the paper's Atari value).
        target_decay: EMA coefficient ``alpha`` of the target encoder (0.99).
        features_dim: Size of the embeddings.
        hidden_dim: Size of the GRU states.
        action_dim: Size of the action embedding.
        predictor_hidden: Width of the predictor's hidden layer.
        learning_rate: Adam learning rate of the GRUs, the action embedding and the heads.
        encoder_lr_scale: The online encoder learns at ``encoder_lr_scale * learning_rate`` (0.1; see the module
            docstring: a representation as fast as its predictor collapsed).
        num_epochs: Passes over each rollout in ``update``.
        num_minibatches: Groups of envs (whole sequences) per pass; one Adam and one EMA step each.
        normalize: ``"std"`` by default (the reward divided by its running std).
        **base_kwargs: ``coef``, ``gamma``, ``update_proportion``, ``device``, ``seed``.
    """

    hindsight = False

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        horizon: int = 8,
        target_decay: float = 0.99,
        features_dim: int = 128,
        hidden_dim: int = 128,
        action_dim: int = 16,
        predictor_hidden: int = 256,
        learning_rate: float = 1e-3,
        encoder_lr_scale: float = 0.1,
        num_epochs: int = 4,
        num_minibatches: int = 4,
        normalize: Normalization = "std",
        **base_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, normalize=normalize, **base_kwargs)
        for name, value in (("horizon", horizon), ("features_dim", features_dim), ("hidden_dim", hidden_dim),
                            ("action_dim", action_dim), ("predictor_hidden", predictor_hidden),
                            ("num_epochs", num_epochs), ("num_minibatches", num_minibatches)):  # fmt: skip
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= target_decay < 1.0:
            raise ValueError(f"target_decay must be in [0, 1), got {target_decay}")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not 0.0 <= encoder_lr_scale <= 1.0:
            raise ValueError(f"encoder_lr_scale must be in [0, 1], got {encoder_lr_scale}")
        num_actions = require_discrete(action_space, type(self).__name__)
        self.horizon, self.target_decay = horizon, target_decay
        self.num_epochs, self.num_minibatches = num_epochs, num_minibatches
        with seeded(self.seed):
            self.world_model = LatentWorldModel(
                observation_space, num_actions, features_dim, hidden_dim, action_dim, horizon
            )
            self._build_heads(features_dim, hidden_dim, action_dim, predictor_hidden)
        self.to(self.device)
        self.optimizer = self._make_optimizer(learning_rate, encoder_lr_scale)

    def _make_optimizer(self, learning_rate: float, encoder_lr_scale: float) -> torch.optim.Adam:
        """Adam over the world model; the online encoder in its own group at ``encoder_lr_scale`` (left out at 0)."""
        encoder = list(self.world_model.encoder.parameters())
        ids = {id(p) for p in encoder}
        rest = [p for p in self._world_parameters() if id(p) not in ids]
        if encoder_lr_scale == 0.0:
            self.world_model.encoder.requires_grad_(False)
            return make_adam(rest, learning_rate)
        optimizer = make_adam(rest, learning_rate)
        optimizer.add_param_group({"params": encoder, "lr": learning_rate * encoder_lr_scale})
        return optimizer

    # ----- what BYOL-Hindsight changes -----
    def _build_heads(self, features_dim: int, hidden_dim: int, action_dim: int, predictor_hidden: int) -> None:
        self.predictor = mlp(hidden_dim, predictor_hidden, features_dim)

    def _world_parameters(self) -> list[nn.Parameter]:
        return self.world_model.online_parameters() + list(self.predictor.parameters())

    def prediction_losses(self, unrolled: Unrolled, mask: torch.Tensor | None = None) -> Losses:
        """``L(p, k)`` for every prediction (masked ones included; the caller masks) and the extra training terms
        (none for BYOL-Explore); ``mask [K, T, E]``: the predictions that train (``None``: scoring only)."""
        return Losses(normalized_l2(self.predictor(unrolled.after), unrolled.targets))

    # ----- hooks -----
    def _prepared(self, rollout: Rollout) -> tuple[TensorObs, TensorObs]:
        steps, num_envs = rollout.num_steps, rollout.num_envs

        def prepare(obs: TensorObs) -> TensorObs:
            flat = self.world_model.preprocess(obs_flatten(obs))
            return obs_map(lambda x: x.reshape(steps, num_envs, *x.shape[1:]), flat)

        return prepare(rollout.obs), prepare(rollout.next_obs)

    def _unroll(
        self, obs: TensorObs, next_obs: TensorObs, rollout: Rollout, envs: Any = slice(None), train: bool = False
    ) -> Unrolled:
        pick = obs_map(lambda x: x[:, envs], obs), obs_map(lambda x: x[:, envs], next_obs)
        return self.world_model.unroll(
            *pick,
            rollout.actions[:, envs],
            rollout.dones[:, envs],
            rollout.valid[:, envs],
            track_decay=self.target_decay if train else None,
        )

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        self.eval()
        obs, next_obs = self._prepared(rollout)
        unrolled = self._unroll(obs, next_obs, rollout)
        return per_target(self.prediction_losses(unrolled).per_prediction * unrolled.mask)

    def _update_rollout(self, rollout: Rollout, index: torch.Tensor) -> dict[str, float]:
        obs, next_obs = self._prepared(rollout)
        selected = torch.zeros(rollout.num_steps * rollout.num_envs, dtype=torch.bool, device=self.device)
        selected[index] = True
        selected = selected.reshape(rollout.num_steps, rollout.num_envs)
        totals: dict[str, float] = {}
        count = 0
        groups = min(self.num_minibatches, rollout.num_envs)
        for _ in range(self.num_epochs):
            order = torch.randperm(rollout.num_envs, generator=self.generator).to(self.device)
            for envs in order.chunk(groups):
                unrolled = self._unroll(obs, next_obs, rollout, envs, train=True)
                stats = self._train_step(unrolled, selected[:, envs])
                if stats is None:
                    continue
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
        return {k: v / count for k, v in totals.items()} if count else {}

    def _train_step(self, unrolled: Unrolled, selected: torch.Tensor) -> dict[str, float] | None:
        """One Adam step on a group of sequences and one EMA step of the target; ``None`` if nothing is kept."""
        mask = unrolled.mask & _targets_selected(selected, self.horizon)
        if not bool(mask.any()):
            return None
        losses = self.prediction_losses(unrolled, mask)
        loss = losses.per_prediction[mask].mean()
        total = loss + sum(losses.extra.values(), torch.zeros((), device=loss.device))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.world_model.update_target(self.target_decay)
        stats = {"prediction_loss": loss.item(), **{k: v.item() for k, v in losses.extra.items()}}
        stats.update(self._after_step(unrolled, mask, losses))
        return stats

    def _after_step(self, unrolled: Unrolled, mask: torch.Tensor, losses: Losses) -> dict[str, float]:
        """More training after the world model's step (BYOL-Hindsight's critic); default: none."""
        return {}


def _targets_selected(selected: torch.Tensor, horizon: int) -> torch.Tensor:
    """``[K, T, E]``: whether the target transition ``p+k-1`` of each prediction is in ``selected [T, E]``."""
    steps = selected.shape[0]
    padded = torch.cat([selected, selected.new_zeros(horizon, *selected.shape[1:])])
    return torch.stack([padded[k - 1 : k - 1 + steps] for k in range(1, horizon + 1)])


@register("byol_hindsight")
class BYOLHindsight(BYOLExplore):
    """BYOL-Hindsight: BYOL-Explore whose predictor also sees a hindsight vector of the realised future, trained
    to be independent of the past, so that noise is explained away and only predictable novelty is rewarded.

    Args:
        observation_space: Single-env observation space (Box or a Rove Dict).
        action_space: Must be Discrete.
        hindsight_dim: Size of the hindsight vector ``Z``.
        noise_dim: Size of the generator's Gaussian noise input.
        invariance_coef: ``lambda``, the weight of the generator's contrastive (invariance) term (1.0).
        critic_dim: Size of the separable critic's embeddings.
        critic_learning_rate: Adam learning rate of the critic.
        num_negatives: At most this many kept predictions of a minibatch enter the contrastive term.
        **kwargs: BYOL-Explore's options (see :class:`BYOLExplore`).
    """

    hindsight = True

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        hindsight_dim: int = 32,
        noise_dim: int = 32,
        invariance_coef: float = 1.0,
        critic_dim: int = 64,
        critic_learning_rate: float = 3e-4,
        num_negatives: int = 512,
        **kwargs: Any,
    ) -> None:
        for name, value in (("hindsight_dim", hindsight_dim), ("noise_dim", noise_dim), ("critic_dim", critic_dim)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(num_negatives, int) and num_negatives >= 2):
            raise ValueError(f"num_negatives must be an integer >= 2, got {num_negatives!r}")
        if not invariance_coef >= 0:
            raise ValueError(f"invariance_coef must be >= 0, got {invariance_coef}")
        if not critic_learning_rate > 0:
            raise ValueError(f"critic_learning_rate must be > 0, got {critic_learning_rate}")
        self.hindsight_dim, self.noise_dim, self.critic_dim = hindsight_dim, noise_dim, critic_dim
        self.invariance_coef, self.num_negatives = float(invariance_coef), num_negatives
        super().__init__(observation_space, action_space, **kwargs)
        self.critic_optimizer = make_adam(self.critic.parameters(), critic_learning_rate)

    def _build_heads(self, features_dim: int, hidden_dim: int, action_dim: int, predictor_hidden: int) -> None:
        self.predictor = mlp(hidden_dim + self.hindsight_dim, predictor_hidden, features_dim)
        self.hindsight_generator = mlp(hidden_dim + action_dim + features_dim + self.noise_dim, predictor_hidden,
                                       self.hindsight_dim)  # fmt: skip
        self.critic = nn.ModuleDict(
            {
                "past": mlp(hidden_dim + action_dim, predictor_hidden, self.critic_dim),
                "hindsight": mlp(self.hindsight_dim, predictor_hidden, self.critic_dim),
            }
        )

    def _world_parameters(self) -> list[nn.Parameter]:
        return super()._world_parameters() + list(self.hindsight_generator.parameters())

    def hindsight_vectors(self, unrolled: Unrolled, sample: bool = True) -> torch.Tensor:
        """``Z_{p,k}`` from ``(b_{p,k-1}, a_{p+k-1}, f_phi(o_{p+k}), eps)``, ``[K, T, E, hindsight_dim]``; ``eps``
        is drawn from the module's generator (reproducible), or is its mean 0 when not ``sample``."""
        shape = (*unrolled.targets.shape[:3], self.noise_dim)
        if sample:
            noise = torch.randn(shape, generator=self.generator).to(unrolled.targets.device)
        else:
            noise = unrolled.targets.new_zeros(shape)
        # The past enters detached: the generator's losses shape Z, the world model's state is trained by the
        # reconstruction only.
        inputs = torch.cat([unrolled.before.detach(), unrolled.actions.detach(), unrolled.targets, noise], dim=-1)
        return self.hindsight_generator(inputs)

    def prediction_losses(self, unrolled: Unrolled, mask: torch.Tensor | None = None) -> Losses:
        z = self.hindsight_vectors(unrolled, sample=mask is not None)
        reconstruction = self.predictor(torch.cat([unrolled.after, z], dim=-1))
        losses = normalized_l2(reconstruction, unrolled.targets)
        if mask is None:
            return Losses(losses, hindsight=z)
        # The generator minimises the contrastive bound that the critic maximises.
        bound = self.contrastive_bound(unrolled, z, mask, detach_hindsight=False)
        return Losses(losses, {"invariance": self.invariance_coef * bound}, z)

    @torch.no_grad()
    def one_step_errors(self, rollout: Rollout, swap_hindsight: bool = False) -> torch.Tensor:
        """The loss of each transition's one-step prediction ``L(t, 1)`` given its hindsight vector, ``[T, E]``;
        with ``swap_hindsight`` the vector is computed from another transition's realised target (a random
        permutation). The gap between the two measures how much ``Z`` tells about the realised outcome."""
        self.eval()
        rollout = self._prepare_rollout(rollout)
        unrolled = self._unroll(*self._prepared(rollout), rollout)
        targets = unrolled.targets[0]
        if swap_hindsight:
            order = torch.randperm(targets.shape[0] * targets.shape[1], generator=self.generator).to(targets.device)
            targets = targets.reshape(-1, targets.shape[2])[order].reshape(targets.shape)
        noise = targets.new_zeros(*targets.shape[:2], self.noise_dim)
        z = self.hindsight_generator(torch.cat([unrolled.before[0], unrolled.actions[0], targets, noise], dim=-1))
        prediction = self.predictor(torch.cat([unrolled.after[0], z], dim=-1))
        return normalized_l2(prediction, unrolled.targets[0]) * unrolled.mask[0]

    def _negatives(self, mask: torch.Tensor) -> torch.Tensor:
        rows = mask.reshape(-1).nonzero(as_tuple=True)[0]
        if rows.numel() > self.num_negatives:
            pick = torch.randperm(rows.numel(), generator=self.generator)[: self.num_negatives]
            rows = rows[pick.to(rows.device)]
        return rows

    def contrastive_bound(
        self, unrolled: Unrolled, z: torch.Tensor, mask: torch.Tensor, detach_hindsight: bool
    ) -> torch.Tensor:
        """InfoNCE lower bound on ``I(Z; (b, a))`` over up to ``num_negatives`` kept predictions:
        ``mean_i [C(x_i, z_i) - log mean_j exp C(x_i, z_j)]`` with ``x = (b_{p,k-1}, a_{p+k-1})`` detached."""
        rows = self._negatives(mask)
        if rows.numel() < 2:
            return z.sum() * 0.0
        past = torch.cat([unrolled.before, unrolled.actions], dim=-1).reshape(-1, self._past_dim).detach()[rows]
        hind = z.reshape(-1, self.hindsight_dim)[rows]
        if detach_hindsight:
            hind = hind.detach()
        scores = self.critic["past"](past) @ self.critic["hindsight"](hind).t()  # [n, n]
        return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(rows.numel())

    @property
    def _past_dim(self) -> int:
        return self.world_model.closed_loop.hidden_size + self.world_model.action_embed.embedding_dim

    def _after_step(self, unrolled: Unrolled, mask: torch.Tensor, losses: Losses) -> dict[str, float]:
        """The critic's ascent step on the contrastive bound, with the hindsight vectors of this minibatch."""
        assert losses.hindsight is not None
        bound = self.contrastive_bound(unrolled, losses.hindsight, mask, detach_hindsight=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        (-bound).backward()
        self.critic_optimizer.step()
        return {"critic_bound": bound.item()}
