"""Plugins: intrinsic modules defined outside Rove, usable from the ``rove`` command and in run folders.

Two ways in, as pytest and RL Zoo take them:

- ``rove --import PATH_OR_MODULE`` (repeatable; a ``.py`` file or an importable module name) imports it before
  the command runs, so that its ``@rove.intrinsic.register("name")`` classes can be named by ``--intrinsic``;
- the entry-point group ``rove.intrinsic`` of installed packages: ``name = "pkg.module:Class"`` registers
  ``Class`` as ``name``, ``name = "pkg.module"`` imports the module (which registers its own classes).

The imports travel to every process that trains a run (sweep workers, SLURM jobs) through the environment
variable :data:`ENV_VAR`, and each run folder records them in ``plugins.json`` so that ``rove eval`` of the
run imports them again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

ENTRY_POINT_GROUP = "rove.intrinsic"
ENV_VAR = "ROVE_IMPORT"
RECORD_FILE = "plugins.json"
_IMPORTED: dict[str, ModuleType] = {}


def _is_file(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or Path(target).is_file()


def import_plugin(target: str) -> ModuleType:
    """Imports a ``.py`` file (by path) or a module (by dotted name) once; returns the module.

    Raises:
        ImportError: No such file or module (the message names it).
    """
    key = str(Path(target).resolve()) if _is_file(target) else target
    if key in _IMPORTED:
        return _IMPORTED[key]
    if _is_file(target):
        path = Path(key)
        if not path.is_file():
            raise ImportError(f"--import {target!r}: no such file ({path})")
        name = f"rove_plugin_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickle look classes up by module name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as err:
            raise ImportError(f"--import {target!r}: no such file or module ({err})") from err
    _IMPORTED[key] = module
    return module


def load_entry_points() -> list[str]:
    """Registers every ``rove.intrinsic`` entry point of the installed packages; returns their names."""
    from rove.intrinsic import IntrinsicModule, register

    loaded = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, IntrinsicModule):
            register(ep.name)(obj)
        elif not isinstance(obj, ModuleType):
            raise TypeError(
                f"entry point {ep.name} = {ep.value!r} (group {ENTRY_POINT_GROUP}) must name an IntrinsicModule "
                f"subclass or a module, got {type(obj).__name__}"
            )
        loaded.append(ep.name)
    return loaded


def imports_from_environment() -> list[str]:
    return [t for t in os.environ.get(ENV_VAR, "").split(os.pathsep) if t]


def activate(imports: Iterable[str] = ()) -> list[str]:
    """Imports ``imports`` and those already in :data:`ENV_VAR`, loads the entry points, and puts every import
    (files as absolute paths) into :data:`ENV_VAR` for child processes. Returns the imports."""
    targets = imports_from_environment()
    for target in imports:
        resolved = str(Path(target).resolve()) if _is_file(target) else target
        if resolved not in targets:
            targets.append(resolved)
    for target in targets:
        import_plugin(target)
    load_entry_points()
    if targets:
        os.environ[ENV_VAR] = os.pathsep.join(targets)
    return targets


def record(run_dir: str | Path) -> None:
    """Writes the active imports and entry-point names into ``run_dir/plugins.json`` (when there are any)."""
    imports = imports_from_environment()
    entry_points = sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    if imports or entry_points:
        data = {"imports": imports, "entry_points": entry_points}
        (Path(run_dir) / RECORD_FILE).write_text(json.dumps(data, indent=2) + "\n")


def recorded(run_dir: str | Path) -> dict[str, Any]:
    """``plugins.json`` of a run folder (``{}`` when it has none)."""
    path = Path(run_dir) / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_for_eval(cls: Any, checkpoint: str | Path, device: str) -> Any:
    """``cls.load(checkpoint)`` after importing the plugins its run folder recorded.

    Raises:
        ValueError: The checkpoint's intrinsic module is still unknown; the message says how to provide it.
    """
    checkpoint = Path(checkpoint)
    imports = []
    for folder in (checkpoint.parent.parent, checkpoint.parent):
        imports += recorded(folder).get("imports", [])
    activate(imports)
    try:
        return cls.load(checkpoint, device=device, verbose=0, run_dir=None)
    except KeyError as err:
        message = err.args[0] if err.args else str(err)
        raise ValueError(
            f"{checkpoint} was trained with an intrinsic module that is not registered here ({message}): pass "
            f"--import PATH_OR_MODULE (the file or module that registers it), or install the package whose "
            f"{ENTRY_POINT_GROUP!r} entry point provides it"
        ) from None
