"""Find the derivations a command line names: a ``.py`` file, or ``module[:attribute]``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from gradcheck.derivation import Derivation

__all__ = ["TargetError", "derivations_in", "load_target"]


class TargetError(Exception):
    """A target could not be loaded or holds no derivation: a usage problem (exit 2)."""


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
    except Exception as exc:
        del sys.modules[module_name]
        raise TargetError(f"cannot import {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    # A console script does not put the working directory on sys.path; `python -m` does.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise TargetError(f"cannot import module {name!r}: {type(exc).__name__}: {exc}") from exc


def derivations_in(namespace: Any) -> list[Derivation]:
    """Every ``Derivation`` among a module's globals (or in a list/tuple), in order, once."""
    values: Iterable[Any]
    if isinstance(namespace, ModuleType):
        values = vars(namespace).values()
    elif isinstance(namespace, Derivation):
        values = [namespace]
    elif isinstance(namespace, list | tuple | set | frozenset):
        values = namespace
    elif isinstance(namespace, dict):
        values = namespace.values()
    else:
        values = []
    seen: dict[int, Derivation] = {}
    for value in values:
        if isinstance(value, Derivation):
            seen.setdefault(id(value), value)
    return list(seen.values())


def load_target(target: str) -> list[Derivation]:
    """The derivations in ``target``: ``file.py``, ``file.py:attr``, ``module``, ``module:attr``."""
    file_part, _, file_attribute = target.partition(".py:")
    if file_attribute:  # path/to/file.py:attribute
        file_part += ".py"
    path = Path(file_part)
    if file_part.endswith(".py") or path.is_file():
        if not path.is_file():
            raise TargetError(f"no such file: {file_part!r}")
        value: Any = _import_file(path)
        if file_attribute:
            if not hasattr(value, file_attribute):
                raise TargetError(f"{file_part!r} has no attribute {file_attribute!r}")
            value = getattr(value, file_attribute)
        found = derivations_in(value)
    else:
        module_name, _, attribute = target.partition(":")
        if not module_name:
            raise TargetError(f"target {target!r} names no module; write module or module:attr")
        value = _import_module(module_name)
        for part in attribute.split(".") if attribute else []:
            if not hasattr(value, part):
                raise TargetError(f"module {module_name!r} has no attribute {attribute!r}")
            value = getattr(value, part)
        found = derivations_in(value)
    if not found:
        raise TargetError(
            f"no Derivation found in {target!r}: define one at module level "
            "(name = Derivation(...)) or name it as module:attribute"
        )
    return found
