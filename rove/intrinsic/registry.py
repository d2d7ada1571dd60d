"""Name -> intrinsic-module class. Built-ins load lazily; users register their own with ``@register``."""

from __future__ import annotations

import contextlib
import difflib
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from gymnasium import spaces

from rove.intrinsic.base import IntrinsicModule

M = TypeVar("M", bound=type[IntrinsicModule])

# Built-in modules, imported on first use so that one module's heavy import never slows another's.
_BUILTIN: dict[str, str] = {
    "count": "rove.intrinsic.counts:StateCount",
    "simhash": "rove.intrinsic.counts:SimHashCount",
    "rnd": "rove.intrinsic.rnd:RND",
    "noveld": "rove.intrinsic.noveld:NovelD",
    "ngu": "rove.intrinsic.ngu:NGU",
    "rdd": "rove.intrinsic.rdd:RDD",
    "icm": "rove.intrinsic.icm:ICM",
    "empowerment": "rove.intrinsic.empowerment:Empowerment",
    "disagreement": "rove.intrinsic.disagreement:Disagreement",
    "infogain": "rove.intrinsic.infogain:InfoGain",
    "e3b": "rove.intrinsic.e3b:E3B",
    "ride": "rove.intrinsic.ride:RIDE",
    "re3": "rove.intrinsic.re3:RE3",
    "byol_explore": "rove.intrinsic.byol:BYOLExplore",
    "byol_hindsight": "rove.intrinsic.byol:BYOLHindsight",
    "fusion": "rove.intrinsic.fusion:Fusion",
    "airs": "rove.intrinsic.fusion:AIRS",
    # LLM-preference rewards (rove.llm): they read the ``caption`` observation key.
    "motif": "rove.llm.rewards:MotifReward",
    "oni_retrieval": "rove.llm.rewards:ONIRetrieval",
    "oni_classification": "rove.llm.rewards:ONIClassification",
    "oni_ranking": "rove.llm.rewards:ONIRanking",
}
_REGISTERED: dict[str, type[IntrinsicModule]] = {}


def register(name: str) -> Callable[[M], M]:
    """Class decorator: ``@register("mine")`` makes ``rove.intrinsic.make("mine", ...)`` build the class."""

    def decorate(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, IntrinsicModule)):
            raise TypeError(f"@register({name!r}) needs an IntrinsicModule subclass, got {cls!r}")
        existing = _REGISTERED.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"intrinsic module name {name!r} is already registered to {existing.__qualname__}")
        cls.name = name
        _REGISTERED[name] = cls
        return cls

    return decorate


def names() -> list[str]:
    """Every module name ``make`` accepts."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def builtin_names() -> list[str]:
    """The modules Rove ships (``names()`` also lists those registered by user code)."""
    return sorted(_BUILTIN)


def get(name: str) -> type[IntrinsicModule]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        module_path, cls_name = _BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(module_path), cls_name)
        _REGISTERED.setdefault(name, cls)
        return cls
    close = difflib.get_close_matches(name, names(), n=3)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown intrinsic module {name!r}.{hint} Available: {', '.join(names())}")


def make(name: str, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any) -> IntrinsicModule:
    """Builds the module registered as ``name``; keyword arguments go to its constructor."""
    cls = get(name)
    try:
        return cls(observation_space, action_space, **kwargs)
    except TypeError as err:
        raise TypeError(f"bad options for intrinsic module {name!r}: {err}") from err


def spec_of(module: IntrinsicModule) -> dict[str, Any]:
    """What rebuilds ``module`` with its own settings: its registry name, class path and constructor
    arguments (:attr:`IntrinsicModule.init_kwargs`); built members (a fusion's) become ``(name, kwargs)``."""
    cls = type(module)
    return {
        "name": module.name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "kwargs": _as_spec_value(module.init_kwargs),
    }


def _as_spec_value(value: Any) -> Any:
    if isinstance(value, IntrinsicModule):
        return (value.name, _as_spec_value(value.init_kwargs))
    if isinstance(value, dict):
        return {k: _as_spec_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_spec_value(v) for v in value)
    return value


def from_spec(
    spec: dict[str, Any], observation_space: spaces.Space, action_space: spaces.Space, **overrides: Any
) -> IntrinsicModule:
    """Rebuilds a module from :func:`spec_of`'s record; ``overrides`` replace saved arguments (``device``).

    The class is imported from its path when it can be (a user's class need not be registered), else looked
    up by name.
    """
    module_path, _, qualname = spec["class"].partition(":")
    cls: Any = None
    with contextlib.suppress(ImportError, AttributeError):
        cls = importlib.import_module(module_path)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    if not (isinstance(cls, type) and issubclass(cls, IntrinsicModule)):
        cls = get(spec["name"])
    kwargs = {**spec["kwargs"], **overrides}
    try:
        return cls(observation_space, action_space, **kwargs)
    except TypeError as err:
        raise TypeError(f"bad options for intrinsic module {spec['name']!r}: {err}") from err
