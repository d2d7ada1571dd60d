"""Motif's offline pipeline, one function per step: collect captions → queue pairs → annotate → train.

Training the agent is ``rove train``'s job: pass ``intrinsic="motif", intrinsic_kwargs={"reward_model": path}``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from rove.llm.backends import Backend, RequestError, ServerError, make_backend
from rove.llm.captions import CaptionDataset, collect_captions
from rove.llm.judge import judge_pairs
from rove.llm.prompts import check_prompt_choices
from rove.llm.store import AnnotationStore

if TYPE_CHECKING:
    from rove.llm.reward_model import TrainReport

log = logging.getLogger(__name__)


def collect(
    env_id: str,
    num_steps: int,
    out: str | Path,
    *,
    seed: int = 0,
    policy: Callable[[Any], Any] | None = None,
    progress: bool = True,
) -> CaptionDataset:
    """Step 1: rolls out ``policy`` (random by default) and saves the caption dataset as JSON at ``out``."""
    dataset = collect_captions(env_id, num_steps, policy=policy, seed=seed, progress=progress)
    dataset.save(out)
    return dataset


def make_pairs(store: AnnotationStore, dataset: CaptionDataset, num_pairs: int, seed: int = 0) -> int:
    """Step 2: draws ``num_pairs`` count-weighted pairs and queues the new ones in the store."""
    store.add_captions(dict(dataset.counts))
    return store.add_pairs(dataset.sample_pairs(num_pairs, seed))


def annotate(
    store: AnnotationStore,
    backend: Backend | dict[str, Any] | str,
    *,
    game: str = "nethack",
    goal: str = "default",
    style: str = "rove",
    chunk_size: int = 64,
    limit: int | None = None,
    max_attempts: int = 3,
    retry_delay: float = 2.0,
    progress: bool = True,
) -> dict[str, int]:
    """Step 3: asks the judge about every pending pair, ``chunk_size`` at a time, each chunk committed at once.

    Resumable: an interrupted run loses only the chunk in flight (it stays pending); answered pairs are
    never asked again. Annotators sharing the store claim their chunks, so they split the work.

    One bad pair never blocks the others: a pair whose request fails (e.g. HTTP 400) or whose answers stay
    unparseable after Motif's retry turn goes back to the store and is asked again after
    ``retry_delay * 2 ** (attempts - 1)`` seconds, until ``max_attempts`` tries: then it is ``failed``
    (the request) or ``unknown`` (the answers), counted and logged. When *every* request of a chunk fails
    at the server (unreachable, hung, 5xx), the run stops with :class:`~rove.llm.backends.ServerError`.

    Args:
        style: ``"rove"`` or ``"motif"`` (Motif's released prompt, NetHack only); see ``rove.llm.prompts``.
        limit: Pairs to ask at most (``0``: none; None: all).

    Returns:
        The store's pending/done/unknown/failed counts, with this run's ``asked`` pairs, ``unparsed``
        answers (after the retry turn) and failed ``requests``.
    """
    check_prompt_choices(game, goal, style)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    backend = make_backend(backend)
    pending = store.pair_counts()["pending"]
    total = pending if limit is None else min(limit, pending)
    stats = {"asked": 0, "unparsed": 0, "requests": 0}
    with tqdm(total=total, desc="annotating pairs", disable=not progress) as bar:
        while limit is None or stats["asked"] < limit:
            want = chunk_size if limit is None else min(chunk_size, limit - stats["asked"])
            chunk = store.claim_pairs(want)
            if not chunk:
                wait = store.next_retry_in()
                if wait is None:
                    break  # nothing left that this run may ask
                time.sleep(min(wait, 1.0))
                continue
            judgements = judge_pairs(backend, chunk, game, goal, style)
            errors = [j.error for j in judgements if j.error is not None]
            if errors and len(errors) == len(chunk) and not all(isinstance(e, RequestError) for e in errors):
                store.release(
                    "pairs", [(p, str(errors[0])) for p in chunk], max_attempts=max_attempts, count_attempt=False
                )
                raise next((e for e in errors if isinstance(e, ServerError)), errors[0])
            answered = [(a, b, j) for (a, b), j in zip(chunk, judgements, strict=True) if j.label is not None]
            store.record_pairs(answered)
            failed = [(p, str(j.error)) for p, j in zip(chunk, judgements, strict=True) if j.error is not None]
            garbage = [(p, j.answer) for p, j in zip(chunk, judgements, strict=True) if j.unparsed]
            closed = store.release("pairs", failed, max_attempts=max_attempts, retry_delay=retry_delay)
            closed += store.release(
                "pairs", garbage, max_attempts=max_attempts, retry_delay=retry_delay, exhausted="unknown"
            )
            for pair, err in failed:
                log.warning("annotate: request for pair %r failed: %s", pair, err)
            if garbage:
                log.warning("annotate: %d of %d answers unparseable after the retry turn", len(garbage), len(chunk))
            if closed:
                log.warning("annotate: %d pairs closed after %d tries (failed or unknown)", len(closed), max_attempts)
            stats["asked"] += len(chunk)
            stats["unparsed"] += len(garbage)
            stats["requests"] += len(failed)
            bar.update(len(chunk))
    if stats["unparsed"]:
        warnings.warn(
            f"{stats['unparsed']} of {stats['asked']} judge answers had no readable label after the retry turn "
            "(they are re-asked up to max_attempts times, then recorded as unknown); check the model and prompt",
            RuntimeWarning,
            stacklevel=2,
        )
    return {**store.pair_counts(), **stats}


def train(
    store: AnnotationStore,
    out: str | Path,
    *,
    epochs: int = 10,
    lr: float = 1e-5,
    batch_size: int = 1024,
    val_fraction: float = 0.2,
    quantile: float | None = 0.5,
    seed: int = 0,
    device: str = "auto",
    encoder: str = "lt_cnn",
    length: int = 256,
    progress: bool = True,
) -> TrainReport:
    """Step 4: trains the Bradley-Terry reward model on answered pairs (unknown answers are dropped, as in
    Motif), fits the post-processing statistics and saves the model at ``out``.

    As Motif's ``scripts/train_reward.py``: the normalisation mean/std are over every caption of the pairs
    (both sides, with repeats: frequent captions weigh more), the threshold quantile over the unique ones.
    Deviation: Motif takes them over the training split only; Rove over all answered pairs (the held-out
    fifth is drawn from the same distribution).

    Args:
        encoder: ``"lt_cnn"`` (Motif's) or ``"light"`` (see :mod:`rove.llm.reward_model`).
        length: Caption bytes the model reads (Motif: 256).
    """
    # torch loads only here: collecting and annotating must start fast (and resume fast after a crash).
    import torch

    from rove.llm.reward_model import (
        CaptionModelConfig,
        CaptionRewardModel,
        captions_to_bytes,
        fit_stats,
        train_preferences,
    )

    pairs = store.answered_pairs()
    if not pairs:
        raise ValueError(f"store {store.path!r} has no answered pairs; run `rove llm annotate` first")
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
    )
    torch.manual_seed(seed)
    model = CaptionRewardModel(CaptionModelConfig(encoder=encoder, length=length)).to(dev)
    report = train_preferences(
        model,
        captions_to_bytes([a for a, _, _ in pairs], length),
        captions_to_bytes([b for _, b, _ in pairs], length),
        np.array([y for _, _, y in pairs], dtype=np.float32),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        val_fraction=val_fraction,
        seed=seed,
        progress=progress,
    )
    observations = [c for a, b, _ in pairs for c in (a, b)]
    fit_stats(model, observations, quantile, observations=observations)
    model.cpu().save(out)
    return report
