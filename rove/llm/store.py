"""SQLite annotation store: captions, Motif pairs and ONI labels, keyed by caption hashes.

One file, nothing to start. WAL journal and one transaction per write, so a crash or Ctrl-C loses at most
the answers not yet recorded (they stay ``pending`` and are asked again on resume); a recorded answer is
never asked again. Answers are ``done`` (a label), ``unknown`` (unparseable after every try) or ``failed``
(the request itself failed after every try, e.g. the server rejected it); ``failed`` items are counted and
can be re-opened with :meth:`AnnotationStore.retry_failed`.

Several annotators may share one store: each *claims* the pending items it will ask, in a transaction, for
a lease of ``lease`` seconds (an annotator killed mid-way loses its claims when the lease runs out), so two
processes split the work instead of asking everything twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rove.llm.judge import Judgement

_STATE = (
    "status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'unknown', 'failed')), "
    "label REAL, answer TEXT, attempts INTEGER NOT NULL DEFAULT 0, error TEXT, "
    "claimed_by TEXT, claimed_until REAL NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0"
)
_TABLES = {
    "captions": "hash TEXT PRIMARY KEY, text TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 0",
    "pairs": f"id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT NOT NULL, b TEXT NOT NULL, {_STATE}, UNIQUE (a, b)",
    "labels": f"hash TEXT PRIMARY KEY, {_STATE}",
}
STATUSES = ("pending", "done", "unknown", "failed")
_KEYS = {"pairs": ("a", "b"), "labels": ("hash",)}


def caption_hash(text: str) -> str:
    """Stable 16-hex-digit key of a caption."""
    return hashlib.blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=8).hexdigest()


def _dead_here(owner: str, host: str) -> bool:
    """Whether ``owner`` (``host:pid:suffix``) names a process of this host that no longer runs."""
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _key(table: str, item: str | tuple[str, str]) -> tuple[str, ...]:
    return tuple(caption_hash(t) for t in _texts(table, item))


def _texts(table: str, item: str | tuple[str, str]) -> tuple[str, ...]:
    """The caption texts of one item: a caption (labels) or a pair's two captions."""
    return (item,) if isinstance(item, str) or table == "labels" else tuple(item)  # type: ignore[return-value]


class AnnotationStore:
    """Thread-safe SQLite store of captions, pairs and labels.

    Args:
        path: Database file (created if missing); ``":memory:"`` for a throwaway store.
        timeout: Seconds a write waits for another process's lock before ``sqlite3.OperationalError``.
        owner: This annotator's name in claims (default: host, pid and a random suffix).
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0, owner: str | None = None) -> None:
        self.path = str(path)
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=timeout, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._transaction() as conn:
                for table, columns in _TABLES.items():
                    self._create(conn, table, columns)
                conn.execute("CREATE INDEX IF NOT EXISTS pairs_status ON pairs (status)")
                conn.execute("CREATE INDEX IF NOT EXISTS labels_status ON labels (status)")

    @staticmethod
    def _create(conn: sqlite3.Connection, table: str, columns: str) -> None:
        """Creates ``table``, or migrates a store written by an older Rove (no attempts/claims, no 'failed')."""
        old = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        if old and "attempts" not in old and table != "captions":
            conn.execute(f"ALTER TABLE {table} RENAME TO {table}_old")
            conn.execute(f"DROP INDEX IF EXISTS {table}_status")
            conn.execute(f"CREATE TABLE {table} ({columns})")
            shared = ", ".join(old)
            conn.execute(f"INSERT INTO {table} ({shared}) SELECT {shared} FROM {table}_old")
            conn.execute(f"DROP TABLE {table}_old")
        else:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _reap(self, conn: sqlite3.Connection) -> None:
        """Frees the claims of annotators on this host whose process is gone (killed mid-chunk)."""
        host = os.uname().nodename
        for table in ("pairs", "labels"):
            holders = conn.execute(
                f"SELECT DISTINCT claimed_by FROM {table} WHERE status = 'pending' AND claimed_until > ?",
                (time.time(),),
            ).fetchall()
            for (holder,) in holders:
                if holder and holder != self.owner and _dead_here(holder, host):
                    conn.execute(f"UPDATE {table} SET claimed_until = 0 WHERE claimed_by = ?", (holder,))

    # ----- captions -----
    def add_captions(self, counts: dict[str, int] | Iterable[str]) -> None:
        """Adds captions with their occurrence counts (summed with counts already stored)."""
        items = counts.items() if isinstance(counts, dict) else ((c, 0) for c in counts)
        rows = [(caption_hash(t), t, int(n)) for t, n in items]
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO captions (hash, text, count) VALUES (?, ?, ?) "
                "ON CONFLICT(hash) DO UPDATE SET count = count + excluded.count",
                rows,
            )

    def captions(self) -> dict[str, int]:
        """Every stored caption with its count."""
        return dict(self._query("SELECT text, count FROM captions ORDER BY hash"))

    # ----- Motif pairs -----
    def add_pairs(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Queues pairs for annotation (already-known pairs are skipped); returns how many were new."""
        pairs = list(pairs)
        with self._transaction() as conn:
            self._add_texts(conn, [t for pair in pairs for t in pair])
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO pairs (a, b) VALUES (?, ?)", [_key("pairs", p) for p in pairs])
            return conn.total_changes - before

    def pending_pairs(self, limit: int | None = None) -> list[tuple[str, str]]:
        """Pairs not yet answered, oldest first (``limit=0``: none)."""
        if limit is not None and limit <= 0:
            return []
        sql = (
            "SELECT ca.text, cb.text FROM pairs p JOIN captions ca ON ca.hash = p.a JOIN captions cb ON cb.hash = p.b "
            "WHERE p.status = 'pending' ORDER BY p.id"
        )
        return [tuple(r) for r in self._query(sql + (f" LIMIT {int(limit)}" if limit else ""))]  # type: ignore[misc]

    def claim_pairs(self, limit: int, lease: float = 600.0) -> list[tuple[str, str]]:
        """Claims up to ``limit`` pending pairs (oldest first) that nobody holds and whose retry time has come.

        The claim lasts ``lease`` seconds or until the pair is recorded or released.
        """
        if limit <= 0:
            return []
        now = time.time()
        sql = (
            "SELECT p.id, ca.text, cb.text FROM pairs p JOIN captions ca ON ca.hash = p.a "
            "JOIN captions cb ON cb.hash = p.b WHERE p.status = 'pending' AND p.claimed_until <= ? "
            "AND p.next_try <= ? ORDER BY p.id LIMIT ?"
        )
        with self._transaction() as conn:
            self._reap(conn)
            rows = conn.execute(sql, (now, now, int(limit))).fetchall()
            conn.executemany(
                "UPDATE pairs SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                [(self.owner, now + lease, r[0]) for r in rows],
            )
        return [(a, b) for _, a, b in rows]

    def next_retry_in(self) -> float | None:
        """Seconds until an unclaimed pending pair may be claimed (0: now); None when every pending pair is
        held by another live annotator or none is pending."""
        now = time.time()
        row = self._query("SELECT MIN(next_try) FROM pairs WHERE status = 'pending' AND claimed_until <= ?", (now,))
        return None if row[0][0] is None else max(0.0, float(row[0][0]) - now)

    def record_pairs(self, results: Iterable[tuple[str, str, Judgement]]) -> None:
        """Writes answers in one transaction; a pair already answered keeps its first answer."""
        self._record("pairs", [((a, b), j) for a, b, j in results])

    def answered_pairs(self, include_unknown: bool = False) -> list[tuple[str, str, float | None]]:
        """``(caption_1, caption_2, label)`` of answered pairs; unknown ones (label None) only if asked."""
        where = "p.status IN ('done', 'unknown')" if include_unknown else "p.status = 'done'"
        sql = (
            "SELECT ca.text, cb.text, p.label FROM pairs p JOIN captions ca ON ca.hash = p.a "
            f"JOIN captions cb ON cb.hash = p.b WHERE {where} ORDER BY p.id"
        )
        return [tuple(r) for r in self._query(sql)]  # type: ignore[misc]

    def pair_counts(self) -> dict[str, int]:
        """How many pairs are pending, done, unknown and failed."""
        counts = dict(self._query("SELECT status, COUNT(*) FROM pairs GROUP BY status"))
        return {s: int(counts.get(s, 0)) for s in STATUSES}

    # ----- ONI labels -----
    def record_labels(self, results: Iterable[tuple[str, Judgement]]) -> None:
        """Writes helpful/not answers in one transaction; a caption already labelled keeps its label."""
        self._record("labels", list(results))

    def labels(self, include_unknown: bool = False) -> dict[str, float | None]:
        """``{caption: label}`` of answered captions (unknown ones map to None, only if asked)."""
        where = "l.status IN ('done', 'unknown')" if include_unknown else "l.status = 'done'"
        return dict(
            self._query(f"SELECT c.text, l.label FROM labels l JOIN captions c ON c.hash = l.hash WHERE {where}")
        )

    def has_label(self, text: str) -> bool:
        return bool(self._query("SELECT 1 FROM labels WHERE hash = ? AND status != 'pending'", (caption_hash(text),)))

    def label_counts(self) -> dict[str, int]:
        """How many captions are pending, done, unknown and failed."""
        counts = dict(self._query("SELECT status, COUNT(*) FROM labels GROUP BY status"))
        return {s: int(counts.get(s, 0)) for s in STATUSES}

    # ----- claims shared by pairs and labels (the online annotator) -----
    def claim(
        self, table: str, items: Sequence[str | tuple[str, str]], lease: float = 600.0
    ) -> tuple[list, dict, list]:
        """Claims the given captions (``table="labels"``) or pairs (``"pairs"``), adding the unknown ones.

        Returns ``(claimed, answered, busy)``: the items now held by this store's owner, ``{item: label}``
        of items already answered (unknown and failed ones map to None) and the items another live
        annotator holds.
        """
        now = time.time()
        cols = _KEYS[table]
        claimed, answered, busy = [], {}, []
        with self._transaction() as conn:
            self._reap(conn)
            self._add_texts(conn, [t for item in items for t in _texts(table, item)])
            where = " AND ".join(f"{c} = ?" for c in cols)
            for item in items:
                key = _key(table, item)
                conn.execute(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", key
                )
                status, label, holder, until = conn.execute(
                    f"SELECT status, label, claimed_by, claimed_until FROM {table} WHERE {where}", key
                ).fetchone()
                if status != "pending":
                    answered[item] = label
                elif holder not in (None, self.owner) and until > now:
                    busy.append(item)
                else:
                    conn.execute(
                        f"UPDATE {table} SET claimed_by = ?, claimed_until = ? WHERE {where}",
                        (self.owner, now + lease, *key),
                    )
                    claimed.append(item)
        return claimed, answered, busy

    def release(
        self,
        table: str,
        failures: Iterable[tuple[str | tuple[str, str], str]],
        *,
        max_attempts: int,
        retry_delay: float = 0.0,
        count_attempt: bool = True,
        exhausted: str = "failed",
    ) -> list:
        """Gives claimed items back after a failed try, ``(item, message)`` each; returns the items closed.

        With ``count_attempt`` the item's attempt count grows by one; at ``max_attempts`` the item is closed
        with status ``exhausted`` (``"failed"``: the request failed, ``message`` is the error; ``"unknown"``:
        the answers were unparseable, ``message`` is the last answer), else it may be claimed again after
        ``retry_delay * 2 ** (attempts - 1)`` seconds. Without it (the server was down, not the item's
        fault) the item is simply pending again.
        """
        if exhausted not in ("failed", "unknown"):
            raise ValueError(f"exhausted must be 'failed' or 'unknown', got {exhausted!r}")
        cols = _KEYS[table]
        where = " AND ".join(f"{c} = ?" for c in cols)
        now, closed = time.time(), []
        with self._transaction() as conn:
            for item, message in failures:
                key = _key(table, item)
                row = conn.execute(f"SELECT attempts, status FROM {table} WHERE {where}", key).fetchone()
                if row is None or row[1] != "pending":
                    continue
                attempts = row[0] + int(count_attempt)
                status = exhausted if count_attempt and attempts >= max_attempts else "pending"
                if status != "pending":
                    closed.append(item)
                delay = retry_delay * 2 ** max(0, attempts - 1) if count_attempt else 0.0
                column = "answer" if exhausted == "unknown" else "error"
                conn.execute(
                    f"UPDATE {table} SET status = ?, attempts = ?, {column} = ?, claimed_by = NULL, "
                    f"claimed_until = 0, next_try = ? WHERE {where}",
                    (status, attempts, message[-2000:], now + delay, *key),
                )
        return closed

    def retry_failed(self) -> int:
        """Re-opens every ``failed`` pair and label (attempts reset); returns how many."""
        with self._transaction() as conn:
            before = conn.total_changes
            for table in ("pairs", "labels"):
                conn.execute(
                    f"UPDATE {table} SET status = 'pending', attempts = 0, next_try = 0, claimed_until = 0 "
                    "WHERE status = 'failed'"
                )
            return conn.total_changes - before

    def _add_texts(self, conn: sqlite3.Connection, texts: Sequence[str]) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO captions (hash, text, count) VALUES (?, ?, 0)", [(caption_hash(t), t) for t in texts]
        )

    def _record(self, table: str, results: Sequence[tuple[str | tuple[str, str], Judgement]]) -> None:
        cols = _KEYS[table]
        where = " AND ".join(f"{c} = ?" for c in cols)
        with self._transaction() as conn:
            self._add_texts(conn, [t for item, _ in results for t in _texts(table, item)])
            for item, j in results:
                key = _key(table, item)
                conn.execute(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", key
                )
                conn.execute(
                    f"UPDATE {table} SET status = ?, label = ?, answer = ?, claimed_by = NULL, claimed_until = 0 "
                    f"WHERE {where} AND status = 'pending'",
                    ("unknown" if j.label is None else "done", j.label, j.answer, *key),
                )

    # ----- JSONL -----
    def export_jsonl(self, path: str | Path) -> int:
        """Writes every caption, pair and label as one JSON object per line; returns the line count."""
        lines = [{"kind": "caption", "text": t, "count": n} for t, n in self.captions().items()]
        sql = (
            "SELECT ca.text, cb.text, p.status, p.label, p.answer FROM pairs p JOIN captions ca ON ca.hash = p.a "
            "JOIN captions cb ON cb.hash = p.b ORDER BY p.id"
        )
        for a, b, status, label, answer in self._query(sql):
            lines.append({"kind": "pair", "a": a, "b": b, "status": status, "label": label, "answer": answer})
        sql = (
            "SELECT c.text, l.status, l.label, l.answer FROM labels l JOIN captions c ON c.hash = l.hash "
            "WHERE l.status IN ('done', 'unknown') ORDER BY l.hash"
        )
        for text, status, label, answer in self._query(sql):
            lines.append({"kind": "label", "caption": text, "status": status, "label": label, "answer": answer})
        with open(path, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        return len(lines)

    def import_jsonl(self, path: str | Path) -> int:
        """Merges an export into this store (answers fill pending pairs; existing answers win); returns lines read."""
        captions: dict[str, int] = {}
        pairs, pair_answers, labels = [], [], []
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        for rec in records:
            kind = rec.get("kind")
            if kind == "caption":
                captions[rec["text"]] = captions.get(rec["text"], 0) + int(rec.get("count", 0))
            elif kind == "pair":
                pairs.append((rec["a"], rec["b"]))
                if rec["status"] in ("done", "unknown"):
                    label = None if rec["status"] == "unknown" else rec["label"]
                    pair_answers.append((rec["a"], rec["b"], Judgement(label, rec.get("answer") or "", False)))
            elif kind == "label":
                label = None if rec["status"] == "unknown" else rec["label"]
                labels.append((rec["caption"], Judgement(label, rec.get("answer") or "", False)))
            else:
                raise ValueError(f"{path}: unknown record kind {kind!r}; expected 'caption', 'pair' or 'label'")
        self.add_captions(captions)
        self.add_pairs(pairs)
        self.record_pairs(pair_answers)
        self.record_labels(labels)
        return len(records)
