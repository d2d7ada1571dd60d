"""EnvGen's designer (rove/llm/envgen.py): prompts, forgiving parsing of LLM answers, retries, fallback,
the SQLite log, and the loop's config checks. The LLM's happy path is tested with the real CPU model in
test_envgen_loop.py; the backends here only inject faults (malformed or hanging replies)."""

from __future__ import annotations

import json

import pytest

from rove.envs.crafter.world import WorldConfig
from rove.experiments.crafter_score import ACHIEVEMENTS
from rove.llm.backends import FunctionBackend, OpenAIBackend
from rove.llm.envgen import (
    EnvGenError,
    EnvGenLog,
    feedback_turn,
    initial_conversation,
    parse_worlds,
    propose_worlds,
)
from rove.llm.envgen_train import EnvGenConfig, baseline_of

# -- prompts --


def test_initial_prompt_names_every_achievement_setting_and_item():
    text = initial_conversation(4)[0]["content"]
    assert "Design 4 training environments" in text
    assert all(name in text for name in ACHIEVEMENTS)
    for word in ("target_biome", "grassland | mountain | beaches", "coal_rarity", "very common", "zombies"):
        assert word in text
    assert "wood_pickaxe: 0-1" in text and "wood: 0-9" in text
    assert parse_worlds(text)[0]  # its own example is readable


def test_feedback_turn_gives_each_rate_and_the_worlds():
    rates = dict.fromkeys(ACHIEVEMENTS, 0.0) | {"collect_wood": 87.6, "place_table": 12.4}
    world = WorldConfig.from_options({"biome": "mountain", "coal_density": 0.25, "inventory": {"wood": 2}})
    text = feedback_turn(rates, 31, [world], 4)
    assert "collect_wood: 88%" in text and "place_table: 12%" in text and "collect_diamond: 0%" in text
    assert "31 episodes" in text
    assert parse_worlds(text)[0] == [world]  # the worlds shown read back as they were


# -- parsing what LLMs write --
PAPER_STYLE = """Environment 1: wood and tables
```json
{
    "environment_settings": {
        "target_biome": "grassland",  // lots of trees
        "tree_rarity": "very common",
    },
    "inventory_settings": {"sapling": 2}
}
```
Environment 2:
```json
{"environment_settings": {"target_biome": "mountain", "iron_rarity": "very_common", "diamond_rarity": "common"},
 "inventory_settings": {"wood_pickaxe": 1, "stone_pickaxe": 1, "wood": 5}}
```
"""


def test_parses_the_papers_format_with_comments_and_trailing_commas():
    worlds, notes = parse_worlds(PAPER_STYLE)
    assert worlds == [
        WorldConfig(biome="grassland", tree_density=0.3, inventory=(("sapling", 2),)),
        WorldConfig(
            biome="mountain",
            iron_density=0.35,
            diamond_density=0.1,
            inventory=(("stone_pickaxe", 1), ("wood", 5), ("wood_pickaxe", 1)),
        ),
    ]
    assert notes == []


def test_parses_bare_flat_and_python_style_objects():
    text = "Sure! {'target_biome': 'beach', 'zombies': 'none', 'wood': '3', 'coal': 2.0} and {\"cows\": \"many\"}"
    worlds, _ = parse_worlds(text)
    assert worlds == [
        WorldConfig(biome="beaches", zombie_rate=0.0, inventory=(("coal", 2), ("wood", 3))),
        WorldConfig(cow_rate=3.0),
    ]


def test_parses_bare_keys_as_smollm2_writes_them():
    # SmolLM2-135M's answer to the retry turn, verbatim.
    text = (
        'The environment is a JSON object in its own `{environment_settings: {target_biome: "mountain", '
        'coal_rarity: "very common", zombies: "few"}}` block.'
    )
    worlds, _ = parse_worlds(text)
    assert worlds == [WorldConfig(biome="mountain", coal_density=0.25, zombie_rate=0.5)]


def test_unknown_words_and_keys_are_dropped_and_counts_clamped_with_notes():
    text = '{"target_biome": "desert", "coal_rarity": "legendary", "lava": "lots", "wood": 40, "iron_pickaxe": 3, "stone": -2, "gold": 1}'
    worlds, notes = parse_worlds(text)
    assert worlds == [WorldConfig(inventory=(("iron_pickaxe", 1), ("wood", 9)))]
    joined = " | ".join(notes)
    for fragment in ("desert", "legendary", "'lava'", "wood count 40 clamped", "iron_pickaxe count 3", "'gold'"):
        assert fragment in joined, joined


@pytest.mark.parametrize(
    "text",
    [
        "I think the agent should explore more mountains.",
        '```json\n{"environment_settings": {"target_biome": \n```',
        '{"description": "a nice world", "difficulty": "hard"}',
        "```json\n[1, 2, 3]\n```",
        "",
    ],
)
def test_answers_without_a_world_give_none(text):
    assert parse_worlds(text)[0] == []


# -- retries, fallback, the log --
def _scripted(answers):
    calls = []

    def answer(conversation):
        calls.append(conversation)
        item = answers[min(len(calls) - 1, len(answers) - 1)]
        if isinstance(item, Exception):
            raise item
        return item

    return FunctionBackend(answer), calls


def test_malformed_answers_are_retried_then_the_first_cycle_fails_clearly(tmp_path):
    backend, calls = _scripted(["no json here", "{broken", "still nothing"])
    log = EnvGenLog(tmp_path / "llm.sqlite")
    with pytest.raises(EnvGenError, match="no usable environment in 3 attempt"):
        propose_worlds(backend, initial_conversation(4), 4, max_attempts=3, log=log)
    assert len(calls) == 3
    assert "could not read any environment" in calls[1][-1]["content"]  # the retry turn
    assert calls[1][-2] == {"role": "assistant", "content": "no json here"}
    assert [c["attempt"] for c in log.calls()] == [1, 2, 3]


def test_a_later_cycle_falls_back_to_the_previous_worlds(tmp_path):
    backend, calls = _scripted([RuntimeError("model crashed"), "nothing"])
    previous = [WorldConfig(biome="mountain")]
    conversation = initial_conversation(2)
    proposal = propose_worlds(backend, conversation, 2, previous=previous, max_attempts=2)
    assert proposal.fell_back and proposal.worlds == previous and len(calls) == 2
    assert any("model crashed" in n for n in proposal.notes)
    assert len(conversation) == 1  # no answer was added


def test_a_retry_that_works_is_kept_without_the_failed_turns(tmp_path):
    good = '```json\n{"environment_settings": {"target_biome": "grassland"}}\n```'
    backend, _ = _scripted(["garbage", good])
    log = EnvGenLog(tmp_path / "llm.sqlite")
    conversation = initial_conversation(4)
    proposal = propose_worlds(backend, conversation, 4, log=log, cycle=2)
    assert proposal.worlds == [WorldConfig(biome="grassland")] and proposal.attempts == 2
    assert [m["role"] for m in conversation] == ["user", "assistant"] and conversation[1]["content"] == good
    rows = log.calls()
    assert [(r["cycle"], r["attempt"], len(r["worlds"])) for r in rows] == [(2, 1, 0), (2, 2, 1)]


def test_extra_worlds_are_dropped():
    many = "".join(f'{{"target_biome": "{b}"}}' for b in ("grassland", "mountain", "beaches"))
    backend, _ = _scripted([many])
    proposal = propose_worlds(backend, initial_conversation(2), 2)
    assert [w.biome for w in proposal.worlds] == ["grassland", "mountain"]


def test_a_hanging_server_falls_back_within_the_timeout(chat_server):
    server = chat_server(mode="stall")
    backend = OpenAIBackend(server.base_url, timeout=0.3, max_retries=0)
    previous = [WorldConfig(biome="beaches")]
    proposal = propose_worlds(backend, initial_conversation(4), 4, previous=previous, max_attempts=2)
    assert proposal.fell_back and proposal.worlds == previous and server.num_requests == 2


# -- the loop's config --
@pytest.mark.parametrize(
    "values, words",
    [
        ({"cycle": 3}, ["cycle", "cycles", "steps_generated"]),
        ({"cycles": 4, "steps_generated": 10_000, "steps_original": 10_000, "total_timesteps": 80_000}, ["80000"]),
        ({"num_worlds": 9, "n_envs": 8}, ["num_worlds", "9"]),
        ({"env_kwargs": {"world": {}}}, ["world"]),
        ({"agent": {"n_envs": 4}}, ["n_envs"]),
        ({"cycles": -1}, ["cycles", "-1"]),
        ({"steps_original": 0}, ["steps_original"]),
        ({"score_window": 10**9}, ["score_window"]),
    ],
)
def test_bad_loop_config_is_refused_by_name(values, words):
    with pytest.raises(ValueError) as err:
        EnvGenConfig.from_mapping(values)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_phases_cover_the_budget_and_the_baseline_scores_the_same_window():
    config = EnvGenConfig(total_timesteps=100, cycles=2, steps_generated=10, steps_original=15, n_envs=4)
    assert config.phases() == [
        ("generated", 0, 10),
        ("original", 0, 25),
        ("generated", 1, 35),
        ("original", 1, 50),
        ("final", None, 100),
    ]
    baseline = baseline_of(config)
    assert baseline.phases() == [("final", None, 100)] and baseline.score_window == 50
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()
