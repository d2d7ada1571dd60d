"""Observation encoders shared by policies and intrinsic modules, chosen from the observation space.

Each encoder maps a batch of observations ``[N, ...]`` (a tensor or a dict of tensors, raw dtypes as the
env returns them) to features ``[N, features_dim]``. :func:`make_encoder` picks one per suite:

- MiniGrid (``image`` of shape ``(V, V, 3)`` with small integer codes): embedded grid CNN + direction.
- Crafter and other pixel images (``(H, W, C)`` uint8 with H >= 32): the Nature CNN.
- NetHack (``glyphs`` and ``blstats``): glyph embeddings around the agent and over the full map,
  blstats MLP, and message bytes (``message`` or ``caption``).
- Any other Box: an MLP on the flattened values (dicts: one per key, concatenated).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rove.obs import TensorObs, network_keys

NLE_MAX_GLYPH = 5976  # nle.nethack.MAX_GLYPH; hard-coded so that encoders import without nle
MINIGRID_CODES = 16  # MiniGrid's object, colour and state codes are all below this


class Encoder(nn.Module):
    features_dim: int


class MLPEncoder(Encoder):
    def __init__(
        self, space: spaces.Box, features_dim: int = 256, hidden: int = 256, activation: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__()
        self.features_dim = features_dim
        in_dim = int(torch.tensor(space.shape).prod()) if space.shape else 1
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_dim, hidden), activation(), nn.Linear(hidden, features_dim), activation()
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float().reshape(obs.shape[0], -1))


class PixelEncoder(Encoder):
    """Nature-DQN CNN on ``(H, W, C)`` images divided by ``scale`` (255: uint8 pixels to [0, 1]; RND passes 1
    for inputs it has already whitened, and LeakyReLU as in its paper)."""

    def __init__(
        self,
        space: spaces.Box,
        features_dim: int = 256,
        scale: float = 255.0,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.features_dim = features_dim
        self.scale = scale
        assert space.shape is not None
        h, w, c = space.shape
        self.cnn = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), activation(),
            nn.Conv2d(32, 64, 4, stride=2), activation(),
            nn.Conv2d(64, 64, 3, stride=1), activation(),
            nn.Flatten(),
        )  # fmt: skip
        with torch.no_grad():
            n = self.cnn(torch.zeros(1, c, h, w)).shape[1]
        self.head = nn.Sequential(nn.Linear(n, features_dim), activation())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / self.scale
        return self.head(self.cnn(x))


class MiniGridEncoder(Encoder):
    """Embeds MiniGrid's (object, colour, state) codes per cell, then a small CNN; adds the direction."""

    def __init__(self, space: spaces.Dict | spaces.Box, features_dim: int = 256, embed_dim: int = 8) -> None:
        super().__init__()
        self.features_dim = features_dim
        image_space = space["image"] if isinstance(space, spaces.Dict) else space
        self.use_direction = isinstance(space, spaces.Dict) and "direction" in space.spaces
        assert isinstance(image_space, spaces.Box)
        v, _, c = image_space.shape
        self.embed = nn.Embedding(c * MINIGRID_CODES, embed_dim)
        self.register_buffer("offsets", torch.arange(c) * MINIGRID_CODES, persistent=False)
        self.cnn = nn.Sequential(
            nn.Conv2d(c * embed_dim, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveMaxPool2d(4 if v >= 4 else v), nn.Flatten(),
        )  # fmt: skip
        pooled = 64 * (4 if v >= 4 else v) ** 2
        self.direction_embed = nn.Embedding(4, 8) if self.use_direction else None
        self.head = nn.Sequential(nn.Linear(pooled + (8 if self.use_direction else 0), features_dim), nn.ReLU())

    def forward(self, obs: TensorObs) -> torch.Tensor:
        image = obs["image"] if isinstance(obs, dict) else obs
        offsets: torch.Tensor = self.offsets  # type: ignore[assignment]
        codes = image.long().clamp(0, MINIGRID_CODES - 1) + offsets  # [N, V, V, C]
        # weight.index_select is nn.Embedding's lookup with an index_add backward: the embedding's own backward
        # sorts the indices first, which made the whole encoder's forward + backward 10% slower on CPU.
        vectors = self.embed.weight.index_select(0, codes.reshape(-1))
        x = vectors.reshape(*codes.shape[:3], -1).permute(0, 3, 1, 2)  # [N, C*embed, V, V]
        feats = self.cnn(x)
        if self.direction_embed is not None:
            assert isinstance(obs, dict)
            feats = torch.cat([feats, self.direction_embed(obs["direction"].long().reshape(-1) % 4)], dim=1)
        return self.head(feats)


def crop_glyphs(glyphs: torch.Tensor, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, size, size]`` int64 glyphs centred on (x, y); cells off the map get the extra id ``NLE_MAX_GLYPH``.

    Positions are clamped onto the map first. On the CPU a numba kernel copies the window cells one by one (one
    pass, no index tensors: ~7x faster than the torch ops for 1,024 maps, ~4x for a policy step's 8); elsewhere :func:`crop_glyphs_torch` gathers them.
    """
    if glyphs.device.type != "cpu":
        return crop_glyphs_torch(glyphs, x, y, size)
    out = torch.empty((glyphs.shape[0], size, size), dtype=torch.int64)
    _crop_into(glyphs.contiguous().numpy(), x.long().numpy(), y.long().numpy(), size, NLE_MAX_GLYPH, out.numpy())
    return out


@numba.njit(cache=True)
def _crop_into(glyphs: np.ndarray, x: np.ndarray, y: np.ndarray, size: int, fill: int, out: np.ndarray) -> None:
    # Written out in one loop nest: factoring the bounds test into inlined helpers made numba's code 15x slower.
    n, h, w = glyphs.shape
    r = size // 2
    for i in range(n):
        top = min(max(y[i], 0), h - 1) - r
        left = min(max(x[i], 0), w - 1) - r
        for a in range(size):
            row = top + a
            for b in range(size):
                col = left + b
                out[i, a, b] = glyphs[i, row, col] if 0 <= row < h and 0 <= col < w else fill


def crop_glyphs_torch(glyphs: torch.Tensor, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`crop_glyphs` in torch ops, on any device (the numba kernel's reference).

    Gathers ``size**2`` cells per row instead of padding the whole map (padding copies every glyph), on the
    map's own dtype: only the crop is converted to int64, not the 21x79 map.
    """
    n, h, w = glyphs.shape
    offs = torch.arange(size, device=glyphs.device) - size // 2
    rows = y.long().clamp(0, h - 1)[:, None, None] + offs[None, :, None]  # [N, size, 1]
    cols = x.long().clamp(0, w - 1)[:, None, None] + offs[None, None, :]  # [N, 1, size]
    inside = ((rows >= 0) & (rows < h)) & ((cols >= 0) & (cols < w))  # [N, size, 1] & [N, 1, size]: one full-size op
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).reshape(n, -1)
    crop = glyphs.reshape(n, -1).gather(1, index).reshape(n, size, size).long()
    return crop.masked_fill_(~inside, NLE_MAX_GLYPH)


class NetHackEncoder(Encoder):
    """Glyph embeddings in a crop around the agent and over the whole map, blstats, and message bytes."""

    def __init__(self, space: spaces.Dict, features_dim: int = 256, embed_dim: int = 16, crop: int = 9) -> None:
        super().__init__()
        self.features_dim = features_dim
        self.crop = crop
        self.message_key = (
            "message" if "message" in space.spaces else ("caption" if "caption" in space.spaces else None)
        )
        self.glyph_embed = nn.Embedding(NLE_MAX_GLYPH + 1, embed_dim)
        self.crop_cnn = nn.Sequential(
            nn.Conv2d(embed_dim, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
        )  # fmt: skip
        self.map_cnn = nn.Sequential(
            nn.Conv2d(embed_dim, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveMaxPool2d((3, 10)), nn.Flatten(),
        )  # fmt: skip
        blstats_shape = space["blstats"].shape
        assert blstats_shape is not None
        n_blstats = blstats_shape[0]
        self.blstats_mlp = nn.Sequential(nn.Linear(n_blstats, 64), nn.ReLU())
        msg_dim = 0
        if self.message_key is not None:
            self.char_embed = nn.Embedding(256, 16)
            self.msg_cnn = nn.Sequential(
                nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten()
            )
            msg_dim = 32
        total = 32 * crop * crop + 32 * 3 * 10 + 64 + msg_dim
        self.head = nn.Sequential(nn.Linear(total, features_dim), nn.ReLU())

    def forward(self, obs: TensorObs) -> torch.Tensor:
        assert isinstance(obs, dict)
        glyphs = obs["glyphs"].long()
        blstats = obs["blstats"].float()
        x, y = obs["blstats"][:, 0].long(), obs["blstats"][:, 1].long()
        crop = self.glyph_embed(crop_glyphs(glyphs, x, y, self.crop)).permute(0, 3, 1, 2)
        full = self.glyph_embed(glyphs).permute(0, 3, 1, 2)
        parts = [
            self.crop_cnn(crop),
            self.map_cnn(full),
            self.blstats_mlp(torch.sign(blstats) * torch.log1p(blstats.abs())),
        ]
        if self.message_key is not None:
            chars = self.char_embed(obs[self.message_key].long()).permute(0, 2, 1)
            parts.append(self.msg_cnn(chars))
        return self.head(torch.cat(parts, dim=1))


class DictEncoder(Encoder):
    """Fallback for dict spaces no suite encoder knows: one encoder per network key, concatenated."""

    def __init__(self, space: spaces.Dict, features_dim: int = 256) -> None:
        super().__init__()
        self.features_dim = features_dim
        self.keys = [k for k in network_keys(space) if k != "caption"]
        if not self.keys:
            raise ValueError(f"no encodable keys in observation space {space}")
        self.encoders = nn.ModuleDict({k: make_encoder(space[k], 64) for k in self.keys})
        self.head = nn.Sequential(nn.Linear(64 * len(self.keys), features_dim), nn.ReLU())

    def forward(self, obs: TensorObs) -> torch.Tensor:
        assert isinstance(obs, dict)
        return self.head(torch.cat([self.encoders[k](obs[k]) for k in self.keys], dim=1))


class DiscreteEncoder(Encoder):
    def __init__(self, space: spaces.Discrete, features_dim: int = 64) -> None:
        super().__init__()
        self.features_dim = features_dim
        self.embed = nn.Embedding(int(space.n), features_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.embed(obs.long().reshape(-1))


def _is_pixels(space: spaces.Space) -> bool:
    return (
        isinstance(space, spaces.Box)
        and len(space.shape) == 3
        and space.shape[0] >= 32
        and space.shape[-1] in (1, 3, 4)
    )


def _is_minigrid_image(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.shape[0] < 32 and space.shape[-1] == 3


def suite_of(space: spaces.Space) -> str:
    """Names the encoder family for a space: ``nethack``, ``minigrid``, ``pixels``, ``dict`` or ``box``."""
    if isinstance(space, spaces.Dict):
        if "glyphs" in space.spaces and "blstats" in space.spaces:
            return "nethack"
        if "image" in space.spaces and _is_minigrid_image(space["image"]):
            return "minigrid"
        if "image" in space.spaces and _is_pixels(space["image"]):
            return "pixels"
        return "dict"
    if _is_pixels(space):
        return "pixels"
    if isinstance(space, spaces.Discrete):
        return "discrete"
    if isinstance(space, spaces.Box):
        return "box"
    raise TypeError(f"no encoder for observation space {space}; supported: Box, Discrete and Dict of them")


class ImageKeyEncoder(Encoder):
    """Applies a pixel encoder to the ``image`` key of a dict observation (e.g. Crafter)."""

    def __init__(self, space: spaces.Dict, features_dim: int = 256, activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.features_dim = features_dim
        image_space = space["image"]
        assert isinstance(image_space, spaces.Box)
        self.pixels = PixelEncoder(image_space, features_dim, activation=activation)

    def forward(self, obs: TensorObs) -> torch.Tensor:
        assert isinstance(obs, dict)
        return self.pixels(obs["image"])


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log(1 + |x|)`` as float32: compresses blstats' wide ranges (gold, turn counter) for a network."""
    x = x.float()
    return torch.sign(x) * torch.log1p(x.abs())


class CodeEncoder(Encoder):
    """Base of the light encoders: per-position code embeddings and dense extras, then one linear layer + ReLU.

    The work splits in two so that modules can share and reuse the parameter-free part:

    - :meth:`preprocess` (no parameters): observations -> ``{"codes": int64 [N, P], "dense": float32 [N, D]}``
      (``codes`` index :attr:`table`; ``D`` may be 0). RND's target and predictor share it; modules that
      train on several minibatches compute it once per rollout and index it.
    - :meth:`encode_codes`: that dict -> features ``[N, features_dim]``.

    The embedding is looked up with ``weight.index_select``: same values and gradients as ``nn.Embedding``,
    but its backward is an ``index_add`` (``embedding_dense_backward`` sorts the indices: ~3x slower on CPU).
    Subclasses build :attr:`table` and ``head`` (a linear layer + ReLU on ``P * embed_dim + D`` inputs).
    """

    head: nn.Module

    @property
    def table(self) -> nn.Embedding:
        raise NotImplementedError

    def preprocess(self, obs: TensorObs) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_codes(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"codes": [N, P], "dense": [N, D]}`` -> ``[N, features_dim]``."""
        codes, dense = x["codes"], x["dense"]
        vectors = self.table.weight.index_select(0, codes.reshape(-1)).reshape(codes.shape[0], -1)
        return self.head(torch.cat([vectors, dense], dim=1) if dense.shape[1] else vectors)

    def forward(self, obs: TensorObs) -> torch.Tensor:
        return self.encode_codes(self.preprocess(obs))


class MiniGridLightEncoder(CodeEncoder):
    """A cheap MiniGrid encoder for intrinsic modules: per-cell code embeddings, flattened, one linear layer."""

    def __init__(
        self,
        space: spaces.Dict | spaces.Box,
        features_dim: int = 128,
        embed_dim: int = 4,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.features_dim = features_dim
        image_space = space["image"] if isinstance(space, spaces.Dict) else space
        assert isinstance(image_space, spaces.Box) and image_space.shape is not None
        v, w, c = image_space.shape
        self.embed = nn.Embedding(c * MINIGRID_CODES, embed_dim)
        self.register_buffer("offsets", torch.arange(c) * MINIGRID_CODES, persistent=False)
        self.use_direction = isinstance(space, spaces.Dict) and "direction" in space.spaces
        in_dim = v * w * c * embed_dim + (4 if self.use_direction else 0)
        self.head = nn.Sequential(nn.Linear(in_dim, features_dim), activation())

    @property
    def table(self) -> nn.Embedding:
        return self.embed

    def preprocess(self, obs: TensorObs) -> dict[str, torch.Tensor]:
        """Codes ``[N, V*V*C]`` (channel c offset by ``16 c``) and the one-hot direction ``[N, 4]`` (or ``[N, 0]``)."""
        image = obs["image"] if isinstance(obs, dict) else obs
        offsets: torch.Tensor = self.offsets  # type: ignore[assignment]
        codes = (image.long().clamp(0, MINIGRID_CODES - 1) + offsets).flatten(1)
        if self.use_direction:
            assert isinstance(obs, dict)
            dense = nn.functional.one_hot(obs["direction"].long().reshape(-1) % 4, 4).float()
        else:
            dense = codes.new_zeros(codes.shape[0], 0, dtype=torch.float32)
        return {"codes": codes, "dense": dense}


class NetHackLightEncoder(CodeEncoder):
    """A cheap NetHack encoder for intrinsic modules: glyph embeddings in a crop around the agent + blstats.

    The full 21x79 map and the message are left out: embedding them costs several times an env step on CPU.
    ``embed_dim`` is 4 per glyph (as the MiniGrid light encoder per code): the linear layer over the
    ``crop * crop * embed_dim`` embedded cells is the largest matmul of every NetHack intrinsic module, and
    8 dims made it twice as costly.
    """

    def __init__(
        self,
        space: spaces.Dict,
        features_dim: int = 128,
        embed_dim: int = 4,
        crop: int = 9,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.features_dim = features_dim
        self.crop = crop
        self.glyph_embed = nn.Embedding(NLE_MAX_GLYPH + 1, embed_dim)
        blstats_shape = space["blstats"].shape
        assert blstats_shape is not None
        self.head = nn.Sequential(nn.Linear(crop * crop * embed_dim + blstats_shape[0], features_dim), activation())

    @property
    def table(self) -> nn.Embedding:
        return self.glyph_embed

    def preprocess(self, obs: TensorObs) -> dict[str, torch.Tensor]:
        """The glyph crop ``[N, crop*crop]`` and signed-log blstats ``[N, B]``."""
        assert isinstance(obs, dict)
        blstats = obs["blstats"]
        crop = crop_glyphs(obs["glyphs"], blstats[:, 0], blstats[:, 1], self.crop)
        return {"codes": crop.flatten(1), "dense": signed_log(blstats)}


def preprocess(encoder: nn.Module, obs: TensorObs) -> TensorObs:
    """The parameter-free part of ``encoder`` (:meth:`CodeEncoder.preprocess`); other encoders: ``obs`` as is."""
    return encoder.preprocess(obs) if isinstance(encoder, CodeEncoder) else obs


def encode_preprocessed(encoder: nn.Module, x: TensorObs) -> torch.Tensor:
    """Finishes :func:`preprocess`: ``encoder(obs) == encode_preprocessed(encoder, preprocess(encoder, obs))``."""
    return encoder.encode_codes(x) if isinstance(encoder, CodeEncoder) else encoder(x)  # type: ignore[arg-type]


def make_encoder(
    space: spaces.Space, features_dim: int = 256, light: bool = False, activation: type[nn.Module] = nn.ReLU
) -> Encoder:
    """Builds the encoder for ``space`` (see the module docstring for the choice).

    ``light=True`` picks cheaper MiniGrid and NetHack encoders (intrinsic modules use them: their networks run on
    every transition and must cost well under an env step). ``activation`` is the nonlinearity of the light,
    pixel and MLP encoders (the inverse-dynamics modules pass ``nn.ELU``: see
    :class:`rove.intrinsic.dynamics.InverseDynamics`); the other encoders keep ReLU.
    """
    suite = suite_of(space)
    if suite == "nethack":
        assert isinstance(space, spaces.Dict)
        if light:
            return NetHackLightEncoder(space, features_dim, activation=activation)
        return NetHackEncoder(space, features_dim)
    if suite == "minigrid":
        if light:
            return MiniGridLightEncoder(space, features_dim, activation=activation)  # type: ignore[arg-type]
        return MiniGridEncoder(space, features_dim)  # type: ignore[arg-type]
    if suite == "pixels":
        if isinstance(space, spaces.Dict):
            return ImageKeyEncoder(space, features_dim, activation=activation)
        assert isinstance(space, spaces.Box)
        return PixelEncoder(space, features_dim, activation=activation)
    if suite == "dict":
        return DictEncoder(space, features_dim)  # type: ignore[arg-type]
    if suite == "discrete":
        return DiscreteEncoder(space, features_dim)  # type: ignore[arg-type]
    return MLPEncoder(space, features_dim, activation=activation)  # type: ignore[arg-type]
