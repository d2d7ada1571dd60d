"""Small helpers shared by on-policy agents: devices, seeding, RNG snapshots, spaces, schedules."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rove.obs import TensorObs, get_device  # noqa: F401  (re-exported for agents)

Schedule = Callable[[float], float]  # progress remaining (1 -> 0) -> value, as in Stable-Baselines3


def set_random_seed(seed: int) -> None:
    """Seeds Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_states() -> dict[str, Any]:
    """Snapshots every global RNG an agent draws from, for checkpoints."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores a snapshot taken by :func:`get_rng_states` (CUDA state only where CUDA exists)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        # Saved with more GPUs than are visible now: restore those that exist (set_rng_state_all would fail).
        for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)


def as_schedule(value: float | Schedule) -> Schedule:
    """A constant becomes a constant schedule; a callable of progress remaining is kept."""
    if callable(value):
        return value
    constant = float(value)
    return lambda _progress: constant


def make_adam(params: Iterable[nn.Parameter], lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam, fused (one kernel over all tensors) where torch has it for the parameters' device and dtype.

    The default per-tensor loop runs a dozen small ops per parameter; on CPU with a MiniGrid-sized policy
    that is ~4% of a PPO update, the fused step ~1.5%. ``foreach`` (multi-tensor) elsewhere.
    """
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True if fused else None, foreach=None if fused else True)


def flushes_denormals() -> bool:
    """Whether the CPU flushes subnormal float results to zero now (torch has a setter but no getter: a
    product below float32's smallest normal, 1.2e-38, comes out as 0 exactly when it does)."""
    return float(torch.tensor([2e-38]) * 0.25) == 0.0


@contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[None]:
    """Runs the body with subnormal floats flushed to zero on the CPU, then restores the mode it found.

    Why: x86 CPUs handle subnormal operands and results in microcode, many times slower than normal floats,
    and PPO's update makes them: Adam squares gradients of ~1e-20 (units the loss barely reaches) and decays
    the moments of dead ReLU units geometrically. After 98k steps of MiniGrid training, Stable-Baselines3's
    PPO ran at about 0.85x the speed it had with subnormals flushed (``experiments/bench_agents.py
    --rows minigrid_late``, with and without ``--sb3-flush-denormals``). Values below 1.2e-38 becoming 0
    change nothing an optimiser with eps >= 1e-8 can see; TensorFlow flushes them on CPU by default for the
    same reason. No effect on CUDA tensors.
    """
    turn_on = enabled and not flushes_denormals()
    if turn_on:
        turn_on = torch.set_flush_denormal(True)  # False where the CPU has no such mode: nothing to undo
    try:
        yield
    finally:
        if turn_on:
            torch.set_flush_denormal(False)


def linear_schedule(start: float, end: float = 0.0) -> Schedule:
    """Goes linearly from ``start`` (progress remaining 1) to ``end`` (progress remaining 0)."""
    return _Linear(start, end)


class _Linear:
    """A picklable linear schedule (a lambda would not survive ``save``)."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def __call__(self, progress_remaining: float) -> float:
        return self.end + (self.start - self.end) * progress_remaining

    def __repr__(self) -> str:
        return f"linear_schedule({self.start}, {self.end})"


def tensor_keys(space: spaces.Space) -> list[str] | None:
    """Keys of a Dict space that can be stored as tensors (Box/Discrete); ``None`` for a non-dict space.

    Gymnasium's MiniGrid adds a ``mission`` Text space; text never reaches networks (Rove envs carry it as
    the ``caption`` bytes key instead), so it is dropped.
    """
    if not isinstance(space, spaces.Dict):
        if not isinstance(space, (spaces.Box, spaces.Discrete)):
            raise TypeError(f"unsupported observation space {space}; expected Box, Discrete or a Dict of them")
        return None
    keys = [k for k, s in space.spaces.items() if isinstance(s, (spaces.Box, spaces.Discrete))]
    if not keys:
        raise TypeError(f"observation space {space} has no Box or Discrete key to learn from")
    return keys


def tensor_space(space: spaces.Space) -> spaces.Space:
    """``space`` restricted to the keys :func:`tensor_keys` keeps."""
    keys = tensor_keys(space)
    if keys is None:
        return space
    assert isinstance(space, spaces.Dict)
    return spaces.Dict({k: space[k] for k in keys})


def space_dtype(space: spaces.Space) -> torch.dtype:
    if isinstance(space, spaces.Discrete):
        return torch.int64
    return torch.from_numpy(np.zeros((), dtype=space.dtype)).dtype


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - pred] / Var[target]; NaN when the target is constant."""
    var = target.var()
    return float("nan") if float(var) == 0 else float(1 - (target - pred).var() / var)


def load_state_dict_resizing(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``module.load_state_dict(state)`` that first reshapes buffers whose saved shape differs.

    Some modules size buffers lazily (``ReturnNormalizer.returns`` starts empty and becomes ``[E]`` on the
    first rollout), so a freshly built module cannot take a trained one's state as is.
    """
    buffers = dict(module.named_buffers())
    for name, saved in state.items():
        current = buffers.get(name)
        if current is not None and current.shape != saved.shape:
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            setattr(owner, attr, torch.zeros(saved.shape, dtype=saved.dtype, device=current.device))
    module.load_state_dict(state)


def obs_to_numpy_dict(obs: Any, keys: list[str] | None) -> Any:
    """Keeps the tensor keys of a (dict) observation from an env."""
    if keys is None:
        return obs
    return {k: obs[k] for k in keys}


def tensor_obs_equal(a: TensorObs, b: TensorObs) -> bool:
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert isinstance(b, torch.Tensor)
    return torch.equal(a, b)
