"""Asking the judge: first turn, one retry turn for malformed answers (Motif's), then UNKNOWN (``None``).

Motif pairs with identical captions are ties and never reach the LLM (Klissarov et al. 2023, §3). Every
item is judged on its own: a request that fails gives that item a :class:`Judgement` with ``error`` set,
and the other items keep their answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rove.llm.backends import Backend, BackendError, complete_each
from rove.llm.parsing import parse_foo_bar, parse_helpful, parse_preference
from rove.llm.prompts import Conversation, motif_conversation, oni_conversation, retry_turn


@dataclass(frozen=True)
class Judgement:
    """One annotation: ``label`` is None when both turns were unparseable (UNKNOWN) or the request failed
    (``error`` set: nothing was learnt, the item may be asked again)."""

    label: float | None
    answer: str
    retried: bool
    error: BackendError | None = None

    @property
    def unparsed(self) -> bool:
        """The model answered, but no label could be read from it (garbage)."""
        return self.label is None and self.error is None


def _ask(
    backend: Backend,
    conversations: Sequence[Conversation],
    parse: Callable[[str], float | None],
    task: str,
    style: str = "rove",
) -> list[Judgement]:
    results: list[Judgement] = []
    for outcome in complete_each(backend, conversations):
        if isinstance(outcome, BackendError):
            results.append(Judgement(None, "", False, outcome))
        else:
            results.append(Judgement(parse(outcome), outcome, False))
    bad = [i for i, r in enumerate(results) if r.unparsed]
    if bad and style != "oni":  # ONI asks once
        retries = complete_each(backend, [retry_turn(conversations[i], results[i].answer, task, style) for i in bad])
        for i, outcome in zip(bad, retries, strict=True):
            second = "" if isinstance(outcome, BackendError) else outcome
            results[i] = Judgement(parse(second), results[i].answer + "\n[retry]\n" + second, True)
    return results


def judge_pairs(
    backend: Backend,
    pairs: Sequence[tuple[str, str]],
    game: str = "nethack",
    goal: str = "default",
    style: str = "rove",
) -> list[Judgement]:
    """Motif preference for each ``(caption_1, caption_2)``: label = P(caption 1 is better).

    ``style="oni"`` (ONI-ranking) asks Motif's prompt, once."""
    results: list[Judgement | None] = [
        Judgement(0.5, "identical captions", False) if a == b else None for a, b in pairs
    ]
    ask = [i for i, r in enumerate(results) if r is None]
    if ask:
        prompt_style = "motif" if style == "oni" else style
        convs = [motif_conversation(pairs[i][0], pairs[i][1], game, goal, prompt_style) for i in ask]
        for i, judgement in zip(ask, _ask(backend, convs, parse_preference, "motif", style), strict=True):
            results[i] = judgement
    return results  # type: ignore[return-value]


def judge_captions(
    backend: Backend, captions: Sequence[str], game: str = "nethack", goal: str = "default", style: str = "rove"
) -> list[Judgement]:
    """ONI helpful (1.0) / not (0.0) for each caption."""
    convs = [oni_conversation(c, game, goal, style) for c in captions]
    return _ask(backend, convs, parse_foo_bar if style == "oni" else parse_helpful, "oni", style)
