"""Hypothesis strategies for the points a derivation is checked at.

Shapes are symbolic: each dim a derivation names is drawn once (``dims``) and shared by every
input that uses it, so the shrinker reduces "N" everywhere at once. Values stay off NaN, inf,
subnormals and, where the range straddles zero, off a small band around it: most kinks
(ReLU, abs, max) sit at an input or product of inputs equal to zero, and drawing away from it
is cheaper and clearer than rejecting examples.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
from hypothesis import HealthCheck, find, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample, Unsatisfiable
from hypothesis.extra import numpy as hnp

from gradcheck import special_values
from gradcheck.derivation import Derivation, DerivationError, ParamChoices
from gradcheck.report import Example

__all__ = [
    "array",
    "dim_range",
    "dims",
    "examples",
    "examples_at",
    "inputs",
    "integer_array",
    "param",
    "seeded_batches",
    "seeded_examples",
    "seeded_inputs",
    "values",
]

T = TypeVar("T")

# Values of magnitude below (largest bound / KINK_MARGIN) are not drawn when the range
# straddles zero: a hinge at 0 then lies a hundred finite-difference steps (eps**(1/3) of
# the scale, ~6e-6) away, while the band stays narrow enough that a branch of a smooth
# function near 0 (a smooth L1 with beta 0.05) is still drawn.
KINK_MARGIN = 1024.0


def values(*, low: float, high: float) -> st.SearchStrategy[float]:
    """Finite, normal floats in ``[low, high]``, kept off a band around zero.

    >>> values(low=-2.0, high=2.0).example()  # doctest: +SKIP
    -1.5
    """
    if not low < high:
        raise ValueError(f"values(low={low!r}, high={high!r}): need low < high.")
    margin = max(abs(low), abs(high)) / KINK_MARGIN

    def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
        return st.floats(
            min_value=lo,
            max_value=hi,
            allow_nan=False,
            allow_infinity=False,
            allow_subnormal=False,
        )

    if low < -margin and high > margin:
        return floats(margin, high) | floats(low, -margin)
    return floats(low, high)


FLOAT_PARAM_STEPS = 10**6


def param(choice: ParamChoices) -> st.SearchStrategy[Any]:
    """One hyperparameter: an int in its range, or one of its choices (shrinks to the first)."""
    if choice.continuous:
        # A grid of a million steps over the range, shrinking towards its low end: every value
        # a plain decimal, none of the subnormal or next-to-zero floats at which a
        # hyperparameter (reg = 5e-324) leaves finite differences nothing to resolve.
        low, high = float(choice.low), float(choice.high)  # type: ignore[arg-type]
        return st.integers(0, FLOAT_PARAM_STEPS).map(
            lambda step: min(high, round(low + (high - low) * step / FLOAT_PARAM_STEPS, 12))
        )
    if choice.low is not None and choice.high is not None:
        return st.integers(int(choice.low), int(choice.high))
    return st.sampled_from(choice.choices)


def dim_range(derivation: Derivation, dim: str, context: Mapping[str, Any]) -> tuple[int, int]:
    """The range of ``dim`` given the params and the dims drawn before it."""
    low, high = derivation.resolve_range(derivation.dim_ranges[dim], context, f"dims[{dim!r}]")
    if low < 1:
        raise DerivationError(
            f"Derivation {derivation.name!r}: dims[{dim!r}] gives ({low}, {high}) for "
            f"{dict(context)!r}; a dim is at least 1."
        )
    return low, high


# Draws of params and dims tried before an example is given up as invalid when a ``where``
# predicate refuses them: redrawing inside one example keeps hypothesis from running out of
# valid examples where only a third of the settings are valid (conv strides that fit).
WHERE_TRIES = 8


@st.composite
def _params_and_dims(
    draw: st.DrawFn, derivation: Derivation
) -> tuple[dict[str, Any], dict[str, int]]:
    for _ in range(WHERE_TRIES):
        params = {name: draw(param(choice)) for name, choice in derivation.param_choices.items()}
        sizes: dict[str, int] = {}
        for dim in derivation.dim_ranges:
            low, high = dim_range(derivation, dim, {**params, **sizes})
            sizes[dim] = draw(_integers(low, high))
        if derivation.allows({**params, **sizes}):
            return params, sizes
    reject()


@functools.lru_cache(maxsize=1024)
def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    # Built once per range: making and validating a strategy at every draw cost more than
    # drawing from it (0.6 ms an example for four dims).
    return st.integers(low, high)


def smallest_params_and_dims(derivation: Derivation) -> tuple[dict[str, Any], dict[str, int]]:
    """The first choice of every param and the lowest size of every dim: the cheapest point
    (with a ``where``, the simplest point it allows, as hypothesis shrinks to it)."""
    params = {
        name: choice.low if choice.low is not None else choice.choices[0]
        for name, choice in derivation.param_choices.items()
    }
    sizes: dict[str, int] = {}
    for dim in derivation.dim_ranges:
        sizes[dim] = dim_range(derivation, dim, {**params, **sizes})[0]
    if derivation.allows({**params, **sizes}):
        return params, sizes
    quiet = settings(
        database=None, derandomize=True, max_examples=200, suppress_health_check=list(HealthCheck)
    )
    try:
        return find(_params_and_dims(derivation), lambda _: True, settings=quiet)
    except (NoSuchExample, Unsatisfiable):
        raise DerivationError(
            f"Derivation {derivation.name!r}: where refuses every setting tried; check that "
            "it returns True for some params and dims in their declared ranges."
        ) from None


def dims(derivation: Derivation) -> st.SearchStrategy[dict[str, int]]:
    """A size for every symbolic dim of ``derivation``, each within its declared range."""
    return _params_and_dims(derivation).map(lambda drawn: drawn[1])


# Arrays up to this many elements are drawn element by element, so that the shrinker can
# simplify each value. Larger arrays are filled from a generator whose seed hypothesis draws:
# the shrinker's cost grows with the square of the number of choices (measured: 45 s to
# shrink one failure with 16x16 arrays drawn element-wise, 1 s this way), and a large
# failing example is first shrunk in its dims, after which its arrays are drawn element-wise.
ELEMENTWISE_LIMIT = 32


def _seeded_array(
    shape: tuple[int, ...], low: float, high: float, seed: int | np.random.Generator
) -> np.ndarray:
    """Values spread over [low, high] like ``values`` draws them, kept off the zero band."""
    rng = np.random.default_rng(seed)  # a Generator comes back as it is
    margin = max(abs(low), abs(high)) / KINK_MARGIN
    if low < -margin and high > margin:
        positive = rng.uniform(margin, high, size=shape)
        negative = rng.uniform(low, -margin, size=shape)
        return np.where(rng.random(size=shape) < 0.5, positive, negative)
    return rng.uniform(low, high, size=shape)


def _coarse_array(
    shape: tuple[int, ...], low: float, high: float, rng: np.random.Generator
) -> np.ndarray:
    """Values on the grid low + k * (high - low) / 8, k = 0..8, without those in the zero
    band (where kinks sit)."""
    grid = np.linspace(low, high, 9)
    margin = max(abs(low), abs(high)) / KINK_MARGIN
    grid = grid[np.abs(grid) > margin] if low < -margin and high > margin else grid
    return rng.choice(grid, size=shape)


def array(shape: tuple[int, ...], *, low: float, high: float) -> st.SearchStrategy[np.ndarray]:
    """A float64 array of ``shape`` with values in ``[low, high]`` (see ``values``)."""
    if int(np.prod(shape)) <= ELEMENTWISE_LIMIT:
        return hnp.arrays(
            np.float64,
            shape,
            elements=values(low=low, high=high),
            # Draw every element: the default fill makes most of an array one repeated
            # value, which hides transposition and indexing bugs.
            fill=st.nothing(),
        )
    return st.integers(0, 2**32 - 1).map(lambda seed: _seeded_array(shape, low, high, seed))


def integer_array(shape: tuple[int, ...], *, low: int, high: int) -> st.SearchStrategy[np.ndarray]:
    """An int64 array of ``shape`` with values in ``[low, high]``: labels, indices."""
    if int(np.prod(shape)) <= ELEMENTWISE_LIMIT:
        return hnp.arrays(np.int64, shape, elements=st.integers(low, high), fill=st.nothing())
    return st.integers(0, 2**32 - 1).map(
        lambda seed: np.random.default_rng(seed).integers(low, high + 1, size=shape)
    )


def _integer_bounds(
    derivation: Derivation, sizes: Mapping[str, int], params: Mapping[str, Any]
) -> dict[str, tuple[int, int]]:
    context = {**params, **sizes}
    return {
        name: derivation.resolve_range(bound, context, f"integers[{name!r}]")
        for name, bound in (derivation.integers or {}).items()
    }


def inputs(
    derivation: Derivation, sizes: Mapping[str, int], params: Mapping[str, Any] | None = None
) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """Every input of ``derivation`` at the dim sizes ``sizes`` (and hyperparameters ``params``)."""
    return st.fixed_dictionaries(
        _each_input(
            derivation,
            sizes,
            params,
            integers=lambda shape, low, high: integer_array(shape, low=low, high=high),
            floats=lambda shape, low, high: array(shape, low=low, high=high),
        )
    )


def _each_input(
    derivation: Derivation,
    sizes: Mapping[str, int],
    params: Mapping[str, Any] | None,
    *,
    integers: Callable[[tuple[int, ...], int, int], T],
    floats: Callable[[tuple[int, ...], float, float], T],
) -> dict[str, T]:
    """Every input at ``sizes``, in declaration order: ``integers(shape, low, high)`` for an
    integer input, ``floats(shape, low, high)`` for the rest, each within its bounds."""
    integer_bounds = _integer_bounds(derivation, sizes, params or {})
    made = {}
    for name in derivation.shapes:
        shape = derivation.concrete_shape(name, sizes)
        if name in integer_bounds:
            made[name] = integers(shape, *integer_bounds[name])
        else:
            made[name] = floats(shape, *derivation.input_bounds[name])
    return made


def seeded_inputs(
    derivation: Derivation,
    sizes: Mapping[str, int],
    seed: int,
    params: Mapping[str, Any] | None = None,
    *,
    coarse: bool = False,
) -> dict[str, np.ndarray]:
    """Every input at ``sizes``, all values from one generator: a generic random point.
    With ``coarse``, the float values come from a grid of eight steps (see
    ``COARSE_ONE_IN``)."""
    rng = np.random.default_rng(seed)
    # From the one generator: a generator made per array cost 20-40 us each.
    floats = _coarse_array if coarse else _seeded_array
    return _each_input(
        derivation,
        sizes,
        params,
        integers=lambda shape, low, high: rng.integers(low, high + 1, size=shape),
        floats=lambda shape, low, high: floats(shape, low, high, rng),
    )


def examples(derivation: Derivation, *, special: bool = False) -> st.SearchStrategy[Example]:
    """Points for ``derivation``: params, then dims (whose ranges may depend on the params),
    then every input array at those sizes. With ``special``, a few percent of them are
    special points (see ``gradcheck.special_values``)."""
    return _params_and_dims(derivation).flatmap(
        lambda drawn: examples_at(derivation, drawn[1], drawn[0], special=special)
    )


def examples_at(
    derivation: Derivation,
    sizes: Mapping[str, int],
    params: Mapping[str, Any],
    *,
    special: bool = False,
) -> st.SearchStrategy[Example]:
    """Points for ``derivation`` at fixed dim sizes and params (see ``examples``)."""
    plain = inputs(derivation, sizes, params).map(
        lambda point: Example(dims=dict(sizes), inputs=point, params=dict(params))
    )
    if not special:
        return plain
    bounds = float_bounds(derivation)
    return st.tuples(plain, special_values.specials(bounds)).map(
        lambda drawn: replace(
            drawn[0],
            inputs=special_values.made_special(drawn[0].inputs, drawn[1], bounds),
            special=drawn[1],
        )
    )


@st.composite
def seeded_examples(draw: st.DrawFn, derivation: Derivation, *, special: bool = False) -> Example:
    """Points for ``derivation`` whose arrays all come from one drawn seed: params, dims,
    then one integer, where ``examples`` draws every element. With ``special``, a few
    percent of them are special points (see ``gradcheck.special_values``).

    The cheap way to search: drawing 4 arrays element by element cost 3 ms an example,
    several times the work of checking a small derivation there. The shrinker still lowers
    params and dims; ``verify`` then simplifies the values of a failure element by element,
    at its smallest dims, with ``inputs``."""
    params, sizes = draw(_params_and_dims(derivation))
    seed = draw(_integers(0, 2**32 - 1))
    point = seeded_inputs(derivation, sizes, seed, params, coarse=is_coarse(seed))
    if not special:
        return Example(dims=sizes, inputs=point, params=params)
    bounds = float_bounds(derivation)
    kind = draw(special_values.specials(bounds, one_in=SEEDED_SPECIAL_ONE_IN))
    return Example(
        dims=sizes,
        inputs=special_values.made_special(point, kind, bounds),
        params=params,
        special=kind,
    )


# One seeded point in COARSE_ONE_IN takes its values from a coarse grid (eight steps across
# the bounds, off the zero band): repeated values, as hypothesis's element draws make them,
# so that ties (in a pooling window, a max, a sort) occur without being planted. Uniform
# draws never repeat a value, and a backward that crashes on a tie passed them.
COARSE_ONE_IN = 8

# Special points (gradcheck.special_values) among seeded points: more often than among
# points drawn element by element, whose repeated values make zero-variance rows and ties
# now and then by themselves. Measured over seeds 0-7, 100 examples each: a division by a
# zero variance was found at 5 of 8 seeds at 1 in 16, 7 at 1 in 8, 8 at 1 in 6.
SEEDED_SPECIAL_ONE_IN = 6


def is_coarse(seed: int) -> bool:
    # A hash of the seed: hypothesis draws small and round seeds more often than others.
    # Seed 0, where it starts and shrinks to, is never coarse.
    return seed != 0 and (seed * 0x9E3779B97F4A7C15 >> 40) % COARSE_ONE_IN == 0


def float_bounds(derivation: Derivation) -> dict[str, tuple[float, float]]:
    return {
        name: derivation.input_bounds[name]
        for name in derivation.shapes
        if name not in (derivation.integers or {})
    }


@st.composite
def seeded_batches(
    draw: st.DrawFn, derivation: Derivation, *, points: int = 2, special: bool = False
) -> tuple[Example, ...]:
    """``points`` independent ``seeded_examples`` in one draw: each with params, dims and
    seed of its own, so a search of N points still sees N draws of the dims."""
    return tuple(draw(seeded_examples(derivation, special=special)) for _ in range(points))
