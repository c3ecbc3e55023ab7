"""Check a layer written the way courses teach it, with no glue code.

Courses write a layer as two functions::

    out, cache = conv_forward_naive(x, w, b, conv_param)
    dx, dw, db = conv_backward_naive(dout, cache)

and a loss as one: ``loss, dx = softmax_loss(x, y)``. ``course_layer`` and ``course_loss``
turn such functions and a torch spec of the same layer into a ``Derivation``: the arrays
named in ``shapes`` fill the positional arguments in order, the searched ``params`` are
packed into the layer's ``conv_param``-style dict, the forward is called to get the cache,
and the gradients the backward returns are matched to names in order. Along the way the
layer's own ``out`` is compared with the spec's, so a wrong forward is caught too.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck.compare import compare
from gradcheck.derivation import Derivation, DerivationError, DimRange, IntegerRange
from gradcheck.diagnose import constant_ratio
from gradcheck.messages import format_mismatch, format_ratio
from gradcheck.references.autograd import as_tensor
from gradcheck.tolerances import for_dtype

__all__ = ["ForwardMismatch", "LayerCallError", "course_layer", "course_loss"]


class ForwardMismatch(AssertionError):
    """A course-style forward computed a different ``out`` than the spec forward."""


class LayerCallError(TypeError):
    """A course-style function returned something the adapter cannot use (not a tuple,
    the wrong number of gradients): a problem in the layer, reported as such."""


def _function_name(function: Callable[..., Any]) -> str:
    return getattr(function, "__name__", type(function).__name__)


def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # builtins and some C callables have none
        return None


def _require_callable(where: str, role: str, value: Any) -> None:
    if not callable(value):
        raise DerivationError(
            f"{where}: {role}={value!r} is not callable; pass the function itself, "
            "not the result of calling it."
        )


def _require_binds(
    where: str,
    role: str,
    function: Callable[..., Any],
    args: Sequence[str],
    kwargs: Sequence[str],
    fix: str,
) -> None:
    """Fail at declaration time when ``function`` cannot take the call the adapter makes."""
    signature = _signature(function)
    if signature is None:
        return
    try:
        signature.bind(*args, **dict.fromkeys(kwargs))
    except TypeError as exc:
        call = ", ".join([*args, *(f"{k}=..." for k in kwargs)])
        raise DerivationError(
            f"{where}: {role} {_function_name(function)}{signature} cannot be called as "
            f"{_function_name(function)}({call}) ({exc}). {fix}"
        ) from None


def _require_argument_order(where: str, forward: Callable[..., Any], names: Sequence[str]) -> None:
    """The arrays fill the forward's positional arguments in the order of ``shapes``: when the
    forward names the same arguments in another order, say so instead of swapping them."""
    signature = _signature(forward)
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
            f"{_function_name(forward)} takes them as ({', '.join(positional)}). The arrays "
            "fill the forward's positional arguments in the order of shapes; list shapes in "
            f"that order: shapes={{{', '.join(repr(n) + ': ...' for n in positional)}}}."
        )


def _gradient_names(
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
        if grad not in shapes:
            close = difflib.get_close_matches(str(grad), list(shapes), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DerivationError(
                f"{where}: grads names {grad!r}, which has no entry in shapes (inputs: "
                f"{', '.join(shapes)}){hint}"
            )
    return tuple(grads)


def _param_dict_name(where: str, param_dict: str | None) -> str | None:
    if param_dict is not None and (
        not isinstance(param_dict, str) or not param_dict.isidentifier()
    ):
        raise DerivationError(
            f"{where}: param_dict={param_dict!r} must be the name of the layer's settings "
            "argument as a string, e.g. param_dict='conv_param', or None to pass the params "
            "as keyword arguments."
        )
    return param_dict


def _fixed_settings(
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


def _forward_mismatch_message(
    function: str, out: Any, expected: torch.Tensor, dtype: np.dtype[Any]
) -> str | None:
    """``None`` when the layer's ``out`` matches the spec's, else why not (one line)."""
    reference = expected.detach().to(torch.float64).numpy()
    try:
        actual = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{function} returned out of type {type(out).__name__}, not an array."
    if actual.shape != reference.shape:
        return (
            f"{function} returned out of shape {actual.shape}, but the spec forward returns "
            f"shape {reference.shape}."
        )
    name = "float32" if dtype == np.float32 else "float64"
    mismatch = compare(
        actual,
        reference,
        for_dtype(name).allowed(reference),
        parameter="out",
        reference="the spec forward",
    )
    if mismatch is None:
        return None
    return (
        f"{function}'s out does not match the spec forward, so its cache cannot be trusted "
        "either: " + "; ".join(format_mismatch(mismatch))
    ) + format_ratio(constant_ratio(actual, reference, rtol=for_dtype(name).rtol))


def _unit_seed(out: Any) -> np.ndarray:
    """The dout of a layer whose out is the scalar loss itself: ones, in out's float dtype."""
    value = np.asarray(out)
    dtype = value.dtype if np.issubdtype(value.dtype, np.floating) else np.dtype(np.float64)
    return np.ones(value.shape, dtype=dtype)


class _CourseBackward:
    """The ``backward`` of a course-style ``Derivation``: call the layer, map the results."""

    def __init__(
        self,
        *,
        forward: Callable[..., Any],
        backward: Callable[..., Any] | None,
        spec: Callable[..., Any],
        arrays: tuple[str, ...],
        grads: tuple[str, ...],
        params: tuple[str, ...],
        param_dict: str | None,
        fixed: Mapping[str, Any],
        check_forward: bool,
    ) -> None:
        self.forward = forward
        self.backward = backward
        self.spec = spec
        self.arrays = arrays
        self.grads = grads
        self.params = params
        self.param_dict = param_dict
        self.fixed = fixed
        self.check_forward = check_forward

    def __call__(self, **arguments: Any) -> dict[str, Any]:
        # grad_output is passed to the layer's backward as is, never copied: a backward that
        # writes into its dout must be seen doing so.
        dout = arguments.pop("grad_output", None)
        settings = {name: arguments.pop(name) for name in self.params}
        positional = [arguments[name] for name in self.arrays]
        layer_settings = {**copy.deepcopy(dict(self.fixed)), **settings}
        if self.param_dict is not None:
            returned = self.forward(*positional, layer_settings)
        else:
            returned = self.forward(*positional, **layer_settings)
        first, rest = self._split(returned)
        if self.check_forward:
            self._compare_with_spec(first, arguments, settings)
        if self.backward is None:  # a loss: (loss, *gradients) came back in one call
            gradients = rest
        else:
            if dout is None:  # a scalar forward: d loss / d loss = 1
                dout = _unit_seed(first)
            gradients = self._as_tuple(self.backward(dout, rest[0]))
        return dict(zip(self.grads, gradients, strict=True))

    def _split(self, returned: Any) -> tuple[Any, tuple[Any, ...]]:
        name = _function_name(self.forward)
        if self.backward is None:
            expected = 1 + len(self.grads)
            if not isinstance(returned, tuple | list) or len(returned) != expected:
                raise LayerCallError(
                    f"{name} returned {self._describe(returned)}; a course-style loss returns "
                    f"(loss, {', '.join('d' + g for g in self.grads)})."
                )
            return returned[0], tuple(returned[1:])
        if not isinstance(returned, tuple | list) or len(returned) != 2:
            raise LayerCallError(
                f"{name} returned {self._describe(returned)}; a course-style forward returns "
                "(out, cache)."
            )
        return returned[0], (returned[1],)

    def _as_tuple(self, returned: Any) -> tuple[Any, ...]:
        name = _function_name(self.backward) if self.backward is not None else ""
        gradients = tuple(returned) if isinstance(returned, tuple | list) else (returned,)
        if len(gradients) != len(self.grads):
            raise LayerCallError(
                f"{name} returned {self._describe(returned)}, but grads names "
                f"{len(self.grads)} ({', '.join(self.grads)}); return one gradient per name, "
                "in that order, or declare grads= to say which it returns."
            )
        return gradients

    @staticmethod
    def _describe(value: Any) -> str:
        if isinstance(value, tuple | list):
            return f"a {type(value).__name__} of {len(value)}"
        return f"one {type(value).__name__}"

    def _compare_with_spec(
        self, out: Any, arrays: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> None:
        tensors = {name: as_tensor(np.asarray(arrays[name])) for name in self.arrays}
        with torch.no_grad():
            expected = self.spec(**tensors, **copy.deepcopy(dict(settings)))
        floats = [np.asarray(arrays[n]).dtype for n in self.arrays]
        dtype = next((d for d in floats if np.issubdtype(d, np.floating)), np.dtype(np.float64))
        message = _forward_mismatch_message(_function_name(self.forward), out, expected, dtype)
        if message is not None:
            raise ForwardMismatch(message)


def _declare(
    where: str,
    *,
    forward: Callable[..., Any],
    backward: Callable[..., Any] | None,
    spec: Callable[..., Any],
    shapes: Mapping[str, tuple[str | int, ...]],
    grads: Sequence[str] | None,
    name: str,
    params: Mapping[str, Any] | None,
    param_dict: str | None,
    fixed: Mapping[str, Any] | None,
    dims: Mapping[str, DimRange] | None,
    bounds: Mapping[str, tuple[float, float]] | None,
    integers: Mapping[str, IntegerRange] | None,
    check_forward: bool,
) -> Derivation:
    _require_callable(where, "spec", spec)
    if not isinstance(shapes, Mapping) or not shapes:
        raise DerivationError(
            f"{where}: shapes={shapes!r} must be a non-empty mapping from each array argument "
            "of the forward, in its order, to its shape, e.g. "
            "shapes={'x': ('N', 'D'), 'w': ('D', 'M'), 'b': ('M',)}."
        )
    if not isinstance(check_forward, bool):
        raise DerivationError(f"{where}: check_forward={check_forward!r} must be True or False.")
    arrays = tuple(shapes)
    searched = dict(params or {})
    wrt = _gradient_names(where, grads, shapes, integers or {})
    param_dict = _param_dict_name(where, param_dict)
    constant = _fixed_settings(where, fixed, searched)
    _require_argument_order(where, forward, arrays)
    settings = [*constant, *searched]
    arrays_in_order = f"The forward is called with the arrays of shapes ({', '.join(arrays)})"
    if param_dict is not None:
        fix = (
            f"{arrays_in_order}, then one dict {param_dict} holding "
            f"{', '.join(settings) or 'no settings'}. List shapes in the forward's argument "
            "order; if it takes its settings as keywords, pass param_dict=None."
        )
        _require_binds(where, "forward", forward, [*arrays, param_dict], [], fix)
    else:
        fix = (
            f"{arrays_in_order}"
            + (f", then {', '.join(settings)} as keywords" if settings else "")
            + ". List shapes in the forward's argument order; if it takes a settings dict, "
            "name it with param_dict='conv_param' (its name in the forward)."
        )
        _require_binds(where, "forward", forward, list(arrays), settings, fix)
    if backward is not None:
        _require_binds(
            where,
            "backward",
            backward,
            ["dout", "cache"],
            [],
            "A course-style backward takes (dout, cache) and returns the gradients.",
        )
    _require_binds(
        where,
        "spec",
        spec,
        [],
        [*arrays, *searched],
        "The spec receives every array and every param as a keyword argument (torch float64 "
        "tensors, int64 for integer inputs); name its arguments after them.",
    )
    call = _CourseBackward(
        forward=forward,
        backward=backward,
        spec=spec,
        arrays=arrays,
        grads=wrt,
        params=tuple(searched),
        param_dict=param_dict,
        fixed=constant,
        check_forward=check_forward,
    )
    return Derivation(
        name=name,
        forward=spec,
        backward=call,
        shapes=shapes,
        wrt=wrt,
        backend="numpy",
        dims=dims,
        bounds=bounds,
        params=params,
        integers=integers,
    )


def course_layer(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    *,
    spec: Callable[..., Any],
    shapes: Mapping[str, tuple[str | int, ...]],
    grads: Sequence[str] | None = None,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    param_dict: str | None = None,
    fixed: Mapping[str, Any] | None = None,
    dims: Mapping[str, DimRange] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    integers: Mapping[str, IntegerRange] | None = None,
    check_forward: bool = True,
) -> Derivation:
    """A ``Derivation`` for ``out, cache = forward(...)`` and ``grads = backward(dout, cache)``.

    ``shapes`` names the forward's array arguments in their positional order (integer
    arrays such as labels declared in ``integers``). ``params`` are searched like in
    ``Derivation``; with ``param_dict="conv_param"`` they are packed, with the constant
    ``fixed`` settings, into one dict passed after the arrays, else passed as keywords.
    ``grads`` names what ``backward`` returns, in order (default: every float array of
    ``shapes``, so ``dx, dw, db`` for ``x, w, b``). ``spec`` is the torch forward the layer
    claims to compute, called with every array and param as keywords. With
    ``check_forward`` the layer's ``out`` must also match the spec's.

    Example::

        conv = course_layer(
            conv_forward_naive,
            conv_backward_naive,
            spec=lambda x, w, b, stride, pad: F.conv2d(x, w, b, stride=stride, padding=pad),
            shapes={"x": ("N", "C", "H", "W"), "w": ("F", "C", "HH", "WW"), "b": ("F",)},
            params={"stride": (1, 3), "pad": (0, 2)},
            param_dict="conv_param",
            dims={
                "H": lambda s: (max(1, s["HH"] - 2 * s["pad"]), 6),
                "W": lambda s: (max(1, s["WW"] - 2 * s["pad"]), 6),
            },
        )
        verify(conv).ok
    """
    where = f"course_layer({_function_name(forward)})"
    _require_callable(where, "forward", forward)
    _require_callable(where, "backward", backward)
    return _declare(
        where,
        forward=forward,
        backward=backward,
        spec=spec,
        shapes=shapes,
        grads=grads,
        name=_function_name(forward).replace("_forward", "") if name is None else name,
        params=params,
        param_dict=param_dict,
        fixed=fixed,
        dims=dims,
        bounds=bounds,
        integers=integers,
        check_forward=check_forward,
    )


def course_loss(
    loss: Callable[..., Any],
    *,
    spec: Callable[..., Any],
    shapes: Mapping[str, tuple[str | int, ...]],
    grads: Sequence[str] | None = None,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    param_dict: str | None = None,
    fixed: Mapping[str, Any] | None = None,
    dims: Mapping[str, DimRange] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    integers: Mapping[str, IntegerRange] | None = None,
    check_forward: bool = True,
) -> Derivation:
    """A ``Derivation`` for a loss written as one function, ``loss, dx = loss_fn(x, y)``.

    The options are those of ``course_layer``; ``spec`` returns the scalar loss, and
    ``loss`` returns it followed by one gradient per name in ``grads``.

    Example::

        softmax = course_loss(
            softmax_loss,
            spec=lambda x, y: torch.nn.functional.cross_entropy(x, y),
            shapes={"x": ("N", "C"), "y": ("N",)},
            integers={"y": lambda s: (0, s["C"] - 1)},
        )
        verify(softmax).ok
    """
    where = f"course_loss({_function_name(loss)})"
    _require_callable(where, "loss", loss)
    return _declare(
        where,
        forward=loss,
        backward=None,
        spec=spec,
        shapes=shapes,
        grads=grads,
        name=_function_name(loss) if name is None else name,
        params=params,
        param_dict=param_dict,
        fixed=fixed,
        dims=dims,
        bounds=bounds,
        integers=integers,
        check_forward=check_forward,
    )
