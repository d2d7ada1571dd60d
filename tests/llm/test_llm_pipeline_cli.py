"""Motif's offline pipeline from the command line, on a tiny captioned env and a loopback judge."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove.intrinsic as intrinsic
from rove.envs.core import caption_space, encode_caption
from rove.llm.captions import CaptionDataset, collect_captions
from rove.llm.cli import main

EVENTS = ["", "You see 3 gold pieces.", "You hit the newt.", "A gold ring lies here.", "It is dark.", "You find gold!"]


class CaptionEnv(gym.Env):
    """Each action emits one caption; episodes last 5 steps."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict({"caption": caption_space()})
        self.action_space = spaces.Discrete(len(EVENTS))
        self.t = 0

    def _obs(self, text):
        return {"caption": encode_caption(text)}, {"caption": text}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs("")

    def step(self, action):
        self.t += 1
        obs, info = self._obs(EVENTS[int(action)])
        return obs, 0.0, False, self.t >= 5, info


@pytest.fixture(scope="module", autouse=True)
def _register():
    gym.register("RoveLLMTestCaptions-v0", entry_point=CaptionEnv)
    yield
    gym.registry.pop("RoveLLMTestCaptions-v0", None)


def test_collect_counts_every_observation():
    dataset = collect_captions(CaptionEnv(), 50, seed=0, progress=False)
    assert dataset.total == 51 + 50 // 5  # first obs, every step, every reset
    assert set(dataset.counts) <= set(EVENTS) and dataset.counts[""] >= 11
    pairs = dataset.sample_pairs(200, seed=1)
    assert pairs == dataset.sample_pairs(200, seed=1) and all(a in dataset.counts for a, _ in pairs)
    with pytest.raises(ValueError, match="empty"):
        CaptionDataset().sample_pairs(1)


def test_offline_pipeline_end_to_end(tmp_path, chat_server, gold_judge, capsys):
    server = chat_server(gold_judge)
    caps, db = str(tmp_path / "captions.json"), str(tmp_path / "ann.db")
    assert main(["collect", "--env", "RoveLLMTestCaptions-v0", "--steps", "300", "--out", caps]) == 0
    assert main(["pairs", "--captions", caps, "--store", db, "--num-pairs", "200"]) == 0
    assert main(["annotate", "--store", db, "--base-url", server.base_url, "--timeout", "5"]) == 0
    asked = server.num_requests
    assert 0 < asked <= 30  # at most 6x6 ordered pairs, identical ones never asked
    assert main(["annotate", "--store", db, "--base-url", server.base_url]) == 0
    assert server.num_requests == asked  # nothing pending: nothing asked again
    out = str(tmp_path / "rm.pt")
    args = ["--epochs", "60", "--lr", "1e-2", "--batch-size", "64", "--encoder", "light"]
    assert main(["train", "--store", db, "--out", out, *args]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed
    module = intrinsic.make("motif", spaces.Dict({"caption": caption_space()}), spaces.Discrete(2), reward_model=out)
    scores = module.reward_model.score(EVENTS)
    assert min(scores[i] for i in (1, 3, 5)) > max(scores[i] for i in (0, 2, 4))
    assert main(["export", "--store", db, "--out", str(tmp_path / "a.jsonl")]) == 0
    db2 = str(tmp_path / "b.db")
    assert main(["import", "--store", db2, "--file", str(tmp_path / "a.jsonl")]) == 0
    capsys.readouterr()
    assert main(["status", "--store", db2]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pairs"]["pending"] == 0 and status["pairs"]["done"] > 0


def test_annotate_against_dead_server_exits_with_message(tmp_path, capsys):
    db = str(tmp_path / "d.db")
    from rove.llm.store import AnnotationStore

    AnnotationStore(db).add_pairs([("a", "b")])
    code = main(["annotate", "--store", db, "--base-url", "http://127.0.0.1:9/v1", "--retries", "0", "--timeout", "2"])
    assert code == 2
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert AnnotationStore(db).pair_counts()["pending"] == 1


def test_motif_reward_of_trained_model_is_post_processed(tmp_path):
    from rove.llm.reward_model import CaptionRewardModel, fit_stats

    torch.manual_seed(0)
    model = CaptionRewardModel()
    fit_stats(model, EVENTS, 0.5)
    model.save(tmp_path / "m.pt")
    module = intrinsic.make(
        "motif", spaces.Dict({"caption": caption_space()}), spaces.Discrete(2), reward_model=str(tmp_path / "m.pt")
    )
    rows = np.stack([encode_caption(e) for e in EVENTS])[:, None]
    obs = {"caption": torch.as_tensor(rows)}
    from rove.intrinsic.types import Rollout

    t = len(EVENTS)
    rollout = Rollout(
        obs,
        torch.zeros(t, 1, dtype=torch.long),
        obs,
        torch.zeros(t, 1),
        torch.zeros(t, 1, dtype=torch.bool),
        torch.ones(t, 1, dtype=torch.bool),
    )
    reward = module.compute(rollout)[:, 0]
    assert int((reward != 0).sum()) == len(EVENTS) // 2  # the median threshold zeroes the lower half
