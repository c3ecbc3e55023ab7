"""Say what a wrong gradient looks like, in words, when the evidence is clear.

Pure functions over the hand gradient, the reference, and the point: no references are
computed here (``counterfactual.py`` does that). Each diagnosis is returned only when the
numbers fit it to within the comparison's own tolerance; otherwise nothing is said.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np

__all__ = ["clean_factor", "describe_factor", "diagnose_gradient"]

# A factor is "clean" when the hand gradient equals it times the reference to this
# relative accuracy: far below any bug, far above float64 rounding of the products.
FACTOR_RTOL = 1e-6


def describe_factor(factor: float, dims: Mapping[str, int]) -> str:
    """``2``, ``1/2``, ``1/N (N=4)``, or the number itself (see ``clean_factor``)."""
    return clean_factor(factor, dims) or f"{factor:.6g}"


def clean_factor(factor: float, dims: Mapping[str, int]) -> str | None:
    """A factor a slip produces: a small fraction (2, 1/2, -1, 3/2) or a dim size (1/N)."""
    for dim, size in dims.items():
        if size > 1 and np.isclose(factor, 1 / size, rtol=FACTOR_RTOL, atol=0):
            return f"1/{dim} ({dim}={size})"
        if size > 2 and np.isclose(factor, size, rtol=FACTOR_RTOL, atol=0):
            return f"{dim} ({dim}={size})"
    fraction = Fraction(factor).limit_denominator(16)
    if fraction.numerator != 0 and np.isclose(float(fraction), factor, rtol=FACTOR_RTOL, atol=0):
        return str(fraction.numerator) if fraction.denominator == 1 else str(fraction)
    return None


def _factor(hand: np.ndarray, reference: np.ndarray) -> float | None:
    """The c with hand = c * reference, if there is one."""
    norm = float(np.sum(reference * reference))
    if norm == 0.0:
        return None
    factor = float(np.sum(hand * reference)) / norm
    residual = float(np.linalg.norm(hand - factor * reference))
    if residual <= FACTOR_RTOL * max(float(np.linalg.norm(hand)), 1e-300):
        return factor
    return None


def _leading_block(bad: np.ndarray, axis: int) -> str | None:
    """'right only in the first k rows' when the wrong elements are exactly the later rows."""
    if bad.ndim != 2:
        return None
    lines = bad.any(axis=1 - axis)
    whole = bad.all(axis=1 - axis)
    if not lines.any() or lines.all() or not np.array_equal(lines, whole):
        return None
    wrong = np.flatnonzero(lines)
    label = "rows" if axis == 0 else "columns"
    if wrong[0] > 0 and np.array_equal(wrong, np.arange(wrong[0], bad.shape[axis])):
        return f"right only in the first {wrong[0]} {label}, wrong in all later ones"
    if np.array_equal(wrong, np.arange(0, wrong[-1] + 1)):
        return f"wrong only in the first {wrong[-1] + 1} {label}"
    return None


def _sign_pattern(
    bad: np.ndarray, reference_nonzero: np.ndarray, inputs: Mapping[str, np.ndarray]
) -> str | None:
    """'wrong only where x < 0' when the wrong elements are exactly those of one sign."""
    for name, value in inputs.items():
        if value.shape != bad.shape or not np.issubdtype(value.dtype, np.floating):
            continue
        for label, side in (("< 0", value < 0), ("> 0", value > 0)):
            if side.all() or not side.any():
                continue
            # Where the reference is zero a wrong mask can go unseen: compare where it is not.
            if np.array_equal(bad & reference_nonzero, side & reference_nonzero) and bad.any():
                return (
                    f"wrong only where {name} {label}: a mask taken from the wrong tensor, "
                    "or from the wrong side of the hinge"
                )
    return None


def diagnose_gradient(
    name: str,
    hand: np.ndarray,
    reference: np.ndarray,
    allowed: np.ndarray,
    *,
    inputs: Mapping[str, np.ndarray],
    dims: Mapping[str, int],
) -> list[str]:
    """What the difference between ``hand`` and ``reference`` looks like, in words."""
    bad = ~(np.abs(hand - reference) <= allowed)
    if not bad.any():
        return []
    reference_nonzero = np.abs(reference) > allowed
    if not hand.any():
        return [f"{name!r} is zero everywhere, but the reference is not"]
    factor = _factor(hand, reference)
    # With one non-zero element any error is "a factor": say so only for a slip's factor.
    if (
        factor is not None
        and np.count_nonzero(reference) < 2
        and clean_factor(factor, dims) is None
    ):
        factor = None
    if factor is not None and np.isclose(factor, 1.0, rtol=FACTOR_RTOL, atol=0):
        factor = None  # the differences are rounding-sized: no factor to name
    if factor is not None:
        if np.isclose(factor, -1.0, rtol=FACTOR_RTOL, atol=0):
            return [f"{name!r} has its sign flipped: hand = -reference"]
        return [
            f"{name!r} is off by a constant factor: hand = {describe_factor(factor, dims)} "
            "x reference"
        ]
    if (
        hand.ndim == 2
        and hand.shape[0] == hand.shape[1]
        and np.all(np.abs(hand - reference.T) <= allowed.T)
    ):
        return [
            f"{name!r} is transposed: hand = reference.T (a product written in the wrong "
            "order, e.g. grad.T @ x for x.T @ grad)"
        ]
    findings = []
    leaked = bad & (reference == 0)
    if np.array_equal(leaked, bad):
        findings.append(
            f"{name!r} is non-zero at {int(leaked.sum())} of {bad.size} elements where the "
            "reference is exactly zero, and right elsewhere: a mask that is not applied"
        )
    zeroed = bad & (hand == 0) & reference_nonzero
    if zeroed.any() and np.array_equal(zeroed, bad):
        findings.append(
            f"{name!r} is zero at {int(zeroed.sum())} of {bad.size} elements where the "
            "reference is not, and right elsewhere"
        )
    pattern = _sign_pattern(bad, reference_nonzero, inputs)
    if pattern is None:
        pattern = _leading_block(bad, 0) or _leading_block(bad, 1)
    if pattern is not None:
        findings.append(f"{name!r}: {pattern}")
    elif not findings and (~bad).any():
        findings.append(f"{name!r} is right for {int((~bad).sum())} of {bad.size} elements only")
    return findings
