"""Running statistics and normalisers shared by intrinsic modules and agents."""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Running mean and variance over the leading dimension (Chan et al.'s parallel update)."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(self.mean.device, torch.float64).reshape(-1, *self.mean.shape)
        if x.shape[0] == 0:
            return
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        n = x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return torch.sqrt(self.var + 1e-8)


class ObservationNormalizer(nn.Module):
    """Whitens a tensor observation by running mean/std and clips it, as RND does (clip 5).

    The agent warms the statistics up explicitly (``update`` on observations from random steps);
    nothing here ever steps an environment.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 5.0) -> None:
        super().__init__()
        self.rms = RunningMeanStd(shape)
        self.clip = clip

    def update(self, x: torch.Tensor) -> None:
        self.rms.update(x.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.rms.mean.to(torch.float32)
        std = self.rms.std.to(torch.float32)
        return ((x.float() - mean) / std).clamp(-self.clip, self.clip)


class ReturnNormalizer(nn.Module):
    """Divides rewards by the running std of their discounted return, accumulated along *time*.

    Burda et al.'s recipe: ``R_t = gamma * R_{t-1} + r_t`` per env, never reset (intrinsic returns are
    non-episodic), the std of all ``R_t`` feeds a running estimate. (CleanRL's RND script runs this
    accumulation along the env axis; this one runs along time.)
    """

    returns: torch.Tensor

    def __init__(self, gamma: float = 0.99) -> None:
        super().__init__()
        self.gamma = gamma
        self.rms = RunningMeanStd(())
        self.register_buffer("returns", torch.zeros(0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # ``returns`` takes its [E] shape on first use; resize so a fresh module can load a used one's state.
        saved = state_dict.get(prefix + "returns")
        if saved is not None:
            self.returns = torch.zeros_like(saved, device=self.returns.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def forward(self, rewards: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Normalises ``rewards [T, E]``; ``valid [T, E]`` excludes autoreset steps from the statistics."""
        num_envs = rewards.shape[1]
        if self.returns.shape != (num_envs,):
            self.returns = torch.zeros(num_envs, device=rewards.device, dtype=torch.float64)
        returns = torch.cat([self._accumulate(block) for block in rewards.to(torch.float64).split(RETURN_BLOCK)])
        self.rms.update(returns[valid] if valid is not None else returns)
        return (rewards / self.rms.std.to(rewards.dtype)).to(rewards.dtype)

    def _accumulate(self, rewards: torch.Tensor) -> torch.Tensor:
        """``R_t = gamma * R_{t-1} + r_t`` for a block ``rewards [B, E]`` (float64), continuing ``self.returns``;
        one ``[B, B]`` matmul with ``gamma^(t-s)`` weights instead of a Python loop of B steps (2 ms per rollout)."""
        steps = torch.arange(rewards.shape[0], device=rewards.device, dtype=torch.float64)
        lag = steps[:, None] - steps[None, :]
        decay = torch.where(lag >= 0, self.gamma ** lag.clamp(min=0), 0.0)  # [B, B] lower triangular
        returns = decay @ rewards + (self.gamma ** (steps + 1))[:, None] * self.returns[None, :]
        self.returns = returns[-1].clone()
        return returns


RETURN_BLOCK = 256  # time steps per matmul in ReturnNormalizer (bounds the [B, B] decay matrix)


class RewardNormalizer(nn.Module):
    """Divides rewards by their own running std (E3B's choice), or whitens them with ``center=True``."""

    def __init__(self, center: bool = False) -> None:
        super().__init__()
        self.rms = RunningMeanStd(())
        self.center = center

    @torch.no_grad()
    def forward(self, rewards: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        self.rms.update(rewards[valid] if valid is not None else rewards)
        out = rewards - self.rms.mean.to(rewards.dtype) if self.center else rewards
        return out / self.rms.std.to(rewards.dtype)
