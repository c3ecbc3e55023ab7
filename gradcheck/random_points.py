"""Random points drawn with numpy alone, for the first sweep of ``verify``.

Hypothesis spends about half a millisecond on a test case before the test runs, and more per
draw: two to four times the work of checking a small derivation at a point. So the search
first sweeps plain random points, drawn here much as hypothesis draws them (the smallest
point first, sizes at either end of their ranges more often than in the middle, equal dims
now and then, the same special points and coarse grids), and hands hypothesis a failure to
search and shrink (``gradcheck.search``). A derivation that passes never pays for hypothesis.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from gradcheck import special_values
from gradcheck.derivation import Derivation, ParamChoices
from gradcheck.report import Example
from gradcheck.strategies import (
    FLOAT_PARAM_STEPS,
    SEEDED_SPECIAL_ONE_IN,
    WHERE_TRIES,
    dim_range,
    float_bounds,
    is_coarse,
    seeded_inputs,
    smallest_params_and_dims,
)

__all__ = ["random_examples", "starts_where_hypothesis_starts"]

# How often a size or param is drawn at the low and at the high end of its range. Read off
# hypothesis: over 1,000 points of ``seeded_examples`` for four dims in 1..16, each dim came
# out at its low end 12-18% of the time and at its high end 3-8%.
AT_LOW, AT_HIGH = 0.16, 0.05
# How often a dim takes the size of a dim drawn before it (when its range allows): hypothesis
# repeats values it has drawn, and 46% of its points had two equal dims, against 34% from
# the end weights alone. A bug only for square weights needs them.
REPEAT = 0.1


def random_examples(derivation: Derivation, seed: int) -> Iterator[Example | None]:
    """Endless points for ``derivation``, the same for the same ``seed``: the smallest point
    first (first choices, lowest sizes, the plain values of seed 0), then random ones, 1 in
    ``SEEDED_SPECIAL_ONE_IN`` made special. A draw that ``where`` refuses
    ``WHERE_TRIES`` times in a row yields None, so that a caller counting points stops."""
    bounds = float_bounds(derivation)
    params, sizes = _smallest(derivation)
    yield Example(dims=sizes, inputs=seeded_inputs(derivation, sizes, 0, params), params=params)
    rng = np.random.default_rng(seed)
    while True:
        drawn = _params_and_dims(derivation, rng)
        if drawn is None:
            yield None
            continue
        params, sizes = drawn
        point_seed = int(rng.integers(1, 2**32))
        point = seeded_inputs(derivation, sizes, point_seed, params, coarse=is_coarse(point_seed))
        kind = _special(bounds, rng)
        yield Example(
            dims=sizes,
            inputs=special_values.made_special(point, kind, bounds),
            params=params,
            special=kind,
        )


def starts_where_hypothesis_starts(derivation: Derivation) -> bool:
    """Whether the first point of ``random_examples`` is the one hypothesis tries first in
    ``strategies.seeded_examples``: its simplest choice of everything (first choices, 0 or
    the low end of ranges, seed 0, nothing special), unless ``where`` refused it and the
    first point is another. A failure there is what hypothesis's own search would return:
    nothing simpler exists."""
    params, sizes = _smallest(derivation)
    return all(sizes[dim] == dim_range(derivation, dim, {**params, **sizes})[0] for dim in sizes)


# Random settings a ``where`` allows, among which the smallest is the sweep's first point when
# ``where`` refuses the lowest sizes (hypothesis's search for the smallest allowed setting,
# ``strategies.smallest_params_and_dims``, took 0.75 s for a spatial batchnorm).
SMALLEST_AMONG = 32


def _smallest(derivation: Derivation) -> tuple[dict[str, Any], dict[str, int]]:
    """The first choices and lowest sizes, or where ``where`` refuses them, the allowed
    setting with the fewest elements among ``SMALLEST_AMONG`` random ones."""
    params = {name: _param(choice, None) for name, choice in derivation.param_choices.items()}
    sizes: dict[str, int] = {}
    for dim in derivation.dim_ranges:
        sizes[dim] = dim_range(derivation, dim, {**params, **sizes})[0]
    if derivation.allows({**params, **sizes}):
        return params, sizes
    rng = np.random.default_rng(0)
    allowed = [
        drawn
        for drawn in (_params_and_dims(derivation, rng) for _ in range(SMALLEST_AMONG))
        if drawn is not None
    ]
    if not allowed:
        return smallest_params_and_dims(derivation)  # says what is wrong with ``where``
    return min(allowed, key=lambda drawn: (_elements(derivation, drawn[1]), str(drawn)))


def _elements(derivation: Derivation, sizes: Mapping[str, int]) -> int:
    return sum(int(np.prod(derivation.concrete_shape(name, sizes))) for name in derivation.shapes)


def _params_and_dims(
    derivation: Derivation, rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, int]] | None:
    for _ in range(WHERE_TRIES):
        params = {name: _param(choice, rng) for name, choice in derivation.param_choices.items()}
        sizes: dict[str, int] = {}
        for dim in derivation.dim_ranges:
            low, high = dim_range(derivation, dim, {**params, **sizes})
            earlier = [size for size in sizes.values() if low <= size <= high]
            if earlier and rng.random() < REPEAT:
                sizes[dim] = earlier[int(rng.integers(len(earlier)))]
            else:
                sizes[dim] = _in_range(low, high, rng)
        if derivation.allows({**params, **sizes}):
            return params, sizes
    return None


def _in_range(low: int, high: int, rng: np.random.Generator | None) -> int:
    """An int in [low, high] as hypothesis's ``integers(low, high)`` draws it: at either end
    more often than in the middle, and across a wide range mostly near where it shrinks to
    (0 where the range holds it, else ``low``), at every scale. Without a generator, that
    point itself: hypothesis's first draw."""
    target = 0 if low < 0 < high else low
    if rng is None:
        return target
    chance = rng.random()
    if chance < AT_LOW:
        return target
    if chance < AT_LOW + AT_HIGH:
        return high if target == low or rng.random() < 0.5 else low
    if high - low >= WIDE and rng.random() < NEAR_TARGET:
        # Log-uniform distances from the target: 1, 10, 1000 alike. Over the million-step
        # grid of a float param, hypothesis drew 27% of its values within 1,000 steps of
        # the low end and 57% within 10,000, where a uniform draw gives 0.1% and 1%.
        distance = int(np.exp(rng.uniform(0.0, np.log(high - low + 1.0)))) - 1
        below = target - low >= distance and (target + distance > high or rng.random() < 0.5)
        return target - distance if below else min(high, target + distance)
    return int(rng.integers(low, high + 1))


# Ranges at least this wide are drawn mostly near their target, the rest uniformly: a
# hyperparameter's small values (a penalty of 1e-5 on (0, 1)) are where specs and backwards
# branch, and a uniform draw over a million steps never comes near them.
WIDE = 128
NEAR_TARGET = 0.6


def _param(choice: ParamChoices, rng: np.random.Generator | None) -> Any:
    """One hyperparameter, on the same grid as ``strategies.param`` draws it from (its first
    choice or low end without a generator)."""
    if choice.continuous:
        low, high = float(choice.low), float(choice.high)  # type: ignore[arg-type]
        step = _in_range(0, FLOAT_PARAM_STEPS, rng)
        return min(high, round(low + (high - low) * step / FLOAT_PARAM_STEPS, 12))
    if choice.low is not None and choice.high is not None:
        return _in_range(int(choice.low), int(choice.high), rng)
    return choice.choices[_in_range(0, len(choice.choices) - 1, rng)]


def _special(
    bounds: Mapping[str, tuple[float, float]], rng: np.random.Generator
) -> special_values.Special | None:
    """As ``special_values.specials`` draws them: 1 in ``SEEDED_SPECIAL_ONE_IN``."""
    if not bounds or rng.integers(SEEDED_SPECIAL_ONE_IN) != 0:
        return None
    name = sorted(bounds)[int(rng.integers(len(bounds)))]
    kinds = special_values.kinds_for(*bounds[name])
    kind = kinds[int(rng.integers(len(kinds)))]
    return special_values.Special(kind=kind, input=name, seed=int(rng.integers(2**16 + 1)))
