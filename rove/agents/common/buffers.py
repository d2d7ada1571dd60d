"""Rollout storage on the training device and two-stream GAE (extrinsic + intrinsic).

Time indexing, with ``T`` steps from ``E`` envs in Gymnasium's NEXT_STEP autoreset mode: the agent sees
``obs[t]``, acts ``a_t``, and the env returns ``obs[t+1]``, ``r_t``, ``terminated_t``, ``truncated_t``.
``obs`` is one ``[T+1, E, ...]`` buffer so that s_t and s_{t+1} are views of it.

- ``dones[t] = terminated[t] | truncated[t]``: ``obs[t+1]`` is the episode's true final observation
  (NEXT_STEP returns it from the ending step), so a timeout bootstraps from ``V(obs[t+1])`` exactly.
- The step after a done is the *autoreset* step: its action is ignored, its reward is 0 and its
  ``obs[t+1]`` is the next episode's first observation. It is marked ``valid[t] = False`` and excluded
  from the PPO loss and from the intrinsic module's training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gymnasium import spaces

from rove.agents.common.utils import space_dtype, tensor_keys
from rove.intrinsic.types import Rollout
from rove.obs import TensorObs, obs_flatten, obs_index, obs_map


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    valid: torch.Tensor,
    gamma: float,
    gae_lambda: float,
    episodic: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) for one reward stream.

    Args:
        rewards: ``[T, E]`` r_t.
        values: ``[T+1, E]`` V(obs[t]); the last row bootstraps the rollout.
        terminated: ``[T, E]`` bool, obs[t+1] is terminal (no bootstrap).
        dones: ``[T, E]`` bool, the episode ended at obs[t+1] (terminated or truncated).
        valid: ``[T, E]`` bool, False on autoreset steps.
        gamma: Discount.
        gae_lambda: GAE's lambda.
        episodic: True for the extrinsic stream: terminal steps do not bootstrap, truncated ones bootstrap
            from V(final obs), advantages never cross an episode end, and autoreset steps get zero
            advantage. False for Burda et al.'s non-episodic intrinsic stream: no done masking at all; the
            autoreset step is kept as a zero-reward link from the final observation to the next episode's
            first one, so intrinsic value flows across episodes (its advantage is still masked from the loss).

    Returns:
        ``(advantages, returns)``, each ``[T, E]`` float32, ``returns = advantages + values[:T]``.
    """
    num_steps = rewards.shape[0]
    if values.shape[0] != num_steps + 1:
        raise ValueError(f"values must have T+1 = {num_steps + 1} rows, got {values.shape[0]}")
    rewards, values = rewards.float(), values.float()
    if episodic:
        bootstrap = 1.0 - terminated.float()
        carry = 1.0 - dones.float()
        keep = valid.float()
    else:
        bootstrap = torch.ones_like(rewards)
        carry = torch.ones_like(rewards)
        keep = torch.ones_like(rewards)
    deltas = rewards + gamma * values[1:] * bootstrap - values[:-1]
    # A_t = keep_t * (delta_t + gamma * lambda * carry_t * A_{t+1}) = own_t + decay_t * A_{t+1}: with both
    # factors precomputed over the whole rollout, the backward recursion is one fused op per step instead
    # of four (rows pre-split by unbind, stacked once at the end).
    own = (deltas * keep).unbind(0)
    decay = ((gamma * gae_lambda) * carry * keep).unbind(0)
    last = torch.zeros_like(rewards[0])
    rows = []
    for t in range(num_steps - 1, -1, -1):
        last = torch.addcmul(own[t], decay[t], last)
        rows.append(last)
    advantages = torch.stack(rows[::-1]) if rows else torch.zeros_like(rewards)
    return advantages, advantages + values[:-1]


@dataclass
class RolloutBatch:
    """A minibatch of flattened samples for the PPO update. ``B`` samples (or ``L*S`` for sequences).

    Attributes:
        obs: ``[B, ...]``.
        actions: ``[B]``.
        old_log_probs: ``[B]``.
        advantages: ``[B]`` combined ``ext_coef * A_ext + int_coef * A_int``.
        returns_ext, returns_int: ``[B]`` value targets.
        old_values_ext, old_values_int: ``[B]``.
        valid: ``[B]`` bool; False samples (autoreset steps) carry no loss.
        episode_starts: ``[L, S]`` bool for sequence batches (LSTM), else None.
        lstm_state: initial ``(h, c)`` each ``[layers, S, H]`` for sequence batches, else None.
        all_valid: every sample is valid (flat minibatches), so the loss can skip masking.
    """

    obs: TensorObs
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    returns_ext: torch.Tensor
    returns_int: torch.Tensor
    old_values_ext: torch.Tensor
    old_values_int: torch.Tensor
    valid: torch.Tensor
    episode_starts: torch.Tensor | None = None
    lstm_state: tuple[torch.Tensor, torch.Tensor] | None = None
    all_valid: bool = False


class RolloutBuffer:
    """Preallocated ``[T(+1), E, ...]`` tensors on ``device`` for one rollout.

    Args:
        observation_space: single-env space (Dict keys that are not Box/Discrete are not stored).
        num_steps: T.
        num_envs: E.
        device: where everything lives.
    """

    def __init__(self, observation_space: spaces.Space, num_steps: int, num_envs: int, device: torch.device) -> None:
        self.num_steps, self.num_envs, self.device = num_steps, num_envs, device
        keys = tensor_keys(observation_space)

        def alloc(space: spaces.Space) -> torch.Tensor:
            shape = () if isinstance(space, spaces.Discrete) else space.shape or ()
            return torch.zeros((num_steps + 1, num_envs, *shape), dtype=space_dtype(space), device=device)

        if keys is None:
            self.obs: TensorObs = alloc(observation_space)
        else:
            assert isinstance(observation_space, spaces.Dict)
            self.obs = {k: alloc(observation_space[k]) for k in keys}
        shape = (num_steps, num_envs)
        self.actions = torch.zeros(shape, dtype=torch.int64, device=device)
        self.log_probs = torch.zeros(shape, dtype=torch.float32, device=device)
        self.rewards_ext = torch.zeros(shape, dtype=torch.float32, device=device)
        self.rewards_int = torch.zeros(shape, dtype=torch.float32, device=device)
        self.values_ext = torch.zeros((num_steps + 1, num_envs), dtype=torch.float32, device=device)
        self.values_int = torch.zeros((num_steps + 1, num_envs), dtype=torch.float32, device=device)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=device)
        self.dones = torch.zeros(shape, dtype=torch.bool, device=device)
        self.valid = torch.ones(shape, dtype=torch.bool, device=device)
        # episode_starts[t]: obs[t] begins an episode (the step before it was an autoreset), for the LSTM.
        self.episode_starts = torch.zeros((num_steps + 1, num_envs), dtype=torch.bool, device=device)
        self.advantages_ext = torch.zeros(shape, dtype=torch.float32, device=device)
        self.advantages_int = torch.zeros(shape, dtype=torch.float32, device=device)
        self.returns_ext = torch.zeros(shape, dtype=torch.float32, device=device)
        self.returns_int = torch.zeros(shape, dtype=torch.float32, device=device)
        self.lstm_state: tuple[torch.Tensor, torch.Tensor] | None = None

    # ----- views for intrinsic modules -----
    @property
    def cur_obs(self) -> TensorObs:
        return obs_index(self.obs, slice(0, self.num_steps))

    @property
    def next_obs(self) -> TensorObs:
        return obs_index(self.obs, slice(1, self.num_steps + 1))

    def rollout(self) -> Rollout:
        """The rollout as the intrinsic-module protocol types it (views, no copies)."""
        return Rollout(self.cur_obs, self.actions, self.next_obs, self.rewards_ext, self.dones, self.valid)

    def start_next(self, row: int = -1) -> None:
        """Carries observation ``row`` (default the last, or where a stopped rollout ended) and its
        episode-start flag to row 0 for the next rollout."""
        obs_map(lambda x: x[0].copy_(x[row]), self.obs)
        self.episode_starts[0] = self.episode_starts[row].clone()

    def compute_advantages(
        self,
        gamma: float,
        gamma_int: float,
        gae_lambda: float,
        int_episodic: bool,
    ) -> None:
        """Fills both streams' advantages and returns (see :func:`compute_gae`)."""
        self.advantages_ext, self.returns_ext = compute_gae(
            self.rewards_ext, self.values_ext, self.terminated, self.dones, self.valid, gamma, gae_lambda, True
        )
        self.advantages_int, self.returns_int = compute_gae(
            self.rewards_int,
            self.values_int,
            self.terminated,
            self.dones,
            self.valid,
            gamma_int,
            gae_lambda,
            int_episodic,
        )

    def combined_advantages(self, ext_coef: float, int_coef: float, use_intrinsic: bool) -> torch.Tensor:
        """``ext_coef * A_ext + int_coef * A_int`` (Burda et al.'s 2 and 1); plain ``A_ext`` without a module."""
        if not use_intrinsic:
            return self.advantages_ext
        return ext_coef * self.advantages_ext + int_coef * self.advantages_int

    # ----- minibatches -----
    def sample_batches(
        self, batch_size: int, advantages: torch.Tensor, generator: torch.Generator | None = None
    ) -> list[RolloutBatch]:
        """Shuffled minibatches of *valid* samples only (autoreset steps never enter the loss).

        Every array is gathered once in shuffled order and the minibatches are slices of it: one gather per
        array per epoch instead of one per minibatch, and each minibatch is contiguous.
        """
        valid_index = self.valid.reshape(-1).nonzero(as_tuple=True)[0]
        perm = valid_index[torch.randperm(len(valid_index), generator=generator).to(self.device)]
        obs = obs_index(obs_flatten(self.cur_obs), perm)
        shuffled = [
            x.reshape(-1)[perm]
            for x in (
                self.actions,
                self.log_probs,
                advantages,
                self.returns_ext,
                self.returns_int,
                self.values_ext[:-1],
                self.values_int[:-1],
            )
        ]
        all_valid = torch.ones(len(perm), dtype=torch.bool, device=self.device)
        batches = []
        for start in range(0, len(perm), batch_size):
            rows = slice(start, start + batch_size)
            actions, log_probs, adv, ret_ext, ret_int, val_ext, val_int = (x[rows] for x in shuffled)
            batches.append(
                RolloutBatch(
                    obs=obs_index(obs, rows),
                    actions=actions,
                    old_log_probs=log_probs,
                    advantages=adv,
                    returns_ext=ret_ext,
                    returns_int=ret_int,
                    old_values_ext=val_ext,
                    old_values_int=val_int,
                    valid=all_valid[rows],
                    all_valid=True,
                )
            )
        return batches

    def sample_sequences(
        self, envs_per_batch: int, advantages: torch.Tensor, generator: torch.Generator | None = None
    ) -> list[RolloutBatch]:
        """Minibatches of whole env sequences ``[T, S]`` for a recurrent policy, flattened time-major.

        Each carries the LSTM state saved at the rollout's start and the episode-start flags, so the update
        replays the hidden state exactly as the rollout computed it.
        """
        if self.lstm_state is None:
            raise RuntimeError("sample_sequences needs the LSTM state stored at the rollout's start")
        perm = torch.randperm(self.num_envs, generator=generator).to(self.device)
        batches = []
        for start in range(0, self.num_envs, envs_per_batch):
            envs = perm[start : start + envs_per_batch]

            def pick(x: torch.Tensor, envs: torch.Tensor = envs) -> torch.Tensor:
                return x[:, envs].reshape(-1, *x.shape[2:])

            h, c = self.lstm_state
            batches.append(
                RolloutBatch(
                    obs=obs_map(pick, self.cur_obs),
                    actions=pick(self.actions),
                    old_log_probs=pick(self.log_probs),
                    advantages=pick(advantages),
                    returns_ext=pick(self.returns_ext),
                    returns_int=pick(self.returns_int),
                    old_values_ext=pick(self.values_ext[:-1]),
                    old_values_int=pick(self.values_int[:-1]),
                    valid=pick(self.valid),
                    episode_starts=self.episode_starts[:-1, envs],
                    lstm_state=(h[:, envs], c[:, envs]),
                )
            )
        return batches
