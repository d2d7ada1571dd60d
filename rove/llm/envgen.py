"""EnvGen's environment designer: an LLM writes Crafter world configurations and adapts them to feedback.

EnvGen (Zala, Cho, Lin, Yoon, Bansal 2024, "EnvGen: Generating and Adapting Environments via LLMs for
Training Embodied Agents", COLM; code: aszala/EnvGen, ``environment_generation/generate_initial_environment.py``
and ``update_environments.py``). What the release does, and Rove with it:

- One chat with the LLM (GPT-4-Turbo, temperature 0). The first prompt describes the game, the 22
  achievements, the settings it may choose (``target_biome: grassland | mountain | beaches | natural``;
  ``coal/iron/diamond/tree_rarity: rare | common | very common``; starting items ``0-9``, tools ``0-1``) and
  the game's constraints, and asks for four environments, one ```json block each, ``{"environment_settings":
  {...}, "inventory_settings": {...}}``. After training, a user turn gives the agent's success rate per
  achievement (percent) and asks for new environments; earlier turns stay in the conversation.
- The answer is read block by block (``//`` comments cut, ``True/False`` lowered) and each rarity word is
  mapped to a spawn threshold in their modified crafter (``env.py``); an unreadable block crashes the run.

Rove's designer (:func:`propose_worlds`) keeps that conversation and format (prompts in
``assets/prompts/envgen``) and works with any :mod:`rove.llm.backends` backend, down to the CPU model
(:mod:`rove.llm.smollm2`), whose answers are often broken. Deviations, each on purpose:

- Parsing is forgiving (:func:`parse_worlds`): fenced blocks or bare ``{...}`` objects; comments, trailing
  commas, single quotes, bare keys and Python literals repaired; flat objects accepted as well as the nested format;
  unknown keys and words dropped and out-of-range counts clamped (each noted), so every world it returns is a
  valid :class:`~rove.envs.crafter.world.WorldConfig`. An object with no setting it knows is not a world.
- An answer with no world is retried up to ``max_attempts`` times with a retry turn naming the problem (the
  failed turns are not kept in the conversation). After that the designer **falls back to the previous
  cycle's worlds** (a note says so); at the first cycle there are none, and it raises :class:`EnvGenError`.
- Fewer worlds than asked are used as given (the envs are shared among them); extra ones are dropped.
- Rove's words for creatures (``cows/zombies/skeletons: none | few | normal | many`` = rate 0, 0.5, 1, 3) are
  an addition; the authors' env has creature switches and counts that their prompt does not offer.
- The feedback is one success rate per achievement over the original-Crafter episodes of the cycle (the
  authors give mean ± std over several evaluation runs).
- Every call is logged to SQLite (:class:`EnvGenLog`): the conversation, the answer, the worlds read.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rove.envs.crafter.world import START_ITEMS, WorldConfig
from rove.experiments.crafter_score import ACHIEVEMENTS
from rove.llm.backends import Backend, BackendError, complete_each
from rove.llm.prompts import Conversation, load_prompt, render

# The settings the LLM may write, as in the authors' prompt (their rarity thresholds as probabilities).
RARITY = {
    "coal": {"rare": 0.05, "common": 0.15, "very common": 0.25},
    "iron": {"rare": 0.15, "common": 0.25, "very common": 0.35},
    "diamond": {"rare": 0.006, "common": 0.1, "very common": 0.15},
    "tree": {"rare": 0.1, "common": 0.2, "very common": 0.3},
}
BIOME_WORDS = {"natural": "natural", "grassland": "grassland", "mountain": "mountain", "beaches": "beaches"}
_BIOME_ALIASES = {"default": "natural", "none": "natural", "mountains": "mountain", "beach": "beaches"}
CREATURE_WORDS = {"none": 0.0, "few": 0.5, "normal": 1.0, "many": 3.0}
TOOLS = tuple(n for n in START_ITEMS if n.endswith(("_pickaxe", "_sword")))
SETTINGS = ("target_biome", *(f"{r}_rarity" for r in RARITY), "cows", "zombies", "skeletons")
EXAMPLE = {
    "environment_settings": {"target_biome": "mountain", "coal_rarity": "very common", "zombies": "few"},
    "inventory_settings": {"wood": 2, "wood_pickaxe": 1},
}


class EnvGenError(RuntimeError):
    """The designer could not get a usable environment from the LLM and has none to fall back to."""


@dataclasses.dataclass
class Proposal:
    """What one design step produced.

    Attributes:
        worlds: The worlds to train in (valid configs; the previous ones when ``fell_back``).
        answer: The accepted answer text ("" when it fell back).
        attempts: LLM calls made.
        notes: What parsing repaired or dropped, and why a fallback happened.
        fell_back: Whether no answer was usable and the previous worlds were kept.
    """

    worlds: list[WorldConfig]
    answer: str
    attempts: int
    notes: list[str]
    fell_back: bool = False


# ----- prompts -----
def options_text() -> str:
    """The settings block of the prompt."""
    lines = ["target_biome: " + " | ".join(BIOME_WORDS)]
    lines += [f"{r}_rarity: rare | common | very common" for r in RARITY]
    lines += [f"{c}: " + " | ".join(CREATURE_WORDS) for c in ("cows", "zombies", "skeletons")]
    return "\n".join(lines)


def items_text() -> str:
    return "\n".join(f"{name}: {'0-1' if name in TOOLS else '0-9'}" for name in START_ITEMS)


def describe_world(world: WorldConfig) -> dict[str, Any]:
    """A world in the LLM's own format (words where a word matches the value exactly, else the number)."""
    settings: dict[str, Any] = {"target_biome": world.biome}
    for resource, words in RARITY.items():
        value = getattr(world, f"{resource}_density")
        word = next((w for w, p in words.items() if p == value), None)
        settings[f"{resource}_rarity"] = word if word is not None else value
    for creature in ("cow", "zombie", "skeleton"):
        value = getattr(world, f"{creature}_rate")
        word = next((w for w, r in CREATURE_WORDS.items() if r == value), None)
        settings[f"{creature}s"] = word if word is not None else value
    return {"environment_settings": settings, "inventory_settings": dict(world.inventory)}


def initial_conversation(num_worlds: int, game: str | None = None) -> Conversation:
    """The first turn: design ``num_worlds`` environments."""
    text = render(
        load_prompt("envgen/initial"),
        game=game if game is not None else load_prompt("games/crafter"),
        num_worlds=str(num_worlds),
        achievements=", ".join(ACHIEVEMENTS),
        options=options_text(),
        items=items_text(),
        example=json.dumps(EXAMPLE),
    )
    return [{"role": "user", "content": text}]


def feedback_turn(rates: Mapping[str, float], episodes: int, worlds: Sequence[WorldConfig], num_worlds: int) -> str:
    """The user turn after a cycle: success rate per achievement (percent) and the worlds trained in."""
    scores = "\n".join(f"{name}: {round(float(rates.get(name, 0.0)))}%" for name in ACHIEVEMENTS)
    environments = "\n".join(
        f"Environment {i + 1}:\n```json\n{json.dumps(describe_world(w), indent=2)}\n```" for i, w in enumerate(worlds)
    )
    return render(
        load_prompt("envgen/feedback"),
        episodes=str(episodes),
        scores=scores,
        environments=environments,
        num_worlds=str(num_worlds),
    )


def retry_turn(problem: str, num_worlds: int) -> str:
    return render(
        load_prompt("envgen/retry"),
        problem=problem,
        num_worlds=str(num_worlds),
        example=json.dumps(EXAMPLE, indent=2),
    )


# ----- parsing -----
_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.DOTALL)
_COMMENT = re.compile(r"//[^\n]*|#[^\n]*")
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _objects(text: str) -> list[str]:
    """Top-level ``{...}`` spans of ``text`` (braces balanced; strings respected)."""
    spans, depth, start, quote, escape = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = ""
            continue
        if ch == '"':
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def _load(candidate: str) -> Any:
    cleaned = _TRAILING_COMMA.sub(r"\1", _COMMENT.sub("", candidate))
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError:
        pass
    try:  # single quotes, True/False/None: a Python literal
        return ast.literal_eval(cleaned)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    lowered = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", cleaned)).replace("'", '"')
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        # JavaScript-style bare keys ({target_biome: "mountain"}), as SmolLM2-135M writes them.
        return json.loads(_BARE_KEY.sub(r'\1"\2":', lowered))


def _word(value: Any) -> str:
    return re.sub(r"[\s_-]+", " ", str(value)).strip().lower()


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return round(value)
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*", str(value))
    return round(float(match.group(1))) if match else None


def interpret(obj: Mapping[str, Any], notes: list[str]) -> WorldConfig | None:
    """One LLM environment (nested or flat) as a valid world; None if it sets nothing Rove knows."""
    settings: dict[str, Any] = {}
    items: dict[str, Any] = {}
    for key, value in obj.items():
        k = _word(key).replace(" ", "_")
        if k in ("environment_settings", "settings", "environment", "world") and isinstance(value, Mapping):
            settings.update(value)
        elif k in ("inventory_settings", "inventory", "items", "starting_items") and isinstance(value, Mapping):
            items.update(value)
        elif k in START_ITEMS:
            items[k] = value
        else:
            settings[key] = value
    options: dict[str, Any] = {}
    inventory: dict[str, int] = {}
    known = 0
    for key, value in settings.items():
        k = _word(key).replace(" ", "_")
        word = _word(value)
        if k in ("target_biome", "biome"):
            biome = BIOME_WORDS.get(word) or _BIOME_ALIASES.get(word)
            if biome is None:
                notes.append(f"unknown biome {value!r} ignored (choose from {list(BIOME_WORDS)})")
                continue
            options["biome"], known = biome, known + 1
        elif k.endswith("_rarity") and k[: -len("_rarity")] in RARITY:
            resource = k[: -len("_rarity")]
            if word in ("default", "normal", "standard"):
                known += 1
                continue
            if word not in RARITY[resource]:
                notes.append(f"unknown {k} {value!r} ignored (choose from {list(RARITY[resource])})")
                continue
            options[f"{resource}_density"], known = RARITY[resource][word], known + 1
        elif k in ("cows", "zombies", "skeletons"):
            if word not in CREATURE_WORDS:
                notes.append(f"unknown {k} {value!r} ignored (choose from {list(CREATURE_WORDS)})")
                continue
            options[f"{k[:-1]}_rate"], known = CREATURE_WORDS[word], known + 1
        else:
            notes.append(f"unknown setting {key!r} ignored")
    for key, value in items.items():
        name = _word(key).replace(" ", "_")
        if name not in START_ITEMS:
            notes.append(f"unknown item {key!r} ignored")
            continue
        count = _count(value)
        if count is None:
            notes.append(f"count {value!r} of {name} ignored")
            continue
        top = 1 if name in TOOLS else 9
        if not 0 <= count <= top:
            notes.append(f"{name} count {count} clamped to [0, {top}]")
            count = min(max(count, 0), top)
        known += 1
        if count:
            inventory[name] = count
    if known == 0:
        return None
    return WorldConfig.from_options({**options, "inventory": inventory})


def parse_worlds(text: str) -> tuple[list[WorldConfig], list[str]]:
    """Every environment that can be read from an LLM answer, with notes on what was repaired or dropped."""
    notes: list[str] = []
    blocks = _FENCE.findall(text or "")
    candidates = [span for block in blocks for span in _objects(block)] if blocks else []
    if not candidates:
        candidates = _objects(text or "")
    worlds: list[WorldConfig] = []
    for candidate in candidates:
        try:
            obj = _load(candidate)
        except (json.JSONDecodeError, ValueError, SyntaxError) as err:
            notes.append(f"unreadable JSON skipped ({type(err).__name__})")
            continue
        if not isinstance(obj, Mapping):
            notes.append("a block that is not an object skipped")
            continue
        world = interpret(obj, notes)
        if world is None:
            notes.append("an object without any known setting skipped")
        else:
            worlds.append(world)
    return worlds, notes


# ----- the design step -----
def propose_worlds(
    backend: Backend,
    conversation: Conversation,
    num_worlds: int,
    *,
    previous: Sequence[WorldConfig] | None = None,
    max_attempts: int = 3,
    log: EnvGenLog | None = None,
    cycle: int = 0,
) -> Proposal:
    """Asks the LLM for ``num_worlds`` worlds (``conversation`` ends with the user's request).

    Each unusable answer (no world read, or the backend failed) gets a retry turn, up to ``max_attempts``
    calls. On success the answer is appended to ``conversation`` (in place); after the last failure the
    ``previous`` worlds are returned (``fell_back``) and ``conversation`` gets no answer.

    Raises:
        EnvGenError: No usable answer and no ``previous`` worlds (the first cycle).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    notes: list[str] = []
    turns: Conversation = list(conversation)
    problem = ""
    for attempt in range(1, max_attempts + 1):
        started = time.perf_counter()
        outcome = complete_each(backend, [turns])[0]
        seconds = time.perf_counter() - started
        worlds: list[WorldConfig] = []
        if isinstance(outcome, BackendError):
            answer, parse_notes = "", [f"LLM call failed: {outcome}"]
        else:
            answer = outcome
            worlds, parse_notes = parse_worlds(answer)
        notes += [f"attempt {attempt}: {n}" for n in parse_notes]
        if log is not None:
            log.record(cycle, attempt, turns, answer, parse_notes, worlds, seconds)
        if worlds:
            if len(worlds) > num_worlds:
                notes.append(f"{len(worlds)} worlds given, the first {num_worlds} kept")
                worlds = worlds[:num_worlds]
            conversation.append({"role": "assistant", "content": answer})
            return Proposal(worlds, answer, attempt, notes)
        problem = parse_notes[-1] if parse_notes else "no JSON object found"
        turns = [*conversation, {"role": "assistant", "content": answer}, {"role": "user", "content": ""}]
        turns[-1]["content"] = retry_turn(problem, num_worlds)
    if not previous:
        raise EnvGenError(
            f"the LLM gave no usable environment in {max_attempts} attempt(s) (last problem: {problem}) and there "
            "are no earlier worlds to fall back to; try a larger model, more max_attempts, or check the backend"
        )
    notes.append(f"no usable answer in {max_attempts} attempt(s): the previous worlds are kept")
    return Proposal(list(previous), "", max_attempts, notes, fell_back=True)


class EnvGenLog:
    """Every designer call in a SQLite table ``calls`` (cycle, attempt, conversation, answer, notes, worlds)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, cycle INTEGER, attempt INTEGER, "
                "conversation TEXT, answer TEXT, notes TEXT, worlds TEXT, seconds REAL, time REAL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0)

    def record(
        self,
        cycle: int,
        attempt: int,
        conversation: Conversation,
        answer: str,
        notes: Sequence[str],
        worlds: Sequence[WorldConfig],
        seconds: float,
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO calls (cycle, attempt, conversation, answer, notes, worlds, seconds, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cycle,
                    attempt,
                    json.dumps(conversation),
                    answer,
                    json.dumps(list(notes)),
                    json.dumps([w.to_dict() for w in worlds]),
                    seconds,
                    time.time(),
                ),
            )
        conn.close()

    def calls(self) -> list[dict[str, Any]]:
        """All calls, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT cycle, attempt, answer, notes, worlds FROM calls ORDER BY id").fetchall()
        conn.close()
        return [
            {"cycle": c, "attempt": a, "answer": ans, "notes": json.loads(n), "worlds": json.loads(w)}
            for c, a, ans, n, w in rows
        ]
