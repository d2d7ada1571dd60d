"""Character-level CNN reward models over caption bytes (Motif's reward model; ONI's classifier).

Two encoders (``CaptionModelConfig.encoder``):

- ``"lt_cnn"`` (default): Motif's message encoder, ``TorchBeastEncoder`` with ``encoder_msg_model='lt_cnn'``
  in facebookresearch/motif ``rl_baseline/encoders_nle.py``, with the reward head of ``rlaif/reward_model.py``:
  byte embedding (32) → 6 convolutions (64 channels; kernels 7, 7, 3, 3, 3, 3) with 3 max-pools (3/3) over
  ``length`` bytes (Motif: the 256 message bytes) → flatten (320 at 256 bytes) → 128 → 256 → 512 → 1, ReLU
  between. Captions are padded with NUL / cut to ``length``.
- ``"light"``: Rove's smaller model: embedding → ``num_layers`` same-size convolutions → max-pool over the
  caption → MLP → scalar. Positions past a caption's end are masked after every layer, so a caption's
  output never depends on the batch it is scored in, and it reads captions of any length.

Deviation: Motif's lt_cnn needs ``length >= 230`` bytes (its pooling chain); shorter lengths are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from rove.envs.core import CAPTION_BYTES

ENCODERS = ("lt_cnn", "light")


def captions_to_bytes(captions: Sequence[str], length: int = CAPTION_BYTES) -> np.ndarray:
    """``[N, length]`` uint8: each caption's latin-1 bytes (the env's encoding), NUL-padded, cut to ``length``."""
    out = np.zeros((len(captions), length), dtype=np.uint8)
    for i, text in enumerate(captions):
        raw = text.encode("latin-1", errors="replace")[:length]
        out[i, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


@dataclass
class CaptionModelConfig:
    """Sizes of :class:`CaptionRewardModel` (saved with its weights)."""

    encoder: str = "lt_cnn"
    length: int = CAPTION_BYTES
    embed_dim: int = 32
    channels: int = 64
    kernel_size: int = 5
    num_layers: int = 2
    hidden: int = 128

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown caption encoder {self.encoder!r}; choose from {list(ENCODERS)}")
        if self.encoder == "lt_cnn" and _lt_cnn_width(self.length) < 1:
            raise ValueError(f"Motif's lt_cnn needs captions of at least 230 bytes, got length={self.length}")


def _lt_cnn_width(length: int) -> int:
    """Positions left after lt_cnn's convolutions and pools."""
    n = (length - 6) // 3
    n = (n - 6) // 3
    return (n - 8) // 3


class _LtCNN(nn.Module):
    """Motif's lt_cnn message encoder and reward head (see the module docstring)."""

    def __init__(self, length: int) -> None:
        super().__init__()
        edim, hdim = 32, 64
        self.length = length
        self.embed = nn.Embedding(256, edim, padding_idx=0)
        layers: list[nn.Module] = [nn.Conv1d(edim, hdim, 7), nn.ReLU(), nn.MaxPool1d(3, 3)]
        layers += [nn.Conv1d(hdim, hdim, 7), nn.ReLU(), nn.MaxPool1d(3, 3)]
        for _ in range(4):
            layers += [nn.Conv1d(hdim, hdim, 3), nn.ReLU()]
        layers += [nn.MaxPool1d(3, 3), nn.Flatten()]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(hdim * _lt_cnn_width(length), 2 * hdim),
            nn.ReLU(),
            nn.Linear(2 * hdim, 256),
            nn.ReLU(),
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.length:
            x = F.pad(x, (0, self.length - x.shape[1])) if x.shape[1] < self.length else x[:, : self.length]
        return self.head(self.convs(self.embed(x).transpose(1, 2))).squeeze(-1)


class _Light(nn.Module):
    """Rove's light encoder (see the module docstring)."""

    def __init__(self, c: CaptionModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, c.embed_dim, padding_idx=0)
        convs, width = [], c.embed_dim
        for _ in range(c.num_layers):
            convs.append(nn.Conv1d(width, c.channels, c.kernel_size, padding=c.kernel_size // 2))
            width = c.channels
        self.convs = nn.ModuleList(convs)
        self.head = nn.Sequential(nn.Linear(width, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nonzero = x != 0
        # Length = one past the last non-NUL byte (at least 1, so the empty caption has one position).
        positions = torch.arange(x.shape[1], device=x.device)
        length = torch.where(nonzero, positions + 1, 0).amax(dim=1).clamp(min=1)
        keep = int(length.max())
        x = x[:, :keep]
        mask = (positions[:keep][None, :] < length[:, None]).unsqueeze(1).float()  # [N, 1, L]
        h = self.embed(x).transpose(1, 2) * mask
        for conv in self.convs:
            h = F.relu(conv(h)) * mask
        pooled = h.masked_fill(mask == 0, float("-inf")).amax(dim=2)
        return self.head(pooled).squeeze(-1)


class CaptionRewardModel(nn.Module):
    """Scores captions: ``uint8 [N, L]`` NUL-padded bytes → ``float [N]``.

    Buffers ``reward_mean``, ``reward_std`` and ``threshold`` hold Motif's post-processing statistics over
    the caption dataset (see :func:`fit_stats`); a fresh model has 0, 1 and -inf (no threshold).
    """

    reward_mean: torch.Tensor
    reward_std: torch.Tensor
    threshold: torch.Tensor

    def __init__(self, config: CaptionModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or CaptionModelConfig()
        self.net: nn.Module = _LtCNN(self.config.length) if self.config.encoder == "lt_cnn" else _Light(self.config)
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))
        self.register_buffer("threshold", torch.tensor(float("-inf")))

    @property
    def length(self) -> int:
        """Caption bytes the model reads (the light encoder reads any length; this is its default)."""
        return self.config.length

    def forward(self, captions: torch.Tensor) -> torch.Tensor:
        return self.net(captions.to(self.reward_mean.device).long())

    @torch.no_grad()
    def score(self, captions: Sequence[str] | np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Raw outputs for strings or byte rows, ``float32 [N]``."""
        data = captions_to_bytes(captions, self.length) if not isinstance(captions, np.ndarray) else captions
        was_training = self.training
        self.eval()
        out = [self(torch.as_tensor(data[i : i + batch_size])).float().cpu() for i in range(0, len(data), batch_size)]
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def postprocess(self, raw: torch.Tensor) -> torch.Tensor:
        """Motif's normalisation and threshold: ``r̂ = (r - mean)/std``, kept where ``r̂ > threshold`` else 0."""
        r_hat = (raw - self.reward_mean) / self.reward_std
        return torch.where(r_hat > self.threshold, r_hat, torch.zeros_like(r_hat))

    def save(self, path: str | Path) -> None:
        torch.save({"config": asdict(self.config), "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> CaptionRewardModel:
        blob = torch.load(path, map_location=map_location, weights_only=True)
        config = dict(blob["config"])
        state = blob["state_dict"]
        if "encoder" not in config:  # saved before lt_cnn existed: the light model, its keys without "net."
            config["encoder"] = "light"
            state = {k if k.startswith("reward_") or k == "threshold" else f"net.{k}": v for k, v in state.items()}
        model = cls(CaptionModelConfig(**config))
        model.load_state_dict(state)
        return model


@torch.no_grad()
def fit_stats(
    model: CaptionRewardModel,
    captions: Sequence[str],
    quantile: float | None = 0.5,
    observations: Sequence[str] | None = None,
) -> None:
    """Sets the model's mean/std and threshold (Motif §3, post-processing; ``scripts/train_reward.py``).

    Mean and std are taken over ``observations``, every caption *with its multiplicity* (Motif: the
    running mean/var over every message of the training pairs, so frequent messages weigh more); without
    ``observations``, over ``captions``. The threshold is the ``quantile`` of the normalised rewards over the
    *unique* ``captions`` (Motif: over its message set; median by default); ``None`` disables it.
    """
    if quantile is not None and not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1] or None, got {quantile}")
    unique = sorted(set(captions))
    if not unique:
        return
    raw = torch.as_tensor(model.score(unique), dtype=torch.float32)
    if observations is not None and len(observations) > 0:
        # Score each distinct caption once and weigh it by its count: the same numbers as scoring every observation.
        counts: dict[str, int] = {}
        for text in observations:
            counts[text] = counts.get(text, 0) + 1
        texts = list(counts)
        values = torch.as_tensor(model.score(texts), dtype=torch.float64)
        weights = torch.as_tensor([counts[t] for t in texts], dtype=torch.float64)
        mean = (weights * values).sum() / weights.sum()
        std = ((weights * (values - mean) ** 2).sum() / weights.sum()).sqrt()
    else:
        mean, std = raw.double().mean(), raw.double().std(unbiased=False)
    std = std.clamp(min=1e-6)
    model.reward_mean.fill_(float(mean))
    model.reward_std.fill_(float(std))
    threshold = torch.quantile((raw - float(mean)) / float(std), quantile) if quantile is not None else float("-inf")
    model.threshold.fill_(float(threshold))


@dataclass
class TrainReport:
    """Outcome of a training run; ``val_accuracy`` counts held-out pairs (or captions) ranked correctly."""

    train_loss: float
    val_loss: float
    val_accuracy: float
    num_train: int
    num_val: int


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    num_val = round(n * val_fraction) if n > 1 else 0
    return order[num_val:], order[:num_val]


def bradley_terry_loss(r1: torch.Tensor, r2: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``softmax([r1, r2])`` against ``[label, 1 - label]`` (label 0.5 = tie)."""
    logp = F.log_softmax(torch.stack([r1, r2], dim=-1), dim=-1)
    return -(label * logp[..., 0] + (1 - label) * logp[..., 1]).mean()


def _fit(
    model: nn.Module,
    train_idx: np.ndarray,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    desc: str,
    progress: bool,
) -> float:
    """Adam over shuffled minibatches of ``train_idx`` for ``epochs``; returns the last epoch's mean loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    train_loss = float("nan")
    bar = tqdm(range(epochs), desc=desc, disable=not progress)
    for _ in bar:
        order = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        losses = []
        for start in range(0, len(order), batch_size):
            loss = batch_loss(order[start : start + batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        train_loss = float(np.mean(losses)) if losses else float("nan")
        bar.set_postfix(loss=f"{train_loss:.4f}")
    return train_loss


def train_preferences(
    model: CaptionRewardModel,
    captions_1: np.ndarray,
    captions_2: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 10,
    lr: float = 1e-5,
    batch_size: int = 1024,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> TrainReport:
    """Trains a Bradley-Terry reward model on preference pairs (Motif: Adam, lr 1e-5, batch 1024, 10 epochs,
    80/20 split).

    Args:
        captions_1, captions_2: ``uint8 [N, L]`` caption bytes.
        labels: ``float [N]``, P(caption 1 is better): 1, 0 or 0.5 (tie).

    Returns:
        Losses and held-out accuracy over non-tie pairs.
    """
    a, b, y = (torch.as_tensor(np.asarray(v)) for v in (captions_1, captions_2, labels))
    y = y.float()
    train_idx, val_idx = _split(len(y), val_fraction, seed)
    device = next(model.parameters()).device
    train_loss = _fit(
        model,
        train_idx,
        lambda idx: bradley_terry_loss(model(a[idx].to(device)), model(b[idx].to(device)), y[idx].to(device)),
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, desc="reward model", progress=progress,
    )  # fmt: skip
    val_loss, val_acc = evaluate_preferences(model, a[val_idx], b[val_idx], y[val_idx])
    return TrainReport(train_loss, val_loss, val_acc, len(train_idx), len(val_idx))


@torch.no_grad()
def evaluate_preferences(
    model: CaptionRewardModel, captions_1: torch.Tensor, captions_2: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """Bradley-Terry loss and the fraction of non-tie pairs ranked the labelled way (NaN if none)."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    model.eval()
    r1 = torch.as_tensor(model.score(np.asarray(captions_1)))
    r2 = torch.as_tensor(model.score(np.asarray(captions_2)))
    labels = torch.as_tensor(labels).float()
    loss = float(bradley_terry_loss(r1, r2, labels))
    decided = labels != 0.5
    if not bool(decided.any()):
        return loss, float("nan")
    correct = (r1 > r2)[decided] == (labels > 0.5)[decided]
    return loss, float(correct.float().mean())


def train_classifier(
    model: CaptionRewardModel,
    captions: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 256,
    val_fraction: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> TrainReport:
    """Trains the helpful/not classifier (ONI-classification): binary cross-entropy on the output logit."""
    x = torch.as_tensor(np.asarray(captions))
    y = torch.as_tensor(np.asarray(labels)).float()
    train_idx, val_idx = _split(len(y), val_fraction, seed)
    device = next(model.parameters()).device
    train_loss = _fit(
        model,
        train_idx,
        lambda idx: F.binary_cross_entropy_with_logits(model(x[idx].to(device)), y[idx].to(device)),
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, desc="classifier", progress=progress,
    )  # fmt: skip
    if len(val_idx) == 0:
        return TrainReport(train_loss, float("nan"), float("nan"), len(train_idx), 0)
    logits = torch.as_tensor(model.score(x[val_idx].numpy()))
    val_loss = float(F.binary_cross_entropy_with_logits(logits, y[val_idx]))
    val_acc = float(((logits > 0).float() == y[val_idx]).float().mean())
    return TrainReport(train_loss, val_loss, val_acc, len(train_idx), len(val_idx))
