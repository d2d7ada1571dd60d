"""Never hang, never block: the LLM path against loopback servers that misbehave (fault injection).

Each test names the failure it guards against; every one of them failed on the code before issue 14.
"""

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove.intrinsic as intrinsic
from rove.envs.core import caption_space, encode_caption
from rove.intrinsic.types import Rollout
from rove.llm.annotator import Annotator
from rove.llm.backends import OpenAIBackend, RequestError, ServerError
from rove.llm.cli import main
from rove.llm.pipeline import annotate
from rove.llm.store import AnnotationStore

OBS = spaces.Dict({"caption": caption_space()})
ACT = spaces.Discrete(2)
HI = [{"role": "user", "content": "hi"}]


class CaptionEnv(gym.Env):
    """A different caption at every step; episodes last 8 steps."""

    observation_space = spaces.Dict({"caption": caption_space(), "x": spaces.Box(0, 1, (2,), np.float32)})
    action_space = spaces.Discrete(2)

    def _obs(self, text):
        return {"caption": encode_caption(text), "x": np.zeros(2, np.float32)}, {"caption": text}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs("start")

    def step(self, action):
        self.t += 1
        obs, info = self._obs(f"event {self.t} {int(action)}")
        return obs, 0.0, False, self.t >= 8, info


def _caption_of(messages):
    text = messages[-1]["content"] if len(messages) == 2 else messages[1]["content"]
    if 'message:\n"' in text:
        return text.split('message:\n"')[1].split('"\n')[0]
    return text.split('Message 1: "')[1].split('"\n')[0]


def _rollout(captions):
    rows = np.stack([encode_caption(c) for c in captions])[:, None]
    obs = {"caption": torch.as_tensor(rows)}
    t = len(captions)
    return Rollout(
        obs,
        torch.zeros(t, 1, dtype=torch.long),
        obs,
        torch.zeros(t, 1),
        torch.ones(t, 1, dtype=torch.bool),
        torch.ones(t, 1, dtype=torch.bool),
    )


def test_a_trickling_server_cannot_stretch_the_deadline(chat_server):
    # Before: urllib's timeout is per socket read, so one byte every 0.2 s kept a timeout=1 call alive for 37 s.
    server = chat_server(mode="trickle")
    backend = OpenAIBackend(server.base_url, "m", timeout=1.0, max_retries=0)
    start = time.monotonic()
    with pytest.raises(ServerError, match=r"no response within 1\.0s"):
        backend.complete([HI])
    assert time.monotonic() - start < 3.0


def test_a_200_answer_that_is_not_utf8_is_a_backend_error(chat_server):
    server = chat_server(respond=lambda m: (200, b'{"choices": "\xff\xfe\xfa"}'))
    with pytest.raises(RequestError, match="not UTF-8"):
        OpenAIBackend(server.base_url, "m", timeout=2).complete([HI])


def test_one_rejected_item_keeps_the_other_answers(chat_server):
    server = chat_server(
        lambda m: "helpful: yes", respond=lambda m: (400, b"prompt too long") if "poison" in str(m) else None
    )
    outcomes = OpenAIBackend(server.base_url, "m", timeout=2, concurrency=3).complete_each(
        [[{"role": "user", "content": c}] for c in ("a", "poison", "b")]
    )
    assert outcomes[0] == outcomes[2] == "helpful: yes" and isinstance(outcomes[1], RequestError)


def test_annotate_marks_a_rejected_pair_failed_and_finishes_the_rest(tmp_path, chat_server, gold_judge):
    # Before: one HTTP 400 among the pairs stopped all labelling, and rerunning never got past it.
    def respond(messages):
        return (400, b"bad request") if "poison" in _caption_of(messages) else None

    server = chat_server(gold_judge, respond=respond)
    store = AnnotationStore(tmp_path / "a.db")
    pairs = [(f"gold {i}", f"wall {i}") for i in range(30)] + [("poison", "wall")]
    store.add_pairs(pairs)
    backend = OpenAIBackend(server.base_url, "m", timeout=2, concurrency=4)
    counts = annotate(store, backend, chunk_size=8, max_attempts=2, retry_delay=0.01, progress=False)
    assert counts["done"] == 30 and counts["failed"] == 1 and counts["pending"] == 0
    poison = [m for m in server.requests if _caption_of(m) == "poison"]
    assert len(poison) == 2  # asked max_attempts times, then closed
    assert store.retry_failed() == 1 and store.pair_counts()["pending"] == 1


def test_garbage_answers_are_counted_warned_and_reasked_within_a_limit(chat_server):
    # Before: every caption silently became unknown forever with reward 0, nothing counted or warned.
    def answer(messages):
        return "helpful: yes" if "gold" in _caption_of(messages) else "I like turtles."

    server = chat_server(answer)
    annotator = Annotator(
        OpenAIBackend(server.base_url, "m", timeout=2), batch_size=10, max_attempts=2, retry_delay=0.01, start=False
    )
    annotator.submit(["gold", "wall"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deadline = time.monotonic() + 10
        got = {}
        while len(got) < 2 and time.monotonic() < deadline:
            got.update(annotator.poll())
            time.sleep(0.02)
    annotator.close()
    assert got == {"gold": 1.0, "wall": None}
    assert annotator.num_unparsed == 2  # two tries, each with Motif's retry turn
    assert sum(_caption_of(m) == "wall" for m in server.requests) == 4
    assert any("no readable label" in str(w.message) for w in caught)


def test_a_locked_store_never_blocks_the_learner(tmp_path, gold_judge):
    # Before: with the store locked by another process, PPO with oni_ranking froze 30 s and crashed.
    import rove.llm.rewards  # noqa: F401  (imports are not what is timed: nor torch's lazy import in Adam)

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    from rove.llm.backends import FunctionBackend

    db = tmp_path / "locked.db"
    AnnotationStore(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        module = intrinsic.make(
            "oni_ranking", OBS, ACT, backend=FunctionBackend(gold_judge), store=str(db), sample_every=1, seed=0
        )
        rollout = _rollout([f"caption {i}" for i in range(20)])
        for _ in range(3):
            for t in range(rollout.num_steps):
                module.observe(rollout.step(t))
            module.compute(rollout)
            module.update(rollout)
        elapsed = time.monotonic() - start
        assert elapsed < 5.0
        assert module.annotator.queue_size > 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    module.close()


def test_cli_reports_a_hung_server_within_the_documented_bound(tmp_path, chat_server, capsys):
    # Before: every pair of the chunk waited its turn: about 32 min at the defaults.
    server = chat_server(mode="stall")
    db = str(tmp_path / "h.db")
    AnnotationStore(db).add_pairs([(f"a{i}", f"b{i}") for i in range(40)])
    timeout, retries = 0.5, 1
    bound = (retries + 1) * timeout + (2**retries - 1)  # the --timeout help's formula, backoff 1 s
    start = time.monotonic()
    args = ["annotate", "--store", db, "--base-url", server.base_url, "--timeout", str(timeout)]
    code = main([*args, "--retries", str(retries), "--concurrency", "2", "--chunk-size", "40"])
    elapsed = time.monotonic() - start
    assert code == 2 and "no response within" in capsys.readouterr().err
    assert elapsed < bound + 2.0
    assert AnnotationStore(db).pair_counts()["pending"] == 40


def test_limit_zero_asks_nothing(tmp_path, chat_server, gold_judge):
    server = chat_server(gold_judge)
    db = str(tmp_path / "z.db")
    AnnotationStore(db).add_pairs([("gold", "wall"), ("a", "b")])
    assert main(["annotate", "--store", db, "--base-url", server.base_url, "--limit", "0"]) == 0
    assert server.num_requests == 0 and AnnotationStore(db).pair_counts()["pending"] == 2


def test_two_annotators_on_one_store_split_the_work(tmp_path, chat_server, gold_judge):
    # Before: 300 of 350 pairs were sent twice.
    def slow(messages):
        time.sleep(0.01)
        return gold_judge(messages)

    server = chat_server(slow)
    db = tmp_path / "shared.db"
    pairs = [(f"gold {i}", f"wall {i}") for i in range(120)]
    AnnotationStore(db).add_pairs(pairs)
    results = []

    def run():
        store = AnnotationStore(db)
        results.append(annotate(store, OpenAIBackend(server.base_url, "m", timeout=5), chunk_size=8, progress=False))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    asked = [_caption_of(m) for m in server.requests]
    assert len(asked) == len(set(asked)) == len(pairs)
    assert all(r["asked"] > 0 for r in results)  # both did part of it
    assert AnnotationStore(db).pair_counts()["done"] == len(pairs)


def test_unknown_goal_or_game_is_refused_at_construction():
    from rove.llm.backends import FunctionBackend

    backend = FunctionBackend(lambda m: "helpful: yes")
    with pytest.raises(ValueError, match=r"unknown goal 'speed'; choose from \['default'"):
        Annotator(backend, goal="speed", start=False)
    with pytest.raises(ValueError, match="unknown game 'chess'"):
        intrinsic.make("oni_retrieval", OBS, ACT, backend=backend, game="chess")
    with pytest.raises(ValueError, match="unknown goal"):
        annotate(AnnotationStore(":memory:"), backend, goal="speed", progress=False)


def test_learn_end_stops_the_annotator_taking_work(chat_server):
    # Before: the annotator went on asking the whole queue after learn() returned.
    from rove.agents import PPO
    from rove.envs.vector import make_vec

    def slow(messages):
        time.sleep(0.3)
        return "helpful: yes"

    server = chat_server(slow)
    envs = make_vec(None, env_fns=[CaptionEnv, CaptionEnv], seed=0)
    backend = OpenAIBackend(server.base_url, "m", timeout=30, max_retries=0, concurrency=2)
    annotator = Annotator(backend, batch_size=2)
    module = intrinsic.make(
        "oni_retrieval", envs.single_observation_space, envs.single_action_space, annotator=annotator
    )
    model = PPO("auto", envs, intrinsic=module, n_envs=2, n_steps=16, n_epochs=1, seed=0, verbose=0)
    model.learn(64)
    assert annotator.queue_size > 0  # work left when learning ended
    deadline = time.monotonic() + 5
    while annotator.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not annotator.running  # the batch in flight ended, no new one taken
    asked = server.num_requests
    time.sleep(1.0)
    assert server.num_requests == asked and annotator.queue_size > 0
    annotator.submit([])  # the next rollout's submit resumes it
    deadline = time.monotonic() + 5
    while server.num_requests == asked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.num_requests > asked
    annotator.close()
    envs.close()


def test_interpreter_exits_promptly_with_a_hung_server(tmp_path, chat_server):
    # Before: the process exited 175 s after learn() returned: the thread pool ran every queued request first.
    server = chat_server(mode="stall")
    script = textwrap.dedent(
        f"""
        import time
        from rove.llm.annotator import Annotator
        from rove.llm.backends import OpenAIBackend
        backend = OpenAIBackend({server.base_url!r}, "m", timeout=30, max_retries=0, concurrency=2)
        annotator = Annotator(backend, batch_size=4)
        annotator.submit([f"caption {{i}}" for i in range(40)])
        time.sleep(1.0)
        print("done", flush=True)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert time.monotonic() - start < 15.0
    assert server.num_requests >= 1


def test_sb3_learn_end_pauses_the_annotator_too(chat_server):
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rove.agents.sb3 import IntrinsicRewardCallback, rove_policy_kwargs

    def slow(messages):
        time.sleep(0.3)
        return "helpful: yes"

    server = chat_server(slow)
    venv = DummyVecEnv([CaptionEnv, CaptionEnv])
    annotator = Annotator(OpenAIBackend(server.base_url, "m", timeout=30, concurrency=2), batch_size=2)
    module = intrinsic.make("oni_retrieval", venv.observation_space, venv.action_space, annotator=annotator)
    model = SB3PPO("MultiInputPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, device="cpu",
                   policy_kwargs=rove_policy_kwargs())  # fmt: skip
    model.learn(32, callback=IntrinsicRewardCallback(module))
    deadline = time.monotonic() + 5
    while annotator.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not annotator.running and annotator.queue_size > 0
    annotator.close()


def test_one_rejected_caption_never_blocks_the_online_annotator(chat_server, wait_until):
    # Before: one HTTP 400 among the captions stopped all labelling forever.
    server = chat_server(
        lambda m: "helpful: yes", respond=lambda m: (400, b"bad") if "poison" in _caption_of(m) else None
    )
    backend = OpenAIBackend(server.base_url, "m", timeout=2)
    annotator = Annotator(backend, batch_size=50, max_attempts=2, retry_delay=0.01, retry_pause=0.05)
    captions = [f"caption {i}" for i in range(30)] + ["poison"]
    annotator.submit(captions)
    got = {}
    assert wait_until(lambda: got.update(annotator.poll()) or len(got) == len(captions), timeout=20)
    assert all(got[c] == 1.0 for c in captions[:-1]) and got["poison"] is None
    assert annotator.num_failed == 1 and annotator.num_answered == 30
    assert sum(_caption_of(m) == "poison" for m in server.requests) == 2
    annotator.close()
