"""Command-line parsing: step counts (``1e6``, ``100k``) and, for the CleanRL-style scripts in ``experiments/``,
a dataclass as the argument list."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Sequence
from typing import Any, TypeVar

A = TypeVar("A")
_TYPES = {"int": int, "float": float, "str": str}
_SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}
_STEPS = re.compile(r"^([0-9][0-9_]*(?:\.[0-9_]*)?(?:e[+-]?[0-9]+)?)([kmbg]?)$")


def parse_steps(text: str | int | float) -> int:
    """A step count from ``1000``, ``1_000_000``, ``1e6``, ``2.5e5``, ``100k``, ``1.5M`` or ``1B``.

    Raises:
        ValueError: Not a number, not a whole number of steps, or not >= 1 (argparse shows the message).
    """
    if isinstance(text, bool):
        raise ValueError(f"a step count must be a number, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _STEPS.match(text.strip().lower())
        if match is None or match.group(1).startswith("_") or "__" in match.group(1):
            raise ValueError(f"not a step count: {text!r} (write e.g. 100000, 100_000, 1e5 or 100k)")
        value = float(match.group(1).replace("_", "")) * _SUFFIXES.get(match.group(2), 1)
    if value != int(value):
        raise ValueError(f"a step count must be a whole number, got {text!r} = {value}")
    if value < 1:
        raise ValueError(f"a step count must be >= 1, got {text!r}")
    return int(value)


def parse_dataclass_args(cls: type[A], argv: Sequence[str] | None, description: str) -> A:
    """Builds ``cls`` from ``--field-name VALUE`` flags; each field's ``metadata["help"]`` is its help line.

    Fields are ``int``, ``float``, ``str`` or ``bool`` (``--flag`` / ``--no-flag``), annotated as strings
    (``from __future__ import annotations``) or as types.
    """
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag = f"--{f.name.replace('_', '-')}"
        kind: Any = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        elif kind in _TYPES:
            parser.add_argument(flag, type=_TYPES[kind], default=f.default, help=f.metadata["help"])
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported argument type {f.type!r}")
    return cls(**vars(parser.parse_args(argv)))
