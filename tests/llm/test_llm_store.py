"""SQLite annotation store: transactions, resume after a killed annotation process, JSONL round trip."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rove.llm.judge import Judgement
from rove.llm.pipeline import annotate
from rove.llm.store import AnnotationStore, caption_hash


def _pairs(n):
    return [
        (f"You see {i} gold pieces.", f"You hit rat {i}.") if i % 2 else (f"It is dark {i}.", f"gold {i}")
        for i in range(n)
    ]


def _pair_of(messages):
    text = messages[1]["content"]
    return text.split('Message 1: "')[1].split('"\n')[0], text.split('Message 2: "')[1].split('"\n')[0]


def test_first_answer_wins_and_unknown_is_not_a_label(tmp_path):
    store = AnnotationStore(tmp_path / "a.db")
    assert store.add_pairs([("a", "b"), ("c", "d")]) == 2
    assert store.add_pairs([("a", "b")]) == 0
    store.record_pairs([("a", "b", Judgement(1.0, "x", False)), ("c", "d", Judgement(None, "?", True))])
    store.record_pairs([("a", "b", Judgement(0.0, "late duplicate", False))])
    assert store.answered_pairs() == [("a", "b", 1.0)]
    assert store.answered_pairs(include_unknown=True)[1] == ("c", "d", None)
    assert store.pair_counts() == {"pending": 0, "done": 1, "unknown": 1, "failed": 0}
    store.record_labels([("gold", Judgement(1.0, "y", False)), ("wall", Judgement(None, "?", True))])
    store.record_labels([("gold", Judgement(0.0, "again", False))])
    assert store.labels() == {"gold": 1.0} and store.labels(include_unknown=True)["wall"] is None
    assert caption_hash("a") != caption_hash("b") and len(caption_hash("")) == 16


def test_jsonl_round_trip(tmp_path):
    src = AnnotationStore(tmp_path / "src.db")
    src.add_captions({"You see gold.": 5, "": 3, "é ü {x}": 1})
    src.add_pairs(_pairs(6))
    src.record_pairs([(*_pairs(6)[0], Judgement(0.5, "tie", False)), (*_pairs(6)[1], Judgement(None, "bad", True))])
    src.record_labels([("You see gold.", Judgement(1.0, "yes", False)), ("", Judgement(0.0, "no", False))])
    n = src.export_jsonl(tmp_path / "out.jsonl")
    dst = AnnotationStore(tmp_path / "dst.db")
    assert dst.import_jsonl(tmp_path / "out.jsonl") == n
    assert dst.captions() == src.captions()
    assert dst.pair_counts() == src.pair_counts()
    assert dst.answered_pairs(include_unknown=True) == src.answered_pairs(include_unknown=True)
    assert dst.pending_pairs() == src.pending_pairs()
    assert dst.labels() == src.labels()


def test_annotation_survives_a_killed_process(tmp_path, chat_server, gold_judge):
    def slow_judge(messages):
        time.sleep(0.03)
        return gold_judge(messages)

    server = chat_server(slow_judge)
    db = tmp_path / "ann.db"
    pairs = _pairs(40)
    AnnotationStore(db).add_pairs(pairs)
    cmd = [sys.executable, "-m", "rove.llm", "annotate", "--store", str(db), "--base-url", server.base_url]
    cmd += ["--chunk-size", "4", "--concurrency", "2", "--timeout", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while server.num_requests < 12 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    requests_at_kill = server.num_requests
    store = AnnotationStore(db)
    acknowledged = {(a, b): y for a, b, y in store.answered_pairs(include_unknown=True)}
    assert 0 < len(acknowledged) < len(pairs), "kill the process mid-way"

    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    final = {(a, b): y for a, b, y in store.answered_pairs(include_unknown=True)}
    assert store.pair_counts()["pending"] == 0 and set(final) == set(pairs)
    assert all(final[p] == y for p, y in acknowledged.items())  # nothing acknowledged lost or changed
    asked_after = [_pair_of(m) for m in server.requests[requests_at_kill:]]
    assert not set(asked_after) & set(acknowledged)  # nothing acknowledged is asked again
    asked = [_pair_of(m) for m in server.requests]
    assert max(asked.count(p) for p in pairs) <= 2  # at most the chunk in flight at the kill is re-asked
    assert sum(asked.count(p) == 2 for p in pairs) <= 4
    for (a, _b), y in final.items():
        assert y == (1.0 if "gold" in a else 0.0)


def test_pipeline_annotate_stops_with_error_on_dead_backend_keeping_answers(tmp_path):
    calls = []

    class Flaky:
        def complete(self, conversations):
            calls.append(len(conversations))
            if len(calls) > 1:
                from rove.llm.backends import BackendError

                raise BackendError("server went away")
            return ["best_description: 1"] * len(conversations)

    store = AnnotationStore(tmp_path / "f.db")
    store.add_pairs(_pairs(8))
    with pytest.raises(Exception, match="went away"):
        annotate(store, Flaky(), chunk_size=4, progress=False)
    assert store.pair_counts() == {"pending": 4, "done": 4, "unknown": 0, "failed": 0}
