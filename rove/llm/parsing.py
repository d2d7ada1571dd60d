"""Robust parsing of judge answers. A malformed answer is never turned into a label: it returns ``None``.

Labels are floats: for a Motif pair, the probability that caption 1 is better (1.0, 0.0, or 0.5 for a
tie/``None``); for ONI, 1.0 helpful and 0.0 not. ``None`` means unparseable (UNKNOWN after the retries).

The *first* decision in an answer wins, as in Motif (``re.search`` in ``rlaif/llms.py``): an answer that
decides and then discusses the format must not be read by its last mention.
"""

from __future__ import annotations

import re

# Tolerates markdown (``**best_description**``), quotes, escaped underscores, spaces or none, and a filler
# word before the value ("best_description: message 2"), like Motif's pattern (rlaif/prompts.py `regexes`).
_PREFERENCE = re.compile(
    r"best[\s\\_-]*(?:description|message)\W*?(?:is\W*)?(?:(?:message|description)\s*)?(1|2|none)\b", re.IGNORECASE
)
# "helpful" as a whole word: "unhelpful: yes" is not a helpful verdict.
_HELPFUL = re.compile(r"(?<![a-z])helpful\W*?(?:is\W*)?(yes|no|true|false)\b", re.IGNORECASE)
_PREF_VALUE = {"1": 1.0, "2": 0.0, "none": 0.5}


def parse_preference(text: str) -> float | None:
    """Motif's ``best_description: 1 | 2 | None`` → P(caption 1 better) ∈ {1, 0, 0.5}, or None if absent."""
    match = _PREFERENCE.search(text or "")
    return _PREF_VALUE[match.group(1).lower()] if match else None


def parse_helpful(text: str) -> float | None:
    """Rove's ONI prompt: ``helpful: yes | no`` → 1.0 / 0.0, or None if absent."""
    match = _HELPFUL.search(text or "")
    if match is None:
        return None
    return 1.0 if match.group(1).lower() in ("yes", "true") else 0.0


def parse_foo_bar(text: str) -> float | None:
    """ONI's classification prompt: ``FOO`` (helpful) → 1.0, else ``BAR`` → 0.0, else None.

    As ONI's ``get_cls_label`` (``llm_annotator.py``): FOO anywhere wins over BAR; ONI maps a missing label
    to 0, Rove records it UNKNOWN (and ONI-classification trains on it as 0).
    """
    text = text or ""
    if "FOO" in text:
        return 1.0
    if "BAR" in text:
        return 0.0
    return None
