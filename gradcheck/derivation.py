"""The declaration of a hand derivation: what it computes, what it claims, over which inputs.

A ``Derivation`` is pure data. It is validated where it is built, so that a misspelled
backend or a ``wrt`` name with no shape fails at the line that wrote it, with a message that
names the argument, its value and the fix, instead of deep inside a check.
"""

from __future__ import annotations

import ast
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
# A string is arithmetic of other dims and int params, "4*H": the dim is exactly that size.
DimRange = tuple[int, int] | str | Callable[[Mapping[str, Any]], tuple[int, int]]
# An integer input's inclusive value range, or a function of the params and dims giving it
# (class labels: ``lambda s: (0, s["C"] - 1)``).
IntegerRange = tuple[int, int] | Callable[[Mapping[str, Any]], tuple[int, int]]


@dataclass(frozen=True)
class ParamChoices:
    """A hyperparameter's values: an inclusive int range, an inclusive float range
    (``continuous``), or an explicit list of choices."""

    low: int | float | None = None
    high: int | float | None = None
    choices: tuple[Any, ...] = ()
    continuous: bool = False


# What a dim expression may use: names, int literals, + - * // and parentheses. Anything
# else (calls, attributes, /) is refused at declaration time, so a typo cannot run code.
_EXPRESSION_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.FloorDiv,
    ast.USub,
)


class DimExpression:
    """A dim computed from other dims and int params, ``"4*H"``: its range is that one size."""

    def __init__(self, text: str) -> None:
        tree = ast.parse(text.strip(), mode="eval")
        for node in ast.walk(tree):
            if not isinstance(node, _EXPRESSION_NODES) or (
                isinstance(node, ast.Constant)
                and (not isinstance(node.value, int) or isinstance(node.value, bool))
            ):
                raise ValueError(f"{type(node).__name__} is not allowed")
        self.text = text.strip()
        self.names = tuple(dict.fromkeys(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)))
        self._code = compile(tree, "<dims>", "eval")

    def __call__(self, context: Mapping[str, Any]) -> tuple[int, int]:
        missing = [name for name in self.names if name not in context]
        if missing:
            raise KeyError(f"{', '.join(missing)} (not drawn before this dim)")
        size = eval(self._code, {"__builtins__": {}}, dict(context))  # the AST was checked
        return size, size

    def __repr__(self) -> str:
        return repr(self.text)


class DerivationError(ValueError):
    """A declaration (or the spec forward) is malformed: the fix is in the declaration."""


def _plain_numbers(value: Any) -> Any:
    """``value`` with numpy integer and float scalars, at any depth of the mappings, tuples
    and lists that a declaration is made of, turned into Python ints and floats."""
    # Told apart without importing numpy: declaring a Derivation stays cheap.
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        item = value.item()
        return item if isinstance(item, bool | int | float) else value
    if isinstance(value, Mapping):
        return {key: _plain_numbers(item) for key, item in value.items()}
    if type(value) in (tuple, list):
        return type(value)(_plain_numbers(item) for item in value)
    return value


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
    # A predicate over the drawn params and dims (one dict): the search keeps to settings
    # where it holds, e.g. conv strides that fit, lambda s: (s["H"] - s["HH"]) % s["stride"] == 0.
    where: Callable[[Mapping[str, Any]], bool] | None = None
    # Filled in by __post_init__: every symbolic dim with its inclusive range (or the
    # callable that gives it), every float input with its value range (declared or
    # default), every hyperparameter with its choices.
    dim_ranges: Mapping[str, DimRange] = field(init=False, repr=False)
    input_bounds: Mapping[str, tuple[float, float]] = field(init=False, repr=False)
    param_choices: Mapping[str, ParamChoices] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # numpy scalars (np.int64(3) from a shape, np.float32 bounds) are the numbers they
        # hold: refused, they gave messages that the values seemed to satisfy.
        for role in ("shapes", "dims", "bounds", "integers", "params"):
            object.__setattr__(self, role, _plain_numbers(getattr(self, role)))
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
        if self.where is not None and not callable(self.where):
            raise DerivationError(
                f"Derivation {self.name!r}: where={self.where!r} must be a function of the "
                "drawn params and dims (one dict) returning True for valid settings, e.g. "
                "where=lambda s: s['H'] % s['stride'] == 0."
            )
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
            if input_name == "grad_output":
                raise DerivationError(
                    f"Derivation {self.name!r}: an input may not be named 'grad_output': "
                    "the backward of a forward with dims receives the VJP seed under that "
                    "name, which would shadow it. Rename the input."
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
            if isinstance(bound, str):
                try:
                    ranges[dim] = DimExpression(bound)
                except (SyntaxError, ValueError) as exc:
                    raise DerivationError(
                        f"Derivation {self.name!r}: dims[{dim!r}] = {bound!r} is not a dim "
                        f"expression ({exc}); write arithmetic of other dims and int params "
                        "with + - * // and parentheses, e.g. '4*H' or 'C*H*W'."
                    ) from None
                expression = DimExpression(bound)
                unknown = [
                    n for n in expression.names if n not in ranges and n not in (self.params or {})
                ]
                if unknown:
                    raise DerivationError(
                        f"Derivation {self.name!r}: dims[{dim!r}] = {bound!r} names "
                        f"{', '.join(map(repr, unknown))}, which is neither a dim nor a param "
                        f"(dims: {', '.join(ranges)})."
                    )
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
                    "an expression of other dims such as '4*H', or a function of the params "
                    "and plain dims returning a range."
                )
            ranges[dim] = (bound[0], bound[1])
        # Plain ranges first, then the callables in the order declared: a callable may read
        # every param, every plain dim and the callables declared before it. An expression
        # comes after the dims it names, wherever it was declared.
        plain = {d: r for d, r in ranges.items() if not callable(r)}
        derived = {d: r for d, r in ranges.items() if callable(r)}
        ordered: dict[str, DimRange] = dict(plain)
        pending = dict(derived)
        while pending:
            ready = [
                d
                for d, r in pending.items()
                if not isinstance(r, DimExpression)
                or all(n in ordered or n not in pending for n in r.names)
            ]
            if not ready:
                raise DerivationError(
                    f"Derivation {self.name!r}: the dim expressions "
                    f"{', '.join(f'{d}={r!r}' for d, r in pending.items())} depend on each "
                    "other in a cycle; give one of them a range."
                )
            ordered[ready[0]] = pending.pop(ready[0])
        return ordered

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
            is_real = (
                [isinstance(v, int | float) and not isinstance(v, bool) for v in spec]
                if isinstance(spec, tuple)
                else []
            )
            if isinstance(spec, tuple) and len(spec) == 2 and all(is_int) and spec[0] <= spec[1]:
                choices[name] = ParamChoices(low=spec[0], high=spec[1])
            elif (
                isinstance(spec, tuple)
                and len(spec) == 2
                and all(is_real)
                and all(math.isfinite(v) for v in spec)
                and spec[0] < spec[1]
            ):
                choices[name] = ParamChoices(
                    low=float(spec[0]), high=float(spec[1]), continuous=True
                )
            elif isinstance(spec, list | range) and len(spec) > 0:
                choices[name] = ParamChoices(choices=tuple(spec))
            else:
                raise DerivationError(
                    f"Derivation {self.name!r}: params[{name!r}] = {spec!r}; give an inclusive "
                    "(low, high) tuple of ints, e.g. (0, 2), a (low, high) tuple of floats "
                    "with low < high, e.g. (0.0, 1.0), or a non-empty list of choices, "
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

    def allows(self, context: Mapping[str, Any]) -> bool:
        """Whether the drawn params and dims ``context`` satisfy ``where`` (True without one)."""
        if self.where is None:
            return True
        try:
            return bool(self.where(dict(context)))
        except Exception as exc:
            raise DerivationError(
                f"Derivation {self.name!r}: where raised {type(exc).__name__}: {exc} when "
                f"called with {dict(context)!r}; it receives every param and dim in one dict."
            ) from exc

    def concrete_shape(self, name: str, dims: Mapping[str, int]) -> tuple[int, ...]:
        """The shape of input ``name`` once every symbolic dim has a size."""
        return tuple(dims[d] if isinstance(d, str) else d for d in self.shapes[name])

    def __repr__(self) -> str:
        return f"Derivation(name={self.name!r}, backend={self.backend!r}, wrt={list(self.wrt)!r})"
