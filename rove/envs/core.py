"""The common interface every Rove environment follows.

Every Rove env is a :class:`gymnasium.Env` with a ``Dict`` observation space. Besides the suite's own keys
(NetHack's ``glyphs``/``blstats``/..., MiniGrid's ``image``/``direction``, Crafter's ``image``) two keys
are shared by all suites, and computed only when asked for in ``observation_keys``:

``caption``
    ``uint8[CAPTION_BYTES]``: a short English description of what just happened (NetHack's message
    line; for MiniGrid and Crafter, sentences written by the wrapper from events), NUL-padded latin-1
    bytes so that vector envs can batch it. The same text is always in ``info["caption"]``.
``state_key``
    ``int64[1]``: an exact (or hashed) key of the agent's situation for count-based bonuses
    (NetHack/MiniHack dungeon+level+position, MiniGrid the whole grid state+pose+carried object, Crafter
    position+inventory).
``text``
    ``uint8[TEXT_BYTES]`` (4096): a description in words of what the agent perceives now (NetHack/MiniHack:
    message, nearby monsters/objects/features with direction and distance, status line, inventory; Crafter:
    visible materials and creatures, inventory, vitals; MiniGrid: mission and visible objects), NUL-padded
    latin-1 bytes, truncated to 4096 bytes. The full string is in ``info["text"]``. Computed only when asked for.

At the end of an episode ``info["episode"]`` holds ``{"r": return, "l": length, ...}`` plus the suite's
own metrics (Crafter achievements, NetHack score/depth/end reason, MiniGrid success).

An env may also implement :class:`BufferedEnv`, a fast path that Rove's vector env uses when it finds it on
an env with no wrapper of its own: the env writes its observations straight into the vector env's batch
arrays and returns only what the vector env batches (NetHack's adapter has nle fill those arrays itself).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, SupportsFloat

import numpy as np
from gymnasium import spaces

CAPTION_BYTES = 256
TEXT_BYTES = 4096
CAPTION = "caption"
STATE_KEY = "state_key"
TEXT = "text"
ROVE_KEYS = (CAPTION, STATE_KEY, TEXT)


# (reward, terminated, truncated, info["caption"], info.get("episode")) of one buffered step.
BufferedStep = tuple[SupportsFloat, bool, bool, str, "dict[str, Any] | None"]


class BufferedEnv(Protocol):
    """A Gymnasium env that can step straight into a vector env's batch arrays (optional, for speed).

    ``attach_buffers(rows)`` hands the env one writable array per observation key: its row of the batch
    (``rows[key]`` has the shape and dtype of ``observation_space[key]``). If it returns True, then
    ``step_into``/``reset_into`` write the whole observation into those arrays and return what ``step``/
    ``reset`` would put in the reward, flags and info, with exactly the semantics of ``step``/``reset``;
    ``step``/``reset`` keep working. If it returns False (e.g. the env cannot write into foreign arrays
    any more) nothing changed and the caller copies observations itself.
    """

    def attach_buffers(self, rows: dict[str, np.ndarray]) -> bool: ...

    def step_into(self, action: Any) -> BufferedStep: ...

    def reset_into(self, seed: int | None = None, options: dict[str, Any] | None = None) -> str: ...


def caption_space() -> spaces.Box:
    return spaces.Box(0, 255, shape=(CAPTION_BYTES,), dtype=np.uint8)


def text_space() -> spaces.Box:
    return spaces.Box(0, 255, shape=(TEXT_BYTES,), dtype=np.uint8)


def encode_text(text: str) -> np.ndarray:
    """``text`` as a fresh NUL-padded ``uint8[TEXT_BYTES]`` array of latin-1 bytes (truncated to ``TEXT_BYTES``)."""
    out = np.zeros(TEXT_BYTES, dtype=np.uint8)
    raw = text.encode("latin-1", errors="replace")[:TEXT_BYTES]
    out[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def state_key_space() -> spaces.Box:
    info = np.iinfo(np.int64)
    return spaces.Box(info.min, info.max, shape=(1,), dtype=np.int64)


def encode_caption(text: str, out: np.ndarray | None = None) -> np.ndarray:
    """Writes ``text`` as NUL-padded latin-1 bytes (truncated to ``CAPTION_BYTES``) into ``out``."""
    if out is None:
        out = np.zeros(CAPTION_BYTES, dtype=np.uint8)
    raw = text.encode("latin-1", errors="replace")[:CAPTION_BYTES]
    out[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    out[len(raw) :] = 0
    return out


def decode_caption(buf: np.ndarray | bytes) -> str:
    """Inverse of :func:`encode_caption`; also decodes NetHack's raw ``message`` array."""
    return bytes(buf).rstrip(b"\0").decode("latin-1")


def decode_captions(batch: np.ndarray) -> list[str]:
    """Decodes a ``[..., CAPTION_BYTES]`` array into a flat list of strings."""
    flat = np.asarray(batch).reshape(-1, batch.shape[-1])
    return [decode_caption(row) for row in flat]


def resolve_observation_keys(
    requested: Iterable[str] | None, available: Sequence[str], default: Sequence[str], env_name: str
) -> tuple[str, ...]:
    """Validates a user's ``observation_keys`` against what the env can compute."""
    if requested is None:
        return tuple(default)
    if isinstance(requested, str):
        raise TypeError(f"{env_name}: observation_keys must be a sequence of names, got the string {requested!r}")
    keys = tuple(requested)
    if not keys:
        raise ValueError(f"{env_name}: observation_keys is empty; choose from {list(available)}")
    for key in keys:
        if key not in available:
            close = difflib.get_close_matches(key, available, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(f"{env_name}: unknown observation key {key!r}.{hint} Available keys: {list(available)}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{env_name}: observation_keys has duplicates: {list(keys)}")
    return keys


def check_discrete_action(action: Any, n: int, env_name: str) -> int:
    """Returns ``action`` as an int or raises a ValueError naming it and the valid range."""
    try:
        index = int(action)
    except (TypeError, ValueError):
        raise ValueError(f"{env_name}: invalid action {action!r}; expected an integer in [0, {n})") from None
    if index != action or not 0 <= index < n:
        raise ValueError(f"{env_name}: invalid action {action!r}; expected an integer in [0, {n})")
    return index


class EpisodeTracker:
    """Accumulates return and length; ``finish`` returns the ``info["episode"]`` dict."""

    __slots__ = ("length", "ret")

    def __init__(self) -> None:
        self.ret = 0.0
        self.length = 0

    def reset(self) -> None:
        self.ret = 0.0
        self.length = 0

    def add(self, reward: float) -> None:
        self.ret += reward
        self.length += 1

    def finish(self, **metrics: Any) -> dict[str, Any]:
        return {"r": self.ret, "l": self.length, **metrics}


def compass_offset(dx: int, dy: int) -> str:
    """An offset in words, north up (``dy < 0``): ``"2 east, 1 north"``; ``"here"`` for (0, 0) (text views)."""
    parts = []
    if dx:
        parts.append(f"{abs(dx)} {'east' if dx > 0 else 'west'}")
    if dy:
        parts.append(f"{abs(dy)} {'south' if dy > 0 else 'north'}")
    return ", ".join(parts) if parts else "here"
