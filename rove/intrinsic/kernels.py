"""Numba kernels for exact counting and hashing, each beside a plain NumPy/Python reference.

Count-based bonuses need two things per transition: a 64-bit key for the state, and the number of times
that key has been seen. Both are cheap in compiled code and slow in Python (a dict counts 4-6M keys/s,
the open-addressing table here 100M+ on one core), so they live here:

- :func:`hash_rows` maps each row of a ``uint8 [N, B]`` array (an observation's raw bytes) to an int64;
  :func:`hash_rows_reference` computes the same values with vectorised NumPy.
- :class:`CountTable` is a growable open-addressing hash table ``int64 key -> count``;
  :func:`count_keys_reference` is the Python-dict equivalent.
- :class:`EpisodicCountTables` holds one table per env, cleared at episode ends, counting a ``[T, E]``
  block in time order; :func:`count_episodic_reference` is the dict equivalent.

Counting order is sequential (time-major): the n-th occurrence of a key in the input gets count n.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SEED = np.uint64(0x243F6A8885A308D3)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


# ----- hashing -----
@numba.njit(cache=True, inline="always")
def _mix64(z: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a bijection on uint64 with good avalanche (every input bit flips ~half the output)."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def _as_words(rows: np.ndarray) -> np.ndarray:
    """``uint8 [N, B]`` -> ``uint64 [N, ceil(B/8)]`` (zero-padded), the unit both hash versions consume."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-d uint8 array [N, B], got shape {rows.shape}")
    n, b = rows.shape
    pad = (-b) % 8
    if pad:
        rows = np.concatenate([rows, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    return rows.view(np.uint64).reshape(n, -1)


@numba.njit(cache=True)
def _hash_words(words: np.ndarray, nbytes: int, out: np.ndarray) -> None:
    n, w = words.shape
    start = _SEED ^ np.uint64(nbytes)
    for i in range(n):
        h = start
        for j in range(w):
            h = _mix64(h ^ words[i, j])
        out[i] = h


def hash_rows(rows: np.ndarray) -> np.ndarray:
    """64-bit hash of each row's bytes.

    Args:
        rows: ``uint8 [N, B]``, e.g. observations viewed as raw bytes.

    Returns:
        ``int64 [N]``; equal rows give equal keys, different rows collide with probability ~2^-64.
    """
    words = _as_words(rows)
    out = np.empty(words.shape[0], dtype=np.uint64)
    _hash_words(words, rows.shape[1], out)
    return out.view(np.int64)


def hash_rows_reference(rows: np.ndarray) -> np.ndarray:
    """NumPy version of :func:`hash_rows` (same values), vectorised over rows."""
    words = _as_words(rows)
    h = np.full(words.shape[0], _SEED ^ np.uint64(rows.shape[1]), dtype=np.uint64)
    for j in range(words.shape[1]):
        z = h ^ words[:, j]
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        h = z ^ (z >> _S31)
    return h.view(np.int64)


def obs_bytes(obs: Any, batch_dims: int = 1, skip: tuple[str, ...] = ()) -> np.ndarray:
    """Raw bytes of each observation as ``uint8 [N, B]`` (dict leaves concatenated in sorted-key order)."""
    leaves = [obs[k] for k in sorted(obs) if k not in skip] if isinstance(obs, dict) else [obs]
    if not leaves:
        raise ValueError(f"no observation keys left to hash after skipping {skip}")
    parts = []
    for leaf in leaves:
        arr = leaf.detach().cpu().numpy() if isinstance(leaf, torch.Tensor) else np.asarray(leaf)
        n = int(np.prod(arr.shape[:batch_dims]))
        parts.append(np.ascontiguousarray(arr).reshape(n, -1).view(np.uint8).reshape(n, -1))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


# ----- counting -----
@numba.njit(cache=True)
def _count_into(
    keys: np.ndarray,
    counts: np.ndarray,
    used: np.ndarray,
    queries: np.ndarray,
    out: np.ndarray,
    start: int,
    size: int,
    max_size: int,
) -> tuple[int, int]:
    """Increments each query's count in order (linear probing) and writes the new count.

    Stops before a new key would push the table past ``max_size`` keys; returns ``(next query, size)``.
    """
    mask = np.uint64(keys.shape[0] - 1)
    for i in range(start, queries.shape[0]):
        q = queries[i]
        slot = _mix64(q) & mask
        while used[slot] and keys[slot] != q:
            slot = (slot + np.uint64(1)) & mask
        if not used[slot]:
            if size >= max_size:
                return i, size
            used[slot] = True
            keys[slot] = q
            counts[slot] = 0
            size += 1
        counts[slot] += 1
        out[i] = counts[slot]
    return queries.shape[0], size


@numba.njit(cache=True)
def _lookup(keys: np.ndarray, counts: np.ndarray, used: np.ndarray, queries: np.ndarray, out: np.ndarray) -> None:
    mask = np.uint64(keys.shape[0] - 1)
    for i in range(queries.shape[0]):
        q = queries[i]
        slot = _mix64(q) & mask
        while used[slot] and keys[slot] != q:
            slot = (slot + np.uint64(1)) & mask
        out[i] = counts[slot] if used[slot] else 0


@numba.njit(cache=True)
def _insert_all(
    keys: np.ndarray, counts: np.ndarray, used: np.ndarray, new_keys: np.ndarray, new_counts: np.ndarray
) -> None:
    """Inserts distinct keys with given counts (rehashing after growth, or loading a state dict)."""
    mask = np.uint64(keys.shape[0] - 1)
    for i in range(new_keys.shape[0]):
        q = new_keys[i]
        slot = _mix64(q) & mask
        while used[slot] and keys[slot] != q:
            slot = (slot + np.uint64(1)) & mask
        used[slot] = True
        keys[slot] = q
        counts[slot] = new_counts[i]


def _capacity_for(n: float, max_load: float) -> int:
    cap = 16
    while cap * max_load < n:
        cap *= 2
    return cap


class CountTable:
    """Growable open-addressing hash table of int64 keys -> int64 counts, in NumPy arrays.

    Args:
        capacity: Initial number of slots (rounded up to a power of two).
        max_load: The table doubles before more than this fraction of slots would be used.
    """

    def __init__(self, capacity: int = 1024, max_load: float = 0.5) -> None:
        if not 0.0 < max_load < 1.0:
            raise ValueError(f"max_load must be in (0, 1), got {max_load}")
        self.max_load = max_load
        self._allocate(_capacity_for(capacity * max_load, max_load))
        self.size = 0

    def _allocate(self, capacity: int) -> None:
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.counts = np.zeros(capacity, dtype=np.int64)
        self.used = np.zeros(capacity, dtype=np.bool_)

    @property
    def capacity(self) -> int:
        return int(self.keys.shape[0])

    def _reserve(self, extra: int) -> None:
        needed = self.size + extra
        if needed <= self.capacity * self.max_load:
            return
        old_keys, old_counts = self.keys[self.used], self.counts[self.used]
        self._allocate(_capacity_for(needed, self.max_load))
        _insert_all(self.keys, self.counts, self.used, old_keys, old_counts)

    def increment(self, queries: np.ndarray) -> np.ndarray:
        """Counts ``queries`` (``int64 [N]``) in order; returns each one's count after its own visit."""
        queries = np.ascontiguousarray(queries, dtype=np.int64).view(np.uint64)
        out = np.empty(queries.shape[0], dtype=np.int64)
        done = 0
        while True:
            # Grows only when new keys actually arrive (reserving for "all queries new" would allocate
            # and zero a table sized for the batch, which costs more than counting it).
            done, self.size = _count_into(
                self.keys, self.counts, self.used, queries, out, done, self.size, int(self.capacity * self.max_load)
            )
            if done == queries.shape[0]:
                return out
            self._reserve(max(self.size, 1))

    def lookup(self, queries: np.ndarray) -> np.ndarray:
        """Current counts of ``queries`` (0 for unseen keys), without counting them."""
        queries = np.ascontiguousarray(queries, dtype=np.int64).view(np.uint64)
        out = np.empty(queries.shape[0], dtype=np.int64)
        _lookup(self.keys, self.counts, self.used, queries, out)
        return out

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored ``(keys int64 [K], counts int64 [K])``."""
        return self.keys[self.used].view(np.int64), self.counts[self.used].copy()

    def load(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """Replaces the contents by distinct ``keys`` with their ``counts``."""
        keys = np.ascontiguousarray(keys, dtype=np.int64).view(np.uint64)
        self._allocate(_capacity_for(max(keys.shape[0], 1), self.max_load))
        _insert_all(self.keys, self.counts, self.used, keys, np.ascontiguousarray(counts, dtype=np.int64))
        self.size = int(keys.shape[0])

    def clear(self) -> None:
        self.used[:] = False
        self.size = 0

    def __len__(self) -> int:
        return self.size


def count_keys_reference(table: dict[int, int], queries: np.ndarray) -> np.ndarray:
    """Python-dict version of :meth:`CountTable.increment` (mutates ``table``)."""
    out = np.empty(len(queries), dtype=np.int64)
    for i, q in enumerate(queries.tolist()):
        table[q] = table.get(q, 0) + 1
        out[i] = table[q]
    return out


@numba.njit(cache=True)
def _count_episodic(
    keys: np.ndarray,
    counts: np.ndarray,
    used: np.ndarray,
    sizes: np.ndarray,
    queries: np.ndarray,
    valid: np.ndarray,
    dones: np.ndarray,
    out: np.ndarray,
) -> None:
    num_steps, num_envs = queries.shape
    mask = np.uint64(keys.shape[1] - 1)
    for t in range(num_steps):
        for e in range(num_envs):
            if not valid[t, e]:
                # Autoreset step: next_obs opens a new episode (and is not a visit the agent acted for).
                if sizes[e] > 0:
                    used[e, :] = False
                    sizes[e] = 0
                out[t, e] = 0
                continue
            q = queries[t, e]
            slot = _mix64(q) & mask
            while used[e, slot] and keys[e, slot] != q:
                slot = (slot + np.uint64(1)) & mask
            if not used[e, slot]:
                used[e, slot] = True
                keys[e, slot] = q
                counts[e, slot] = 0
                sizes[e] += 1
            counts[e, slot] += 1
            out[t, e] = counts[e, slot]
            if dones[t, e]:
                used[e, :] = False
                sizes[e] = 0


class EpisodicCountTables:
    """One count table per env, cleared at episode ends (``E`` is fixed by the first call).

    A transition's ``next_obs`` is a visit of its episode when ``valid``; the table is cleared after a
    ``done`` step and on an autoreset (``valid == False``) step, which is itself not counted (count 0).
    """

    def __init__(self, capacity: int = 256, max_load: float = 0.5) -> None:
        self.max_load = max_load
        self.initial = _capacity_for(capacity * max_load, max_load)
        self.num_envs = 0
        self._allocate(0, self.initial)

    def _allocate(self, num_envs: int, capacity: int) -> None:
        self.keys = np.zeros((num_envs, capacity), dtype=np.uint64)
        self.counts = np.zeros((num_envs, capacity), dtype=np.int64)
        self.used = np.zeros((num_envs, capacity), dtype=np.bool_)
        self.sizes = np.zeros(num_envs, dtype=np.int64)
        self.num_envs = num_envs

    def _reserve(self, num_envs: int, extra: int) -> None:
        if num_envs != self.num_envs:
            if self.num_envs != 0:
                raise ValueError(f"episodic tables were built for {self.num_envs} envs, got a batch of {num_envs}")
            self._allocate(num_envs, self.initial)
        capacity = self.keys.shape[1]
        needed = int(self.sizes.max(initial=0)) + extra
        if needed <= capacity * self.max_load:
            return
        old = [(self.keys[e][self.used[e]], self.counts[e][self.used[e]]) for e in range(num_envs)]
        sizes = self.sizes.copy()
        self._allocate(num_envs, _capacity_for(needed, self.max_load))
        for e, (k, c) in enumerate(old):
            _insert_all(self.keys[e], self.counts[e], self.used[e], k, c)
        self.sizes = sizes

    def increment(self, queries: np.ndarray, valid: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Counts ``queries [T, E]`` in time order within each env's episode; returns counts ``[T, E]``."""
        queries = np.ascontiguousarray(queries, dtype=np.int64).view(np.uint64)
        num_steps, num_envs = queries.shape
        self._reserve(num_envs, num_steps)
        out = np.empty((num_steps, num_envs), dtype=np.int64)
        _count_episodic(
            self.keys,
            self.counts,
            self.used,
            self.sizes,
            queries,
            np.ascontiguousarray(valid, dtype=np.bool_),
            np.ascontiguousarray(dones, dtype=np.bool_),
            out,
        )
        return out

    def reset(self) -> None:
        """Forgets every episode (e.g. when the agent resets all envs)."""
        self._allocate(0, self.initial)


def count_episodic_reference(
    tables: list[dict[int, int]], queries: np.ndarray, valid: np.ndarray, dones: np.ndarray
) -> np.ndarray:
    """Python-dict version of :meth:`EpisodicCountTables.increment` (``tables``: one dict per env)."""
    out = np.zeros(queries.shape, dtype=np.int64)
    for t in range(queries.shape[0]):
        for e in range(queries.shape[1]):
            if not valid[t, e]:
                tables[e].clear()
                continue
            q = int(queries[t, e])
            tables[e][q] = tables[e].get(q, 0) + 1
            out[t, e] = tables[e][q]
            if dones[t, e]:
                tables[e].clear()
    return out
