"""Prompt files for the LLM judges (``assets/prompts``) and the chat conversations built from them.

Motif (Klissarov et al. 2023) asks a judge which of two captions shows the better situation given a goal;
ONI (Zheng et al. 2024) asks whether one caption is helpful. Each prompt is a plain-text file with
``{field}`` placeholders so that users can edit wording without touching code; ``ROVE_PROMPTS_DIR``
points at another folder with the same layout.

Three prompt styles (``style=``):

- ``"rove"``: Rove's own prompts, for every game (a game description, a goal, a one-line answer format).
- ``"motif"``: Motif's NetHack prompts as released (``assets/prompts/motif``, from facebookresearch/motif
  ``rlaif/prompts.py``): the knowledge step, "comparative analysis based on first princicples" [sic], the
  goal strings and the retry prompt. ONI-ranking uses the same prompt (ONI's ``ranking_prompt_templates``
  are identical).
- ``"oni"``: ONI's classification prompts as released (``assets/prompts/oni``, from facebookresearch/oni
  ``rlaif/prompts.py``): FOO/BAR labels, "helpful does not mean informative", the few-shot examples and the
  knowledge/analysis/label format; goals ``default``, ``combat``, ``gold`` (the ones ONI wrote). No retry
  turn, as in ONI.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TypedDict

GOALS = ("default", "zero_knowledge", "combat", "gold", "stairs")
GAMES = ("nethack", "crafter", "minigrid")
STYLES = ("rove", "motif", "oni")
ONI_GOALS = ("default", "combat", "gold")
_GAME_NAMES = {"nethack": "NetHack", "crafter": "Crafter", "minigrid": "MiniGrid"}
_FIELD = re.compile(r"\{(\w+)\}")


class Message(TypedDict):
    """One chat turn, as the OpenAI chat-completions API spells it."""

    role: str
    content: str


Conversation = list[Message]


def prompts_dir() -> Path:
    """The prompt folder: ``$ROVE_PROMPTS_DIR`` or the repository's ``assets/prompts``."""
    env = os.environ.get("ROVE_PROMPTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "assets" / "prompts"


@functools.lru_cache(maxsize=64)
def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def load_prompt(name: str) -> str:
    """Reads ``<prompts_dir>/<name>.txt`` (``name`` may contain a sub-folder, e.g. ``"goals/gold"``)."""
    path = prompts_dir() / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {str(path)!r} not found (set ROVE_PROMPTS_DIR to use your own prompts)")
    return _read(str(path))


def render(template: str, **fields: str) -> str:
    """Fills ``{field}`` placeholders in one pass, so braces inside captions are never re-interpreted."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in fields:
            raise KeyError(f"prompt needs field {key!r}; given {sorted(fields)}")
        return fields[key]

    return _FIELD.sub(fill, template)


def game_of(env_id: str) -> str:
    """Maps an env id (``"Rove/NetHackScore-v0"``, ``"MiniGrid-Empty-5x5-v0"``) or suite name to a game."""
    low = env_id.lower().split("/")[-1]
    for game in GAMES:
        if low.startswith(game) or low == game:
            return game
    if low.startswith("babyai"):
        return "minigrid"
    raise ValueError(f"cannot tell the game of {env_id!r}; choose one of {list(GAMES)}")


def _check(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {list(choices)}")


def check_prompt_choices(game: str, goal: str, style: str = "rove") -> None:
    """Raises ``ValueError`` naming the valid choices when ``game``, ``goal`` or ``style`` is unknown or the
    combination does not exist (Motif's and ONI's prompts are written for NetHack)."""
    _check(game, GAMES, "game")
    _check(goal, GOALS, "goal")
    _check(style, STYLES, "prompt style")
    if style != "rove" and game != "nethack":
        raise ValueError(f"the {style!r} prompts are written for NetHack, not {game!r}; use style='rove'")


def _context(game: str, goal: str) -> dict[str, str]:
    check_prompt_choices(game, goal)
    return {
        "game_name": _GAME_NAMES[game],
        "game_description": load_prompt(f"games/{game}"),
        "goal": load_prompt(f"goals/{goal}"),
    }


def motif_conversation(
    caption_1: str, caption_2: str, game: str = "nethack", goal: str = "default", style: str = "rove"
) -> Conversation:
    """The judge's first turn for a pair of captions (Motif's system + user prompt)."""
    if style == "rove":
        ctx = _context(game, goal)
        return [
            {"role": "system", "content": render(load_prompt("motif_system"), **ctx)},
            {
                "role": "user",
                "content": render(load_prompt("motif_user"), caption_1=caption_1, caption_2=caption_2, **ctx),
            },
        ]
    check_prompt_choices(game, goal, style)
    user = render(
        load_prompt("motif/user"), goal=load_prompt(f"motif/goals/{goal}"), caption_1=caption_1, caption_2=caption_2
    )
    return [{"role": "system", "content": load_prompt("motif/system")}, {"role": "user", "content": user}]


def oni_conversation(caption: str, game: str = "nethack", goal: str = "default", style: str = "rove") -> Conversation:
    """ONI's helpful/not question about one caption."""
    if style == "rove":
        ctx = _context(game, goal)
        return [
            {"role": "system", "content": render(load_prompt("oni_system"), **ctx)},
            {"role": "user", "content": render(load_prompt("oni_user"), caption=caption, **ctx)},
        ]
    check_prompt_choices(game, goal, style)
    if style != "oni" or goal not in ONI_GOALS:
        raise ValueError(
            f"ONI's classification prompt exists for style 'oni' and goals {list(ONI_GOALS)}; got {style!r}, {goal!r}"
        )
    user = render(load_prompt(f"oni/classification_{goal}"), caption=caption)
    return [{"role": "system", "content": load_prompt("oni/system")}, {"role": "user", "content": user}]


def retry_turn(conversation: Conversation, answer: str, task: str, style: str = "rove") -> Conversation:
    """The conversation extended by the model's malformed ``answer`` and one short reminder of the format."""
    _check(task, ("motif", "oni"), "task")
    name = "motif/retry" if style == "motif" and task == "motif" else f"{task}_retry"
    return [
        *conversation,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": load_prompt(name)},
    ]
