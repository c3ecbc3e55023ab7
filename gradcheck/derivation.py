"""The declaration of a hand derivation: what it computes, what it claims, over which inputs.

A ``Derivation`` is pure data. It is validated where it is built, so that a misspelled
backend or a ``wrt`` name with no shape fails at the line that wrote it, with a message that
names the argument, its value and the fix, instead of deep inside a check.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["BACKENDS", "DEFAULT_BOUNDS", "DEFAULT_DIM_RANGE", "Derivation", "DerivationError"]

BACKENDS = ("numpy", "torch")

# Each symbolic dim ranges over at least 1..16 by default: size 1 is where broadcasting and
# `.squeeze()` bugs live, and 16 is large enough that "only for N > 12" bugs are reachable
# while a whole search stays within seconds.
DEFAULT_DIM_RANGE = (1, 16)

# A moderate symmetric range: large enough that products of a few layers leave the linear
# regime of nothing, small enough that sums of squares of 16-wide layers stay far from overflow.
DEFAULT_BOUNDS = (-2.0, 2.0)


# A dim's inclusive range, or a function of the hyperparameters and the plain dims drawn so
# far that gives it: how constraints such as "the output of a convolution has at least one
# row" are declared rather than rejected example by example.
DimRange = tuple[int, int] | Callable[[Mapping[str, Any]], tuple[int, int]]
# An integer input's inclusive value range, or a function of the params and dims giving it
# (class labels: ``lambda s: (0, s["C"] - 1)``).
IntegerRange = tuple[int, int] | Callable[[Mapping[str, Any]], tuple[int, int]]


@dataclass(frozen=True)
class ParamChoices:
    """A hyperparameter's values: an inclusive int range, or an explicit list of choices."""

    low: int | None = None
    high: int | None = None
    choices: tuple[Any, ...] = ()


class DerivationError(ValueError):
    """A declaration (or the spec forward) is malformed: the fix is in the declaration."""


def _suggest(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True, eq=False)
class Derivation:
    """A hand-derived gradient and the torch function it claims to differentiate.

    ``forward`` is the spec, written with torch ops; it is called with float64 tensors as
    keyword arguments, one per name in ``shapes``, and returns a scalar loss or a tensor of
    any shape (then ``backward`` is a vector-Jacobian product and receives ``grad_output``).
    ``backward`` is the hand derivation; it receives the same keyword arguments as numpy
    arrays (``backend="numpy"``) or torch tensors (``backend="torch"``) and returns
    ``{name: gradient}`` for every name in ``wrt``.

    Example::

        Derivation(
            name="square",
            forward=lambda x: (x**2).sum(),
            backward=lambda x: {"x": 2 * x},
            shapes={"x": ("N",)},
            wrt=["x"],
        )
    """

    name: str
    forward: Callable[..., Any]
    backward: Callable[..., Mapping[str, Any]]
    shapes: Mapping[str, tuple[str | int, ...]]
    wrt: Sequence[str]
    backend: str = "numpy"
    dims: Mapping[str, DimRange] | None = None
    bounds: Mapping[str, tuple[float, float]] | None = None
    params: Mapping[str, Any] | None = None
    integers: Mapping[str, IntegerRange] | None = None
    # Checks beyond the gradient, run by check and verify at every example on the same
    # point (a torch.autograd.Function's forward mode, double backward, strides, vmap):
    # called as ``extra_checks(point, grad_output, params, dtype=..., seed=...)`` with the
    # float64 numpy point, and returning an object with ``problems`` (Problems merged into
    # the report), ``notes`` (strings) and ``probes`` (finite-difference probes spent).
    extra_checks: Callable[..., Any] | None = None
    # Filled in by __post_init__: every symbolic dim with its inclusive range (or the
    # callable that gives it), every float input with its value range (declared or
    # default), every hyperparameter with its choices.
    dim_ranges: Mapping[str, DimRange] = field(init=False, repr=False)
    input_bounds: Mapping[str, tuple[float, float]] = field(init=False, repr=False)
    param_choices: Mapping[str, ParamChoices] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DerivationError(f"Derivation name must be a non-empty string, got {self.name!r}.")
        for role in ("forward", "backward"):
            if not callable(getattr(self, role)):
                raise DerivationError(
                    f"Derivation {self.name!r}: {role} must be callable, "
                    f"got {type(getattr(self, role)).__name__}."
                )
        if self.extra_checks is not None and not callable(self.extra_checks):
            raise DerivationError(
                f"Derivation {self.name!r}: extra_checks must be callable or None, "
                f"got {type(self.extra_checks).__name__}."
            )
        shapes = self._validated_shapes()
        wrt = self._validated_wrt(shapes)
        if self.backend not in BACKENDS:
            raise DerivationError(
                f"Derivation {self.name!r}: backend={self.backend!r} is not one of "
                f"{', '.join(map(repr, BACKENDS))}{_suggest(str(self.backend), BACKENDS)}"
            )
        param_choices = self._validated_params(shapes)
        dim_ranges = self._validated_dims(shapes)
        integers = self._validated_integers(shapes, wrt)
        bounds = self._validated_bounds(shapes, integers)
        # Copies, so that a caller mutating its own dicts later cannot change a declaration.
        object.__setattr__(self, "shapes", MappingProxyType(shapes))
        object.__setattr__(self, "wrt", wrt)
        object.__setattr__(self, "dim_ranges", MappingProxyType(dim_ranges))
        object.__setattr__(self, "input_bounds", MappingProxyType(bounds))
        object.__setattr__(
            self, "bounds", None if self.bounds is None else MappingProxyType(dict(self.bounds))
        )
        object.__setattr__(
            self, "dims", None if self.dims is None else MappingProxyType(dict(self.dims))
        )
        object.__setattr__(self, "param_choices", MappingProxyType(param_choices))
        object.__setattr__(self, "integers", MappingProxyType(integers))

    def _validated_shapes(self) -> dict[str, tuple[str | int, ...]]:
        if not isinstance(self.shapes, Mapping) or not self.shapes:
            raise DerivationError(
                f"Derivation {self.name!r}: shapes must be a non-empty mapping from input "
                f"name to a shape tuple, e.g. {{'x': ('N', 3)}}; got {self.shapes!r}."
            )
        shapes: dict[str, tuple[str | int, ...]] = {}
        for input_name, shape in self.shapes.items():
            if not isinstance(input_name, str) or not input_name.isidentifier():
                raise DerivationError(
                    f"Derivation {self.name!r}: input name {input_name!r} in shapes must be "
                    "a Python identifier, since it is passed as a keyword argument."
                )
            if not isinstance(shape, tuple | list):
                raise DerivationError(
                    f"Derivation {self.name!r}: shapes[{input_name!r}] = {shape!r} must be a "
                    "tuple of dims (symbolic names or ints); use () for a scalar."
                )
            for dim in shape:
                symbolic = isinstance(dim, str) and dim.isidentifier()
                fixed = isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1
                if not (symbolic or fixed):
                    raise DerivationError(
                        f"Derivation {self.name!r}: shapes[{input_name!r}] = {shape!r} has "
                        f"dim {dim!r}; a dim is a symbolic name like 'N' or an int >= 1."
                    )
            shapes[input_name] = tuple(shape)
        return shapes

    def _validated_wrt(self, shapes: Mapping[str, tuple[str | int, ...]]) -> tuple[str, ...]:
        if isinstance(self.wrt, str) or not isinstance(self.wrt, Sequence):
            raise DerivationError(
                f"Derivation {self.name!r}: wrt must be a sequence of input names, "
                f"e.g. wrt=[{self.wrt!r}], got {self.wrt!r}."
            )
        if not self.wrt:
            raise DerivationError(
                f"Derivation {self.name!r}: wrt is empty; name at least one input of shapes."
            )
        for name in self.wrt:
            if name not in shapes:
                raise DerivationError(
                    f"Derivation {self.name!r}: wrt names {name!r}, which has no entry in "
                    f"shapes (inputs: {', '.join(shapes)}){_suggest(str(name), list(shapes))}"
                )
        if len(set(self.wrt)) != len(self.wrt):
            raise DerivationError(
                f"Derivation {self.name!r}: wrt={list(self.wrt)!r} names an input twice."
            )
        return tuple(self.wrt)

    def _validated_dims(self, shapes: Mapping[str, tuple[str | int, ...]]) -> dict[str, DimRange]:
        symbolic = [d for shape in shapes.values() for d in shape if isinstance(d, str)]
        ranges: dict[str, DimRange] = {d: DEFAULT_DIM_RANGE for d in dict.fromkeys(symbolic)}
        for dim, bound in (self.dims or {}).items():
            if dim not in ranges:
                raise DerivationError(
                    f"Derivation {self.name!r}: dims names {dim!r}, which no shape uses "
                    f"(symbolic dims: {', '.join(ranges) or 'none'})"
                    f"{_suggest(str(dim), list(ranges))}"
                )
            if callable(bound):
                ranges[dim] = bound
                continue
            ok = (
                isinstance(bound, tuple | list)
                and len(bound) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) for b in bound)
                and 1 <= bound[0] <= bound[1]
            )
            if not ok:
                raise DerivationError(
                    f"Derivation {self.name!r}: dims[{dim!r}] = {bound!r} must be an "
                    "inclusive (low, high) pair of ints with 1 <= low <= high, e.g. (1, 32), "
                    "or a function of the params and plain dims returning one."
                )
            ranges[dim] = (bound[0], bound[1])
        # Plain ranges first, then the callables in the order declared: a callable may read
        # every param, every plain dim and the callables declared before it.
        plain = {d: r for d, r in ranges.items() if not callable(r)}
        derived = {d: r for d, r in ranges.items() if callable(r)}
        return {**plain, **derived}

    def _validated_params(
        self, shapes: Mapping[str, tuple[str | int, ...]]
    ) -> dict[str, ParamChoices]:
        choices: dict[str, ParamChoices] = {}
        for name, spec in (self.params or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise DerivationError(
                    f"Derivation {self.name!r}: param name {name!r} must be a Python identifier."
                )
            if name in shapes or name == "grad_output":
                raise DerivationError(
                    f"Derivation {self.name!r}: param {name!r} has the name of an input; "
                    "params and inputs are both keyword arguments, so rename one."
                )
            is_int = (
                [isinstance(v, int) and not isinstance(v, bool) for v in spec]
                if isinstance(spec, tuple | list | range)
                else []
            )
            if isinstance(spec, tuple) and len(spec) == 2 and all(is_int) and spec[0] <= spec[1]:
                choices[name] = ParamChoices(low=spec[0], high=spec[1])
            elif isinstance(spec, list | range) and len(spec) > 0:
                choices[name] = ParamChoices(choices=tuple(spec))
            else:
                raise DerivationError(
                    f"Derivation {self.name!r}: params[{name!r}] = {spec!r}; give an inclusive "
                    "(low, high) tuple of ints, e.g. (0, 2), or a non-empty list of choices, "
                    "e.g. [1e-5, 1e-3]."
                )
        return choices

    def _validated_integers(
        self, shapes: Mapping[str, tuple[str | int, ...]], wrt: Sequence[str]
    ) -> dict[str, IntegerRange]:
        integers: dict[str, IntegerRange] = {}
        for name, bound in (self.integers or {}).items():
            if name not in shapes:
                raise DerivationError(
                    f"Derivation {self.name!r}: integers names {name!r}, which has no entry in "
                    f"shapes{_suggest(str(name), list(shapes))}"
                )
            if name in wrt:
                raise DerivationError(
                    f"Derivation {self.name!r}: {name!r} is an integer input and is never "
                    "differentiated; remove it from wrt."
                )
            ok = callable(bound) or (
                isinstance(bound, tuple | list)
                and len(bound) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) for b in bound)
                and bound[0] <= bound[1]
            )
            if not ok:
                raise DerivationError(
                    f"Derivation {self.name!r}: integers[{name!r}] = {bound!r} must be an "
                    "inclusive (low, high) pair of ints, e.g. (0, 9), or a function of the "
                    "params and dims returning one, e.g. lambda s: (0, s['C'] - 1)."
                )
            integers[name] = bound if callable(bound) else (bound[0], bound[1])
        return integers

    def _validated_bounds(
        self, shapes: Mapping[str, tuple[str | int, ...]], integers: Mapping[str, Any]
    ) -> dict[str, tuple[float, float]]:
        bounds = {name: DEFAULT_BOUNDS for name in shapes if name not in integers}
        for name, bound in (self.bounds or {}).items():
            if name in integers:
                raise DerivationError(
                    f"Derivation {self.name!r}: {name!r} is an integer input; give its range "
                    "in integers, not bounds."
                )
            if name not in shapes:
                raise DerivationError(
                    f"Derivation {self.name!r}: bounds names {name!r}, which has no entry in "
                    f"shapes{_suggest(str(name), list(shapes))}"
                )
            ok = (
                isinstance(bound, tuple | list)
                and len(bound) == 2
                and all(isinstance(b, int | float) and math.isfinite(b) for b in bound)
                and bound[0] < bound[1]
            )
            if not ok:
                raise DerivationError(
                    f"Derivation {self.name!r}: bounds[{name!r}] = {bound!r} must be a finite "
                    "(low, high) pair with low < high, e.g. (-2.0, 2.0)."
                )
            bounds[name] = (float(bound[0]), float(bound[1]))
        return bounds

    def resolve_range(self, bound: Any, context: Mapping[str, Any], what: str) -> tuple[int, int]:
        """A declared range, calling it on ``context`` (params and dims) when it is a function."""
        if not callable(bound):
            return bound[0], bound[1]
        try:
            low, high = bound(dict(context))
        except Exception as exc:
            raise DerivationError(
                f"Derivation {self.name!r}: {what} raised {type(exc).__name__}: {exc} when "
                f"called with {dict(context)!r}; it may read params, plain dims and dims "
                "declared before it."
            ) from exc
        if not (isinstance(low, int) and isinstance(high, int) and low <= high):
            raise DerivationError(
                f"Derivation {self.name!r}: {what} returned ({low!r}, {high!r}) for "
                f"{dict(context)!r}; it must return ints with low <= high."
            )
        return low, high

    def concrete_shape(self, name: str, dims: Mapping[str, int]) -> tuple[int, ...]:
        """The shape of input ``name`` once every symbolic dim has a size."""
        return tuple(dims[d] if isinstance(d, str) else d for d in self.shapes[name])

    def __repr__(self) -> str:
        return f"Derivation(name={self.name!r}, backend={self.backend!r}, wrt={list(self.wrt)!r})"
