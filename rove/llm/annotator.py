"""Background annotation for ONI: a worker thread fed by a queue, so the agent never waits for the LLM.

The learner :meth:`Annotator.submit`\\ s captions (or caption pairs) it has not seen; duplicates of items
already answered, queued or in flight are dropped. Submitting and polling touch memory only: the store
(SQLite) is opened, read and written by the worker alone, so a store locked by another process delays
annotation, never the learner. The worker takes the *newest* items in batches (ONI annotates the latest
observations), claims them in the store (annotators sharing a store split the work), asks the judge,
records the answers and hands them back through :meth:`Annotator.poll`.

Failures stay local: an item whose request fails or whose answers stay unparseable is asked again after
a back-off, up to ``max_attempts`` tries, then closed (``failed`` or ``unknown``, counted and logged) while
the rest of its batch keeps its answers. When every request of a batch fails at the server, the batch
waits in the queue and the worker pauses (``retry_pause``, doubling up to ``max_retry_pause``).

:meth:`Annotator.pause` (called when ``learn`` ends) stops taking new batches: the batch in flight ends
within the backend's deadline and is kept, queued items wait, and the next :meth:`submit` resumes.
:meth:`Annotator.stop` also cancels the requests in flight; :meth:`Annotator.close` (also run at
interpreter exit) stops for good. The worker and the HTTP requests run on daemon threads: they never keep
the interpreter alive.
"""

from __future__ import annotations

import atexit
import logging
import sqlite3
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Literal

from rove.llm.backends import Backend, RequestError, make_backend
from rove.llm.judge import Judgement, judge_captions, judge_pairs
from rove.llm.prompts import ONI_GOALS, check_prompt_choices
from rove.llm.store import AnnotationStore

log = logging.getLogger(__name__)
Task = Literal["helpful", "pairs"]
_LIVE: weakref.WeakSet[Annotator] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for annotator in list(_LIVE):
        annotator.close(timeout=0.5)


class Annotator:
    """Annotates captions (``task="helpful"``) or caption pairs (``task="pairs"``) in a daemon thread.

    Args:
        backend: A backend or its configuration (see :func:`rove.llm.backends.make_backend`).
        store: Where answers persist (an :class:`AnnotationStore`, a path, or None for memory only);
            answers already stored are delivered by ``poll`` once the worker has read them.
        task: ``"helpful"`` (ONI-retrieval/classification) or ``"pairs"`` (ONI-ranking).
        game, goal: Prompt variants (``rove.llm.prompts``); unknown names are refused here.
        style: Prompt style: ``"rove"``, ``"motif"`` (Motif's prompt for pairs) or ``"oni"`` (ONI's
            classification prompt for captions, Motif's prompt asked once for pairs).
        batch_size: Items per LLM batch (ONI used 100).
        max_attempts: Tries of one item before it is closed as ``failed`` / ``unknown``.
        retry_delay: First back-off of an item that failed, doubled at each further try.
        retry_pause: Pause after a batch failed entirely at the server, doubled up to ``max_retry_pause``.
        lease: Seconds a claim on an item lasts in a shared store.
        start: Start the worker now (else call :meth:`start`, or it starts on the first ``submit``).
    """

    def __init__(
        self,
        backend: Backend | dict[str, Any] | str,
        store: AnnotationStore | str | None = None,
        *,
        task: Task = "helpful",
        game: str = "nethack",
        goal: str = "default",
        style: str = "rove",
        batch_size: int = 100,
        max_attempts: int = 3,
        retry_delay: float = 5.0,
        retry_pause: float = 5.0,
        max_retry_pause: float = 60.0,
        lease: float = 600.0,
        start: bool = True,
    ) -> None:
        if task not in ("helpful", "pairs"):
            raise ValueError(f"task must be 'helpful' or 'pairs', got {task!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        check_prompt_choices(game, goal, style)
        if task == "helpful" and style == "motif":
            raise ValueError("style 'motif' has no caption (helpful) prompt; use 'oni' or 'rove'")
        if task == "helpful" and style == "oni" and goal not in ONI_GOALS:
            raise ValueError(f"ONI's classification prompt has goals {list(ONI_GOALS)}, not {goal!r}")
        self.style = style
        self.backend = make_backend(backend)
        self._store_arg = store
        self.store: AnnotationStore | None = store if isinstance(store, AnnotationStore) else None
        self.task = task
        self.table = "labels" if task == "helpful" else "pairs"
        self.game, self.goal = game, goal
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.retry_pause = retry_pause
        self.max_retry_pause = max_retry_pause
        self.lease = lease
        self._queue: deque[Hashable] = deque()
        self._delayed: dict[Hashable, float] = {}
        self._attempts: dict[Hashable, int] = {}
        self._seen: set[Hashable] = set()
        self._outbox: list[tuple[Any, float | None]] = []
        self._unwritten: list[tuple[Any, Judgement]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._paused = False
        self._running = False
        self._loaded = False
        self._closed = False
        self._warned = False
        self.num_answered = 0
        self.num_unparsed = 0
        self.num_failed = 0
        self.num_errors = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        _LIVE.add(self)
        if start:
            self.start()

    def start(self) -> None:
        """Starts the worker (again, after :meth:`pause` or :meth:`stop`); a closed annotator stays closed."""
        with self._cond:
            self._paused = False
            if self._closed or self._running:
                return
            self._stop.clear()
            self._running = True
            self._thread = threading.Thread(target=self._run, name=f"rove-annotator-{self.task}", daemon=True)
            self._thread.start()

    # ----- learner side: memory only, never blocks on the LLM or the store -----
    def submit(self, items: Iterable[Hashable]) -> int:
        """Queues unseen captions (or ``(caption_1, caption_2)`` pairs); returns how many were new.

        Starts the worker when items wait (the learner submits every rollout, so a worker paused when the
        last ``learn`` ended resumes with the next)."""
        with self._cond:
            new = 0
            for item in items:
                if item not in self._seen:
                    self._seen.add(item)
                    self._queue.append(item)
                    new += 1
            if new:
                self._cond.notify()
            waiting = bool(self._queue or self._delayed)
        if waiting and not self._closed:
            self.start()  # also resumes a worker paused at the end of the last learn()
        return new

    def poll(self) -> list[tuple[Any, float | None]]:
        """Answers that arrived since the last poll: ``(item, label)``, label None = unknown or failed."""
        with self._cond:
            out, self._outbox = self._outbox, []
        return out

    @property
    def queue_size(self) -> int:
        """Items waiting to be asked (including those in back-off)."""
        with self._cond:
            return len(self._queue) + len(self._delayed)

    def seen(self, item: Hashable) -> bool:
        with self._cond:
            return item in self._seen

    def stats(self) -> dict[str, float]:
        """Counters for logging: answered, unparsed (garbage) answers, failed items, server errors, queue."""
        return {
            "answered": float(self.num_answered),
            "unparsed": float(self.num_unparsed),
            "failed": float(self.num_failed),
            "server_errors": float(self.num_errors),
            "queue": float(self.queue_size),
        }

    def pause(self) -> None:
        """Stops taking new batches (called when ``learn`` ends): the batch in flight finishes within the
        backend's deadline and is recorded, queued items wait for the next :meth:`submit` or :meth:`start`."""
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def stop(self, timeout: float = 1.0) -> None:
        """Cancels the requests in flight and stops the worker, waiting at most ``timeout`` s. Queued items
        stay queued (their store claims are released or run out); :meth:`submit` or :meth:`start` resumes."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        cancel = getattr(self.backend, "cancel", None)
        if callable(cancel):
            cancel()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the worker is taking batches."""
        with self._cond:
            return self._running

    def close(self, timeout: float = 1.0) -> None:
        """Stops the worker for good and closes the backend (and the store, if this annotator opened it)."""
        self._closed = True
        self.stop(timeout)
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()
        if self.store is not None and self.store is not self._store_arg:
            thread = self._thread
            if thread is None or not thread.is_alive():
                self.store.close()

    # ----- worker -----
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._running = False

    def _keep_going(self) -> bool:
        with self._cond:
            if self._stop.is_set() or self._paused:
                self._running = False  # decided under the lock: start() sees it and starts a fresh worker
                return False
            return True

    def _loop(self) -> None:
        pause = self.retry_pause
        while self._keep_going():
            try:
                if not self._loaded:
                    self._load_store()
                self._flush_unwritten()
            except sqlite3.Error as err:
                self._server_trouble(f"store {self._store_arg!r}: {type(err).__name__}: {err}")
                self._stop.wait(pause)
                pause = min(2 * pause, self.max_retry_pause)
                continue
            batch = self._next_batch()
            if not batch:
                continue
            try:
                ok = self._annotate(batch)
            except sqlite3.Error as err:
                with self._cond:
                    self._queue.extend(reversed(batch))
                self._server_trouble(f"store {self._store_arg!r}: {type(err).__name__}: {err}")
                ok = False
            if ok:
                pause = self.retry_pause
            else:
                self._stop.wait(pause)
                pause = min(2 * pause, self.max_retry_pause)

    def _load_store(self) -> None:
        if self.store is None:
            arg = self._store_arg
            self.store = AnnotationStore(":memory:" if arg is None else str(arg))
        store = self.store
        if self.task == "helpful":
            previous: list[tuple[Any, float | None]] = list(store.labels(include_unknown=True).items())
            pending: list[Any] = []
        else:
            previous = [((a, b), y) for a, b, y in store.answered_pairs(include_unknown=True)]
            pending = store.pending_pairs()
        with self._cond:
            for item, label in previous:
                self._seen.add(item)
                self._outbox.append((item, label))
            for item in pending:
                if item not in self._seen:
                    self._seen.add(item)
                    self._queue.appendleft(item)  # older than anything submitted now
        self._loaded = True

    def _flush_unwritten(self) -> None:
        if self._unwritten and self.store is not None:
            rows, self._unwritten = self._unwritten, []
            try:
                self._record(rows)
            except sqlite3.Error:
                self._unwritten = rows + self._unwritten
                raise

    def _next_batch(self) -> list[Any]:
        with self._cond:
            now = time.monotonic()
            for item, when in list(self._delayed.items()):
                if when <= now:
                    del self._delayed[item]
                    self._queue.append(item)
            if not self._queue:
                self._cond.wait(0.2 if self._delayed else 0.5)
                return []
            return [self._queue.pop() for _ in range(min(self.batch_size, len(self._queue)))]

    def _server_trouble(self, message: str) -> None:
        self.num_errors += 1
        self.last_error = message
        log.warning("annotator: %s; %d items stay queued", message, self.queue_size)

    def _record(self, rows: Sequence[tuple[Any, Judgement]]) -> None:
        assert self.store is not None
        if self.task == "helpful":
            self.store.record_labels(rows)
        else:
            self.store.record_pairs([(a, b, j) for (a, b), j in rows])

    def _annotate(self, batch: Sequence[Any]) -> bool:
        """Asks about one batch; returns False when the server failed every request (then pause)."""
        assert self.store is not None
        claimed, answered, busy = self.store.claim(self.table, batch, self.lease)
        with self._cond:
            self._outbox.extend(answered.items())
            for item in busy:  # another annotator holds it: look again later, its answer may be in by then
                self._delayed[item] = time.monotonic() + self.retry_pause
        if not claimed:
            return True
        if self.task == "helpful":
            judgements = judge_captions(self.backend, claimed, self.game, self.goal, self.style)
        else:
            judgements = judge_pairs(self.backend, claimed, self.game, self.goal, self.style)
        errors = [j.error for j in judgements if j.error is not None]
        if errors and len(errors) == len(claimed) and not all(isinstance(e, RequestError) for e in errors):
            self.store.release(
                self.table, [(i, str(errors[0])) for i in claimed], max_attempts=self.max_attempts, count_attempt=False
            )
            with self._cond:
                self._queue.extend(reversed(claimed))
            self._server_trouble(f"{type(errors[0]).__name__}: {errors[0]}")
            return False
        good = [(i, j) for i, j in zip(claimed, judgements, strict=True) if j.label is not None]
        failed = [(i, str(j.error)) for i, j in zip(claimed, judgements, strict=True) if j.error is not None]
        garbage = [(i, j.answer) for i, j in zip(claimed, judgements, strict=True) if j.unparsed]
        with self._cond:
            self._outbox.extend((i, j.label) for i, j in good)
            self.num_answered += len(good)
        try:
            self._record(good)
        except sqlite3.Error:
            self._unwritten.extend(good)  # delivered already; written when the store lets us
            raise
        closed = self.store.release(self.table, failed, max_attempts=self.max_attempts, retry_delay=self.retry_delay)
        closed += self.store.release(
            self.table, garbage, max_attempts=self.max_attempts, retry_delay=self.retry_delay, exhausted="unknown"
        )
        self._retry_later([i for i, _ in failed + garbage], set(closed))
        self.num_unparsed += len(garbage)
        self.num_failed += sum(1 for i, _ in failed if i in set(closed))
        for item, err in failed:
            log.warning("annotator: request for %r failed: %s", item, err)
        if garbage:
            log.warning("annotator: %d of %d answers had no readable label", len(garbage), len(claimed))
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"the LLM judge gave {len(garbage)} of {len(claimed)} answers with no readable label; they are "
                    f"re-asked up to {self.max_attempts} times, then count as unknown. Check the model and prompt.",
                    RuntimeWarning,
                    stacklevel=1,
                )
        if closed:
            log.warning("annotator: %d items closed after %d tries", len(closed), self.max_attempts)
        return True

    def _retry_later(self, items: Sequence[Any], closed: set[Any]) -> None:
        now = time.monotonic()
        with self._cond:
            for item in items:
                if item in closed:
                    self._attempts.pop(item, None)
                    self._outbox.append((item, None))
                    continue
                n = self._attempts.get(item, 0) + 1
                self._attempts[item] = n
                self._delayed[item] = now + self.retry_delay * 2 ** (n - 1)
