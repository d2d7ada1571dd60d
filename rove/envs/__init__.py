"""Rove's environment suite: NetHack, MiniHack, Crafter and MiniGrid behind one interface (see ``core``)."""

from rove.envs.core import (
    CAPTION,
    CAPTION_BYTES,
    STATE_KEY,
    TEXT,
    TEXT_BYTES,
    decode_caption,
    encode_caption,
    encode_text,
)
from rove.envs.noisy_tv import MINIGRID_IMAGE_HIGH, NoisyTV
from rove.envs.registration import check_env_id, register_envs, rove_ids

__all__ = [
    "CAPTION",
    "CAPTION_BYTES",
    "MINIGRID_IMAGE_HIGH",
    "STATE_KEY",
    "TEXT",
    "TEXT_BYTES",
    "NoisyTV",
    "check_env_id",
    "decode_caption",
    "encode_caption",
    "encode_text",
    "make_vec",
    "register_envs",
    "rove_ids",
]


def __getattr__(name: str):
    if name == "make_vec":
        from rove.envs.vector import make_vec

        return make_vec
    raise AttributeError(f"module 'rove.envs' has no attribute {name!r}")
