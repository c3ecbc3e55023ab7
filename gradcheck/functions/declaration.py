"""``function_derivation``: one declaration of a ``torch.autograd.Function`` and its spec,
checked for everything a Function can get wrong, validated where it is written."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from gradcheck.derivation import Derivation, DerivationError, DimRange, IntegerRange
from gradcheck.functions import messages
from gradcheck.functions.checks import CHECKS, OPTIONAL_CHECKS
from gradcheck.functions.function import (
    FunctionUnderTest,
    UnderTest,
    describe_raised,
    forward_arguments,
    in_forward,
    joined,
    raised_in_forward,
    vjp,
)
from gradcheck.functions.runner import FunctionChecks

__all__ = ["declared", "function_derivation"]

DTYPE_NAMES = ("float64", "float32")


def _suggest(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class ForwardMismatch(AssertionError):
    """The Function's forward raised, or returned other outputs than the spec, where the
    backward check runs it (the backward never ran). The name is the one
    the engine reports as the forward's problem rather than "backward raised" (see
    ``gradcheck.backward._raised_problem``); the message places the raise itself."""

    forward = None


class _FunctionBackward:
    """The Derivation's backward: the VJP through ``apply``, for the backward check."""

    def __init__(
        self,
        function: UnderTest,
        spec: Callable[..., Any],
        wrt: Sequence[str],
        params: Sequence[str],
    ):
        self.function = function
        self.spec = spec
        self.wrt = tuple(wrt)
        self.params = tuple(params)

    def __call__(self, **arguments: Any) -> dict[str, torch.Tensor]:
        seed = arguments.pop("grad_output", None)
        params = {k: arguments.pop(k) for k in self.params}
        outputs = self.function.outputs(params)

        def forward(values: Mapping[str, torch.Tensor]) -> torch.Tensor:
            output = outputs(values)
            try:
                mine = joined(output, self.function.called_as)
            except TypeError as exc:
                raise in_forward(exc) from None
            if mine.shape != (() if seed is None else seed.shape):
                # grad_output has the spec's shape: autograd would refuse it, in its words
                raise ForwardMismatch(
                    messages.output_structure(output, self._spec_at(values, params, seed))
                )
            return mine

        try:
            _, grads = vjp(forward, arguments, self.wrt, seed)
        except Exception as exc:
            if raised_in_forward(exc):
                raise ForwardMismatch(messages.forward_raised(describe_raised(exc))) from exc
            raise
        # An input the Function's backward gives None for is reported missing, by name.
        return {name: grad for name, grad in grads.items() if grad is not None}

    def _spec_at(
        self, values: Mapping[str, torch.Tensor], params: Mapping[str, Any], seed: Any
    ) -> Any:
        """The spec's output as it returns it, for the message; where it cannot be had,
        a tensor of grad_output's shape (the spec's, joined) stands in."""
        floats = {k: v.detach().double() if v.is_floating_point() else v for k, v in values.items()}
        try:
            return self.spec(**floats, **params)
        except Exception:  # the engine reports the spec's own failure; here it is only words
            return torch.empty(() if seed is None else seed.shape)


def function_derivation(
    function: type[torch.autograd.Function],
    *,
    spec: Callable[..., Any],
    shapes: Mapping[str, tuple[str | int, ...]],
    wrt: Sequence[str],
    name: str | None = None,
    dims: Mapping[str, DimRange] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    params: Mapping[str, Any] | None = None,
    integers: Mapping[str, IntegerRange] | None = None,
    dtype: str | None = None,
    checks: Sequence[str] = CHECKS,
    nondet_tol: float = 0.0,
) -> Derivation:
    """A Derivation that checks ``function`` (a ``torch.autograd.Function``) against
    ``spec`` (the same function in plain torch ops) at every example: its backward, its
    ``jvp``, its double backward, strided inputs and grad_output, ``vmap``, determinism,
    reentrancy (backward twice through one graph), and, where CUDA is visible, the same on
    the GPU. ``apply`` receives the inputs of
    ``shapes`` and the ``params`` by the names its ``forward`` declares.

    A Function may return a tuple of tensors, and the spec then returns the same: each
    output is compared with the spec's, the backward gets a grad_output for each, and each
    output is left unused in turn (``undefined_grad``). Integer outputs (indices) are not
    differentiable, and are noted and left out.

    ``checks`` picks among ``CHECKS`` (the backward is always checked), and may add
    ``"compile"``: forward and gradients under ``torch.compile(fullgraph=True)`` agree with
    eager, at the first two shapes of a search (a compile costs seconds); ``nondet_tol`` is
    the difference two backward runs may show; ``dtype`` fixes the dtype of the Function in
    the checks beyond the backward (default: the one check/verify are run with).

    Example::

        my_relu = function_derivation(
            MyReLU, spec=torch.relu, shapes={"x": ("N", "D")}, wrt=["x"]
        )
        verify(my_relu).ok
    """
    label: str = name or str(getattr(function, "__name__", repr(function)))
    if not (isinstance(function, type) and issubclass(function, torch.autograd.Function)):
        raise DerivationError(
            f"function_derivation({label!r}): the first argument must be a "
            f"torch.autograd.Function subclass (the class, not an instance or its apply), "
            f"got {function!r}."
        )
    under_test = FunctionUnderTest(function, _arguments(label, function, shapes, params))
    return declared(
        under_test, declarer="function_derivation", label=label, spec=spec, shapes=shapes,
        wrt=wrt, dims=dims, bounds=bounds, params=params, integers=integers, dtype=dtype,
        checks=checks, nondet_tol=nondet_tol, known=(*CHECKS, *OPTIONAL_CHECKS),
    )  # fmt: skip


def declared(
    under_test: UnderTest,
    *,
    declarer: str,
    label: str,
    spec: Callable[..., Any],
    shapes: Mapping[str, tuple[str | int, ...]],
    wrt: Sequence[str],
    dims: Mapping[str, DimRange] | None,
    bounds: Mapping[str, tuple[float, float]] | None,
    params: Mapping[str, Any] | None,
    integers: Mapping[str, IntegerRange] | None,
    dtype: str | None,
    checks: Sequence[str],
    nondet_tol: float,
    known: Sequence[str] = CHECKS,
) -> Derivation:
    """The Derivation of anything the Function checks can run (a Function, a custom op):
    the options validated, the spec joined, and the checks beyond the backward attached.
    ``known``: the check names ``checks`` may use; those not in ``CHECKS`` are the caller's."""
    chosen = _validated_checks(declarer, label, checks, known)
    tolerance = _validated_tolerance(declarer, label, nondet_tol)
    if dtype is not None and dtype not in DTYPE_NAMES:
        raise DerivationError(
            f"{declarer}({label!r}): dtype={dtype!r} is not one of "
            f"{', '.join(map(repr, DTYPE_NAMES))} (or None: the dtype check/verify run with)"
            f"{_suggest(str(dtype), DTYPE_NAMES)}"
        )
    derivation = Derivation(
        name=label,
        forward=_joined_spec(spec),
        backward=_FunctionBackward(under_test, spec, wrt, list(params or {})),
        shapes=shapes,
        wrt=wrt,
        backend="torch",
        dims=dims,
        bounds=bounds,
        params=params,
        integers=integers,
    )
    extra = FunctionChecks(
        under_test,
        name=label,
        spec=derivation.forward,
        spec_outputs=spec,
        shapes=derivation.shapes,
        wrt=derivation.wrt,
        checks=[c for c in chosen if c in CHECKS or c in OPTIONAL_CHECKS],
        nondet_tol=tolerance,
        dtype=dtype,
    )
    # The declaration is validated first, so that the checks are built from its own shapes.
    return dataclasses.replace(derivation, extra_checks=extra)


def _joined_spec(spec: Callable[..., Any]) -> Callable[..., Any]:
    """The spec as the engine takes it, one tensor: several outputs joined as the
    Function's are (``function.joined``); a single output passes through untouched."""
    if not callable(spec):
        return spec  # the Derivation says what is wrong with it

    @functools.wraps(spec)
    def forward(**arguments: Any) -> Any:
        output = spec(**arguments)
        return output if isinstance(output, torch.Tensor) else joined(output, "the spec")

    return forward


def _validated_checks(
    declarer: str, label: str, checks: Sequence[str], known: Sequence[str]
) -> tuple[str, ...]:
    if isinstance(checks, str) or not isinstance(checks, Sequence):
        raise DerivationError(
            f"{declarer}({label!r}): checks must be a sequence of check names, "
            f"e.g. checks=({checks!r},), got {checks!r}."
        )
    for check in checks:
        if check not in known:
            raise DerivationError(
                f"{declarer}({label!r}): checks names {check!r}, which is not one of "
                f"{', '.join(known)}{_suggest(str(check), known)}"
            )
    if "backward" not in checks:
        raise DerivationError(
            f"{declarer}({label!r}): checks={tuple(checks)!r} leaves out "
            "'backward'; the backward is always checked (every other check builds on it), "
            "so include it."
        )
    return tuple(checks)


def _validated_tolerance(declarer: str, label: str, nondet_tol: Any) -> float:
    ok = (
        isinstance(nondet_tol, int | float)
        and not isinstance(nondet_tol, bool)
        and math.isfinite(nondet_tol)
        and nondet_tol >= 0
    )
    if not ok:
        raise DerivationError(
            f"{declarer}({label!r}): nondet_tol={nondet_tol!r} must be a finite "
            "number >= 0, e.g. 0.0 (bitwise reproducible) or 1e-12."
        )
    return float(nondet_tol)


def _arguments(
    label: str,
    function: type[torch.autograd.Function],
    shapes: Mapping[str, Any],
    params: Mapping[str, Any] | None,
) -> tuple[str, ...]:
    """The names ``apply`` takes, in order: from ``forward``'s signature (after ``ctx``
    unless the Function uses setup_context), or the inputs then the params for ``*args``."""
    declared = [*(shapes if isinstance(shapes, Mapping) else {}), *(params or {})]
    taken = forward_arguments(function)
    if taken is None:
        return tuple(declared)
    unknown = [n for n in taken if n not in declared]
    unused = [n for n in declared if n not in taken]
    if unknown or unused:
        raise DerivationError(
            f"function_derivation({label!r}): {function.__name__}.forward takes "
            f"({', '.join(taken)}), and apply is called with the inputs of shapes and the "
            "params by those names"
            + (f"; not declared in shapes or params: {', '.join(unknown)}" if unknown else "")
            + (f"; declared but not taken by forward: {', '.join(unused)}" if unused else "")
            + "."
        )
    return tuple(taken)
