"""Answer parsing and prompt files."""

import pytest

from rove.llm.parsing import parse_foo_bar, parse_helpful, parse_preference
from rove.llm.prompts import GAMES, GOALS, game_of, motif_conversation, oni_conversation, render, retry_turn


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("analysis...\nbest_description: 1", 1.0),
        ("BEST_DESCRIPTION: 2", 0.0),
        ("Best Description: none", 0.5),
        ('("best_description": None)', 0.5),
        ("**best_description**: 2", 0.0),
        ("best\\_description: message 1", 1.0),
        ("best_description: 2 ... (I was asked for best_description: 1, 2 or None)", 0.0),
    ],
)
def test_preference_parsed_case_insensitively(text, label):
    assert parse_preference(text) == label


@pytest.mark.parametrize("text", ["", "I like message 1", "best_description: 3", "best description: maybe"])
def test_malformed_preference_is_none_not_a_label(text):
    assert parse_preference(text) is None


@pytest.mark.parametrize(("text", "label"), [("helpful: yes", 1.0), ("Helpful: NO", 0.0), ('{"helpful": true}', 1.0)])
def test_helpful_parsed(text, label):
    assert parse_helpful(text) == label


@pytest.mark.parametrize("text", ["", "yes it is", "helpful: perhaps"])
def test_malformed_helpful_is_none(text):
    assert parse_helpful(text) is None


@pytest.mark.parametrize("game", GAMES)
@pytest.mark.parametrize("goal", GOALS)
def test_every_prompt_variant_renders(game, goal):
    conv = motif_conversation("You find {gold}.", "", game, goal)
    assert [m["role"] for m in conv] == ["system", "user"]
    assert "You find {gold}." in conv[1]["content"]  # braces in captions are not placeholders
    assert "{" not in conv[1]["content"].replace("{gold}", "")
    assert "helpful" in oni_conversation("x", game, goal)[1]["content"]


def test_goals_steer_the_prompt():
    texts = {goal: motif_conversation("a", "b", "nethack", goal)[1]["content"] for goal in GOALS}
    assert len(set(texts.values())) == len(GOALS)


def test_retry_turn_appends_answer_and_reminder():
    conv = motif_conversation("a", "b")
    retry = retry_turn(conv, "hmm", "motif")
    assert retry[:2] == conv and retry[2] == {"role": "assistant", "content": "hmm"}
    assert retry[3]["role"] == "user" and "best_description" in retry[3]["content"]


def test_bad_names_raise_with_choices():
    with pytest.raises(ValueError, match="choose from"):
        motif_conversation("a", "b", goal="winning")
    with pytest.raises(KeyError, match="needs field"):
        render("{missing}")
    assert game_of("Rove/NetHackScore-v0") == "nethack" and game_of("MiniGrid-Empty-5x5-v0") == "minigrid"


def test_first_decision_wins_as_in_motif():
    # Motif's rlaif/llms.py takes re.search's (first) match.
    assert parse_preference("best_description: 2. (Format: best_description: 1, 2 or None)") == 0.0


@pytest.mark.parametrize("text", ["unhelpful: yes", "Unhelpful: true"])
def test_unhelpful_is_not_a_helpful_verdict(text):
    assert parse_helpful(text) is None
    assert parse_helpful(text + "\nhelpful: no") == 0.0


def test_foo_bar_labels_as_oni():
    assert parse_foo_bar("<label> FOO </label>") == 1.0 and parse_foo_bar("<label> BAR </label>") == 0.0
    assert parse_foo_bar("BAR ... FOO") == 1.0  # ONI's get_cls_label: FOO anywhere wins
    assert parse_foo_bar("no label") is None


def test_motif_and_oni_prompts_are_the_released_texts():
    conv = motif_conversation("You kill the newt!", "", "nethack", "gold", style="motif")
    system, user = conv[0]["content"], conv[1]["content"]
    assert system.startswith("You are a helpful and honest judge of good gameplaying and progress in the NetHack game.")
    assert "Provide a comparative analysis based on first princicples." in user
    assert "Mention the goal of NetHack. Prefer agents that maximize their gold." in user
    assert '"description_1":\n"You kill the newt!"\n}' in user and '"description_2":\n""\n}' in user
    assert (
        "Mention the goal of NetHack. \n"
        in motif_conversation("a", "b", "nethack", "zero_knowledge", style="motif")[1]["content"]
    )
    retry = retry_turn(conv, "hmm", "motif", style="motif")[-1]["content"]
    assert retry.startswith('So, which one is the best? Please respond by saying ("best_description": 1)')
    oni = oni_conversation("5 gold pieces.", "nethack", "default", style="oni")[1]["content"]
    assert "For extremely helpful messages, assign a label FOO." in oni
    assert "Helpful here does not mean whether it is informative" in oni
    assert 'Please rate this message: {"5 gold pieces."}' in oni and "<label> [FOO/BAR] </label>" in oni
    with pytest.raises(ValueError, match="written for NetHack"):
        motif_conversation("a", "b", "crafter", style="motif")
    with pytest.raises(ValueError, match="goals"):
        oni_conversation("a", "nethack", "stairs", style="oni")
    with pytest.raises(ValueError, match="unknown prompt style"):
        motif_conversation("a", "b", style="llama")
