"""LLM-preference intrinsic rewards: Motif (offline) and ONI's three variants (online), over captions.

All four read the ``caption`` observation key (``uint8[256]``, see ``rove.envs.core``; or any other
NUL-padded ``uint8[L]`` key with ``caption_key=``) of ``s_{t+1}`` and share the post-processing of Motif
(Klissarov et al. 2023) / ONI (Zheng et al. 2024)::

    r_int(s_{t+1}) = f(caption) / N_ep(caption) ** beta        (beta = 3)

with ``N_ep`` the *exact* number of times this caption was seen in the current episode so far (counted
in ``observe``; reset at episode ends). ``f`` is, per module:

- ``motif``: a trained Bradley-Terry reward model, normalised by the dataset mean/std and zeroed below a
  quantile threshold (median) — :meth:`MotifReward.from_pretrained` or ``reward_model=path``;
- ``oni_retrieval``: the LLM's helpful (1) / not (0) label, 0 until labelled;
- ``oni_classification``: 1 if a char-CNN classifier distilled from those labels gives p(helpful) > 0.5;
- ``oni_ranking``: online Motif — a Bradley-Terry model trained on pairs annotated in the background
  (failed parses are ties), *with* the normalisation and threshold that ONI's released code forgets.

Built with no arguments (``rove.intrinsic.make("oni_retrieval", obs_space, act_space)``) a module has an
untrained model / an empty label table and no annotator: its reward is 0 (ONI) or the untrained model's.
ONI modules run online when given ``annotator=`` (or ``backend=`` to build one); the agent never waits for
it: captions are queued in ``compute`` and answers are taken in ``update``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from rove.envs.core import CAPTION, decode_caption
from rove.intrinsic.base import IntrinsicModule, Normalization, seeded
from rove.intrinsic.registry import register
from rove.intrinsic.schedules import Schedule
from rove.intrinsic.types import Rollout, Step, Transitions
from rove.llm.annotator import Annotator, Task
from rove.llm.backends import Backend
from rove.llm.prompts import check_prompt_choices
from rove.llm.reward_model import (
    CaptionModelConfig,
    CaptionRewardModel,
    bradley_terry_loss,
    captions_to_bytes,
    fit_stats,
)
from rove.llm.store import AnnotationStore


def count_episodic(keys: Sequence[Sequence[bytes]], dones: np.ndarray, memory: list[dict[bytes, int]]) -> np.ndarray:
    """Exact episodic counts of each step's caption, *including* the current occurrence.

    Args:
        keys: ``[T][E]`` caption keys of ``s_{t+1}``.
        dones: ``[T, E]`` bool, the episode ended at ``s_{t+1}``: its memory is cleared after counting.
        memory: One ``{caption: count}`` per env, updated in place (carried across rollouts).

    Returns:
        ``int64 [T, E]``, each >= 1.
    """
    num_steps = len(keys)
    num_envs = len(memory)
    out = np.ones((num_steps, num_envs), dtype=np.int64)
    for t in range(num_steps):
        for e in range(num_envs):
            key = keys[t][e]
            n = memory[e].get(key, 0) + 1
            memory[e][key] = n
            out[t, e] = n
            if dones[t, e]:
                memory[e].clear()
    return out


def _rows(obs: Any, key: str = CAPTION) -> np.ndarray:
    if not isinstance(obs, dict) or key not in obs:
        raise KeyError(
            f"LLM rewards need the {key!r} observation key; got keys {list(obs) if isinstance(obs, dict) else 'none'}"
        )
    return np.ascontiguousarray(obs[key].detach().cpu().numpy().astype(np.uint8, copy=False))


def _is_text_space(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 1


def _keys(rows: np.ndarray) -> list[bytes]:
    """One hashable key per caption row (``[N, L]`` uint8), NUL padding stripped."""
    return [r.tobytes().rstrip(b"\0") for r in rows]


class CaptionReward(IntrinsicModule):
    """Shared machinery: caption extraction, exact episodic counts, a per-caption value cache.

    Subclasses implement :meth:`_values` (caption texts → ``f`` values).

    Args:
        beta: Exponent of the episodic-count division (3 in Motif and ONI; 0 disables it).
        normalize: Defaults to ``"none"``: ``f`` is already normalised (Motif) or binary (ONI).
        cache_size: Captions whose value is kept between rollouts (cleared when the model changes).
        caption_key: The observation key holding the text: any ``uint8[L]`` NUL-padded key (``"caption"``,
            or a longer text view such as ``"text"``); its length ``L`` is the reward model's input length.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        beta: float = 3.0,
        coef: float | Schedule = 1.0,
        normalize: Normalization = "none",
        gamma: float = 0.99,
        update_proportion: float = 1.0,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        cache_size: int = 100_000,
        caption_key: str = CAPTION,
    ) -> None:
        if not (
            isinstance(observation_space, spaces.Dict)
            and caption_key in observation_space.spaces
            and _is_text_space(observation_space.spaces[caption_key])
        ):
            raise ValueError(
                f"{type(self).__name__} needs a Dict observation space with a uint8[L] {caption_key!r} key "
                f"(Rove envs: observation_keys=[..., {caption_key!r}]); got {observation_space}"
            )
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        super().__init__(
            observation_space,
            action_space,
            coef=coef,
            normalize=normalize,
            gamma=gamma,
            update_proportion=update_proportion,
            device=device,
            seed=seed,
        )
        self.beta = float(beta)
        self.caption_key = caption_key
        self.text_length = int(observation_space.spaces[caption_key].shape[0])  # type: ignore[index]
        self.cache_size = cache_size
        self._cache: dict[bytes, float] = {}
        self._memory: list[dict[bytes, int]] = []
        self._pending_counts: list[np.ndarray] = []

    @classmethod
    def supports(cls, observation_space: spaces.Space) -> bool:
        """A Dict space with one of Rove's text keys (``caption``, ``text``: ``uint8[L]``); a module built
        directly may read any other such key (``caption_key=``)."""
        return isinstance(observation_space, spaces.Dict) and any(
            _is_text_space(observation_space.spaces[k]) for k in (CAPTION, "text") if k in observation_space.spaces
        )

    # ----- episodic counts -----
    def _observe(self, step: Step) -> None:
        keys = _keys(_rows(step.next_obs, self.caption_key))
        if len(self._memory) != len(keys):
            self._memory = [{} for _ in keys]
        dones = (step.dones & step.valid).cpu().numpy()[None]
        self._pending_counts.append(count_episodic([keys], dones, self._memory)[0])
        # Bounded: an agent that observes without computing must not grow this forever.
        del self._pending_counts[:-100_000]

    def _episodic_counts(self, rollout: Rollout, keys: list[list[bytes]]) -> np.ndarray:
        num_steps, num_envs = rollout.num_steps, rollout.num_envs
        if len(self._pending_counts) >= num_steps and self._pending_counts[-1].shape == (num_envs,):
            counts = np.stack(self._pending_counts[-num_steps:])
            self._pending_counts.clear()
            return counts
        # compute() without observe(): count within this rollout alone, leaving the episodic memory untouched.
        dones = (rollout.dones & rollout.valid).cpu().numpy()
        return count_episodic(keys, dones, [{} for _ in range(num_envs)])

    # ----- reward -----
    def _compute(self, rollout: Rollout) -> torch.Tensor:
        rows = _rows(rollout.next_obs, self.caption_key)  # [T, E, L]
        num_steps, num_envs = rows.shape[:2]
        flat_keys = _keys(rows.reshape(num_steps * num_envs, -1))
        keys = [flat_keys[t * num_envs : (t + 1) * num_envs] for t in range(num_steps)]
        unique = list(dict.fromkeys(flat_keys))
        missing = [k for k in unique if k not in self._cache]
        self._on_captions([k.decode("latin-1") for k in unique])
        if missing:
            values = self._values([k.decode("latin-1") for k in missing])
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, (float(v) for v in values), strict=True))
        value = np.array([self._cache[k] for k in flat_keys], dtype=np.float32).reshape(num_steps, num_envs)
        counts = self._episodic_counts(rollout, keys).astype(np.float32)
        reward = value / counts**self.beta
        return torch.as_tensor(reward, device=self.device)

    def _values(self, captions: list[str]) -> np.ndarray:
        """``f`` of each caption text, ``float [N]``."""
        raise NotImplementedError

    def _on_captions(self, captions: list[str]) -> None:
        """Sees the rollout's unique captions (ONI queues unseen ones for annotation)."""

    def invalidate_cache(self) -> None:
        self._cache.clear()

    def _encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Caption texts as ``uint8 [N, text_length]`` on the module's device."""
        return torch.as_tensor(captions_to_bytes(captions, self.text_length), device=self.device)


def _load_model(
    model: str | Path | CaptionRewardModel | None, seed: int | None, length: int = 256
) -> CaptionRewardModel:
    if isinstance(model, CaptionRewardModel):
        return model
    if model is None:
        with seeded(seed):
            return CaptionRewardModel(CaptionModelConfig(length=max(length, 256)))
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"reward model file {str(path)!r} not found (train one with `rove llm train`)")
    return CaptionRewardModel.load(path)


@register("motif")
class MotifReward(CaptionReward):
    """Motif's intrinsic reward from a Bradley-Terry model of an LLM's caption preferences.

    Reward of ``s_{t+1}``: ``postprocess(r(caption)) / N_ep(caption)^beta`` (Klissarov et al. 2023, Eq. 2 and
    §3). Motif's RL reward is ``0.1 * r_int + c_ext * r_env``: pass ``coef=0.1``.

    Args:
        reward_model: A trained :class:`CaptionRewardModel` or the path of one saved by ``rove llm train``
            (its normalisation statistics and threshold come with it). None: an untrained model.
        **kwargs: See :class:`CaptionReward` and :class:`~rove.intrinsic.IntrinsicModule`.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        reward_model: str | Path | CaptionRewardModel | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **kwargs)
        self.reward_model = _load_model(reward_model, self.seed, self.text_length).to(self.device)
        self.reward_model.requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any
    ) -> MotifReward:
        """Loads the reward model saved at ``path``."""
        return cls(observation_space, action_space, reward_model=path, **kwargs)

    def _values(self, captions: list[str]) -> np.ndarray:
        self.reward_model.eval()
        with torch.no_grad():
            raw = self.reward_model(self._encode(captions))
            return self.reward_model.postprocess(raw).cpu().numpy()

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self.invalidate_cache()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class _OnlineReward(CaptionReward):
    """An ONI module: optional background annotator and a ``{caption: label}`` table filled by it."""

    task: ClassVar[Task] = "helpful"

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        annotator: Annotator | None = None,
        backend: Backend | dict[str, Any] | str | None = None,
        store: AnnotationStore | str | None = None,
        game: str = "nethack",
        goal: str = "default",
        prompt_style: str = "rove",
        annotation_batch_size: int = 100,
        **kwargs: Any,
    ) -> None:
        check_prompt_choices(game, goal, prompt_style)
        super().__init__(observation_space, action_space, **kwargs)
        if annotator is None and backend is not None:
            annotator = Annotator(
                backend,
                store,
                task=self.task,
                game=game,
                goal=goal,
                style=prompt_style,
                batch_size=annotation_batch_size,
            )
        if annotator is not None and annotator.task != self.task:
            raise ValueError(
                f"{type(self).__name__} needs an annotator with task={self.task!r}, got {annotator.task!r}"
            )
        self.annotator = annotator
        self.labels: dict[Any, float | None] = {}

    def _take_answers(self) -> int:
        """Moves answers from the annotator into ``labels``; returns how many arrived."""
        if self.annotator is None:
            return 0
        answers = self.annotator.poll()
        self.labels.update(answers)
        return len(answers)

    def get_extra_state(self) -> Any:
        return {"labels": dict(self.labels)}

    def set_extra_state(self, state: Any) -> None:
        self.labels = dict(state.get("labels", {}))
        self._forget_examples()
        self.invalidate_cache()

    def _forget_examples(self) -> None:
        """Drops encoded training examples (rebuilt from ``labels`` at the next update)."""
        for name in ("_examples", "_a", "_b"):
            if hasattr(self, name):
                setattr(self, name, _Rows(self.text_length, self.device))
        if hasattr(self, "_trained_on"):
            self._trained_on: set[Any] = set()

    def on_learn_end(self) -> None:
        """Called by the agent when ``learn`` returns or raises: the annotator takes no new batch (the one in
        flight ends within the backend's deadline; the next rollout's captions resume it)."""
        if self.annotator is not None:
            self.annotator.pause()

    def close(self) -> None:
        """Stops the background annotator (if any) for good."""
        if self.annotator is not None:
            self.annotator.close()

    def _annotator_stats(self) -> dict[str, float]:
        return {} if self.annotator is None else self.annotator.stats()


@register("oni_retrieval")
class ONIRetrieval(_OnlineReward):
    """ONI-retrieval: ``f(caption)`` = the LLM's helpful label (1 / 0), 0 until labelled or when unknown.

    Args:
        annotator: A running :class:`~rove.llm.annotator.Annotator` (``task="helpful"``).
        backend: Or a backend (config) to start one, with ``store`` (a path) for persistence.
    """

    def _on_captions(self, captions: list[str]) -> None:
        if self.annotator is not None:
            self.annotator.submit(c for c in captions if c not in self.labels)

    def _values(self, captions: list[str]) -> np.ndarray:
        return np.array([self.labels.get(c) or 0.0 for c in captions], dtype=np.float32)

    def _update(self, batch: Transitions) -> dict[str, float]:
        if self._take_answers():
            self.invalidate_cache()
        return {"labels": float(len(self.labels)), **self._annotator_stats()}


class _Rows:
    """Training examples encoded once, as they arrive (an update never re-encodes old labels)."""

    def __init__(self, width: int, device: torch.device) -> None:
        self.chunks: list[torch.Tensor] = []
        self.labels: list[float] = []
        self.width, self.device = width, device
        self._data: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, rows: np.ndarray, labels: Sequence[float]) -> None:
        if len(labels):
            self.chunks.append(torch.as_tensor(rows, device=self.device))
            self.labels.extend(float(y) for y in labels)
            self._data = self._y = None

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._data is None or self._y is None:
            self._data = torch.cat(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
            self.chunks = [self._data]
            self._y = torch.tensor(self.labels, dtype=torch.float32, device=self.device)
        return self._data, self._y


def _minibatches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``steps`` minibatches of indices into ``n`` examples, each a fresh shuffle (as ONI's DataLoader)."""
    return [torch.randperm(n, generator=generator)[: min(batch_size, n)] for _ in range(steps)]


@register("oni_classification")
class ONIClassification(ONIRetrieval):
    """ONI-classification: a char-CNN classifier distilled from the helpful labels; ``f`` = 1 if
    p(helpful) > 0.5. 0 until the classifier has seen labels.

    ONI's schedule (facebookresearch/oni ``learner.py``, ``scripts/main.py``): when a batch of labels
    arrives and fewer than ``max_labels`` (25k) are held, ``train_steps`` (32) Adam steps (lr 1e-4) on
    minibatches of ``batch_size`` (256); a failed parse counts as label 0 (ONI's ``get_cls_label``). New
    labels are encoded once when they arrive.

    Deviations: ONI's classifier is an MLP (512, 512, dropout 0.1) on its message encoding; Rove uses the
    caption model of :mod:`rove.llm.reward_model` (``encoder=``) with a logit output.

    Args:
        train_steps: Classifier gradient steps per arrived label batch.
        lr, batch_size: Adam learning rate and minibatch size of those steps.
        max_labels: No more training once this many labels are held.
        encoder: ``"lt_cnn"`` or ``"light"``.
    """

    trained: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        train_steps: int = 32,
        lr: float = 1e-4,
        batch_size: int = 256,
        max_labels: int = 25_000,
        encoder: str = "lt_cnn",
        **kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **kwargs)
        with seeded(self.seed):
            config = CaptionModelConfig(encoder=encoder, length=max(self.text_length, 256))
            self.classifier = CaptionRewardModel(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.classifier.parameters(), lr=lr)
        self.train_steps = train_steps
        self.batch_size = batch_size
        self.max_labels = max_labels
        self._examples = _Rows(self.text_length, self.device)
        self._trained_on: set[Any] = set()
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool, device=self.device))

    def _values(self, captions: list[str]) -> np.ndarray:
        if not bool(self.trained):
            return np.zeros(len(captions), dtype=np.float32)
        self.classifier.eval()
        with torch.no_grad():
            logits = self.classifier(self._encode(captions))
        return (logits > 0).float().cpu().numpy()

    def _update(self, batch: Transitions) -> dict[str, float]:
        arrived = self._take_answers()
        stats = {"labels": float(len(self.labels)), **self._annotator_stats()}
        new = [c for c in self.labels if c not in self._trained_on]
        self._trained_on.update(new)
        # ONI: a failed parse (None) is label 0.
        self._examples.add(captions_to_bytes(new, self.text_length), [self.labels[c] or 0.0 for c in new])
        if not arrived or not len(self._examples) or len(self._examples) > self.max_labels:
            return stats
        x, y = self._examples.tensors()
        self.classifier.train()
        loss = torch.zeros(())
        with torch.enable_grad():
            for idx in _minibatches(len(y), self.batch_size, self.train_steps, self.generator):
                idx = idx.to(self.device)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(self.classifier(x[idx]), y[idx])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        self.trained.fill_(True)
        self.invalidate_cache()
        stats["classifier_loss"] = float(loss.detach())
        return stats


@register("oni_ranking")
class ONIRanking(_OnlineReward):
    """ONI-ranking: online Motif (facebookresearch/oni ``learner.py``, ``online_motif``).

    Every ``sample_every``-th observation (ONI: 10) joins the pool *with duplicates* (kept as counts, so
    memory grows with the unique captions only and there is no cap): pairs drawn from it follow the
    observation frequency. While the annotator's queue is short, random pairs are queued; when answers
    arrive and fewer than ``max_pairs`` (25k) are held, a Bradley-Terry model takes ``train_steps`` (32)
    Adam steps (lr 1e-4, minibatches of 256, gradient norm clipped at 10) on every answered pair; failed
    parses count as ties. New pairs are encoded once, when they arrive.

    Deviation (a fix): ONI's released code forgets Motif's normalisation and threshold; here the model is
    normalised by the mean/std over the pool's observations (with duplicates) and thresholded at the
    ``quantile`` of its unique captions, as Motif does.

    Args:
        sample_every: Keep every n-th observation in the pool.
        pairs_per_rollout: Pairs queued per ``compute`` while the queue is shorter than ``min_queue``.
        quantile: Threshold quantile over the pool's unique captions (None: no threshold).
        train_steps, lr, batch_size, max_pairs: ONI's update schedule (above).
        stats_sample: Pool observations (drawn by frequency, at most) over which mean/std/threshold are refitted.
        encoder: ``"lt_cnn"`` (Motif's) or ``"light"``.
    """

    task: ClassVar[Task] = "pairs"
    trained: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        sample_every: int = 10,
        pairs_per_rollout: int = 100,
        min_queue: int = 100,
        quantile: float | None = 0.5,
        train_steps: int = 32,
        lr: float = 1e-4,
        batch_size: int = 256,
        max_pairs: int = 25_000,
        stats_sample: int = 4096,
        encoder: str = "lt_cnn",
        **kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **kwargs)
        if sample_every < 1:
            raise ValueError(f"sample_every must be >= 1, got {sample_every}")
        with seeded(self.seed):
            config = CaptionModelConfig(encoder=encoder, length=max(self.text_length, 256))
            self.reward_model = CaptionRewardModel(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.reward_model.parameters(), lr=lr)
        self.sample_every = sample_every
        self.pairs_per_rollout = pairs_per_rollout
        self.min_queue = min_queue
        self.quantile = quantile
        self.train_steps = train_steps
        self.batch_size = batch_size
        self.max_pairs = max_pairs
        self.stats_sample = stats_sample
        self.pool: dict[str, int] = {}  # every sample_every-th observation, as counts
        self._seen_count = 0
        self._a = _Rows(self.text_length, self.device)
        self._b = _Rows(self.text_length, self.device)
        self._trained_on: set[Any] = set()
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool, device=self.device))

    @property
    def pool_observations(self) -> int:
        """Observations in the pool, duplicates included."""
        return sum(self.pool.values())

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        rows = _rows(rollout.next_obs, self.caption_key)
        rows = rows.reshape(-1, rows.shape[-1])
        valid = rollout.valid.reshape(-1).cpu().numpy()
        start = (-self._seen_count) % self.sample_every
        for i in range(start, len(rows), self.sample_every):
            if valid[i]:
                text = decode_caption(rows[i])
                self.pool[text] = self.pool.get(text, 0) + 1
        self._seen_count += len(rows)
        return super()._compute(rollout)

    def _draw(self, size: int) -> list[str]:
        """Pool captions drawn by frequency (the same as drawing observations, duplicates included)."""
        texts = list(self.pool)
        counts = np.fromiter(self.pool.values(), dtype=np.float64, count=len(texts))
        return [texts[i] for i in self.rng.choice(len(texts), size=size, p=counts / counts.sum())]

    def _on_captions(self, captions: list[str]) -> None:
        if self.annotator is None or len(self.pool) < 2 or self.annotator.queue_size >= self.min_queue:
            return
        drawn = self._draw(2 * self.pairs_per_rollout)
        pairs = [(a, b) for a, b in zip(drawn[::2], drawn[1::2], strict=True) if a != b]
        self.annotator.submit(pairs)

    def _values(self, captions: list[str]) -> np.ndarray:
        if not bool(self.trained):
            return np.zeros(len(captions), dtype=np.float32)
        self.reward_model.eval()
        with torch.no_grad():
            raw = self.reward_model(self._encode(captions))
            return self.reward_model.postprocess(raw).cpu().numpy()

    def _update(self, batch: Transitions) -> dict[str, float]:
        arrived = self._take_answers()
        stats = {
            "pairs": float(len(self.labels)),
            "pool": float(len(self.pool)),
            "pool_observations": float(self.pool_observations),
            **self._annotator_stats(),
        }
        new = [p for p in self.labels if p not in self._trained_on]
        self._trained_on.update(new)
        # ONI: a failed parse is a tie, not a dropped pair.
        ys = [0.5 if self.labels[p] is None else float(self.labels[p]) for p in new]  # type: ignore[arg-type]
        self._a.add(captions_to_bytes([p[0] for p in new], self.text_length), ys)
        self._b.add(captions_to_bytes([p[1] for p in new], self.text_length), ys)
        if not arrived or not len(self._a) or len(self._a) > self.max_pairs:
            return stats
        a, y = self._a.tensors()
        b, _ = self._b.tensors()
        self.reward_model.train()
        loss = torch.zeros(())
        with torch.enable_grad():
            for idx in _minibatches(len(y), self.batch_size, self.train_steps, self.generator):
                idx = idx.to(self.device)
                loss = bradley_terry_loss(self.reward_model(a[idx]), self.reward_model(b[idx]), y[idx])
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.reward_model.parameters(), 10.0)
                self.optimizer.step()
        # ONI's released code skips this; Motif's normalisation and threshold are part of the method.
        observations = self._draw(self.stats_sample) if self.pool else [c for p in new for c in p]
        fit_stats(self.reward_model, observations, self.quantile, observations=observations)
        self.trained.fill_(True)
        self.invalidate_cache()
        stats["bt_loss"] = float(loss.detach())
        return stats
