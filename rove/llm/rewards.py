"""LLM-preference intrinsic rewards: Motif (offline) and ONI's three variants (online), over captions.

All four read the ``caption`` observation key (``uint8[256]``, see ``rove.envs.core``) of ``s_{t+1}`` and
share the post-processing of Motif (Klissarov et al. 2023) / ONI (Zheng et al. 2024)::

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


def _rows(obs: Any) -> np.ndarray:
    if not isinstance(obs, dict) or CAPTION not in obs:
        raise KeyError(
            f"LLM rewards need the {CAPTION!r} observation key; got keys {list(obs) if isinstance(obs, dict) else 'none'}"
        )
    return np.ascontiguousarray(obs[CAPTION].detach().cpu().numpy().astype(np.uint8, copy=False))


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
    ) -> None:
        if not self.supports(observation_space):
            raise ValueError(
                f"{type(self).__name__} needs a Dict observation space with a {CAPTION!r} key "
                f"(Rove envs: observation_keys=[..., 'caption']); got {observation_space}"
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
        self.cache_size = cache_size
        self._cache: dict[bytes, float] = {}
        self._memory: list[dict[bytes, int]] = []
        self._pending_counts: list[np.ndarray] = []

    @classmethod
    def supports(cls, observation_space: spaces.Space) -> bool:
        return isinstance(observation_space, spaces.Dict) and CAPTION in observation_space.spaces

    # ----- episodic counts -----
    def _observe(self, step: Step) -> None:
        keys = _keys(_rows(step.next_obs))
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
        rows = _rows(rollout.next_obs)  # [T, E, L]
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


def _load_model(model: str | Path | CaptionRewardModel | None, seed: int | None) -> CaptionRewardModel:
    if isinstance(model, CaptionRewardModel):
        return model
    if model is None:
        with seeded(seed):
            return CaptionRewardModel()
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
        self.reward_model = _load_model(reward_model, self.seed).to(self.device)
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
            raw = self.reward_model(torch.as_tensor(captions_to_bytes(captions), device=self.device))
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
        self.invalidate_cache()

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


@register("oni_classification")
class ONIClassification(ONIRetrieval):
    """ONI-classification: a char-CNN classifier distilled from the helpful labels; ``f`` = 1 if
    p(helpful) > 0.5. 0 until the classifier has seen labels.

    Args:
        train_steps: Classifier gradient steps per ``update`` when new labels arrived.
        lr, batch_size: Adam learning rate and minibatch size of those steps.
    """

    trained: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        train_steps: int = 8,
        lr: float = 1e-3,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **kwargs)
        with seeded(self.seed):
            self.classifier = CaptionRewardModel(CaptionModelConfig()).to(self.device)
        self.optimizer = torch.optim.Adam(self.classifier.parameters(), lr=lr)
        self.train_steps = train_steps
        self.batch_size = batch_size
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool, device=self.device))

    def _values(self, captions: list[str]) -> np.ndarray:
        if not bool(self.trained):
            return np.zeros(len(captions), dtype=np.float32)
        self.classifier.eval()
        with torch.no_grad():
            logits = self.classifier(torch.as_tensor(captions_to_bytes(captions), device=self.device))
        return (logits > 0).float().cpu().numpy()

    def _update(self, batch: Transitions) -> dict[str, float]:
        arrived = self._take_answers()
        stats = {"labels": float(len(self.labels)), **self._annotator_stats()}
        known = [(c, y) for c, y in self.labels.items() if y is not None]
        if arrived and known:
            x = torch.as_tensor(captions_to_bytes([c for c, _ in known]), device=self.device)
            y = torch.tensor([y for _, y in known], dtype=torch.float32, device=self.device)
            self.classifier.train()
            loss = torch.zeros(())
            with torch.enable_grad():
                for _ in range(self.train_steps):
                    idx = torch.randint(len(y), (min(self.batch_size, len(y)),), generator=self.generator).to(
                        self.device
                    )
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
    """ONI-ranking: online Motif. Every ``sample_every``-th caption joins a pool; while the annotator's
    queue is short, random pairs from the pool are queued; a Bradley-Terry model trains on the answers
    (unparseable answers count as ties) and is normalised/thresholded over the pool like Motif's.

    Args:
        sample_every: Keep every n-th observed caption in the pool (ONI: 10).
        pool_size: Most unique captions kept in the pool.
        pairs_per_rollout: Pairs queued per ``compute`` while the queue is shorter than ``min_queue``.
        quantile: Threshold quantile of the normalised reward over the pool (None: no threshold).
        train_steps, lr, batch_size: Bradley-Terry gradient steps per ``update`` when new answers arrived (few and
            small: they run in the learner's time, every rollout).
        stats_sample: Pool captions (at most) over which mean/std/threshold are refitted after training.
    """

    task: ClassVar[Task] = "pairs"
    trained: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        sample_every: int = 10,
        pool_size: int = 10_000,
        pairs_per_rollout: int = 100,
        min_queue: int = 100,
        quantile: float | None = 0.5,
        train_steps: int = 4,
        lr: float = 1e-3,
        batch_size: int = 64,
        stats_sample: int = 2048,
        **kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **kwargs)
        if sample_every < 1:
            raise ValueError(f"sample_every must be >= 1, got {sample_every}")
        with seeded(self.seed):
            self.reward_model = CaptionRewardModel().to(self.device)
        self.optimizer = torch.optim.Adam(self.reward_model.parameters(), lr=lr)
        self.sample_every = sample_every
        self.pool_size = pool_size
        self.pairs_per_rollout = pairs_per_rollout
        self.min_queue = min_queue
        self.quantile = quantile
        self.train_steps = train_steps
        self.batch_size = batch_size
        self.stats_sample = stats_sample
        self.pool: list[str] = []
        self._pool_set: set[str] = set()
        self._seen_count = 0
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool, device=self.device))

    def _compute(self, rollout: Rollout) -> torch.Tensor:
        rows = _rows(rollout.next_obs)
        rows = rows.reshape(-1, rows.shape[-1])
        valid = rollout.valid.reshape(-1).cpu().numpy()
        start = (-self._seen_count) % self.sample_every
        for i in range(start, len(rows), self.sample_every):
            if valid[i] and len(self.pool) < self.pool_size:
                text = decode_caption(rows[i])
                if text not in self._pool_set:
                    self._pool_set.add(text)
                    self.pool.append(text)
        self._seen_count += len(rows)
        return super()._compute(rollout)

    def _on_captions(self, captions: list[str]) -> None:
        if self.annotator is None or len(self.pool) < 2 or self.annotator.queue_size >= self.min_queue:
            return
        idx = self.rng.integers(len(self.pool), size=(self.pairs_per_rollout, 2))
        pairs = [(self.pool[i], self.pool[j]) for i, j in idx if i != j]
        self.annotator.submit(pairs)

    def _values(self, captions: list[str]) -> np.ndarray:
        if not bool(self.trained):
            return np.zeros(len(captions), dtype=np.float32)
        self.reward_model.eval()
        with torch.no_grad():
            raw = self.reward_model(torch.as_tensor(captions_to_bytes(captions), device=self.device))
            return self.reward_model.postprocess(raw).cpu().numpy()

    def _update(self, batch: Transitions) -> dict[str, float]:
        arrived = self._take_answers()
        stats = {"pairs": float(len(self.labels)), "pool": float(len(self.pool)), **self._annotator_stats()}
        if not arrived or not self.labels:
            return stats
        pairs = list(self.labels.items())
        a = torch.as_tensor(captions_to_bytes([p[0] for p, _ in pairs]), device=self.device)
        b = torch.as_tensor(captions_to_bytes([p[1] for p, _ in pairs]), device=self.device)
        # ONI: a failed parse is a tie, not a dropped pair.
        y = torch.tensor([0.5 if v is None else v for _, v in pairs], dtype=torch.float32, device=self.device)
        self.reward_model.train()
        loss = torch.zeros(())
        with torch.enable_grad():
            for _ in range(self.train_steps):
                idx = torch.randint(len(y), (min(self.batch_size, len(y)),), generator=self.generator).to(self.device)
                loss = bradley_terry_loss(self.reward_model(a[idx]), self.reward_model(b[idx]), y[idx])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        # ONI's released code skips this; Motif's normalisation and threshold are part of the method.
        pool = self.pool or [c for p, _ in pairs for c in p]
        if len(pool) > self.stats_sample:
            pool = [pool[i] for i in self.rng.choice(len(pool), self.stats_sample, replace=False)]
        fit_stats(self.reward_model, pool, self.quantile)
        self.trained.fill_(True)
        self.invalidate_cache()
        stats["bt_loss"] = float(loss.detach())
        return stats
