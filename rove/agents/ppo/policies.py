"""Actor-critic policies with an extrinsic and an intrinsic value head, built from the observation space.

The encoder comes from :func:`rove.encoders.make_encoder` (MiniGrid grid CNN, Crafter pixel CNN, NetHack
glyph/blstats/message encoder, Box MLP); an optional LSTM core follows it; then an optional shared MLP and
three linear heads held in one layer: action logits, V_ext and V_int (Burda et al. 2018 keep two value heads
so the two returns, with different discounts and episodicity, are fitted separately).

``net_arch=dict(pi=[...], vf=[...])`` (Stable-Baselines3's form, ``stable_baselines3/common/torch_layers.py``
``MlpExtractor``) builds separate actor and critic MLPs after the shared encoder instead. Both value heads sit
on the critic MLP: V_ext and V_int are two outputs of one linear layer on its last layer, as the two critic
heads of Burda et al.'s RND sit on one trunk. So the network is SB3's for the same ``net_arch`` plus the V_int
head (``vf[-1] + 1`` parameters). On Box spaces the encoder is then a plain flatten, as SB3's
``FlattenExtractor`` in ``MlpPolicy``: ``dict(pi=[64, 64], vf=[64, 64])`` with ``activation_fn=nn.Tanh`` is
SB3's default ``MlpPolicy`` network. Deviation: the MLP layers keep PyTorch's default init (SB3 uses
orthogonal init with gain sqrt(2) there), as Rove's shared MLP does; the heads are orthogonal as in SB3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rove.encoders import MLPEncoder, make_encoder, suite_of
from rove.obs import TensorObs

LSTMState = tuple[torch.Tensor, torch.Tensor]
NetArch = Sequence[int] | dict[str, Sequence[int]]
# Activation names a config file can give (TOML has no classes); the classes themselves are taken too.
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}
ActivationName = Literal["tanh", "relu", "elu", "leaky_relu"]


def activation_class(activation_fn: type[nn.Module] | str) -> type[nn.Module]:
    """The class of ``activation_fn``: an ``nn.Module`` class, or a name of :data:`ACTIVATIONS`."""
    if isinstance(activation_fn, str):
        if activation_fn not in ACTIVATIONS:
            raise ValueError(f"unknown activation_fn {activation_fn!r}; choose from {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[activation_fn]
    if not (isinstance(activation_fn, type) and issubclass(activation_fn, nn.Module)):
        raise TypeError(f"activation_fn must be an nn.Module class such as nn.Tanh, got {activation_fn!r}")
    return activation_fn


def _layer_sizes(sizes: object, what: str) -> list[int]:
    if not isinstance(sizes, list | tuple) or not all(isinstance(w, int) and w > 0 for w in sizes):
        raise ValueError(f"{what}={sizes!r}: expected a list of positive layer sizes, e.g. [64, 64]")
    return list(sizes)


def split_net_arch(net_arch: NetArch) -> tuple[list[int], list[int], bool]:
    """``(pi sizes, vf sizes, separate)``: a list is one shared MLP (``separate=False``, both lists equal);
    SB3's ``dict(pi=[...], vf=[...])`` separate actor and critic MLPs (a missing key is ``[]``, as in SB3)."""
    if isinstance(net_arch, dict):
        unknown = sorted(set(net_arch) - {"pi", "vf"})
        if unknown:
            raise ValueError(f"net_arch={net_arch!r}: unknown key(s) {unknown}; the dict form takes 'pi' and 'vf'")
        pi = _layer_sizes(net_arch.get("pi", []), "net_arch['pi']")
        return pi, _layer_sizes(net_arch.get("vf", []), "net_arch['vf']"), True
    shared = _layer_sizes(net_arch, "net_arch")
    return shared, shared, False


def _mlp(in_dim: int, sizes: list[int], activation_fn: type[nn.Module]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for width in sizes:
        layers += [nn.Linear(in_dim, width), activation_fn()]
        in_dim = width
    return nn.Sequential(*layers), in_dim


class FlattenEncoder(nn.Module):
    """``[N, ...]`` -> ``[N, prod(...)]`` floats: the Box encoder of the dict ``net_arch`` form (SB3's
    ``FlattenExtractor``)."""

    def __init__(self, space: spaces.Box) -> None:
        super().__init__()
        self.features_dim = int(np.prod(space.shape)) if space.shape else 1

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float().reshape(obs.shape[0], -1)


def _init_heads(heads: nn.Linear, num_actions: int) -> None:
    """Orthogonal init of each head's rows on its own: gain 0.01 for the actor, 1 for each critic, as if
    they were three layers (a single orthogonal matrix would couple the heads' rows)."""
    with torch.no_grad():
        for rows, gain in (
            (slice(0, num_actions), 0.01),
            (slice(num_actions, num_actions + 1), 1.0),
            (slice(num_actions + 1, None), 1.0),
        ):
            heads.weight[rows] = nn.init.orthogonal_(torch.empty_like(heads.weight[rows]), gain)
        heads.bias.zero_()


class ActorCriticPolicy(nn.Module):
    """Encoder -> (LSTM) -> (MLP) -> actor logits, V_ext, V_int.

    Args:
        observation_space: Single-env space (tensor keys only; see ``rove.agents.common.utils.tensor_space``).
        action_space: Discrete.
        features_dim: Encoder output size; default 64 for flat Box/Discrete spaces (Stable-Baselines3's MLP
            size), 256 for the suite encoders. Not taken on Box spaces with the dict ``net_arch`` (the encoder
            is a flatten there).
        net_arch: Hidden sizes of a shared MLP after the encoder/LSTM, or Stable-Baselines3's dict form
            ``dict(pi=[...], vf=[...])``: separate actor and critic MLPs after the shared encoder/LSTM, both
            value heads on the critic MLP (see the module docstring).
        activation_fn: Activation class of that MLP (``nn.ReLU``; Stable-Baselines3's default is ``nn.Tanh``), or
            its name in a config file (``"tanh"``, ``"relu"``, ``"elu"``, ``"leaky_relu"``).
        lstm: Add an LSTM core (for partially observable suites).
        lstm_hidden_size: LSTM width.
        ortho_init: Orthogonal init of the heads (gain 0.01 for the actor, 1 for the critics).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        features_dim: int | None = None,
        net_arch: Sequence[int] = (),
        activation_fn: type[nn.Module] | ActivationName = nn.ReLU,
        lstm: bool = False,
        lstm_hidden_size: int = 256,
        ortho_init: bool = True,
    ) -> None:
        super().__init__()
        pi_arch, vf_arch, self.separate = split_net_arch(net_arch)
        activation = activation_class(activation_fn)
        if not isinstance(action_space, spaces.Discrete):
            raise NotImplementedError(
                f"rove.agents.PPO supports Discrete action spaces only for now; got {action_space}"
            )
        suite = suite_of(observation_space)
        if suite == "box" and self.separate:
            if features_dim is not None:
                raise ValueError(
                    f"features_dim={features_dim}: with net_arch={net_arch!r} the Box encoder is a plain flatten "
                    "(SB3's MlpPolicy); give the layer sizes in net_arch['pi'] and net_arch['vf'] instead"
                )
            assert isinstance(observation_space, spaces.Box)
            self.encoder: nn.Module = FlattenEncoder(observation_space)
            features_dim = self.encoder.features_dim
        else:
            if features_dim is None:
                features_dim = 64 if suite in ("box", "discrete") else 256
            if suite == "box":
                assert isinstance(observation_space, spaces.Box)
                self.encoder = MLPEncoder(observation_space, features_dim, hidden=features_dim)
            else:
                self.encoder = make_encoder(observation_space, features_dim)
        self.suite = suite
        self.use_lstm = lstm
        self.lstm_hidden_size = lstm_hidden_size
        latent = features_dim
        if lstm:
            self.lstm = nn.LSTM(features_dim, lstm_hidden_size)
            for name, param in self.lstm.named_parameters():
                if "bias" in name:
                    nn.init.zeros_(param)
                elif "weight" in name:
                    nn.init.orthogonal_(param, 1.0)
            latent = lstm_hidden_size
        self.num_actions = int(action_space.n)
        if self.separate:
            self.pi_mlp, pi_latent = _mlp(latent, pi_arch, activation)
            self.vf_mlp, vf_latent = _mlp(latent, vf_arch, activation)
            self.actor = nn.Linear(pi_latent, self.num_actions)
            self.critics = nn.Linear(vf_latent, 2)  # [v_ext, v_int]
            if ortho_init:
                with torch.no_grad():
                    nn.init.orthogonal_(self.actor.weight, 0.01)
                    for row in range(2):
                        self.critics.weight[row : row + 1] = nn.init.orthogonal_(self.critics.weight[row : row + 1])
                    self.actor.bias.zero_()
                    self.critics.bias.zero_()
            return
        self.mlp, latent = _mlp(latent, pi_arch, activation)
        # The actor and both critics are one Linear whose rows are [logits..., v_ext, v_int]: one matmul per
        # call instead of three, and four fewer parameter tensors for the optimiser and gradient clipping.
        self.heads = nn.Linear(latent, self.num_actions + 2)
        if ortho_init:
            _init_heads(self.heads, self.num_actions)

    # ----- recurrent state -----
    def initial_state(self, num_envs: int, device: torch.device) -> LSTMState | None:
        if not self.use_lstm:
            return None
        zeros = torch.zeros(1, num_envs, self.lstm_hidden_size, device=device)
        return zeros, zeros.clone()

    def _heads(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.separate:
            pi = self.pi_mlp(latent) if len(self.pi_mlp) else latent
            values = self.critics(self.vf_mlp(latent) if len(self.vf_mlp) else latent)
            return self.actor(pi), values[:, 0], values[:, 1]
        if len(self.mlp):  # an empty Sequential is still a module call per step
            latent = self.mlp(latent)
        out = self.heads(latent)
        a = self.num_actions
        return out[:, :a], out[:, a], out[:, a + 1]

    def forward(
        self, obs: TensorObs, state: LSTMState | None = None, episode_starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, LSTMState | None]:
        """One step for ``E`` envs.

        Args:
            obs: ``[E, ...]``.
            state: LSTM ``(h, c)``, each ``[1, E, H]`` (ignored without an LSTM).
            episode_starts: ``[E]`` bool, zero the state of envs whose obs begins an episode.

        Returns:
            ``(logits [E, A], v_ext [E], v_int [E], new_state)``.
        """
        features = self.encoder(obs)
        if not self.use_lstm:
            logits, v_ext, v_int = self._heads(features)
            return logits, v_ext, v_int, None
        if state is None:
            state = self.initial_state(features.shape[0], features.device)
            assert state is not None
        if episode_starts is not None:
            keep = (~episode_starts).float().view(1, -1, 1)
            state = (state[0] * keep, state[1] * keep)
        out, new_state = self.lstm(features.unsqueeze(0), state)
        logits, v_ext, v_int = self._heads(out.squeeze(0))
        return logits, v_ext, v_int, new_state

    def evaluate_sequence(
        self, obs: TensorObs, state: LSTMState, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Replays ``L`` steps of ``S`` envs, flattened time-major ``[L*S, ...]``, from the stored state.

        The state is zeroed wherever ``episode_starts [L, S]`` is set, as during the rollout.
        """
        length, num_seq = episode_starts.shape
        features = self.encoder(obs).view(length, num_seq, -1)
        outputs = []
        h, c = state
        for t in range(length):
            keep = (~episode_starts[t]).float().view(1, -1, 1)
            out, (h, c) = self.lstm(features[t : t + 1], (h * keep, c * keep))
            outputs.append(out)
        logits, v_ext, v_int = self._heads(torch.cat(outputs).reshape(length * num_seq, -1))
        return logits, v_ext, v_int

    @torch.inference_mode()
    def act(
        self,
        obs: TensorObs,
        state: LSTMState | None = None,
        episode_starts: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, LSTMState | None]:
        """Samples actions: ``(actions [E], log_probs [E], v_ext [E], v_int [E], new_state)``.

        Runs in inference mode (no autograd bookkeeping per op, which matters at a few envs per call), so
        the outputs are inference tensors: copy them into storage, never feed them to autograd.
        """
        logits, v_ext, v_int, new_state = self(obs, state, episode_starts)
        # Plain tensor ops instead of torch.distributions: its argument validation costs more than the
        # network on small envs, once per env step.
        log_probs = torch.log_softmax(logits, -1)
        actions = logits.argmax(-1) if deterministic else sample_categorical(log_probs)
        return actions, log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1), v_ext, v_int, new_state


def sample_categorical(log_probs: torch.Tensor) -> torch.Tensor:
    """One sample per row of the categorical with ``log_probs [N, A]``: ``[N]`` int64.

    The exponential race: ``argmax_a p_a / X_a`` with ``X_a ~ Exp(1)`` picks ``a`` with probability ``p_a``
    (the Gumbel-max trick, since ``-log X_a`` is Gumbel). Three element-wise ops instead of
    ``torch.multinomial``, whose per-call setup costs more than the rest of the sampling.
    """
    return (log_probs.exp() / torch.empty_like(log_probs).exponential_()).argmax(-1)


def log_prob_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of ``actions [N]`` and entropy of the categorical with ``logits [N, A]``."""
    log_probs = torch.log_softmax(logits, -1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy


def num_parameters(module: nn.Module) -> int:
    return int(np.sum([p.numel() for p in module.parameters()]))
