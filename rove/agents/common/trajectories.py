"""Records every transition of a run as a compact row (state key, action, next state key), for exploration metrics.

:class:`TrajectoryRecorder` appends one row per valid transition (autoreset steps are none) to
``<run_dir>/trajectories.bin`` after each rollout; :func:`read_trajectories` reads it back.
:mod:`rove.experiments.exploration_metrics` turns the rows into the entropy, information gain and empowerment
of Du et al.'s "Intrinsically-Motivated Humans and Agents in Open-World Exploration", and ``rove report``
shows them.

The file is append-only and crash-safe: rows have a fixed size (:data:`ROW_DTYPE`, 33 bytes, little-endian),
each rollout's rows go out in one ``write`` followed by a flush, and a reader keeps only whole rows, so a run
killed at any moment leaves a readable file (at most a torn last row, which is dropped). A resumed run first
cuts the file back to the rows its checkpoint has counted (``step <= num_timesteps``): rows are written at
``on_rollout_end``, before that rollout's checkpoint, so a kill between the two leaves rows that the resumed
run collects again, and the resumed file equals an uninterrupted run's.

Per row: ``step`` (the run's transition count once this transition is counted: 1, 2, ...; time-major within a
rollout), ``state`` and ``next_state`` (int64 keys of s_t and s_{t+1}), ``env``, ``action`` (-1 for
non-discrete actions), ``flags`` (bit 0: s_t is an episode's first state; bit 1: the episode ended at
s_{t+1}). Keys are the observation's ``state_key`` (Rove's envs: NetHack/MiniHack dungeon, level and
position; MiniGrid the exact grid state; Crafter a hash of position, facing and inventory) or another int64
key (``key="pose_key"``); observations without that key get a 64-bit hash of their bytes (every key but
``caption``), as the count bonus does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from rove.agents.common.callbacks import BaseCallback

TRAJECTORY_FILE = "trajectories.bin"
META_FILE = "trajectories.json"
ROW_DTYPE = np.dtype(
    [("step", "<i8"), ("state", "<i8"), ("next_state", "<i8"), ("env", "<i4"), ("action", "<i4"), ("flags", "u1")]
)
START, DONE = 1, 2  # bits of ``flags``


def read_trajectories(run_dir: str | Path) -> np.ndarray:
    """The rows of ``run_dir/trajectories.bin`` (whole rows only; a torn last row is dropped).

    Returns:
        Structured ``ROW_DTYPE [N]`` array in the order written (empty when the file is missing).
    """
    path = Path(run_dir) / TRAJECTORY_FILE
    if not path.is_file():
        return np.zeros(0, dtype=ROW_DTYPE)
    data = path.read_bytes()
    whole = len(data) - len(data) % ROW_DTYPE.itemsize
    return np.frombuffer(data[:whole], dtype=ROW_DTYPE).copy()


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    """``trajectories.json``: the key recorded and the number of actions (empty when missing)."""
    path = Path(run_dir) / META_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def rollout_rows(
    keys: np.ndarray,
    actions: np.ndarray,
    valid: np.ndarray,
    dones: np.ndarray,
    starts: np.ndarray,
    steps_before: int,
) -> np.ndarray:
    """The rows of one rollout.

    Args:
        keys: ``int64 [T+1, E]`` key of each observation (``keys[t + 1]`` is s_{t+1} of step t).
        actions: ``[T, E]`` discrete actions, or ``[T, E, A]`` (recorded as -1).
        valid: ``bool [T, E]``, False on autoreset steps.
        dones: ``bool [T, E]``, the episode ended at s_{t+1}.
        starts: ``bool [T, E]``, s_t is an episode's first observation.
        steps_before: the run's transition count before this rollout.

    Returns:
        ``ROW_DTYPE [valid.sum()]``, time-major.
    """
    t, e = np.nonzero(valid)
    rows = np.zeros(t.size, dtype=ROW_DTYPE)
    rows["step"] = steps_before + 1 + np.arange(t.size)
    rows["state"] = keys[t, e]
    rows["next_state"] = keys[t + 1, e]
    rows["env"] = e
    rows["action"] = actions[t, e] if actions.ndim == 2 else -1
    rows["flags"] = starts[t, e] * START | dones[t, e] * DONE
    return rows


class TrajectoryRecorder(BaseCallback):
    """Appends each rollout's transitions to ``<run_dir>/trajectories.bin`` (see the module docstring).

    Args:
        key: The int64 observation key to record (default ``state_key``; e.g. MiniGrid's ``pose_key``). An
            observation without it is recorded by a hash of its bytes.
        path: Folder of the file; default the agent's ``run_dir``.
    """

    def __init__(self, key: str = "state_key", path: str | Path | None = None) -> None:
        super().__init__()
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be an observation key name, got {key!r}")
        self.key = key
        self.folder = Path(path) if path is not None else None

    def _init_callback(self) -> None:
        assert self.model is not None
        if self.folder is None:
            if self.model.run_dir is None:
                raise ValueError("TrajectoryRecorder needs path=, or a model built with run_dir=")
            self.folder = Path(self.model.run_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._truncate(self.model.num_timesteps)
        space = self.model.action_space
        meta = {"key": self.key, "num_actions": int(getattr(space, "n", 0)), "row_bytes": ROW_DTYPE.itemsize}
        tmp = self.folder / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(self.folder / META_FILE)

    def _truncate(self, num_timesteps: int) -> None:
        """Keeps the whole rows with ``step <= num_timesteps`` (a resumed run's checkpoint counted them)."""
        assert self.folder is not None
        path = self.folder / TRAJECTORY_FILE
        if not path.is_file():
            return
        rows = read_trajectories(self.folder)
        keep = int(np.searchsorted(rows["step"], num_timesteps, side="right"))
        os.truncate(path, keep * ROW_DTYPE.itemsize)

    def _keys(self, obs: Any) -> np.ndarray:
        """``int64 [T+1, E]`` key of every observation of the buffer."""
        from rove.intrinsic.counts import state_keys

        if isinstance(obs, dict) and self.key in obs:
            lead = obs[self.key].shape[:2]
        else:
            first = next(iter(obs.values())) if isinstance(obs, dict) else obs
            lead = first.shape[:2]
        return state_keys(obs, batch_dims=2, key=self.key).reshape(lead)

    def _on_rollout_end(self) -> None:
        assert self.model is not None and self.folder is not None
        buf = self.model.rollout_buffer
        valid = buf.valid.cpu().numpy()
        rows = rollout_rows(
            self._keys(buf.obs),
            buf.actions.cpu().numpy(),
            valid,
            buf.dones.cpu().numpy(),
            buf.episode_starts[:-1].cpu().numpy(),
            self.model.num_timesteps - int(valid.sum()),
        )
        with open(self.folder / TRAJECTORY_FILE, "ab") as f:
            f.write(rows.tobytes())
