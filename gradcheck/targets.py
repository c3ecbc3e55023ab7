"""Find the derivations a command line names: a ``.py`` file, or ``module[:attribute]``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gradcheck.derivation import Derivation

__all__ = [
    "Found",
    "TargetError",
    "derivations_in",
    "duplicate_names",
    "find_derivations",
    "load_target",
    "named_derivations",
]


class TargetError(Exception):
    """A target could not be loaded or holds no derivation: a usage problem (exit 2)."""


def _exit_reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported"
    return f"{type(exc).__name__}: {exc}"


def _import_file(path: Path) -> ModuleType:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    module_name = f"gradcheck_target_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Like `python file.py`: the file's own folder is importable, so it may import siblings.
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a sys.exit() at import is a usage problem too
        del sys.modules[module_name]
        raise TargetError(f"cannot import {str(path)!r}: {_exit_reason(exc)}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    # A console script does not put the working directory on sys.path; `python -m` does.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except (Exception, SystemExit) as exc:
        raise TargetError(f"cannot import module {name!r}: {_exit_reason(exc)}") from exc


def named_derivations(namespace: Any, prefix: str = "") -> list[tuple[str, Derivation]]:
    """(where it is held, the derivation) for every ``Derivation`` among a module's globals,
    in its lists and dicts of them (not _underscored ones), or in a container itself; in
    order, each object once. Where it is held reads ``good``, ``LAYERS[2]``, ``LAYERS['fc']``."""
    items: Iterable[tuple[str, Any]]
    if isinstance(namespace, ModuleType):
        items = vars(namespace).items()
    elif isinstance(namespace, Derivation):
        items = [(prefix, namespace)]
    elif isinstance(namespace, list | tuple):
        items = [(f"{prefix}[{i}]", value) for i, value in enumerate(namespace)]
    elif isinstance(namespace, set | frozenset):
        items = [(prefix, value) for value in namespace]
    elif isinstance(namespace, dict):
        items = [(f"{prefix}[{key!r}]", value) for key, value in namespace.items()]
    else:
        items = []
    found: dict[int, tuple[str, Derivation]] = {}
    for where, value in items:
        if isinstance(value, Derivation):
            found.setdefault(id(value), (where, value))
        elif (
            isinstance(namespace, ModuleType)
            and isinstance(value, list | dict)
            and not where.startswith("_")
        ):
            # One level only: a module's list or dict of derivations, not any data it holds;
            # an _underscored one stays data, as for the pytest plugin.
            for inner_where, inner in named_derivations(value, where):
                found.setdefault(id(inner), (inner_where, inner))
    return list(found.values())


def derivations_in(namespace: Any) -> list[Derivation]:
    """Every ``Derivation`` among a module's globals (or in a list/tuple), in order, once."""
    return [derivation for _, derivation in named_derivations(namespace)]


@dataclass(frozen=True)
class Found:
    """A derivation a target holds: the target as given, the variable that holds it
    (``good``, ``LAYERS[2]``), and the target that names it alone (for a reproduce line)."""

    target: str
    variable: str
    derivation: Derivation
    alone: str


def _display(attribute: str, variable: str) -> str:
    """The variable as a user reads it: ``good``, ``LAYERS[2]``, ``gradcheck.layers``."""
    if not attribute or not variable:
        return attribute or variable
    return attribute + variable if variable.startswith("[") else f"{attribute}.{variable}"


def _alone(module_part: str, held_in: str, derivation: Derivation) -> str:
    """The target that names one derivation alone: ``file.py:good``, and for an element
    of a list or dict, the container and the derivation's name (``file.py:LAYERS.relu``)."""
    if "[" in held_in:
        container = held_in[: held_in.index("[")]
        if "." in derivation.name or ":" in derivation.name:
            return f"{module_part}:{container}"  # not nameable alone: its whole container
        held_in = f"{container}.{derivation.name}"
    return f"{module_part}:{held_in}" if held_in else module_part


def _resolve(value: Any, where: str, attribute: str) -> Any:
    """``attribute`` (dotted) inside ``value``; inside a list or dict of derivations a part
    names one by its name, as the reproduce lines do."""
    for part in attribute.split(".") if attribute else []:
        if isinstance(value, list | tuple | dict | set | frozenset):
            by_name = {d.name: d for d in derivations_in(value)}
            if part in by_name:
                value = by_name[part]
                continue
        elif hasattr(value, part):
            value = getattr(value, part)
            continue
        raise TargetError(f"{where} has no attribute {attribute!r}")
    return value


def find_derivations(target: str) -> list[Found]:
    """The derivations in ``target`` (``file.py``, ``file.py:attr``, ``module``,
    ``module:attr``), each with the variable that holds it."""
    file_part, _, attribute = target.partition(".py:")
    if attribute:  # path/to/file.py:attribute
        file_part += ".py"
    path = Path(file_part)
    if file_part.endswith(".py") or path.is_file():
        if not path.is_file():
            raise TargetError(f"no such file: {file_part!r}")
        module_part = file_part
        value: Any = _resolve(_import_file(path), repr(file_part), attribute)
    else:
        module_part, _, attribute = target.partition(":")
        if not module_part:
            raise TargetError(f"target {target!r} names no module; write module or module:attr")
        value = _resolve(_import_module(module_part), f"module {module_part!r}", attribute)
    held = named_derivations(value)
    if not held:
        raise TargetError(
            f"no Derivation found in {target!r}: define one at module level "
            "(name = Derivation(...)) or name it as module:attribute"
        )
    found = []
    for variable, derivation in held:
        held_in = _display(attribute, variable)
        found.append(Found(target, held_in, derivation, _alone(module_part, held_in, derivation)))
    return found


def load_target(target: str) -> list[Derivation]:
    """The derivations in ``target``: ``file.py``, ``file.py:attr``, ``module``, ``module:attr``."""
    return [found.derivation for found in find_derivations(target)]


def duplicate_names(found: Iterable[Found]) -> str | None:
    """Why two derivations cannot run side by side (they share a name), or None."""
    first: dict[str, Found] = {}
    for item in found:
        earlier = first.setdefault(item.derivation.name, item)
        if earlier is not item and earlier.derivation is not item.derivation:
            return (
                f"two Derivations are named {item.derivation.name!r}: {earlier.variable} "
                f"(in {earlier.target}) and {item.variable} (in {item.target}); give each "
                "its own name= so that results and reproduce lines tell them apart"
            )
    return None
