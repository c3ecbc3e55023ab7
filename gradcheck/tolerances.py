"""How close is close enough: one table per reference, keyed by the dtype of the hand gradient.

A hand gradient is compared element-wise with torch autograd run in float64 at the same point,
so what separates a correct derivation from its reference is rounding alone: the two sum the
same terms in a different order. That error grows with the size of the largest terms, not of
each element (an element can be small because its terms cancel), so every allowance has two
parts: ``rtol * |reference|`` for the element itself and ``atol_scale * max|reference|`` for
cancellation against the largest element of the same parameter. Bugs move elements by O(1)
relative amounts, so allowances many orders above rounding still catch them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AUTOGRAD", "FINITE_DIFFERENCES", "FiniteDifferenceTolerance", "Tolerance", "for_dtype"]


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol_scale: float
    atol_floor: float
    reason: str
    # Rounding of the inputs themselves moves an ill-conditioned gradient (2*(x - mean(x))
    # at x ~ 1e8 moves by ~1e-8): the noise measured at the point is allowed, up to this
    # share of the largest reference element, so that no real bug hides behind it.

    conditioning_cap: float

    def atol(self, reference: np.ndarray, floor: float | None = None) -> float:
        """The absolute part of ``allowed``: the larger of ``atol_scale`` times the largest
        element and the floor."""
        # max |reference| without a temporary of its size
        scale = max(float(reference.max()), -float(reference.min())) if reference.size else 0.0
        return max(self.atol_scale * scale, self.atol_floor if floor is None else floor)

    def allowed(self, reference: np.ndarray, floor: float | None = None) -> np.ndarray:
        """Per-element allowed absolute difference against ``reference``. ``floor``, when
        given, replaces the fixed ``atol_floor`` with one derived from the point."""
        atol = self.atol(reference, floor)
        allowed = np.abs(reference)  # then scaled in place: no temporaries of the full size
        allowed *= self.rtol
        allowed += atol
        return allowed


AUTOGRAD: dict[str, Tolerance] = {
    "float64": Tolerance(
        rtol=1e-7,
        atol_scale=1e-9,
        atol_floor=1e-12,
        # float64 eps is 2.2e-16; sums over 1e3-1e4 terms in another order differ by
        # ~1e-13 of the largest term. 1e-9 leaves four decades of margin and still sees a
        # bug in the ninth significant digit.
        reason="float64: eps 2.2e-16, reordered sums of <=1e4 terms differ by ~1e-13",
        conditioning_cap=1e-5,
    ),
    "float32": Tolerance(
        rtol=1e-3,
        atol_scale=1e-4,
        atol_floor=1e-6,
        # float32 eps is 1.2e-7; a two-layer net at the seeds' size (sums of 1e3 terms,
        # three matmuls deep) measures ~2e-6 of the largest element against float64
        # autograd. 1e-4 leaves a factor 50; the smallest bug the suite plants (a
        # constant factor 2) is 1e4 times larger.
        reason="float32: eps 1.2e-7, measured ~2e-6 of max on the seed net at N=64",
        conditioning_cap=1e-2,
    ),
}


@dataclass(frozen=True)
class FiniteDifferenceTolerance:
    """A finite difference carries its own error estimate; these turn it into an allowance.

    ``safety`` multiplies the estimate |D(t) - D(t/2)| (truncation and rounding seen in the
    data); ``roundoff_factor`` times eps*|f|/t bounds the rounding of the forward itself,
    which an estimate that happens to cancel would miss; ``rtol`` is a relative floor.
    """

    safety: float
    roundoff_factor: float
    rtol: float


# The finite differences are always taken in float64 on the spec forward.
FINITE_DIFFERENCES = FiniteDifferenceTolerance(safety=8.0, roundoff_factor=64.0, rtol=1e-6)


def for_dtype(dtype: str) -> Tolerance:
    return AUTOGRAD[dtype]
