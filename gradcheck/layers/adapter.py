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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck.compare import compare
from gradcheck.derivation import Derivation, DerivationError, DimRange, IntegerRange
from gradcheck.diagnose import constant_ratio
from gradcheck.layers.declaration import (
    fixed_settings,
    function_name,
    gradient_names,
    param_dict_name,
    require_argument_order,
    require_binds,
    require_callable,
    require_names,
)
from gradcheck.messages import format_mismatch, format_ratio
from gradcheck.references.autograd import as_tensor
from gradcheck.tolerances import for_dtype

__all__ = ["ForwardMismatch", "LayerCallError", "course_layer", "course_loss"]


class ForwardMismatch(AssertionError):
    """A course-style forward computed a different ``out`` than the spec forward; it keeps
    the forward and both outputs, so that the report can locate it and show the values."""

    def __init__(
        self,
        message: str,
        *,
        forward: Callable[..., Any] | None = None,
        expected: np.ndarray | None = None,
        actual: np.ndarray | None = None,
    ) -> None:
        super().__init__(message)
        self.forward = forward
        self.expected = expected
        self.actual = actual


class LayerCallError(TypeError):
    """A course-style function returned something the adapter cannot use (not a tuple,
    the wrong number of gradients): a problem in the layer, reported as such."""


def _forward_mismatch_message(
    function: str, out: Any, expected: torch.Tensor, dtype: np.dtype[Any], output: str = "out"
) -> str | None:
    """``None`` when the layer's ``output`` matches the spec's, else why not (one line)."""
    reference = expected.detach().to(torch.float64).numpy()
    try:
        actual = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{function} returned {output} of type {type(out).__name__}, not an array."
    if actual.shape != reference.shape:
        return (
            f"{function} returned {output} of shape {actual.shape}, but the spec forward "
            f"returns shape {reference.shape}."
        )
    name = "float32" if dtype == np.float32 else "float64"
    mismatch = compare(
        actual,
        reference,
        for_dtype(name).allowed(reference),
        parameter=output,
        reference="the spec forward",
    )
    if mismatch is None:
        return None
    # A zero spec output allows no relative difference: its "inf (up to inf)" says nothing.
    lines = [line for line in format_mismatch(mismatch) if "inf" not in line]
    return (
        f"{function}'s {output} does not match the spec forward, so its cache cannot be "
        "trusted either: " + "; ".join(lines)
    ) + format_ratio(constant_ratio(actual, reference, rtol=for_dtype(name).rtol))


def _unit_seed(out: Any) -> np.ndarray:
    """The dout of a layer whose out is the scalar loss itself: ones, in out's float dtype."""
    value = np.asarray(out)
    dtype = value.dtype if np.issubdtype(value.dtype, np.floating) else np.dtype(np.float64)
    return np.ones(value.shape, dtype=dtype)


class _Spec:
    """The ``forward`` of a course-style ``Derivation``: the user's torch spec, with boolean
    inputs handed over as bool tensors, and several outputs (``next_h, next_c``) joined into
    one flat tensor, so that one grad_output seeds them all and is split again for the
    layer's backward (``dnext_h, dnext_c``)."""

    def __init__(
        self, spec: Callable[..., Any], booleans: tuple[str, ...], outputs: tuple[str, ...]
    ) -> None:
        self.spec = spec
        self.booleans = booleans
        self.outputs = outputs
        self.__name__ = function_name(spec)

    def parts(self, **arguments: Any) -> tuple[torch.Tensor, ...]:
        """Each output of the spec, in the order of ``outputs``."""
        for name in self.booleans:
            arguments[name] = arguments[name] != 0
        result = self.spec(**arguments)
        if len(self.outputs) == 1:
            return (result,)
        if not isinstance(result, tuple | list) or len(result) != len(self.outputs):
            raise DerivationError(
                f"spec {self.__name__} returned {_describe(result)}, but the layer has "
                f"{len(self.outputs)} outputs ({', '.join(self.outputs)}); return one tensor "
                "per output, in that order."
            )
        return tuple(result)

    def notes(self) -> tuple[str, ...]:
        """What the spec learned about the layer's conventions, for the report."""
        notes = getattr(self.spec, "notes", None)
        return tuple(notes()) if callable(notes) else ()

    def __call__(self, **arguments: Any) -> torch.Tensor:
        parts = self.parts(**arguments)
        if len(parts) == 1:
            return parts[0]
        return torch.cat([part.reshape(-1) for part in parts])


def _describe(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"one {type(value).__name__}"


@dataclass(kw_only=True, eq=False, repr=False)  # compared and shown as the object it is
class _CourseBackward:
    """The ``backward`` of a course-style ``Derivation``: call the layer, map the results."""

    forward: Callable[..., Any]
    backward: Callable[..., Any] | None
    spec: _Spec
    arrays: tuple[str, ...]
    grads: tuple[str, ...]
    params: tuple[str, ...]
    param_dict: str | None
    fixed: Mapping[str, Any]
    check_forward: bool
    positional_params: tuple[str, ...] = ()

    def __call__(self, **arguments: Any) -> dict[str, Any]:
        # grad_output is passed to the layer's backward as is, never copied: a backward that
        # writes into its dout must be seen doing so (each split dout is a view of it).
        dout = arguments.pop("grad_output", None)
        settings = {name: arguments.pop(name) for name in self.params}
        positional = [
            np.asarray(arguments[name]) != 0 if name in self.spec.booleans else arguments[name]
            for name in self.arrays
        ]
        positional += [settings[name] for name in self.positional_params]
        layer_settings = {
            **copy.deepcopy(dict(self.fixed)),
            **{k: v for k, v in settings.items() if k not in self.positional_params},
        }
        if self.param_dict is not None:
            returned = self.forward(*positional, layer_settings)
        else:
            returned = self.forward(*positional, **layer_settings)
        outs, rest = self._split(returned)
        expected = None
        if self.check_forward or len(outs) > 1:
            expected = self._spec_outputs(arguments, settings)
        if self.check_forward and expected is not None:
            self._compare_with_spec(outs, expected, arguments)
        if self.backward is None:  # a loss: (loss, *gradients) came back in one call
            gradients = rest
        else:
            if dout is None:  # a scalar forward: d loss / d loss = 1
                douts: list[Any] = [_unit_seed(outs[0])]
            elif len(outs) == 1:
                douts = [dout]
            else:
                douts = self._split_dout(dout, expected or ())
            gradients = self._as_tuple(self.backward(*douts, rest[0]))
        return dict(zip(self.grads, gradients, strict=True))

    @staticmethod
    def _split_dout(dout: np.ndarray, expected: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """The joined grad_output cut back into one dout per output, each a view."""
        douts, start = [], 0
        for part in expected:
            size = int(np.prod(tuple(part.shape)))
            douts.append(dout[start : start + size].reshape(tuple(part.shape)))
            start += size
        return douts

    def _split(self, returned: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        name = function_name(self.forward)
        if self.backward is None:
            expected = 1 + len(self.grads)
            if not isinstance(returned, tuple | list) or len(returned) != expected:
                raise LayerCallError(
                    f"{name} returned {_describe(returned)}; a course-style loss returns "
                    f"(loss, {', '.join('d' + g for g in self.grads)})."
                )
            return (returned[0],), tuple(returned[1:])
        count = len(self.spec.outputs)
        if not isinstance(returned, tuple | list) or len(returned) != count + 1:
            raise LayerCallError(
                f"{name} returned {_describe(returned)}; a course-style forward returns "
                f"({', '.join(self.spec.outputs)}, cache)."
            )
        return tuple(returned[:count]), (returned[count],)

    def _as_tuple(self, returned: Any) -> tuple[Any, ...]:
        name = function_name(self.backward) if self.backward is not None else ""
        gradients = tuple(returned) if isinstance(returned, tuple | list) else (returned,)
        if len(gradients) != len(self.grads):
            raise LayerCallError(
                f"{name} returned {_describe(returned)}, but grads names "
                f"{len(self.grads)} ({', '.join(self.grads)}); return one gradient per name, "
                "in that order, or declare grads= to say which it returns."
            )
        return gradients

    def _spec_outputs(
        self, arrays: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> tuple[torch.Tensor, ...]:
        tensors = {name: as_tensor(np.asarray(arrays[name])) for name in self.arrays}
        with torch.no_grad():
            return self.spec.parts(**tensors, **copy.deepcopy(dict(settings)))

    def _compare_with_spec(
        self, outs: Sequence[Any], expected: Sequence[torch.Tensor], arrays: Mapping[str, Any]
    ) -> None:
        floats = [np.asarray(arrays[n]).dtype for n in self.arrays]
        dtype = next((d for d in floats if np.issubdtype(d, np.floating)), np.dtype(np.float64))
        names = self.spec.outputs if len(outs) > 1 else ("out",)
        for out, reference, output in zip(outs, expected, names, strict=True):
            message = _forward_mismatch_message(
                function_name(self.forward), out, reference, dtype, output
            )
            if message is not None:
                raise ForwardMismatch(
                    message,
                    forward=self.forward,
                    expected=reference.detach().to(torch.float64).numpy(),
                    actual=np.asarray(out) if isinstance(out, np.ndarray | np.generic) else None,
                )


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
    outputs: Sequence[str] | None = None,
    booleans: Sequence[str] | None = None,
    positional_params: Sequence[str] | None = None,
    where_valid: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Derivation:
    require_callable(where, "spec", spec)
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
    flags = require_names(where, "booleans", booleans, shapes)
    # a boolean input is drawn as 0/1 and handed to both sides as bool
    integers = {**dict(integers or {}), **dict.fromkeys(flags, (0, 1))}
    wrt = gradient_names(where, grads, shapes, integers)
    out_names = _output_names(where, outputs)
    in_order = _positional_params(where, positional_params, searched)
    param_dict = param_dict_name(where, param_dict)
    constant = fixed_settings(where, fixed, searched)
    require_argument_order(where, forward, arrays)
    settings = [*constant, *(p for p in searched if p not in in_order)]
    arrays_in_order = f"The forward is called with the arrays of shapes ({', '.join(arrays)})"
    if in_order:
        arrays_in_order += f", then {', '.join(in_order)}"
    if param_dict is not None:
        fix = (
            f"{arrays_in_order}, then one dict {param_dict} holding "
            f"{', '.join(settings) or 'no settings'}. List shapes in the forward's argument "
            "order; if it takes its settings as keywords, pass param_dict=None."
        )
        require_binds(where, "forward", forward, [*arrays, *in_order, param_dict], [], fix)
    else:
        fix = (
            f"{arrays_in_order}"
            + (f", then {', '.join(settings)} as keywords" if settings else "")
            + ". List shapes in the forward's argument order; if it takes a settings dict, "
            "name it with param_dict='conv_param' (its name in the forward)."
        )
        require_binds(where, "forward", forward, [*arrays, *in_order], settings, fix)
    if backward is not None:
        douts = ["d" + output for output in out_names] if len(out_names) > 1 else ["dout"]
        require_binds(
            where,
            "backward",
            backward,
            [*douts, "cache"],
            [],
            f"A course-style backward takes ({', '.join(douts)}, cache), one upstream "
            "gradient per output of the forward, and returns the gradients.",
        )
    require_binds(
        where,
        "spec",
        spec,
        [],
        [*arrays, *searched],
        "The spec receives every array and every param as a keyword argument (torch float64 "
        "tensors, int64 for integer inputs); name its arguments after them.",
    )
    joined = _Spec(spec, flags, out_names)
    call = _CourseBackward(
        forward=forward,
        backward=backward,
        spec=joined,
        arrays=arrays,
        grads=wrt,
        params=tuple(searched),
        param_dict=param_dict,
        fixed=constant,
        check_forward=check_forward,
        positional_params=in_order,
    )
    return Derivation(
        name=name,
        forward=joined,
        backward=call,
        shapes=shapes,
        wrt=wrt,
        backend="numpy",
        dims=dims,
        bounds=bounds,
        params=params,
        integers=integers,
        where=where_valid,
    )


def _output_names(where: str, outputs: Sequence[str] | None) -> tuple[str, ...]:
    if outputs is None:
        return ("out",)
    if (
        isinstance(outputs, str)
        or not isinstance(outputs, Sequence)
        or not outputs
        or not all(isinstance(o, str) and o.isidentifier() for o in outputs)
    ):
        raise DerivationError(
            f"{where}: outputs={outputs!r} must name what the forward returns before its "
            "cache, in order, e.g. outputs=('next_h', 'next_c') for "
            "next_h, next_c, cache = lstm_step_forward(...)."
        )
    return tuple(outputs)


def _positional_params(
    where: str, names: Sequence[str] | None, params: Mapping[str, Any]
) -> tuple[str, ...]:
    if names is None:
        return ()
    if isinstance(names, str) or not all(name in params for name in names):
        raise DerivationError(
            f"{where}: positional_params={names!r} must be a sequence of params (declared: "
            f"{', '.join(params) or 'none'}) that the forward takes positionally after the "
            "arrays, e.g. positional_params=('G',) for spatial_groupnorm_forward(x, gamma, "
            "beta, G, gn_param)."
        )
    return tuple(names)


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
    outputs: Sequence[str] | None = None,
    booleans: Sequence[str] | None = None,
    positional_params: Sequence[str] | None = None,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
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

    ``outputs=("next_h", "next_c")`` names what a forward returns before its cache when it
    returns several outputs: the spec then returns one tensor per output, and the backward
    takes one upstream gradient per output, ``backward(dnext_h, dnext_c, cache)``.
    ``booleans`` names boolean inputs (drawn as 0/1, handed over as bool), and
    ``positional_params`` the params the forward takes positionally after the arrays
    (``G`` in ``spatial_groupnorm_forward(x, gamma, beta, G, gn_param)``). ``where`` keeps
    the search to valid settings, as in ``Derivation``.

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
    valid, at = where, f"course_layer({function_name(forward)})"
    require_callable(at, "forward", forward)
    require_callable(at, "backward", backward)
    return _declare(
        at,
        forward=forward,
        backward=backward,
        spec=spec,
        shapes=shapes,
        grads=grads,
        name=function_name(forward).replace("_forward", "") if name is None else name,
        params=params,
        param_dict=param_dict,
        fixed=fixed,
        dims=dims,
        bounds=bounds,
        integers=integers,
        check_forward=check_forward,
        outputs=outputs,
        booleans=booleans,
        positional_params=positional_params,
        where_valid=valid,
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
    booleans: Sequence[str] | None = None,
    positional_params: Sequence[str] | None = None,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Derivation:
    """A ``Derivation`` for a loss written as one function, ``loss, dx = loss_fn(x, y)``.

    The options are those of ``course_layer`` (``booleans``, ``positional_params`` and
    ``where`` included); ``spec`` returns the scalar loss, and ``loss`` returns it followed
    by one gradient per name in ``grads``.

    Example::

        softmax = course_loss(
            softmax_loss,
            spec=lambda x, y: torch.nn.functional.cross_entropy(x, y),
            shapes={"x": ("N", "C"), "y": ("N",)},
            integers={"y": lambda s: (0, s["C"] - 1)},
        )
        verify(softmax).ok
    """
    valid, at = where, f"course_loss({function_name(loss)})"
    require_callable(at, "loss", loss)
    return _declare(
        at,
        forward=loss,
        backward=None,
        spec=spec,
        shapes=shapes,
        grads=grads,
        name=function_name(loss) if name is None else name,
        params=params,
        param_dict=param_dict,
        fixed=fixed,
        dims=dims,
        bounds=bounds,
        integers=integers,
        check_forward=check_forward,
        booleans=booleans,
        positional_params=positional_params,
        where_valid=valid,
    )


def layer_kind(
    spec: Callable[..., Any], **declaration: Any
) -> Callable[[Callable[..., Any], Callable[..., Any], str], Derivation]:
    """A standard layer kind's declaration: whichever forward and backward are checked as
    that kind go to ``course_layer`` with ``spec`` and the rest of ``declaration`` (a fresh
    copy each time)."""

    def declare(forward: Callable[..., Any], backward: Callable[..., Any], name: str) -> Derivation:
        return course_layer(forward, backward, name=name, spec=spec, **copy.deepcopy(declaration))

    return declare
