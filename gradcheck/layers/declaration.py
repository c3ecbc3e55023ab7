"""Declaration-time checks of a course-style layer: each names the argument, its value and
the fix, so a mistake fails at the line that declared the layer, not inside a check."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradcheck.derivation import DerivationError

__all__ = [
    "fixed_settings",
    "function_name",
    "gradient_names",
    "param_dict_name",
    "require_argument_order",
    "require_binds",
    "require_callable",
    "require_names",
]


def function_name(function: Callable[..., Any]) -> str:
    return getattr(function, "__name__", type(function).__name__)


def signature_of(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # builtins and some C callables have none
        return None


def require_callable(where: str, role: str, value: Any) -> None:
    if not callable(value):
        raise DerivationError(
            f"{where}: {role}={value!r} is not callable; pass the function itself, "
            "not the result of calling it."
        )


def require_binds(
    where: str,
    role: str,
    function: Callable[..., Any],
    args: Sequence[str],
    kwargs: Sequence[str],
    fix: str,
) -> None:
    """Fail at declaration time when ``function`` cannot take the call the adapter makes."""
    signature = signature_of(function)
    if signature is None:
        return
    try:
        signature.bind(*args, **dict.fromkeys(kwargs))
    except TypeError as exc:
        call = ", ".join([*args, *(f"{k}=..." for k in kwargs)])
        raise DerivationError(
            f"{where}: {role} {function_name(function)}{signature} cannot be called as "
            f"{function_name(function)}({call}) ({exc}). {fix}"
        ) from None


def require_argument_order(where: str, forward: Callable[..., Any], names: Sequence[str]) -> None:
    """The arrays fill the forward's positional arguments in the order of ``shapes``: when the
    forward names the same arguments in another order, say so instead of swapping them."""
    signature = signature_of(forward)
    if signature is None:
        return
    positional = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][: len(names)]
    if sorted(positional) == sorted(names) and positional != list(names):
        raise DerivationError(
            f"{where}: shapes lists the arrays as ({', '.join(names)}), but "
            f"{function_name(forward)} takes them as ({', '.join(positional)}). The arrays "
            "fill the forward's positional arguments in the order of shapes; list shapes in "
            f"that order: shapes={{{', '.join(repr(n) + ': ...' for n in positional)}}}."
        )


def gradient_names(
    where: str,
    grads: Sequence[str] | None,
    shapes: Mapping[str, Any],
    integers: Mapping[str, Any],
) -> tuple[str, ...]:
    """The names of the gradients the backward returns, in the order it returns them."""
    floats = [name for name in shapes if name not in integers]
    if grads is None:
        if not floats:
            raise DerivationError(
                f"{where}: every input is an integer input, so there is nothing to "
                "differentiate; declare at least one float array in shapes."
            )
        return tuple(floats)
    if isinstance(grads, str) or not isinstance(grads, Sequence) or not grads:
        raise DerivationError(
            f"{where}: grads={grads!r} must be a non-empty sequence of input names, in the "
            f"order the backward returns their gradients, e.g. grads={tuple(floats)!r}."
        )
    for grad in grads:
        if grad in integers:
            raise DerivationError(
                f"{where}: grads names {grad!r}, an integer input; integer inputs are never "
                "differentiated, so leave it out of grads."
            )
        _require_input(where, "grads", grad, shapes)
    return tuple(grads)


def param_dict_name(where: str, param_dict: str | None) -> str | None:
    if param_dict is not None and (
        not isinstance(param_dict, str) or not param_dict.isidentifier()
    ):
        raise DerivationError(
            f"{where}: param_dict={param_dict!r} must be the name of the layer's settings "
            "argument as a string, e.g. param_dict='conv_param', or None to pass the params "
            "as keyword arguments."
        )
    return param_dict


def fixed_settings(
    where: str, fixed: Mapping[str, Any] | None, params: Mapping[str, Any]
) -> dict[str, Any]:
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping) or not all(isinstance(k, str) for k in fixed):
        raise DerivationError(
            f"{where}: fixed={fixed!r} must be a mapping of setting name to value, "
            "e.g. fixed={'mode': 'train'}."
        )
    clash = sorted(set(fixed) & set(params))
    if clash:
        raise DerivationError(
            f"{where}: {', '.join(map(repr, clash))} is both searched (params) and fixed; "
            "keep it in params to search it, or in fixed to hold it constant."
        )
    return dict(fixed)


def require_names(
    where: str, role: str, names: Sequence[str] | None, shapes: Mapping[str, Any]
) -> tuple[str, ...]:
    """``names`` (booleans=...) as a tuple, each one an input of ``shapes``."""
    if names is None:
        return ()
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise DerivationError(
            f"{where}: {role}={names!r} must be a sequence of input names, e.g. {role}=('mask',)."
        )
    for name in names:
        _require_input(where, role, name, shapes)
    return tuple(names)


def _require_input(where: str, role: str, name: str, shapes: Mapping[str, Any]) -> None:
    """``name``, given in ``role=``, is an input of ``shapes``; else the closest one."""
    if name not in shapes:
        close = difflib.get_close_matches(str(name), list(shapes), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DerivationError(
            f"{where}: {role} names {name!r}, which has no entry in shapes (inputs: "
            f"{', '.join(shapes)}){hint}"
        )
