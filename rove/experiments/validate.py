"""Up-front checks of a run's configuration against the real signatures of the agent and the modules.

A typo in an option name or value must stop a run before it starts, in one line that names the bad key or
value and its close matches, never train with a default instead. :func:`check_spec` checks a
:class:`~rove.experiments.runs.RunSpec`; ``rove train``, ``rove sweep`` (``--dry-run`` included) and
:func:`~rove.experiments.runs.train_run` call it before they create a run folder.

What is checked (the README's Development section lists it for users):

- agent options (``agent_kwargs``, a sweep's ``[agent]``) against ``inspect.signature`` of the agent class,
  and ``policy_kwargs`` against its policy class; options the run sets itself (:data:`RUN_SET_AGENT_OPTIONS`)
  are refused with the flag that sets them;
- module options against the module class's ``__init__``, following ``**kwargs`` into the base classes;
  with several modules, ``NAME: {...}`` tables go to that member, other keys to the fusion, and a table
  for a module that is not in the run is refused;
- values whose annotation is a ``Literal`` (``mode``, ``operator``, ``normalize``, ...) or a plain
  ``int``/``float``/``bool``/``str``;
- the device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), resolved by :func:`rove.obs.get_device` as
  the agent resolves it, and refused when it names CUDA on a machine without it.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Agent options the run itself sets, and where a user sets them instead.
RUN_SET_AGENT_OPTIONS = {
    "policy": "the agent's policy is chosen from the env ('auto'); use policy_kwargs",
    "env": "set the env id",
    "intrinsic": "use --intrinsic (a sweep: methods)",
    "intrinsic_kwargs": "use --intrinsic-kwargs (a sweep: [intrinsic_kwargs.<module>] or a method's kwargs)",
    "n_envs": "use --n-envs (a sweep: n_envs)",
    "seed": "use --seed (a sweep: seeds)",
    "device": "use --device (a sweep: device)",
    "run_dir": "use --run-dir / --out",
    "verbose": "use --verbose",
}
# Module options the agent sets itself.
RUN_SET_MODULE_OPTIONS = {
    "observation_space": "the agent passes the env's",
    "action_space": "the agent passes the env's",
    "modules": "list the modules with --intrinsic (a sweep: a method 'a+b')",
}
# Policy options the agent sets itself.
RUN_SET_POLICY_OPTIONS = {
    "observation_space": "the agent passes the env's",
    "action_space": "the agent passes the env's",
}
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
_SIMPLE = (int, float, bool, str, type(None))


def close_matches(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the close matches of ``word`` among ``choices``, else ``""``."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


def unknown(what: str, word: str, choices: Sequence[str]) -> ValueError:
    """The one-line error for an unknown key or value, with close matches and every valid choice."""
    return ValueError(f"{what} {word!r}{close_matches(word, choices)} (valid: {', '.join(map(str, choices))})")


def accepted_options(cls: type) -> dict[str, Any]:
    """``{name: annotation}`` of the keyword options ``cls(...)`` accepts: its ``__init__``'s, and while that
    forwards ``**kwargs`` to ``super().__init__``, the base classes' (the annotation is ``inspect.Parameter.empty``
    where none can be resolved)."""
    options: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # an annotation that does not resolve at run time: check names only
            hints = {}
        params = inspect.signature(init).parameters
        forwards = False
        for name, param in params.items():
            if name == "self" or param.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                forwards = True
                continue
            options.setdefault(name, hints.get(name, inspect.Parameter.empty))
        if not forwards:
            break
    return options


def _split(hint: Any) -> tuple[list[Any], list[Any]]:
    """``(Literal values, other alternatives)`` of an annotation, unions flattened."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        literals: list[Any] = []
        others: list[Any] = []
        for arg in typing.get_args(hint):
            more_literals, more_others = _split(arg)
            literals += more_literals
            others += more_others
        return literals, others
    if origin is typing.Literal:
        return list(typing.get_args(hint)), []
    return [], [hint]


def _name(hint: Any) -> str:
    return "None" if hint is type(None) else str(getattr(hint, "__name__", hint))


def _is_str_like(hint: Any) -> bool:
    """Whether a str may stand for ``hint`` (a path, a type var, anything not a concrete non-str class)."""
    import os

    if isinstance(hint, typing.TypeVar) or hint is os.PathLike:
        return True
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and issubclass(str, origin)  # e.g. object, Sequence, Hashable


def check_value(what: str, value: Any, hint: Any) -> None:
    """Raises ValueError when ``value`` is not a ``Literal`` choice of ``hint`` or not of its plain type."""
    if hint is inspect.Parameter.empty or hint is Any:
        return
    literals, others = _split(hint)
    if literals and value in literals:
        return
    if literals and isinstance(value, str) and str not in others and Any not in others:
        raise unknown(f"{what}: unknown value", value, [str(v) for v in literals])
    if isinstance(value, str) and others and not any(t is str or t is Any or _is_str_like(t) for t in others):
        names = [_name(t) for t in others] + [repr(v) for v in literals]
        raise ValueError(f"{what}: expected {' or '.join(names)}, got {value!r}")
    if not others or not all(isinstance(t, type) and t in _SIMPLE for t in others):
        return  # sequences, callables, modules...: the constructor checks them
    if isinstance(value, bool):  # JSON/TOML true is not a number here
        ok = bool in others
    elif isinstance(value, int):
        ok = int in others or float in others
    else:
        ok = isinstance(value, tuple(others))
    if not ok:
        names = [_name(t) for t in others] + [repr(v) for v in literals]
        raise ValueError(f"{what}: expected {' or '.join(names)}, got {value!r}")


def check_options(what: str, kwargs: Mapping[str, Any], cls: type, run_set: Mapping[str, str]) -> None:
    """Checks every key of ``kwargs`` against ``cls``'s accepted options and every value against its annotation."""
    options = accepted_options(cls)
    valid = sorted(k for k in options if k not in run_set and not k.startswith("_"))
    for key, value in kwargs.items():
        if key in run_set:
            raise ValueError(f"{what}: {key!r} is set by the run, not here: {run_set[key]}")
        if key not in valid:
            raise unknown(f"{what}: unknown option", key, valid)
        check_value(f"{what}: {key}", value, options[key])


def check_intrinsic(names: Sequence[str], kwargs: Mapping[str, Any], where: str = "intrinsic options") -> None:
    """Checks module names and options as :func:`rove.experiments.runs.intrinsic_arguments` will pass them."""
    from rove.intrinsic import get
    from rove.intrinsic import names as module_names

    registered = module_names()
    for name in names:
        if name not in registered:
            raise unknown("unknown intrinsic module", name, registered)
    if not names:
        if kwargs:
            raise ValueError(f"{where} {dict(kwargs)} given without an intrinsic module")
        return
    if len(names) == 1:
        (name,) = names
        for key, value in kwargs.items():
            if key in registered and key != name and isinstance(value, Mapping):
                raise ValueError(f"{where}: options for module {key!r}, which is not in this run ({name})")
        check_options(f"{where} of {name!r}", kwargs, get(name), RUN_SET_MODULE_OPTIONS)
        return
    fusion: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in names:
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}: {key!r} names a fused module; give it a table of options, got {value!r}")
            check_options(f"{where} of {key!r}", value, get(key), RUN_SET_MODULE_OPTIONS)
        elif key in registered and isinstance(value, Mapping):
            raise ValueError(f"{where}: options for module {key!r}, which is not in the fusion ({', '.join(names)})")
        elif isinstance(value, Mapping):
            raise unknown(f"{where}: a table for unknown module", key, list(names))
        else:
            fusion[key] = value
    try:
        check_options(f"{where} of the fusion", fusion, get("fusion"), RUN_SET_MODULE_OPTIONS)
    except ValueError as err:
        raise ValueError(f"{err}, or a table for a fused module: {', '.join(names)}") from None


def check_device(device: str, here: bool = True) -> None:
    """Checks a device name; with ``here``, also resolves it as the agent will (:func:`rove.obs.get_device`)
    and refuses CUDA on a machine without it (``here=False`` for runs launched on other machines)."""
    import torch

    from rove.obs import get_device

    text = str(device)
    kind, _, index = text.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()) or (kind == "auto" and index):
        raise unknown("unknown device", text, ["auto", "cpu", "cuda", "cuda:N", "mps"])
    if not here:
        return
    try:
        resolved = get_device(text)
    except (RuntimeError, ValueError) as err:  # e.g. CUDA named on a machine without it
        raise ValueError(f"device {text!r}: {err}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {text!r}: CUDA is not available on this machine; use 'cpu' or 'auto'")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_spec(spec: Any, here: bool = True) -> None:
    """Checks a :class:`~rove.experiments.runs.RunSpec`: agent options, modules, module options, device
    (``here``: see :func:`check_device`).

    Raises:
        ValueError: One line naming the bad key or value, its close matches and the valid choices.
    """
    from rove.agents import PPO

    check_options("agent options", spec.agent_kwargs, PPO, RUN_SET_AGENT_OPTIONS)
    _check_auto_coefs(spec)
    policy_kwargs = spec.agent_kwargs.get("policy_kwargs")
    if isinstance(policy_kwargs, Mapping):  # the policy PPO builds from the env ("auto")
        check_options("agent options: policy_kwargs", policy_kwargs, PPO.policy_class, RUN_SET_POLICY_OPTIONS)
    check_intrinsic(spec.intrinsic, spec.intrinsic_kwargs)
    check_device(spec.device, here)


def _check_auto_coefs(spec: Any) -> None:
    """``int_coef`` / ``ent_coef``: a number, ``"auto"`` or ``"auto_<init>"`` (MaxInfoRL's tuned weights); an
    automatic intrinsic weight needs an intrinsic module."""
    from rove.agents.common.dual import parse_coef

    for key in ("int_coef", "ent_coef"):
        if key not in spec.agent_kwargs:
            continue
        try:
            _, auto = parse_coef(spec.agent_kwargs[key], key, 1.0)
        except (TypeError, ValueError) as err:
            raise ValueError(f"agent options: {err}") from None
        if key == "int_coef" and auto and not spec.intrinsic:
            raise ValueError("agent options: int_coef='auto' tunes the intrinsic weight: it needs an intrinsic module")
