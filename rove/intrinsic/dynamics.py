"""Pieces shared by the dynamics-based modules (ICM, Disagreement, E3B, RIDE, RE3).

- :class:`InverseDynamics`: an encoder ``phi`` trained by predicting ``a_t`` from ``(phi(s_t), phi(s_{t+1}))``
  (Pathak et al. 2017), the feature space of ICM, E3B and RIDE.
- :class:`ForwardModel`: predicts ``phi(s_{t+1})`` from ``(phi(s_t), a_t)``.
- :func:`encode`: runs an encoder over a large batch in chunks, so a NetHack rollout never needs one giant
  activation tensor.
- :class:`EpisodeBoundaries`: which envs start a new episode at a step, for modules with episodic memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rove.encoders import CodeEncoder, Encoder, encode_preprocessed, make_encoder, preprocess
from rove.intrinsic.types import Rollout, Transitions
from rove.obs import TensorObs, obs_batch_size, obs_flatten, obs_index


def require_discrete(action_space: spaces.Space, module: str) -> int:
    """Number of actions of a Discrete space; other spaces raise, since an inverse model classifies actions."""
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(
            f"{module} needs a Discrete action space (its inverse-dynamics model classifies actions), "
            f"got {action_space}"
        )
    return int(action_space.n)


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def frozen(module: nn.Module) -> nn.Module:
    """Stops gradients into ``module`` (random-feature targets must never train)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


# Rows per forward pass over a large batch: activations of this size are reused by the allocator, while
# multi-megabyte ones are returned to the OS and page-faulted in again on every call (~1 ms per MB on CPU).
EVAL_CHUNK = 512


def encode(encoder: Callable[[TensorObs], torch.Tensor], obs: TensorObs, chunk: int = EVAL_CHUNK) -> torch.Tensor:
    """``encoder(obs)`` for ``obs [N, ...]``, computed ``chunk`` rows at a time; returns ``[N, d]``."""
    n = obs_batch_size(obs)
    if n <= chunk:
        return encoder(obs)
    return torch.cat([encoder(obs_index(obs, slice(i, i + chunk))) for i in range(0, n, chunk)])


def shares_frames(rollout: Rollout) -> bool:
    """Whether ``next_obs[t] == obs[t + 1]`` everywhere, as when both are views of one ``[T+1, E]`` buffer
    (NEXT_STEP autoreset keeps this true across episode ends)."""
    return all(_same_memory(o[1:], n[:-1]) or torch.equal(o[1:], n[:-1]) for o, n in _leaf_pairs(rollout))


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors are the same view of the same storage (so equal without reading them): how an agent's
    rollout buffer hands out ``obs`` and ``next_obs``. Comparing NetHack's glyph maps element by element costs
    more than a light encoder's forward pass."""
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and a.device == b.device
        and a.data_ptr() == b.data_ptr()
        and a.stride() == b.stride()
    )


def _leaf_pairs(rollout: Rollout) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(rollout.obs, dict):
        assert isinstance(rollout.next_obs, dict)
        return [(rollout.obs[k], rollout.next_obs[k]) for k in rollout.obs]
    assert isinstance(rollout.next_obs, torch.Tensor)
    return [(rollout.obs, rollout.next_obs)]


def obs_cat(parts: list[TensorObs]) -> TensorObs:
    """Concatenates ``[N_i, ...]`` observations (tensors or dicts with the same keys) along the batch."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: torch.cat([p[k] for p in parts]) for k in first}  # type: ignore[index]
    return torch.cat(parts)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Frames:
    """A rollout's distinct observations passed through a function, and where each transition's ends are.

    Attributes:
        data: ``fn`` of the frames, ``[F, ...]`` (``F = (T+1)*E`` when the rollout shares frames, else ``2*T*E``).
        obs_rows: ``[T*E]`` row of ``data`` holding ``fn(s_t)`` of each flat (time-major) transition.
        next_rows: ``[T*E]`` row holding ``fn(s_{t+1})``.
    """

    data: TensorObs
    obs_rows: torch.Tensor
    next_rows: torch.Tensor


def rollout_frames(fn: Callable[[TensorObs], TensorObs], rollout: Rollout) -> Frames:
    """Applies ``fn`` (row-wise, e.g. an encoder's parameter-free preprocessing) to the rollout's distinct
    observations only: ``T+1`` frames per env instead of ``2T`` when ``next_obs[t] == obs[t+1]``."""
    num, num_envs = rollout.num_steps * rollout.num_envs, rollout.num_envs
    rows = torch.arange(num, device=rollout.valid.device)
    if shares_frames(rollout):
        last = obs_index(rollout.next_obs, -1)  # [E, ...]: the only next_obs that is no obs
        return Frames(obs_cat([fn(obs_flatten(rollout.obs)), fn(last)]), rows, rows + num_envs)
    return Frames(obs_cat([fn(obs_flatten(rollout.obs)), fn(obs_flatten(rollout.next_obs))]), rows, rows + num)


def transition_frames(fn: Callable[[TensorObs], TensorObs], batch: Transitions) -> Frames:
    """:class:`Frames` of a flat batch: ``fn(obs)`` rows, then ``fn(next_obs)`` rows."""
    n = len(batch)
    rows = torch.arange(n, device=batch.dones.device)
    return Frames(obs_cat([fn(batch.obs), fn(batch.next_obs)]), rows, rows + n)


def training_frames(
    fn: Callable[[TensorObs], TensorObs], rollout: Rollout, index: torch.Tensor
) -> tuple[Frames, torch.Tensor]:
    """``(frames, actions)`` of the flat transitions ``index [M]`` of a rollout, ``fn`` applied once per distinct
    frame (see :func:`rollout_frames`); ``actions [M, ...]``."""
    frames = rollout_frames(fn, rollout)
    actions = rollout.actions.reshape(-1, *rollout.actions.shape[2:])[index]
    return Frames(frames.data, frames.obs_rows[index], frames.next_rows[index]), actions


def pair_minibatches(
    frames: Frames, batch_size: int, generator: torch.Generator, device: torch.device
) -> Iterator[tuple[TensorObs, torch.Tensor]]:
    """Shuffled minibatches of the transitions of ``frames``: ``(rows, index)`` with ``rows [2n, ...]`` the
    ``s_t`` rows stacked on the ``s_{t+1}`` rows of ``frames.data`` (one encoder pass covers both sides) and
    ``index [n]`` the transitions' positions (to pick their actions)."""
    for index in minibatches(len(frames.obs_rows), batch_size, generator, device):
        yield obs_index(frames.data, torch.cat([frames.obs_rows[index], frames.next_rows[index]])), index


def encode_rollout(encoder: nn.Module, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """``(phi(s_t), phi(s_{t+1}))``, each ``[T*E, d]`` time-major; encodes the ``T+1`` distinct frames only
    once when the rollout's observations share frames (half the cost of encoding both sides)."""
    frames = rollout_frames(lambda x: preprocess(encoder, x), rollout)
    features = encode(lambda x: encode_preprocessed(encoder, x), frames.data)
    return features[frames.obs_rows], features[frames.next_rows]


def minibatches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Shuffled index tensors covering ``range(n)`` in batches of at most ``batch_size``."""
    order = torch.randperm(n, generator=generator).to(device)
    yield from order.split(batch_size)


class InverseDynamics(nn.Module):
    """Encoder ``phi`` plus an inverse head ``g(phi(s), phi(s')) -> logits over a``.

    The encoder's nonlinearity is ELU, as in the references' embedding nets (pathak22/noreward-rl
    ``src/model.py`` ``universeHead``; impact-driven-exploration ``src/models.py``
    ``MinigridStateEmbeddingNet``): once the forward loss's gradient reaches ``phi`` (ICM, RIDE), it pushes
    the features towards 0, and with ReLU every unit of the light encoders died within 10 updates on a real
    DoorKey batch (``|phi|`` = 0, inverse loss stuck at ln 7); ELU units cannot die, and the inverse loss keeps
    ``phi`` informative.

    With the light MiniGrid/NetHack encoders, the per-code embedding table stays at its random
    initialisation and the layers on top train (see the comment in ``__init__``).

    Args:
        observation_space: Single-env observation space; the encoder comes from :func:`rove.encoders.make_encoder`.
        num_actions: Size of the Discrete action space.
        features_dim: Dimension of ``phi``.
        hidden: Width of the inverse head.
    """

    def __init__(self, observation_space: spaces.Space, num_actions: int, features_dim: int, hidden: int = 256):
        super().__init__()
        self.encoder: Encoder = make_encoder(observation_space, features_dim, light=True, activation=nn.ELU)
        if isinstance(self.encoder, CodeEncoder):
            # Fixed random code embeddings, trained layers on top: the inverse loss shapes phi through the
            # encoder's linear layer, and the backward pass skips the gradient of the [N, P * embed] input
            # (a third of the encoder's training matmuls) and the embedding's scatter.
            self.encoder.table.requires_grad_(False)
        self.head = mlp(2 * features_dim, hidden, num_actions)

    def forward(self, obs: TensorObs) -> torch.Tensor:
        """``phi(obs)``, ``[N, features_dim]``."""
        return self.encoder(obs)

    def preprocess(self, obs: TensorObs) -> TensorObs:
        """The encoder's parameter-free part (computed once per rollout, then indexed per minibatch)."""
        return preprocess(self.encoder, obs)

    def features(self, x: TensorObs) -> torch.Tensor:
        """``phi`` of preprocessed observations: ``features(preprocess(obs)) == forward(obs)``."""
        return encode_preprocessed(self.encoder, x)

    def loss(self, phi: torch.Tensor, next_phi: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the predicted action; ``phi, next_phi [N, d]``, ``actions [N]``."""
        logits = self.head(torch.cat([phi, next_phi], dim=1))
        return F.cross_entropy(logits, actions.long().reshape(-1))


class ForwardModel(nn.Module):
    """``f(phi(s), a) -> phi(s')`` with a one-hot action; ``phi [N, d]``, ``actions [N]`` -> ``[N, out_dim]``
    (``out_dim`` defaults to ``d``; MaxInfoRL's info-gain ensemble also predicts the reward)."""

    def __init__(self, features_dim: int, num_actions: int, hidden: int = 256, out_dim: int | None = None):
        super().__init__()
        self.num_actions = num_actions
        self.net = mlp(features_dim + num_actions, hidden, features_dim if out_dim is None else out_dim)

    @property
    def layers(self) -> tuple[nn.Linear, nn.Linear]:
        """The two linear layers of ``net`` (input ``[phi, one_hot(a)]``, then output)."""
        first, second = self.net[0], self.net[2]
        assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
        return first, second

    def forward(self, phi: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        first, second = self.layers
        return second(action_layer(phi, actions, first.weight, first.bias).relu())


def action_layer(phi: torch.Tensor, actions: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``Linear(cat([phi, one_hot(a)]))`` without the one-hot: ``phi @ W_phi^T + W_a[:, a]^T + b``.

    Same values and gradients; the matmul keeps the aligned width ``d`` (multiplying a ``d + A`` wide one-hot
    input was ~25% slower on CPU) and the action's column is gathered instead.

    Args:
        phi: ``[N, d]``.
        actions: ``[N]`` discrete actions.
        weight: ``[out, d + A]`` (the layer's input is ``[phi, one_hot]``).
        bias: ``[out]``.

    Returns:
        ``[N, out]``.
    """
    d = phi.shape[1]
    return torch.addmm(bias, phi, weight[:, :d].t()) + weight[:, d:].t().index_select(0, actions.long().reshape(-1))


def ensemble_forward(members: nn.ModuleList, phi: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Every member of an ensemble of :class:`ForwardModel` on the same inputs, without a loop over members.

    The first layers of all members run as one ``[N, K * hidden]`` matmul, the second as one batched matmul.

    Args:
        members: K forward models of the same shapes.
        phi: ``[N, d]`` features.
        actions: ``[N]`` discrete actions.

    Returns:
        ``[K, N, d]``, equal to ``stack([member(phi, actions) for member in members])``; gradients reach each
        member's own parameters (its weights are stacked inside the autograd graph).
    """
    k = len(members)
    layers = [cast(ForwardModel, m).layers for m in members]
    first, second = (torch.stack([ls[i].weight for ls in layers]) for i in (0, 1))  # [K, out, in]
    b_first, b_second = (torch.stack([ls[i].bias for ls in layers]) for i in (0, 1))  # [K, out]
    hidden = action_layer(phi, actions, first.reshape(-1, first.shape[2]), b_first.reshape(-1))  # [N, K * hidden]
    hidden = hidden.relu().reshape(phi.shape[0], k, -1).transpose(0, 1)  # [K, N, hidden]
    return torch.baddbmm(b_second.unsqueeze(1), hidden, second.transpose(1, 2))


class EpisodeBoundaries:
    """Tracks, per env, whether the next step starts a new episode, for modules with episodic memory.

    Gymnasium's NEXT_STEP autoreset (see :mod:`rove.intrinsic.types`) marks the step after an episode's end
    ``valid == False``; its ``next_obs`` is the new episode's first observation. A module also starts fresh
    in an env it has never seen (the first ``obs`` comes from ``env.reset``) and after a ``done`` even if the
    agent's vector env resets on the same step (then ``obs`` of the next valid step is the first observation).
    """

    def __init__(self) -> None:
        self.needs_reset = torch.zeros(0, dtype=torch.bool)

    def step(self, dones: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(reset, first_is_obs)``, both ``[E]`` bool.

        ``reset``: clear this env's episodic memory before the step. ``first_is_obs``: the episode's first
        observation is this step's ``obs`` (add it to memory before scoring ``next_obs``); where ``reset`` and
        not ``first_is_obs`` (autoreset steps), the first observation is ``next_obs`` and earns no bonus.
        """
        if self.needs_reset.shape != valid.shape or self.needs_reset.device != valid.device:
            self.needs_reset = torch.ones_like(valid, dtype=torch.bool)
        reset = self.needs_reset | ~valid
        first_is_obs = reset & valid
        self.needs_reset = valid & dones
        return reset, first_is_obs

    def state(self) -> torch.Tensor:
        return self.needs_reset.clone()

    def load(self, state: torch.Tensor) -> None:
        self.needs_reset = state.clone()
