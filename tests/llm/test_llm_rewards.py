"""The four registered LLM-reward modules: construction, post-processing, episodic counts, online learning."""

import inspect
import time

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rove.intrinsic as intrinsic
from rove.envs.core import caption_space, encode_caption
from rove.intrinsic.types import Rollout
from rove.llm.annotator import Annotator
from rove.llm.backends import FunctionBackend, OpenAIBackend
from rove.llm.reward_model import CaptionRewardModel
from rove.llm.rewards import MotifReward, ONIClassification, ONIRanking, count_episodic
from rove.llm.store import AnnotationStore

NAMES = ["motif", "oni_retrieval", "oni_classification", "oni_ranking"]
OBS = spaces.Dict({"caption": caption_space(), "glyphs": spaces.Box(0, 5, (4,), np.int16)})
ACT = spaces.Discrete(4)


def _rollout(captions, dones=None, valid=None):
    """``captions``: [T][E] strings of s_{t+1}."""
    t, e = len(captions), len(captions[0])
    rows = np.zeros((t, e, 256), np.uint8)
    for i in range(t):
        for j in range(e):
            encode_caption(captions[i][j], rows[i, j])
    obs = {"caption": torch.as_tensor(rows), "glyphs": torch.zeros(t, e, 4, dtype=torch.int16)}
    dones = torch.zeros(t, e, dtype=torch.bool) if dones is None else torch.as_tensor(dones)
    valid = torch.ones(t, e, dtype=torch.bool) if valid is None else torch.as_tensor(valid)
    return Rollout(obs, torch.zeros(t, e, dtype=torch.long), obs, torch.zeros(t, e), dones, valid)


def _observe_all(module, rollout):
    for t in range(rollout.num_steps):
        module.observe(rollout.step(t))


def _constant_model(value):
    model = CaptionRewardModel()
    with torch.no_grad():
        last = model.net.head[-1]
        last.weight.zero_()
        last.bias.fill_(value)
    return model


@pytest.mark.parametrize("name", NAMES)
def test_made_without_arguments(name):
    module = intrinsic.make(name, OBS, ACT, seed=0)
    rollout = _rollout([["You see gold.", ""], ["You hit it.", "You see gold."]])
    _observe_all(module, rollout)
    reward = module.compute(rollout)
    assert reward.shape == (2, 2) and reward.dtype == torch.float32 and bool(torch.isfinite(reward).all())
    assert isinstance(module.update(rollout), dict)
    twin = intrinsic.make(name, OBS, ACT, seed=0)
    twin.load_state_dict(module.state_dict())
    assert torch.equal(twin.compute(rollout), module.compute(rollout))


@pytest.mark.parametrize("name", NAMES)
def test_needs_a_caption_key(name):
    cls = intrinsic.get(name)
    assert not cls.supports(spaces.Box(0, 1, (3,)))
    assert not cls.supports(spaces.Dict({"image": spaces.Box(0, 1, (3,))}))
    with pytest.raises((ValueError, TypeError), match="caption"):
        intrinsic.make(name, spaces.Box(0, 1, (3,)), ACT)


def test_count_episodic_is_exact_and_resets_at_episode_ends():
    keys = [[b"a", b"x"], [b"a", b"x"], [b"a", b"y"], [b"a", b"x"]]
    dones = np.array([[0, 0], [1, 0], [0, 0], [0, 0]], bool)
    memory = [{}, {}]
    counts = count_episodic(keys, dones, memory)
    assert counts.tolist() == [[1, 1], [2, 2], [1, 1], [2, 3]]
    assert memory[0] == {b"a": 2}  # carried into the next rollout


def test_motif_divides_by_episodic_count_cubed_across_rollouts():
    module = MotifReward(OBS, ACT, reward_model=_constant_model(2.0))
    first = _rollout([["gold", "a"], ["gold", "a"]], dones=[[0, 0], [0, 1]])
    _observe_all(module, first)
    assert module.compute(first).tolist() == [[2.0, 2.0], [2.0 / 8, 2.0 / 8]]
    # env 0's episode goes on (third "gold": 2/27); env 1's ended, so "a" counts from 1 again.
    second = _rollout([["gold", "a"]])
    _observe_all(module, second)
    assert torch.allclose(module.compute(second), torch.tensor([[2.0 / 27, 2.0]]))
    beta0 = MotifReward(OBS, ACT, reward_model=_constant_model(2.0), beta=0.0)
    _observe_all(beta0, first)
    assert bool((beta0.compute(first) == 2.0).all())


def test_motif_threshold_zeroes_low_rewards_and_loads_from_path(tmp_path):
    model = _constant_model(1.0)
    model.threshold.fill_(5.0)
    model.save(tmp_path / "rm.pt")
    module = intrinsic.make("motif", OBS, ACT, reward_model=str(tmp_path / "rm.pt"))
    assert bool((module.compute(_rollout([["gold"]])) == 0).all())
    with pytest.raises(FileNotFoundError, match="rove llm train"):
        MotifReward.from_pretrained(tmp_path / "missing.pt", OBS, ACT)


def test_invalid_autoreset_steps_get_zero_reward():
    module = MotifReward(OBS, ACT, reward_model=_constant_model(1.0))
    rollout = _rollout([["a"], ["b"]], dones=[[1], [0]], valid=[[True], [False]])
    _observe_all(module, rollout)
    assert module.compute(rollout).tolist() == [[1.0], [0.0]]


def _gold_backend(gold_judge):
    return FunctionBackend(gold_judge)


def _drive(module, rollouts, wait_until, ready):
    for r in rollouts:
        _observe_all(module, r)
        module.compute(r)
        module.update(r)
    assert wait_until(lambda: (module.update(rollouts[-1]), ready())[1], timeout=20)


def test_oni_retrieval_learns_labels_online_and_persists_them(tmp_path, gold_judge, wait_until):
    db = str(tmp_path / "oni.db")
    module = intrinsic.make("oni_retrieval", OBS, ACT, backend=_gold_backend(gold_judge), store=db)
    # Every step ends its episode, so each episodic count is 1 and the reward is the label itself.
    rollout = _rollout([["You see gold.", "A wall."], ["A wall.", "gold!"]], dones=np.ones((2, 2), bool))
    assert module.compute(rollout).abs().sum() == 0  # 0 until labelled, and compute never waits
    _drive(module, [rollout], wait_until, lambda: len(module.labels) == 3)
    _observe_all(module, rollout)
    assert module.compute(rollout).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    module.close()
    assert AnnotationStore(db).labels() == {"You see gold.": 1.0, "A wall.": 0.0, "gold!": 1.0}
    # A restarted run reads the stored labels instead of asking again.
    calls = []
    again = intrinsic.make(
        "oni_retrieval", OBS, ACT, backend=FunctionBackend(lambda m: calls.append(m) or "x"), store=db
    )
    # The worker reads the store (never the learner thread): the labels arrive with the next update.
    assert wait_until(lambda: again.update(rollout) is not None and len(again.labels) == 3)
    _observe_all(again, rollout)
    assert again.compute(rollout).tolist() == [[1.0, 0.0], [0.0, 1.0]] and calls == []
    again.close()


def test_annotator_deduplicates_against_done_and_within_batch(gold_judge, wait_until):
    asked = []
    annotator = Annotator(FunctionBackend(lambda m: asked.append(m) or gold_judge(m)), batch_size=10)
    assert annotator.submit(["gold", "wall", "gold"]) == 2
    assert wait_until(lambda: annotator.num_answered == 2)
    assert annotator.submit(["gold", "wall", "door"]) == 1
    assert wait_until(lambda: annotator.num_answered == 3)
    assert len(asked) == 3 and dict(annotator.poll()) == {"gold": 1.0, "wall": 0.0, "door": 0.0}
    annotator.close()


def test_oni_classification_generalises_labels(gold_judge, wait_until):
    module = intrinsic.make(
        "oni_classification",
        OBS,
        ACT,
        backend=_gold_backend(gold_judge),
        train_steps=150,
        lr=3e-3,
        seed=0,
        encoder="light",
    )
    caps = [f"You find {i} gold pieces." for i in range(8)] + [f"You hit the newt {i} times." for i in range(8)]
    rollout = _rollout([caps])
    _drive(module, [rollout], wait_until, lambda: bool(module.trained) and len(module.labels) == 16)
    reward = _rollout([["You find 99 gold pieces.", "You hit the newt 99 times."]])
    assert module.compute(reward).tolist() == [[1.0, 0.0]]
    module.close()


def test_oni_ranking_trains_bradley_terry_online_with_threshold(gold_judge, wait_until):
    module = intrinsic.make(
        "oni_ranking",
        OBS,
        ACT,
        backend=_gold_backend(gold_judge),
        sample_every=1,
        train_steps=100,
        lr=3e-3,
        seed=0,
        encoder="light",
    )
    caps = [f"You find {i} gold pieces." for i in range(10)] + [f"You hit the newt {i} times." for i in range(10)]
    rollout = _rollout([caps])
    _drive(module, [rollout], wait_until, lambda: len(module.labels) >= 50 and bool(module.trained))
    scores = module.reward_model.score(caps)
    assert scores[:10].min() > scores[10:].max()
    out = module.compute(_rollout([caps]))[0]
    assert bool((out[10:] == 0).all()) and bool((out[:10] > 0).all())  # median threshold keeps only the better half
    module.close()


def test_online_pipeline_never_waits_for_a_silent_annotator(chat_server):
    server = chat_server(mode="stall")
    backend = OpenAIBackend(server.base_url, "m", timeout=0.5, max_retries=0)
    modules = [
        intrinsic.make(name, OBS, ACT, annotator=Annotator(backend, task=task, retry_pause=0.1), sample_every=1)
        if name == "oni_ranking"
        else intrinsic.make(name, OBS, ACT, annotator=Annotator(backend, task=task, retry_pause=0.1))
        for name, task in [("oni_retrieval", "helpful"), ("oni_classification", "helpful"), ("oni_ranking", "pairs")]
    ]
    start = time.monotonic()
    for i in range(20):
        rollout = _rollout([[f"caption {i} {j}" for j in range(4)] for _ in range(8)])
        for module in modules:
            _observe_all(module, rollout)
            assert module.compute(rollout).abs().sum() == 0
            module.update(rollout)
    # 60 rollouts done while every request hangs: the learner never blocked on a 0.5 s timeout per caption.
    assert time.monotonic() - start < 15
    assert server.num_requests > 0
    for module in modules:
        module.close()


def test_oni_ranking_pool_keeps_every_tenth_observation_with_duplicates():
    # ONI's online_dataset_subsample=10 keeps observations, not unique captions, and nothing caps the pool.
    module = intrinsic.make("oni_ranking", OBS, ACT, seed=0)
    caps = ["It is dark."] * 18 + ["You find gold."] * 2  # one env, 20 steps per rollout
    for _ in range(50):
        module.compute(_rollout([[c] for c in caps]))
    kept = [caps[i % 20] for i in range(0, 1000, 10)]
    assert module.pool == {c: kept.count(c) for c in set(kept)}
    assert module.pool_observations == 100
    drawn = module._draw(4000)
    assert abs(drawn.count("It is dark.") / 4000 - kept.count("It is dark.") / 100) < 0.03  # pairs follow frequency
    assert "pool_size" not in ONIRanking.__init__.__code__.co_varnames


def test_oni_classification_schedule_and_failed_parse_as_zero(wait_until, monkeypatch):
    import rove.llm.rewards as rewards

    defaults = {
        name: p.default
        for name, p in inspect.signature(ONIClassification).parameters.items()
        if p.kind == p.KEYWORD_ONLY
    }
    assert defaults == {
        "train_steps": 32, "lr": 1e-4, "batch_size": 256, "max_labels": 25_000, "encoder": "lt_cnn",
    }  # fmt: skip
    encoded = []
    real_add = rewards._Rows.add
    monkeypatch.setattr(
        rewards._Rows, "add", lambda self, rows, ys: encoded.append(len(ys)) or real_add(self, rows, ys)
    )
    backend = FunctionBackend(lambda m: "helpful: yes" if "gold" in m[1]["content"].split('message:\n"')[1] else "hmm")
    module = intrinsic.make("oni_classification", OBS, ACT, backend=backend, encoder="light", seed=0)
    module.annotator.max_attempts = 1
    first = _rollout([["You find gold.", "A wall."]])
    _drive(module, [first], wait_until, lambda: len(module.labels) == 2)
    assert module.labels == {"You find gold.": 1.0, "A wall.": None}
    assert module._examples.labels == [1.0, 0.0] or module._examples.labels == [0.0, 1.0]  # unknown counts as 0
    _drive(module, [_rollout([["gold again", "A door."]])], wait_until, lambda: len(module.labels) == 4)
    assert sum(encoded) == len(module.labels) == 4  # each label encoded once, not again at every update
    module.close()


def test_a_long_text_key_instead_of_caption(tmp_path, gold_judge, wait_until):
    # Issue 15: a `text` key (NUL-padded uint8, thousands of bytes) read in place of `caption`.
    length = 2048
    space = spaces.Dict({"text": spaces.Box(0, 255, (length,), np.uint8)})
    long_gold = "You see here 3 gold pieces. " + "The corridor goes on. " * 80
    long_wall = "There is a wall here. " + "The corridor goes on. " * 80
    rows = np.zeros((1, 2, length), np.uint8)
    for j, text in enumerate([long_gold, long_wall]):
        raw = text.encode("latin-1")
        rows[0, j, : len(raw)] = np.frombuffer(raw, np.uint8)
    obs = {"text": torch.as_tensor(rows)}
    rollout = Rollout(
        obs, torch.zeros(1, 2, dtype=torch.long), obs, torch.zeros(1, 2),
        torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool),
    )  # fmt: skip
    assert len(long_gold) > 1000
    db = str(tmp_path / "long.db")
    module = intrinsic.make(
        "oni_retrieval", space, ACT, backend=_gold_backend(gold_judge), store=db, caption_key="text"
    )
    _drive(module, [rollout], wait_until, lambda: len(module.labels) == 2)
    assert module.compute(rollout).tolist() == [[1.0, 0.0]]
    module.close()
    assert AnnotationStore(db).labels() == {long_gold: 1.0, long_wall: 0.0}  # the store keeps the whole text
    motif = intrinsic.make("motif", space, ACT, caption_key="text", seed=0)
    assert motif.reward_model.length == length and motif.compute(rollout).shape == (1, 2)
    ranking = intrinsic.make("oni_ranking", space, ACT, caption_key="text", sample_every=1, seed=0)
    ranking.compute(rollout)
    assert set(ranking.pool) == {long_gold, long_wall}
    with pytest.raises(ValueError, match="'caption' key"):
        intrinsic.make("oni_retrieval", space, ACT)
