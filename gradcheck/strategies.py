"""Hypothesis strategies for the points a derivation is checked at.

Shapes are symbolic: each dim a derivation names is drawn once (``dims``) and shared by every
input that uses it, so the shrinker reduces "N" everywhere at once. Values stay off NaN, inf,
subnormals and, where the range straddles zero, off a small band around it: most kinks
(ReLU, abs, max) sit at an input or product of inputs equal to zero, and drawing away from it
is cheaper and clearer than rejecting examples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck.derivation import Derivation
from gradcheck.report import Example

__all__ = ["array", "dims", "examples", "inputs", "seeded_inputs", "values"]

# Values of magnitude below (largest bound / KINK_MARGIN) are not drawn when the range
# straddles zero: far enough from a hinge at 0 that a finite-difference step never crosses
# it for the input itself.
KINK_MARGIN = 32.0


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


def dims(derivation: Derivation) -> st.SearchStrategy[dict[str, int]]:
    """A size for every symbolic dim of ``derivation``, each within its declared range."""
    return st.fixed_dictionaries(
        {dim: st.integers(low, high) for dim, (low, high) in derivation.dim_ranges.items()}
    )


# Arrays up to this many elements are drawn element by element, so that the shrinker can
# simplify each value. Larger arrays are filled from a generator whose seed hypothesis draws:
# the shrinker's cost grows with the square of the number of choices (measured: 45 s to
# shrink one failure with 16x16 arrays drawn element-wise, 1 s this way), and a large
# failing example is first shrunk in its dims, after which its arrays are drawn element-wise.
ELEMENTWISE_LIMIT = 32


def _seeded_array(shape: tuple[int, ...], low: float, high: float, seed: int) -> np.ndarray:
    """Values spread over [low, high] like ``values`` draws them, kept off the zero band."""
    rng = np.random.default_rng(seed)
    margin = max(abs(low), abs(high)) / KINK_MARGIN
    if low < -margin and high > margin:
        magnitude = rng.uniform(margin, 1.0, size=shape)
        positive = rng.random(size=shape) < 0.5
        return np.where(positive, magnitude * high, magnitude * low)
    return rng.uniform(low, high, size=shape)


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


def inputs(
    derivation: Derivation, sizes: Mapping[str, int]
) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """Every input of ``derivation`` at the dim sizes ``sizes``."""
    return st.fixed_dictionaries(
        {
            name: array(derivation.concrete_shape(name, sizes), low=low, high=high)
            for name, (low, high) in derivation.input_bounds.items()
        }
    )


def seeded_inputs(
    derivation: Derivation, sizes: Mapping[str, int], seed: int
) -> dict[str, np.ndarray]:
    """Every input at ``sizes``, all values from one generator: a generic random point."""
    rng = np.random.default_rng(seed)
    return {
        name: _seeded_array(
            derivation.concrete_shape(name, sizes), low, high, int(rng.integers(2**32))
        )
        for name, (low, high) in derivation.input_bounds.items()
    }


def examples(derivation: Derivation) -> st.SearchStrategy[Example]:
    """Points for ``derivation``: dims first, then every input array at those sizes."""
    return dims(derivation).flatmap(
        lambda sizes: inputs(derivation, sizes).map(
            lambda inputs: Example(dims=sizes, inputs=inputs)
        )
    )
