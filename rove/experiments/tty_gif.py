"""Frames for ``rove eval --gif`` from envs that cannot render pixels: NetHack's 24x80 terminal
(``tty_chars``/``tty_colors``) drawn with PIL's default font, in the 16 terminal colours NetHack uses.

Glyphs are rendered once per character into a small atlas; a frame is then one gather and one multiply in
NumPy, so recording costs little next to the env step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

TTY_KEYS = ("tty_chars", "tty_colors")
# NetHack's colour numbers (include/color.h: CLR_BLACK .. CLR_WHITE; 8 = NO_COLOR, bright from 9) as RGB.
# CLR_BLACK is drawn dark blue-grey, as terminals that show NetHack's black on black do.
PALETTE = np.array(
    [
        [85, 85, 120],  # black
        [170, 0, 0],  # red
        [0, 170, 0],  # green
        [170, 85, 0],  # brown
        [0, 0, 170],  # blue
        [170, 0, 170],  # magenta
        [0, 170, 170],  # cyan
        [170, 170, 170],  # grey
        [128, 128, 128],  # no colour
        [255, 85, 85],  # orange (bright red)
        [85, 255, 85],  # bright green
        [255, 255, 85],  # yellow
        [85, 85, 255],  # bright blue
        [255, 85, 255],  # bright magenta
        [85, 255, 255],  # bright cyan
        [255, 255, 255],  # white
    ],
    dtype=np.float32,
)


@lru_cache(maxsize=1)
def glyph_atlas() -> np.ndarray:
    """``float32 [256, cell_h, cell_w]`` coverage of each byte's character in PIL's default font (0..1)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    printable = [chr(c) for c in range(32, 127)]
    cell_w = int(max(math.ceil(font.getlength(ch)) for ch in printable))  # the advance: a terminal's cell width
    cell_h = int(max(font.getbbox(ch)[3] for ch in printable)) + 2
    atlas = np.zeros((256, cell_h, cell_w), dtype=np.float32)
    for code in range(33, 127):
        image = Image.new("L", (cell_w, cell_h))
        ImageDraw.Draw(image).text((0, 0), chr(code), fill=255, font=font)
        atlas[code] = np.asarray(image, dtype=np.float32) / 255.0
    return atlas


def tty_frame(chars: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """An RGB image ``uint8 [24 * cell_h, 80 * cell_w, 3]`` of a terminal (``chars``/``colors`` ``[rows, cols]``)."""
    atlas = glyph_atlas()
    rows, cols = chars.shape
    _, cell_h, cell_w = atlas.shape
    coverage = atlas[np.asarray(chars, dtype=np.uint8)]  # [rows, cols, h, w]
    rgb = PALETTE[np.asarray(colors, dtype=np.int64) & 15]  # [rows, cols, 3]
    image = coverage[..., None] * rgb[:, :, None, None, :]  # [rows, cols, h, w, 3]
    return image.transpose(0, 2, 1, 3, 4).reshape(rows * cell_h, cols * cell_w, 3).astype(np.uint8)


class FrameSource:
    """Where ``rove eval --gif`` takes frames from: the env's ``rgb_array`` render, or its terminal observation.

    Build with :meth:`make`; then ``env`` is the env to play and ``frame(obs)`` one RGB frame.
    ``added_keys`` are the observation keys added for the frames (not the agent's: a space check skips them).
    """

    def __init__(self, env: Any, from_tty: bool, added_keys: tuple[str, ...] = ()) -> None:
        self.env = env
        self.from_tty = from_tty
        self.added_keys = added_keys

    @classmethod
    def make(cls, env_id: str, env_kwargs: Mapping[str, Any]) -> FrameSource:
        """An env that can give frames: ``render_mode="rgb_array"`` where the env has it, else (NetHack) the
        same env with ``tty_chars``/``tty_colors`` added to its observation keys (the agent ignores them).

        Raises:
            ValueError: The env has neither.
        """
        import gymnasium as gym

        probe = gym.make(env_id, **env_kwargs)
        modes = probe.metadata.get("render_modes", [])
        keys = list(getattr(probe.observation_space, "spaces", {}))
        probe.close()
        if "rgb_array" in modes:
            return cls(gym.make(env_id, render_mode="rgb_array", **env_kwargs), from_tty=False)
        if env_id.split("/")[-1].startswith("NetHack"):
            extra = tuple(k for k in TTY_KEYS if k not in keys)
            env = gym.make(env_id, **{**env_kwargs, "observation_keys": [*keys, *extra]})
            return cls(env, from_tty=True, added_keys=extra)
        raise ValueError(f"{env_id} renders neither RGB frames nor a terminal (render modes: {modes})")

    def frame(self, obs: Any) -> np.ndarray:
        if self.from_tty:
            return tty_frame(obs["tty_chars"], obs["tty_colors"])
        return np.asarray(self.env.render())
