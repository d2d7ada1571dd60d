"""Helpers that treat an observation as either one tensor/array or a dict of them, keyed like the space."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

TensorObs = torch.Tensor | dict[str, torch.Tensor]
ArrayObs = np.ndarray | dict[str, np.ndarray]


def get_device(device: torch.device | str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else goes to ``torch.device``.

    As in Stable-Baselines3, a CUDA device on a machine without CUDA falls back to the CPU, here with a
    warning (one script runs on a laptop and on a cluster). A CUDA index beyond the visible devices and a
    name torch does not know are errors.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            warnings.warn(f"device {str(device)!r} requested but CUDA is not available: using the CPU", stacklevel=2)
            return torch.device("cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return resolved


def obs_map(fn: Callable[[Any], Any], obs: Any) -> Any:
    """Applies ``fn`` to each leaf of a (possibly dict) observation."""
    if isinstance(obs, dict):
        return {k: fn(v) for k, v in obs.items()}
    return fn(obs)


def to_tensor(obs: Any, device: torch.device | str = "cpu") -> TensorObs:
    """Converts a numpy (dict) observation to torch tensors on ``device`` without copying on CPU."""
    return obs_map(lambda x: torch.as_tensor(np.asarray(x), device=device), obs)


def obs_index(obs: TensorObs, index: Any) -> TensorObs:
    return obs_map(lambda x: x[index], obs)


def obs_flatten(obs: TensorObs, dims: int = 2) -> TensorObs:
    """Merges the leading ``dims`` batch dimensions (e.g. ``[T, E, ...] -> [T*E, ...]``)."""
    return obs_map(lambda x: x.reshape(-1, *x.shape[dims:]), obs)


def obs_batch_size(obs: TensorObs) -> int:
    leaf = next(iter(obs.values())) if isinstance(obs, dict) else obs
    return int(leaf.shape[0])


def obs_device(obs: TensorObs) -> torch.device:
    leaf = next(iter(obs.values())) if isinstance(obs, dict) else obs
    return leaf.device


def check_finite(obs: TensorObs, where: str) -> None:
    """Raises a ValueError naming the key if a floating-point observation holds NaN or inf."""
    items = obs.items() if isinstance(obs, dict) else [("observation", obs)]
    for key, value in items:
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{where}: observation {key!r} contains NaN or inf")


# Identifiers for counting, not features: a network never reads them.
KEY_OBSERVATIONS = ("state_key", "pose_key")


def network_keys(space: spaces.Space) -> list[str]:
    """Keys of a Dict space that networks read: every Box/Discrete except Rove's state keys."""
    if not isinstance(space, spaces.Dict):
        return []
    return [
        k for k, s in space.spaces.items() if k not in KEY_OBSERVATIONS and isinstance(s, (spaces.Box, spaces.Discrete))
    ]
