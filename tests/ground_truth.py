"""Derivations whose truth is known by construction (issue 18, goal 6).

A spec is composed from a vocabulary of torch ops (``OPS``): elementwise, matmul, reductions
(amax with its ties), softmax/logsumexp, a layer norm with eps, broadcasting, indexing and
slicing, kinks. Its correct backward is torch autograd's own gradient of that spec, taken in
the dtype and backend the backward receives; a wrong backward is the correct one with exactly
one thing changed (``MUTATIONS``). So every verdict of ``verify`` has a known right answer:

- correct: "pass", or "inconclusive" only when the spec holds a kink or tie op (relu, abs,
  maximum, clamp, amax, max): never "fail", never "error", never an exception;
- wrong, and visibly so (``visible``: wrong at half the random points or more, by more than
  5% of the gradient and a thousandth of its natural scale |f| / rms(x)): "fail". A mutation
  that shows less is held only to answering without an exception.

The correct backward also varies how it hands its gradients back (``RETURN_FORMS``: a float
or numpy scalar for a 0-d input, Fortran order, read-only, non-contiguous, requires-grad and
sparse tensors); the wrong ones return plain arrays, so that only the mutation is wrong.

Each spec tracks an interval that holds every value it computes, and an op is drawn only where
it stays finite and informative on that interval (no log of a range that reaches 0, no exp of
a large one, no tanh where it saturates to a zero gradient).

Classes of derivation that the engine is known to get wrong are left out of the strategy by
``KNOWN_GAPS``, the one table below: each entry names the class and the issue item, and is
deleted when the engine is fixed. Their standalone repros live in /tmp/gt_repros.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from hypothesis import reject
from hypothesis import strategies as st

from gradcheck import Derivation

# Every class of derivation the strategy does not draw, because the engine gives it a wrong
# verdict today. Keyed by class; the value says which item of issue 18 it is and where its
# minimal repro is. The strategy consults this table at the draw that would make the class:
# delete an entry and that class is drawn again.
KNOWN_GAPS: dict[str, str] = {
    # Specs whose gradient for some input in wrt is zero up to rounding at random points
    # (sum(softmax(x)); d/dy of layer_norm(x - y)): rejected where drawn (``zero_gradient``).
    "identically_zero_gradient": (
        "issue 18 goal 2: a correct derivation of d/dy sum(layer_norm(layer_norm(x) - y)) "
        "gets 'error: references disagree' (autograd's rounding noise 3e-16 against finite "
        "differences 0 +- 5e-25) at seeds 4 and 6 of 0-11. "
        "/tmp/gt_repros/03_zero_gradient_rounding_error.py"
    ),
    # float32 derivations of specs with an input near 1e8 (bounds narrower than 1e-4 of
    # their size): drawn in float64 only, when another input is in wrt ...
    "large_offset_float32": (
        "issue 18 item 11 (allowances): d/dv of x + v with x ~ 1e8 is allowed |f|/rms(v) * "
        "1e-4 ~ 6e3 in float32, so a sign-flipped d/dv passes at every seed. "
        "/tmp/gt_repros/04_large_offset_scale_floor_float32.py"
    ),
    # ... and when that input itself is in wrt.
    "float32_far_cancellation": (
        "issue 18 items 10/11: a sign-flipped backward of layer_norm(x) @ y, x in "
        "(1e8, 1e8 + 100), passes in float32 at 3 of 4 seeds (16 of 20 points inconclusive). "
        "/tmp/gt_repros/05_far_layer_norm_fd_step.py"
    ),
    # Kink ops (clamp, relu, abs, max...) on values far from zero in bounds narrower than
    # the relative finite-difference step (1e8 +- 100): not drawn there.
    "far_narrow_kink": (
        "issue 18 items 10/goal 2 (adaptive step): a sign-flipped backward of "
        "max(clamp(x, min=1e8 + 50)) on bounds (1e8, 1e8 + 100) passes in float32 at seed 1. "
        "/tmp/gt_repros/02_far_kink_float32.py"
    ),
}

__all__ = [
    "KNOWN_GAPS",
    "MUTATIONS",
    "OPS",
    "GroundTruth",
    "Spec",
    "derivations",
    "visible",
]

# The symbolic dims a spec draws its shapes from, and the largest size each may take: small,
# so that a search of a rank-4 spec stays within milliseconds an example.
DIM_NAMES = ("A", "B", "C", "D")
HIGHEST = {1: 6, 2: 5, 3: 4, 4: 3}  # by the rank of the input that first uses the dim

# Value ranges an input may be declared with, by kind. None: the declaration's default.
BOUNDS: dict[str, tuple[tuple[float, float] | None, ...]] = {
    "default": (None,),
    "symmetric": ((-0.5, 0.5), (-3.0, 3.0), (-20.0, 20.0)),  # logits of (-20, 20): float32
    "one_signed": ((0.2, 3.0), (-3.0, -0.2)),
    "narrow": ((0.9, 0.91), (-1.3, -1.299)),
    "far": ((900.0, 905.0), (-2000.0, -1990.0), (1e4, 1e4 + 1.0), (1e8, 1e8 + 100.0)),
    # a pole or branch point (log, 1/x, sqrt) just outside the bounds
    "near_singular": ((1e-3, 2.0), (1e-8, 10.0)),
    # an endpoint on it: the spec is finite there (sqrt(0), 0**1.5), its slope may not be
    "touching": ((0.0, 2.0),),
}
BOUND_KINDS = tuple(BOUNDS)


@dataclass(frozen=True)
class Input:
    name: str
    shape: tuple[str | int, ...]
    bounds: tuple[float, float] | None  # None: the declaration's default (-2, 2)
    bounds_kind: str
    wrt: bool = True
    # An integer index input: the dim (or int size) whose positions it holds.
    indexes: str | int | None = None

    def describe(self) -> str:
        shape = "(" + ", ".join(map(str, self.shape)) + ("," if len(self.shape) == 1 else "") + ")"
        if self.indexes is not None:
            return f"{self.name}{shape} int in [0, {self.indexes})"
        low, high = self.bounds or (-2.0, 2.0)
        return f"{self.name}{shape} in [{low:.10g}, {high:.10g}] ({self.bounds_kind})"


@dataclass(frozen=True)
class Stage:
    """One op applied to the running tensor ``t``; ``other`` names the input it brings in."""

    op: str
    other: str | None = None
    axis: int = -1
    keepdim: bool = False
    param: str | None = None
    value: float = 0.0  # a constant of the op (clamp's threshold)


@dataclass(frozen=True)
class Spec:
    inputs: tuple[Input, ...]
    stages: tuple[Stage, ...]
    head: str  # "vector" returns the tensor itself; else the reduction to a scalar loss
    dims: Mapping[str, tuple[int, int]]
    params: Mapping[str, Any]
    text: str  # the composed expression, readable
    where: tuple[str, Callable[[Mapping[str, Any]], bool]] | None = None

    @property
    def kinked(self) -> bool:
        return any(OPS[stage.op].kink for stage in self.stages)

    @property
    def wrt(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs if i.wrt)

    @property
    def vector(self) -> bool:
        return self.head in ("vector", "as_vector")

    def forward(
        self,
        tensors: Mapping[str, torch.Tensor],
        params: Mapping[str, Any],
        drop: int | None = None,
    ) -> torch.Tensor:
        """The spec. ``drop``: the term (a use of an input, a mean, a normaliser) taken as
        a constant, counted in the order the forward meets them (see ``sites``)."""
        counter = itertools.count()

        def cut(value: torch.Tensor) -> torch.Tensor:
            return value.detach() if next(counter) == drop else value

        return self._run(tensors, params, cut)

    def sites(self, tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> int:
        """How many terms ``forward`` could drop."""
        counter = itertools.count()

        def count(value: torch.Tensor) -> torch.Tensor:
            next(counter)
            return value

        self._run(tensors, params, count)
        return next(counter)

    def _run(
        self,
        tensors: Mapping[str, torch.Tensor],
        params: Mapping[str, Any],
        cut: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        t = cut(tensors[self.inputs[0].name])
        for stage in self.stages:
            t = OPS[stage.op].apply(t, stage, tensors, params, cut)
        return HEADS[self.head](t)


# ---------------------------------------------------------------------------------------------
# The vocabulary. Each op: which running tensors it applies to (rank, value interval), what it
# does, how it moves the interval and the shape, and how it reads.

Interval = tuple[float, float]
Shape = tuple[str | int, ...]
Cut = Callable[[torch.Tensor], torch.Tensor]

LARGEST = 1e9  # no value beyond this: products of two stay far from overflow in float32


def _magnitude(interval: Interval) -> float:
    return max(abs(interval[0]), abs(interval[1]))


@dataclass(frozen=True)
class Op:
    name: str
    apply: Callable[
        [torch.Tensor, Stage, Mapping[str, torch.Tensor], Mapping[str, Any], Cut], torch.Tensor
    ]
    # Whether the op applies to a running tensor of this rank and interval.
    fits: Callable[[int, Interval], bool]
    # The interval of its values, from the running interval (and the other input's, and
    # the largest size of the axis it reduces).
    interval: Callable[[Interval, Interval, int], Interval]
    kind: str  # elementwise, binary, matmul, reduction, softmax, norm, index, kink
    kink: bool = False


def _monotone(f: Callable[[float], float]) -> Callable[[Interval, Interval, int], Interval]:
    def interval(t: Interval, _other: Interval, _n: int) -> Interval:
        a, b = f(t[0]), f(t[1])
        return (min(a, b), max(a, b))

    return interval


def _square_interval(t: Interval, _other: Interval, _n: int) -> Interval:
    low = 0.0 if t[0] <= 0.0 <= t[1] else min(t[0] ** 2, t[1] ** 2)
    return (low, max(t[0] ** 2, t[1] ** 2))


def _sum_interval(t: Interval, _other: Interval, n: int) -> Interval:
    return (min(t[0], n * t[0]), max(t[1], n * t[1]))


def _product(a: Interval, b: Interval) -> Interval:
    corners = [x * y for x in a for y in b]
    return (min(corners), max(corners))


def _unary(
    name: str,
    f: Callable[[torch.Tensor], torch.Tensor],
    fits: Callable[[Interval], bool],
    interval: Callable[[Interval, Interval, int], Interval],
    *,
    kink: bool = False,
) -> Op:
    return Op(
        name,
        lambda t, _stage, _inputs, _params, _cut: f(t),
        lambda _rank, i: fits(i),
        interval,
        "kink" if kink else "elementwise",
        kink,
    )


def _binary(stage: Stage, t: torch.Tensor, inputs: Mapping[str, torch.Tensor], cut: Cut) -> Any:
    other = cut(inputs[stage.other])  # type: ignore[index]
    return {
        "mul": lambda: t * other,
        "add": lambda: t + other,
        "sub": lambda: t - other,
        "div": lambda: t / other,
        "maximum": lambda: torch.maximum(t, other),
    }[stage.op]()


def _layer_norm(t: torch.Tensor, stage: Stage, params: Mapping[str, Any], cut: Cut) -> Any:
    mean = cut(t.mean(dim=-1, keepdim=True))
    centred = t - mean
    variance = cut((centred * centred).mean(dim=-1, keepdim=True))
    return centred / torch.sqrt(variance + params[stage.param])  # type: ignore[index]


def _softmax(t: torch.Tensor, stage: Stage, cut: Cut) -> Any:
    shifted = t - t.amax(dim=stage.axis, keepdim=True).detach()  # the stable form
    e = torch.exp(shifted)
    return e / cut(e.sum(dim=stage.axis, keepdim=True))


def _bounded(limit: float) -> Callable[[Interval], bool]:
    return lambda i: _magnitude(i) <= limit


OPS: dict[str, Op] = {
    op.name: op
    for op in [
        # Elementwise, simplest first (hypothesis shrinks towards the first).
        _unary("scale", lambda t: 3.0 * t, _bounded(LARGEST / 3), _monotone(lambda x: 3 * x)),
        _unary("square", lambda t: t * t, _bounded(1e3), _square_interval),
        _unary("sin", torch.sin, _bounded(1e6), lambda t, o, n: (-1.0, 1.0)),
        _unary("tanh", torch.tanh, _bounded(8.0), _monotone(math.tanh)),
        _unary(
            "sigmoid", torch.sigmoid, _bounded(8.0), _monotone(lambda x: 1 / (1 + math.exp(-x)))
        ),
        _unary("exp", torch.exp, lambda i: i[0] >= -20.0 and i[1] <= 8.0, _monotone(math.exp)),
        _unary(
            "softplus",
            torch.nn.functional.softplus,
            lambda i: i[0] >= -8.0 and i[1] <= 1e3,
            _monotone(lambda x: math.log1p(math.exp(min(x, 700))) if x < 30 else x),
        ),
        _unary("log", torch.log, lambda i: i[0] > 0.0 and i[1] <= LARGEST, _monotone(math.log)),
        _unary("sqrt", torch.sqrt, lambda i: i[0] >= 0.0 and i[1] <= LARGEST, _monotone(math.sqrt)),
        _unary(
            "reciprocal",
            torch.reciprocal,
            lambda i: (i[0] >= 1e-3 or i[1] <= -1e-3) and _magnitude(i) <= 1e4,
            _monotone(lambda x: 1 / x),
        ),
        # finite, with a finite slope, at a touching endpoint 0
        _unary(
            "pow1.5",
            lambda t: t**1.5,
            lambda i: i[0] >= 0.0 and i[1] <= 1e3,
            _monotone(lambda x: x**1.5),
        ),
        # Kinks and ties.
        _unary(
            "relu", torch.relu, lambda i: i[0] < 0.0 < i[1], lambda t, o, n: (0.0, t[1]), kink=True
        ),
        _unary(
            "abs",
            torch.abs,
            lambda i: i[0] < 0.0 < i[1],
            lambda t, o, n: (0.0, _magnitude(t)),
            kink=True,
        ),
        Op(
            "clamp",
            lambda t, stage, _i, _p, _c: torch.clamp(t, min=stage.value),
            lambda _rank, i: i[0] < i[1],
            lambda t, o, n: (t[0] + (t[1] - t[0]) / 2, t[1]),
            "kink",
            kink=True,
        ),
        Op(
            "amax",
            lambda t, stage, _i, _p, _c: t.amax(dim=stage.axis, keepdim=stage.keepdim),
            lambda rank, _i: rank >= 1,
            lambda t, o, n: t,
            "reduction",
            kink=True,
        ),
        Op(
            "max",
            lambda t, stage, _i, _p, _c: t.max(dim=stage.axis, keepdim=stage.keepdim).values,
            lambda rank, _i: rank >= 1,
            lambda t, o, n: t,
            "reduction",
            kink=True,
        ),
        # Reductions.
        Op(
            "sum",
            lambda t, stage, _i, _p, _c: t.sum(dim=stage.axis, keepdim=stage.keepdim),
            lambda rank, i: rank >= 1 and _magnitude(i) <= LARGEST / 8,
            _sum_interval,
            "reduction",
        ),
        Op(
            "mean",
            lambda t, stage, _i, _p, _c: t.mean(dim=stage.axis, keepdim=stage.keepdim),
            lambda rank, _i: rank >= 1,
            lambda t, o, n: t,
            "reduction",
        ),
        # Softmax family.
        Op(
            "softmax",
            lambda t, stage, _i, _p, cut: _softmax(t, stage, cut),
            lambda rank, _i: rank >= 1,
            lambda t, o, n: (0.0, 1.0),
            "softmax",
        ),
        Op(
            "log_softmax",
            lambda t, stage, _i, _p, _c: torch.log_softmax(t, dim=stage.axis),
            lambda rank, i: rank >= 1 and i[1] - i[0] <= 50.0,
            lambda t, o, n: (t[0] - t[1] - math.log(n), 0.0),
            "softmax",
        ),
        Op(
            "logsumexp",
            lambda t, stage, _i, _p, _c: torch.logsumexp(t, dim=stage.axis, keepdim=stage.keepdim),
            lambda rank, _i: rank >= 1,
            lambda t, o, n: (t[0], t[1] + math.log(n)),
            "softmax",
        ),
        # Normalisation over the last axis, with an eps declared as a param.
        Op(
            "layer_norm",
            lambda t, stage, _i, params, cut: _layer_norm(t, stage, params, cut),
            lambda rank, _i: rank >= 1,
            lambda t, o, n: (-math.sqrt(n), math.sqrt(n)),
            "norm",
        ),
        # Elementwise with a hyperparameter: an int power (1..3) and a float scale.
        Op(
            "power",
            lambda t, stage, _i, params, _c: t ** params[stage.param],
            lambda rank, i: _magnitude(i) <= 100.0,
            lambda t, o, n: (-(max(1.0, _magnitude(t)) ** 3), max(1.0, _magnitude(t)) ** 3),
            "elementwise",
        ),
        Op(
            "scaled",
            lambda t, stage, _i, params, _c: params[stage.param] * t,
            lambda rank, i: _magnitude(i) <= LARGEST / 4,
            lambda t, o, n: (-4 * _magnitude(t), 4 * _magnitude(t)),
            "elementwise",
        ),
        # Finite everywhere, with a gradient that is not where a row is constant (std) or
        # all zero (the norm): special points put them there.
        Op(
            "std",
            lambda t, _s, _i, _p, _c: torch.std(t, dim=-1, correction=0),
            lambda rank, i: rank >= 1 and _magnitude(i) <= 1e4,
            lambda t, o, n: (0.0, (t[1] - t[0]) / 2),
            "norm",
        ),
        Op(
            "l2norm",
            lambda t, _s, _i, _p, _c: torch.sqrt((t * t).sum(dim=-1)),
            lambda rank, i: rank >= 1 and _magnitude(i) <= 1e4,
            lambda t, o, n: (0.0, math.sqrt(n) * _magnitude(t)),
            "norm",
        ),
        # A shape that depends on the values: the elements above 0.3 of the way up the
        # range (none, at some points), as a vector.
        Op(
            "masked",
            lambda t, stage, _i, _p, _c: t[t > stage.value],
            # not where float32 rounds coarsely against the range: there a float32 backward
            # would keep other elements than the float64 spec (its shape is not the spec's)
            lambda rank, i: _magnitude(i) <= 1e3 and i[1] - i[0] >= 1e-2 * _magnitude(i),
            lambda t, o, n: t,
            "index",
        ),
        # Indexing and slicing.
        Op(
            "first_column",
            lambda t, _s, _i, _p, _c: t[..., :1],
            lambda rank, _i: rank >= 1,
            lambda t, o, n: t,
            "index",
        ),
        Op(
            "first_row",
            lambda t, _s, _i, _p, _c: t[0],
            lambda rank, _i: rank >= 1,
            lambda t, o, n: t,
            "index",
        ),
        Op(
            "flip",
            lambda t, _s, _i, _p, _c: t.flip(-1),
            lambda rank, _i: rank >= 1,
            lambda t, o, n: t,
            "index",
        ),
        Op(
            "transpose",
            lambda t, _s, _i, _p, _c: t.transpose(-1, -2),
            lambda rank, _i: rank >= 2,
            lambda t, o, n: t,
            "index",
        ),
        Op(
            "index_select",
            lambda t, stage, inputs, _p, _c: t.index_select(-1, inputs[stage.other]),  # type: ignore[index]
            lambda rank, _i: rank >= 1,
            lambda t, o, n: t,
            "index",
        ),
        # Binary, with a new input broadcast against the running tensor (or one already drawn).
        Op(
            "mul",
            lambda t, stage, inputs, _p, cut: _binary(stage, t, inputs, cut),
            lambda rank, i: _magnitude(i) <= 1e3,
            lambda t, o, n: _product(t, o),
            "binary",
        ),
        Op(
            "add",
            lambda t, stage, inputs, _p, cut: _binary(stage, t, inputs, cut),
            lambda rank, i: True,
            lambda t, o, n: (t[0] + o[0], t[1] + o[1]),
            "binary",
        ),
        Op(
            "sub",
            lambda t, stage, inputs, _p, cut: _binary(stage, t, inputs, cut),
            lambda rank, i: True,
            lambda t, o, n: (t[0] - o[1], t[1] - o[0]),
            "binary",
        ),
        Op(
            "div",
            lambda t, stage, inputs, _p, cut: _binary(stage, t, inputs, cut),
            lambda rank, i: _magnitude(i) <= 1e3,
            lambda t, o, n: _product(t, (1 / o[1], 1 / o[0])),
            "binary",
        ),
        Op(
            "maximum",
            lambda t, stage, inputs, _p, cut: _binary(stage, t, inputs, cut),
            lambda rank, i: True,
            lambda t, o, n: (max(t[0], o[0]), max(t[1], o[1])),
            "binary",
            kink=True,
        ),
        Op(
            "matmul",
            lambda t, stage, inputs, _p, cut: t @ cut(inputs[stage.other]),  # type: ignore[index]
            lambda rank, i: rank >= 1 and _magnitude(i) <= 1e3,
            lambda t, o, n: (-n * _magnitude(t) * _magnitude(o), n * _magnitude(t) * _magnitude(o)),
            "matmul",
        ),
    ]
}


def _text(op: str, inner: str, stage: Stage, other: str | None) -> str:
    axis = f", dim={stage.axis}" + (", keepdim=True" if stage.keepdim else "")
    return {
        "scale": f"3 * {inner}",
        "square": f"{inner}**2",
        "pow1.5": f"{inner}**1.5",
        "clamp": f"clamp({inner}, min={stage.value:.10g})",
        "amax": f"amax({inner}{axis})",
        "max": f"max({inner}{axis}).values",
        "sum": f"sum({inner}{axis})",
        "mean": f"mean({inner}{axis})",
        "softmax": f"softmax({inner}, dim={stage.axis})",
        "log_softmax": f"log_softmax({inner}, dim={stage.axis})",
        "logsumexp": f"logsumexp({inner}{axis})",
        "layer_norm": f"layer_norm({inner}, eps={stage.param})",
        "power": f"{inner}**{stage.param}",
        "scaled": f"{stage.param} * {inner}",
        "std": f"std({inner}, dim=-1)",
        "l2norm": f"sqrt(sum({inner}**2, dim=-1))",
        "masked": f"{inner}[{inner} > {stage.value:.10g}]",
        "first_column": f"{inner}[..., :1]",
        "first_row": f"{inner}[0]",
        "flip": f"{inner}.flip(-1)",
        "transpose": f"{inner}.transpose(-1, -2)",
        "index_select": f"{inner}.index_select(-1, {other})",
        "mul": f"({inner} * {other})",
        "add": f"({inner} + {other})",
        "sub": f"({inner} - {other})",
        "div": f"({inner} / {other})",
        "maximum": f"maximum({inner}, {other})",
        "matmul": f"({inner} @ {other})",
    }.get(op, f"{op}({inner})")


HEADS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum": lambda t: t.sum(),
    "mean": lambda t: t.mean(),
    "half_sum_of_squares": lambda t: (t * t).sum() / 2,
    "vector": lambda t: t,
    "as_vector": lambda t: t.reshape(1),  # a 0-d result returned as a vector of one
}


def _broadcast(a: Shape, b: Shape) -> Shape | None:
    out: list[str | int] = []
    for x, y in itertools.zip_longest(reversed(a), reversed(b), fillvalue=1):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(reversed(out))


# ---------------------------------------------------------------------------------------------
# The strategy.


class _Draft:
    """What a spec has drawn so far."""

    def __init__(self) -> None:
        self.inputs: list[Input] = []
        self.dims: dict[str, tuple[int, int]] = {}
        self.params: dict[str, Any] = {}
        self.stages: list[Stage] = []

    def highest(self, dim: str | int) -> int:
        if dim == VALUE_DEPENDENT:
            return 4**4
        return dim if isinstance(dim, int) else self.dims[dim][1]

    def name(self) -> str:
        return "xywvuzpqrs"[len(self.inputs)] if len(self.inputs) < 10 else f"x{len(self.inputs)}"


@st.composite
def _shape(draw: st.DrawFn, draft: _Draft, rank: int) -> Shape:
    shape: list[str | int] = []
    for _ in range(rank):
        dim = draw(st.sampled_from((*DIM_NAMES, 1, 2, 3)))
        if isinstance(dim, str) and dim not in draft.dims:
            draft.dims[dim] = (1, draw(st.integers(2, HIGHEST[rank])))
        shape.append(dim)
    return tuple(shape)


@st.composite
def _bounds(draw: st.DrawFn, kinds: tuple[str, ...] = BOUND_KINDS) -> tuple[str, Any]:
    kinds = tuple(k for k in kinds if not _gap_bounds(k))
    kind = draw(st.sampled_from(kinds))
    return kind, draw(st.sampled_from(BOUNDS[kind]))


def _gap_bounds(kind: str) -> bool:
    """Whether a kind of bounds is left out: adding one of these names to KNOWN_GAPS leaves
    that kind out of every input (none is there today)."""
    return {
        "near_singular": "fd_step_leaves_domain",
        "touching": "touching_singularity",
        "far": "far_from_zero",
    }.get(kind, "") in KNOWN_GAPS


def _interval(bounds: tuple[float, float] | None) -> Interval:
    return bounds or (-2.0, 2.0)


@st.composite
def specs(
    draw: st.DrawFn,
    *,
    vector: bool | None = None,
    max_stages: int = 3,
    min_rank: int = 0,
    first_in_wrt: bool = False,
) -> Spec:
    """A spec composed of up to ``max_stages`` ops of the vocabulary on a first input of rank
    0-4; ``vector`` picks the output (a tensor with grad_output, or a scalar loss; None: either)."""
    draft = _Draft()
    rank = draw(st.integers(min_rank, 4))
    kind, bounds = draw(_bounds())
    first = Input("x", draw(_shape(draft, rank)), bounds, kind)
    draft.inputs.append(first)
    shape, interval, text = first.shape, _interval(bounds), "x"
    for index in range(draw(st.integers(1, max_stages))):
        usable = [
            op
            for op in OPS.values()
            if op.fits(len(shape), interval)
            and _shape_allows(op, shape, draft)
            and not (op.kink and "far_narrow_kink" in KNOWN_GAPS and _far_narrow(interval))
        ]
        # the kind first, then the op: each kind as likely as any other, however many ops
        kinds = list(dict.fromkeys(op.kind for op in usable))
        kind = draw(st.sampled_from(kinds))
        op = draw(st.sampled_from([op for op in usable if op.kind == kind]))
        before = (list(draft.inputs), dict(draft.dims), dict(draft.params))
        drawn = draw(_stage(draft, op, shape, interval, index, min_rank))
        if _magnitude(drawn[2]) > LARGEST or not all(map(math.isfinite, drawn[2])):
            # the composition would leave the range where it stays finite: end it here, and
            # forget the inputs, dims and params the stage drew
            draft.inputs, draft.dims, draft.params = before
            break
        stage, shape, interval, other = drawn
        draft.stages.append(stage)
        text = _text(op.name, text, stage, other)
    heads = ["sum", "mean", "half_sum_of_squares"]
    if _magnitude(interval) > 1e3:
        heads.remove("half_sum_of_squares")
    if VALUE_DEPENDENT in shape:
        heads.remove("mean")  # of no elements: NaN
    if vector is None:
        vector = draw(st.booleans())
    head = ("vector" if shape else "as_vector") if vector else draw(st.sampled_from(heads))
    text = {"vector": text, "as_vector": f"{text}.reshape(1)"}.get(head, f"{head}({text})")
    # at least one float input is differentiated
    floats = [i for i in draft.inputs if i.indexes is None]
    chosen = draw(st.lists(st.sampled_from(range(len(floats))), min_size=1, unique=True))
    chosen += [0] if first_in_wrt else []
    inputs = tuple(
        replace(i, wrt=i.indexes is None and floats.index(i) in chosen) for i in draft.inputs
    )
    where = None
    if draft.dims and draw(st.integers(0, 3)) == 0:
        where = draw(_where(tuple(draft.dims)))
    return Spec(
        inputs=inputs,
        stages=tuple(draft.stages),
        head=head,
        dims=dict(draft.dims),
        params=dict(draft.params),
        text=text,
        where=where,
    )


# The length of a vector whose size depends on the values (``masked``): no input can share it.
VALUE_DEPENDENT = "*"


def _shape_allows(op: Op, shape: Shape, draft: _Draft) -> bool:
    if VALUE_DEPENDENT in shape:
        # possibly empty: only ops defined on no elements, and none that brings in an input
        return op.kind == "elementwise" or op.name == "sum"
    if op.name == "masked":
        return "masked" not in KNOWN_GAPS
    if op.name == "transpose":
        return len(shape) >= 2
    if op.kind in ("softmax", "norm"):
        # along an axis of size 1 they are constant (a gradient identically zero)
        return bool(shape) and shape[-1] != 1
    if op.name in ("first_row", "first_column", "flip", "index_select"):
        return len(shape) >= 1
    return True


@st.composite
def _where(draw: st.DrawFn, dims: tuple[str, ...]) -> tuple[str, Callable[..., bool]]:
    a = draw(st.sampled_from(dims))
    b = draw(st.sampled_from(dims))
    choices: list[tuple[str, Callable[..., bool]]] = [
        (f"{a} != 2", lambda s: s[a] != 2),
        (f"({a} + {b}) % 2 == 0", lambda s: (s[a] + s[b]) % 2 == 0),
    ]
    if a != b:
        choices.append((f"{a} <= {b}", lambda s: s[a] <= s[b]))
    return draw(st.sampled_from(choices))


@st.composite
def _stage(
    draw: st.DrawFn,
    draft: _Draft,
    op: Op,
    shape: Shape,
    interval: Interval,
    index: int,
    min_rank: int,
) -> tuple[Stage, Shape, Interval, str | None]:
    """The stage of ``op`` on a running tensor of ``shape``: its new shape and interval, and
    the name of the input it brings in (None)."""
    rank = len(shape)
    if op.name in ("power", "scaled"):
        param = f"{'p' if op.name == 'power' else 'alpha'}{index}"
        draft.params[param] = (1, 3) if op.name == "power" else (-4.0, 4.0)
        return Stage(op.name, param=param), shape, op.interval(interval, interval, 1), None
    if op.kind in ("elementwise", "kink") and op.name != "clamp":
        return Stage(op.name), shape, op.interval(interval, interval, 1), None
    if op.name == "clamp":
        value = round(interval[0] + (interval[1] - interval[0]) / 2, 6)
        return Stage(op.name, value=value), shape, (value, interval[1]), None
    if op.kind in ("reduction", "softmax"):
        axes = [a for a in range(-rank, 0) if op.kind != "softmax" or shape[a] != 1]
        axis = draw(st.sampled_from(axes))
        reduces = op.kind == "reduction" or op.name == "logsumexp"
        keepdim = reduces and draw(st.booleans())
        n = draft.highest(shape[axis])
        after = shape[axis:][1:]
        new_shape = shape if not reduces else shape[:axis] + ((1,) if keepdim else ()) + after
        return (
            Stage(op.name, axis=axis, keepdim=keepdim),
            new_shape,
            op.interval(interval, interval, n),
            None,
        )
    if op.name == "layer_norm":
        param = f"eps{index}"
        draft.params[param] = draw(st.sampled_from(([1e-5, 1e-3], (1e-4, 1e-2))))
        n = draft.highest(shape[-1])
        return Stage(op.name, param=param), shape, op.interval(interval, interval, n), None
    if op.name in ("std", "l2norm"):
        n = draft.highest(shape[-1])
        return Stage(op.name), shape[:-1], op.interval(interval, interval, n), None
    if op.name == "masked":
        # 0.3 of the way up: off the grid of eighths that coarse points are drawn from, so
        # that no drawn value sits on the threshold (where float32 and float64 split)
        value = round(interval[0] + 0.3 * (interval[1] - interval[0]), 6)
        return Stage(op.name, value=value), (VALUE_DEPENDENT,), (value, interval[1]), None
    if op.name == "first_column":
        return Stage(op.name), (*shape[:-1], 1), interval, None
    if op.name == "first_row":
        return Stage(op.name), shape[1:], interval, None
    if op.name in ("flip", "transpose"):
        new_shape = shape if op.name == "flip" else (*shape[:-2], shape[-1], shape[-2])
        return Stage(op.name), new_shape, interval, None
    if op.name == "index_select":
        name = draft.name()
        count = draw(st.sampled_from((*DIM_NAMES, 1, 2, 3)))
        if isinstance(count, str) and count not in draft.dims:
            draft.dims[count] = (1, draw(st.integers(2, 4)))
        draft.inputs.append(Input(name, (count,), None, "index", wrt=False, indexes=shape[-1]))
        return Stage(op.name, other=name), (*shape[:-1], count), interval, name
    if op.name == "matmul":
        name = draft.name()
        out_dim = draw(st.sampled_from((*DIM_NAMES, None)))  # None: a vector, the dim is summed
        other_shape: Shape = (shape[-1],) if out_dim is None else (shape[-1], out_dim)
        if isinstance(out_dim, str) and out_dim not in draft.dims:
            draft.dims[out_dim] = (1, draw(st.integers(2, 4)))
        kind, bounds = draw(_bounds(("default", "symmetric", "one_signed", "narrow", "far")))
        draft.inputs.append(Input(name, other_shape, bounds, kind))
        new_shape = shape[:-1] + (() if out_dim is None else (out_dim,))
        n = draft.highest(shape[-1])
        return (
            Stage(op.name, other=name),
            new_shape,
            op.interval(interval, _interval(bounds), n),
            name,
        )
    # binary: a new input broadcast against the running tensor, or one already drawn
    reusable = [
        i
        for i in draft.inputs
        if i.indexes is None
        and (index > 0 or i is not draft.inputs[0])  # not x - x
        and _broadcast(shape, i.shape) is not None
        and len(_broadcast(shape, i.shape) or ()) <= 4
        and (op.name != "div" or _interval(i.bounds)[0] > 0.1)
        and (op.name != "maximum" or _overlap(interval, _interval(i.bounds)))
    ]
    if reusable and draw(st.integers(0, 3)) == 0:
        chosen = draw(st.sampled_from(reusable))
        new_shape = _broadcast(shape, chosen.shape)
        return (
            Stage(op.name, other=chosen.name),
            new_shape,
            op.interval(  # type: ignore[return-value]
                interval, _interval(chosen.bounds), 1
            ),
            chosen.name,
        )
    name = draft.name()
    form = draw(st.sampled_from(("same", "suffix", "with_one", "scalar", "leading")))
    if form == "same":
        other_shape = shape
    elif form == "suffix":
        other_shape = shape[draw(st.integers(0, rank)) :]
    elif form == "with_one" and rank:
        position = draw(st.integers(0, rank - 1))
        other_shape = (*shape[:position], 1, *shape[position + 1 :])
    elif form == "leading" and rank < 4:
        other_shape = draw(_shape(draft, 1)) + shape
    else:
        other_shape = ()
    if op.name == "div":
        kind, bounds = draw(_bounds(("one_signed",)))
        bounds = (0.5, 2.0)
    elif op.name == "maximum":
        kind, bounds = "overlapping", interval if interval[0] < interval[1] else None
        bounds = (round(interval[0], 6), round(interval[1], 6)) if bounds else None
    else:
        kind, bounds = draw(_bounds(("default", "symmetric", "one_signed", "narrow")))
    draft.inputs.append(Input(name, other_shape, bounds, kind))
    new_shape = _broadcast(shape, other_shape)
    return (
        Stage(op.name, other=name),
        new_shape,
        op.interval(  # type: ignore[return-value]
            interval, _interval(bounds), 1
        ),
        name,
    )


def _dtypes(spec: Spec) -> tuple[str, ...]:
    """float64 and float32, but float64 alone where KNOWN_GAPS leaves float32 out."""
    far = [i for i in spec.inputs if i.bounds is not None and _far_narrow(i.bounds)]
    if (
        "large_offset_float32" in KNOWN_GAPS
        and far
        and any(i.wrt for i in spec.inputs if i not in far)
    ) or ("float32_far_cancellation" in KNOWN_GAPS and any(i.wrt for i in far)):
        return ("float64",)
    return ("float64", "float32")


def _far_narrow(interval: Interval) -> bool:
    """Narrower than a finite-difference step relative to the values' size (~6e-6 |x|)."""
    return interval[1] - interval[0] < 1e-4 * _magnitude(interval)


def _overlap(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# ---------------------------------------------------------------------------------------------
# The backwards: autograd's own gradient, in the dtype and backend it receives; and the
# mutations, each one way a hand backward goes wrong.

MUTATIONS = (
    "factor",  # a constant factor (2) on one gradient
    "sign",  # one gradient negated
    "one_element",  # one element of one gradient off
    "shape",  # one gradient of the wrong shape (a dim added or dropped)
    "transposition",  # one gradient's elements in the wrong order (transposed, or reversed)
    "dropped_term",  # one term of the chain rule left out (a use of an input, a mean)
    "stale_grad_output",  # the grad_output of the first call used at every call
    "clipped_grad_output",  # grad_output clipped to [-1, 1]
    "accumulating",  # state between calls: the previous call's gradients added in
    "every_other_call",  # state between calls: every second call is off by a factor
)
GRAD_OUTPUT_MUTATIONS = ("stale_grad_output", "clipped_grad_output")
STATEFUL = ("stale_grad_output", "accumulating", "every_other_call")


@dataclass(frozen=True)
class Mutation:
    kind: str
    target: str | None = None  # the input whose gradient is changed (None: all of them)
    site: int | None = None  # dropped_term: which term

    def describe(self) -> str:
        where = f" on {self.target}" if self.target else ""
        site = f" (term {self.site})" if self.site is not None else ""
        return f"{self.kind}{where}{site}"


def _as_tensors(spec: Spec, arguments: Mapping[str, Any], backend: str) -> dict[str, torch.Tensor]:
    tensors = {}
    for spec_input in spec.inputs:
        value = arguments[spec_input.name]
        tensor = torch.from_numpy(np.array(value)) if backend == "numpy" else value.detach().clone()
        if spec_input.wrt:
            tensor.requires_grad_(True)
        tensors[spec_input.name] = tensor
    return tensors


def autograd_gradients(
    spec: Spec,
    arguments: Mapping[str, Any],
    backend: str,
    *,
    drop: int | None = None,
    grad_output: Any = None,
) -> dict[str, torch.Tensor]:
    """torch autograd's gradient of the spec at ``arguments`` (what the backward receives),
    in their dtype; with ``drop``, one term taken as a constant."""
    tensors = _as_tensors(spec, arguments, backend)
    params = {name: arguments[name] for name in spec.params}
    with torch.enable_grad():
        output = spec.forward(tensors, params, drop)
        if grad_output is None:
            seed = torch.ones_like(output)
        else:
            seed = torch.as_tensor(np.asarray(grad_output)) if backend == "numpy" else grad_output
            seed = seed.to(output.dtype)
        wrt = [tensors[name] for name in spec.wrt]
        grads = (
            torch.autograd.grad(output, wrt, seed, allow_unused=True)
            if output.requires_grad  # not when the one term dropped was the whole spec
            else [None] * len(wrt)
        )
    return {
        name: (torch.zeros_like(tensors[name]) if g is None else g.detach())
        for name, g in zip(spec.wrt, grads, strict=True)
    }


def _mutated(
    mutation: Mutation,
    grads: dict[str, torch.Tensor],
    calls: int,
    previous: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    kind, target = mutation.kind, mutation.target
    out = dict(grads)
    if kind == "factor":
        out[target] = 2 * grads[target]  # type: ignore[index]
    elif kind == "sign":
        out[target] = -grads[target]  # type: ignore[index]
    elif kind == "one_element":
        g = grads[target].clone()  # type: ignore[index]
        flat = g.reshape(-1)
        largest = float(flat.abs().max()) if flat.numel() else 0.0
        flat[flat.numel() // 2] += 0.5 * largest if largest > 0 else 1.0
        out[target] = flat.reshape(g.shape)  # type: ignore[index]
    elif kind == "shape":
        g = grads[target]  # type: ignore[index]
        out[target] = g.reshape(-1) if g.dim() >= 2 else g.unsqueeze(0)  # type: ignore[index]
    elif kind == "transposition":
        g = grads[target]  # type: ignore[index]
        # a transpose where the last two axes are both wider than 1 (else it moves nothing),
        # the elements in reverse order otherwise
        square = g.dim() >= 2 and min(g.shape[-2:]) > 1
        swapped = g.transpose(-1, -2) if square else g.reshape(-1).flip(0)
        out[target] = swapped.reshape(g.shape)  # type: ignore[index]
    elif kind == "accumulating":
        out = {
            name: g + previous[name] if name in previous and previous[name].shape == g.shape else g
            for name, g in grads.items()
        }
    elif kind == "every_other_call" and calls % 2 == 1:
        out[target] = 2 * grads[target]  # type: ignore[index]
    return out


# How a correct backward may hand its gradients back, besides a plain array or tensor of the
# input's dtype: each is a legal answer that gradcheck must read as the same gradient.
RETURN_FORMS = {
    "numpy": ("array", "float_for_0d", "numpy_scalar_for_0d", "fortran_order", "read_only"),
    "torch": ("tensor", "non_contiguous", "requires_grad", "sparse"),
}


def _returned(g: torch.Tensor, backend: str, form: str) -> Any:
    if backend == "numpy":
        array = g.numpy()
        if form == "float_for_0d" and array.ndim == 0:
            return float(array)
        if form == "numpy_scalar_for_0d" and array.ndim == 0:
            return array[()]
        if form == "fortran_order" and array.ndim >= 2:  # (it makes a 0-d array 1-d)
            return np.asfortranarray(array)
        if form == "read_only":
            array = array.copy()
            array.flags.writeable = False
        return array
    if form == "non_contiguous" and g.dim() >= 2:
        return g.mT.contiguous().mT
    if form == "requires_grad":
        return g.clone().requires_grad_(True)
    if form == "sparse":
        return g.to_sparse()
    return g


def make_backward(
    spec: Spec, backend: str, mutation: Mutation | None, form: str = "array"
) -> Callable[..., Any]:
    """The backward the Derivation declares: autograd's gradient of the spec in the dtype and
    backend of its arguments, changed by ``mutation``, handed back in ``form``."""
    state: dict[str, Any] = {"calls": 0, "previous": {}, "grad_output": {}}

    def backward(**arguments: Any) -> dict[str, Any]:
        grad_output = arguments.get("grad_output")
        if mutation is not None and grad_output is not None:
            if mutation.kind == "stale_grad_output":
                shape = tuple(grad_output.shape)
                grad_output = state["grad_output"].setdefault(shape, grad_output)
            elif mutation.kind == "clipped_grad_output":
                grad_output = (
                    np.clip(grad_output, -1.0, 1.0)
                    if backend == "numpy"
                    else grad_output.clamp(-1.0, 1.0)
                )
        drop = mutation.site if mutation is not None and mutation.kind == "dropped_term" else None
        grads = autograd_gradients(spec, arguments, backend, drop=drop, grad_output=grad_output)
        if mutation is not None:
            mutated = _mutated(mutation, grads, state["calls"], state["previous"])
            state["previous"] = grads
            grads = mutated
        state["calls"] += 1
        return {name: _returned(g, backend, form) for name, g in grads.items()}

    return backward


@dataclass(frozen=True)
class GroundTruth:
    """A derivation, whether it is correct, and how it reads."""

    derivation: Derivation
    spec: Spec
    mutation: Mutation | None
    backend: str
    dtype: str
    seed: int
    description: str = field(default="")
    form: str = "array"  # how the backward hands its gradients back (RETURN_FORMS)
    # The share of random points at which the mutation shows (``visible``); 0 when correct.
    shown: float = 0.0

    @property
    def correct(self) -> bool:
        return self.mutation is None


def _derivation(
    spec: Spec, backend: str, mutation: Mutation | None, form: str = "array"
) -> Derivation:
    def forward(**arguments: Any) -> torch.Tensor:
        tensors = {i.name: arguments[i.name] for i in spec.inputs}
        return spec.forward(tensors, {name: arguments[name] for name in spec.params})

    integers = {
        i.name: (0, i.indexes - 1) if isinstance(i.indexes, int) else _index_range(i.indexes)
        for i in spec.inputs
        if i.indexes is not None
    }
    return Derivation(
        name="ground_truth",
        forward=forward,
        backward=make_backward(spec, backend, mutation, form),
        shapes={i.name: i.shape for i in spec.inputs},
        wrt=list(spec.wrt),
        backend=backend,
        dims=dict(spec.dims) or None,
        bounds={i.name: i.bounds for i in spec.inputs if i.bounds is not None} or None,
        params=dict(spec.params) or None,
        integers=integers or None,
        where=None if spec.where is None else spec.where[1],
    )


def _index_range(dim: str) -> Callable[[Mapping[str, Any]], tuple[int, int]]:
    return lambda s: (0, s[dim] - 1)


def describe(
    gt_spec: Spec, backend: str, dtype: str, mutation: Mutation | None, seed: int, form: str
) -> str:
    lines = [
        f"spec: {gt_spec.text}" + ("  (vector output, with grad_output)" if gt_spec.vector else ""),
        "inputs: " + "; ".join(i.describe() for i in gt_spec.inputs),
        f"wrt: {', '.join(gt_spec.wrt)}",
        f"dims: {dict(gt_spec.dims)}" + (f"; where {gt_spec.where[0]}" if gt_spec.where else ""),
    ]
    if gt_spec.params:
        lines.append(f"params: {dict(gt_spec.params)}")
    lines.append(f"backend={backend}, dtype={dtype}, returns: {form}, verify seed={seed}")
    lines.append(
        "backward: "
        + ("correct (autograd)" if mutation is None else f"WRONG: {mutation.describe()}")
    )
    return "\n".join(lines)


def _mutations_for(spec: Spec) -> list[str]:
    kinds = [k for k in MUTATIONS if k not in KNOWN_GAPS]
    if "accumulating_across_shapes" in KNOWN_GAPS and spec.dims:
        kinds.remove("accumulating")
    if not spec.vector:
        kinds = [k for k in kinds if k not in GRAD_OUTPUT_MUTATIONS]
    if not _ordered(spec):
        kinds.remove("transposition")
    return kinds


def _ordered(spec: Spec) -> list[str]:
    """The inputs in wrt whose elements have an order to get wrong."""
    return [i.name for i in spec.inputs if i.wrt and i.shape]


@st.composite
def mutations(draw: st.DrawFn, spec: Spec, kinds: tuple[str, ...] = MUTATIONS) -> Mutation:
    usable = [k for k in _mutations_for(spec) if k in kinds] or ["factor"]  # none fits: a factor
    kind = draw(st.sampled_from(usable))
    if kind in ("stale_grad_output", "clipped_grad_output", "accumulating"):
        return Mutation(kind)
    target = draw(st.sampled_from(_ordered(spec) if kind == "transposition" else spec.wrt))
    if kind == "dropped_term":
        return Mutation(kind, target, draw(st.integers(0, max(0, _site_count(spec) - 1))))
    return Mutation(kind, target)


def _site_count(spec: Spec) -> int:
    point = sample_point(spec, np.random.default_rng(0), highest=False)
    tensors = {
        name: torch.as_tensor(value) for name, value in point.items() if name not in spec.params
    }
    return spec.sites(tensors, {name: point[name] for name in spec.params})


@st.composite
def derivations(
    draw: st.DrawFn,
    *,
    correct: bool,
    vector: bool | None = None,
    mutation_kinds: tuple[str, ...] = MUTATIONS,
) -> GroundTruth:
    """A derivation with known truth: correct (autograd's gradient) or with one mutation."""
    min_rank = 1 if not correct and "zero_dim_wrong_backward" in KNOWN_GAPS else 0
    ordered = tuple(mutation_kinds) == ("transposition",)  # it needs an input with an order
    spec = draw(specs(vector=vector, min_rank=max(min_rank, int(ordered)), first_in_wrt=ordered))
    backend = draw(st.sampled_from(("numpy", "torch")))
    mutation = None if correct else draw(mutations(spec, mutation_kinds))
    dtypes = _dtypes(spec)
    if mutation is not None and mutation.kind == "every_other_call":
        dtypes = ("float64",) if "every_other_call_float32" in KNOWN_GAPS else dtypes
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**16))
    forms = [f for f in RETURN_FORMS[backend] if f not in KNOWN_GAPS]
    form = draw(st.sampled_from(forms)) if correct else RETURN_FORMS[backend][0]
    truth = GroundTruth(
        derivation=_derivation(spec, backend, mutation, form),
        spec=spec,
        mutation=mutation,
        backend=backend,
        dtype=dtype,
        seed=seed,
        description=describe(spec, backend, dtype, mutation, seed, form),
        form=form,
    )
    if "identically_zero_gradient" in KNOWN_GAPS and zero_gradient(spec):
        reject()  # the one place a known gap is left out by rejection: no draw predicts it
    if mutation is None:
        return truth
    return replace(truth, shown=visible(truth))


# ---------------------------------------------------------------------------------------------
# Points for the generator's own checks (not the engine's: these use nothing of gradcheck).


def sample_point(spec: Spec, rng: np.random.Generator, *, highest: bool = True) -> dict[str, Any]:
    """A random point of ``spec`` in float64: dims at random (or the lowest with
    ``highest=False``) within ``where``, values uniform in each input's bounds, params at random."""
    for _ in range(100):
        sizes = {
            dim: int(rng.integers(low, high + 1)) if highest else low
            for dim, (low, high) in spec.dims.items()
        }
        if spec.where is None or spec.where[1]({**sizes}):
            break
        highest = True
    point: dict[str, Any] = {}
    for name, declared in spec.params.items():
        if isinstance(declared, list):
            point[name] = declared[int(rng.integers(len(declared)))]
        elif all(isinstance(bound, int) for bound in declared):
            point[name] = int(rng.integers(declared[0], declared[1] + 1))
        else:
            point[name] = float(rng.uniform(*declared))
    for spec_input in spec.inputs:
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec_input.shape)
        if spec_input.indexes is not None:
            high = (
                spec_input.indexes
                if isinstance(spec_input.indexes, int)
                else sizes[spec_input.indexes]
            )
            point[spec_input.name] = rng.integers(0, high, size=shape)
        else:
            low, high = _interval(spec_input.bounds)
            point[spec_input.name] = rng.uniform(low, high, size=shape)
    return point


def arguments_for(
    gt: GroundTruth, point: Mapping[str, Any], dtype: str, grad_output: np.ndarray | None
) -> dict[str, Any]:
    """What the backward of ``gt`` receives at ``point``: the inputs in ``dtype`` and backend."""
    return _arguments(gt.spec, gt.backend, point, dtype, grad_output)


def _arguments(
    spec: Spec, backend: str, point: Mapping[str, Any], dtype: str, grad_output: Any
) -> dict[str, Any]:
    np_dtype = np.float32 if dtype == "float32" else np.float64
    arguments: dict[str, Any] = {}
    for spec_input in spec.inputs:
        value = np.asarray(point[spec_input.name])
        value = value.astype(np.int64 if spec_input.indexes is not None else np_dtype)
        arguments[spec_input.name] = value if backend == "numpy" else torch.from_numpy(value)
    if grad_output is not None:
        go = np.asarray(grad_output, dtype=np_dtype)
        arguments["grad_output"] = go if backend == "numpy" else torch.from_numpy(go)
    for name in spec.params:
        arguments[name] = point[name]
    return arguments


def output_shape(gt: GroundTruth, point: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(_output(gt.spec, point).shape)


def _output(spec: Spec, point: Mapping[str, Any]) -> torch.Tensor:
    tensors = {i.name: torch.as_tensor(point[i.name]) for i in spec.inputs}
    with torch.no_grad():
        return spec.forward(tensors, {n: point[n] for n in spec.params})


def visible(gt: GroundTruth, *, points: int = 8, seed: int = 0) -> float:
    """The share of ``points`` random points of the spec (float64; grad_output standard normal,
    or ten times that) at which the mutation changes the gradient by more than 5% of its
    largest element, more than 1e-6, and more than 1e-3 of the gradient's natural scale
    |f| / rms(x) (ten times what the float32 tolerance allows); for a stateful mutation, at
    the second call on a point. A mutation visible at half the points or more must be
    failed by a search of ``INNER_EXAMPLES``; one that shows only in a sliver of the domain
    (a factor on the part of clamp(x**4, min=8) above the clamp) may be missed by a budget
    that small."""
    assert gt.mutation is not None
    rng = np.random.default_rng(seed)
    correct = make_backward(gt.spec, gt.backend, None)
    shown = 0
    for index in range(points):
        point = sample_point(gt.spec, rng)
        shape = output_shape(gt, point)
        grad_output = (
            (10.0 if index % 2 else 1.0) * rng.standard_normal(shape) if gt.spec.vector else None
        )
        wrong = make_backward(gt.spec, gt.backend, gt.mutation)  # fresh state
        if gt.mutation.kind in STATEFUL:
            first_go = rng.standard_normal(shape) if gt.spec.vector else None
            wrong(**arguments_for(gt, point, "float64", first_go))
        expected = correct(**arguments_for(gt, point, "float64", grad_output))
        got = wrong(**arguments_for(gt, point, "float64", grad_output))
        floor = 1e-3 * _natural_scale(gt.spec, point, grad_output)
        shown += any(_differs(value, got[name], floor) for name, value in expected.items())
    return shown / points


def _natural_scale(spec: Spec, point: Mapping[str, Any], grad_output: Any) -> float:
    """|f| / rms(x): the size of the terms f sums (weighted by grad_output) over the size of
    the inputs, as gradcheck scales its own allowances."""
    output = _output(spec, point).numpy()
    weighted = np.abs(output * (1.0 if grad_output is None else grad_output))
    rms = max(
        float(np.sqrt(np.mean(np.square(point[i.name])))) if np.size(point[i.name]) else 0.0
        for i in spec.inputs
        if i.indexes is None
    )
    return float(np.sum(weighted)) / rms if rms > 0 else 0.0


def zero_gradient(spec: Spec, *, points: int = 3) -> bool:
    """Whether the gradient for some input in wrt is zero up to rounding at ``points`` random
    points (float64): sum(softmax(x)), or d/dy of layer_norm(x - y), are constant in it."""
    rng = np.random.default_rng(1)
    backward = make_backward(spec, "numpy", None)
    zero = set(spec.wrt)
    for _ in range(points):
        point = sample_point(spec, rng)
        shape = tuple(np.shape(_output(spec, point)))
        grad_output = np.ones(shape) if spec.vector else None
        scale = 1.0 + max(
            float(np.max(np.abs(point[i.name]), initial=0.0))
            for i in spec.inputs
            if i.indexes is None
        )
        grads = backward(**_arguments(spec, "numpy", point, "float64", grad_output))
        zero &= {n for n, g in grads.items() if np.max(np.abs(g), initial=0.0) <= 1e-9 * scale}
    return bool(zero)


def _differs(expected: Any, got: Any, floor: float = 0.0) -> bool:
    e, g = np.asarray(expected), np.asarray(got)
    if e.shape != g.shape:
        return True
    difference = float(np.max(np.abs(e - g), initial=0.0))
    return difference > max(0.05 * float(np.max(np.abs(e), initial=0.0)), 1e-6, floor)
