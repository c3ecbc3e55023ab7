"""Judge what a Function computes against a reference, with finite differences as the
arbiter, the way the backward check judges a hand gradient.

A difference from the spec's autograd is a failure only when finite differences, taken along
the difference itself, side with the spec. Where they see a kink the point is inconclusive;
where they side with neither, the spec or the point is at fault. The words are built by the
pure functions at the bottom.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from gradcheck.compare import Mismatch, compare
from gradcheck.diagnose import diagnose_gradient
from gradcheck.references.finite_differences import Slope
from gradcheck.report import Problem
from gradcheck.tolerances import Tolerance

__all__ = [
    "SlopeAlong",
    "combined",
    "differs",
    "judged",
    "not_finite",
    "plain_difference",
    "spec_not_finite",
]

# (direction, step widening) -> the slope of a scalar function of the point along it.
SlopeAlong = Callable[[np.ndarray, float], Slope]

# Wider steps tried before finite differences are said to disagree with the reference, as the
# backward check does: a forward that cancels internally rounds far above eps * |f|.
WIDER_STEPS = (16.0, 256.0, 4096.0)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b))


def differs(
    actual: np.ndarray,
    expected: np.ndarray,
    tolerance: Tolerance,
    *,
    parameter: str,
    reference: str,
    same_function: bool = False,
    floor: float | None = None,
) -> tuple[Mismatch | None, np.ndarray]:
    """The comparison of the backward check (``|a - e| <= atol + rtol*|e|``), and what it
    allowed. ``same_function``: both sides are the Function's (another layout, a batch, a
    device), so NaN against NaN, or the same inf, agrees: a member of a vmap batch outside
    the Function's domain gives NaN in the loop and under vmap alike."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if same_function and actual.shape == expected.shape:
        alike = (np.isnan(actual) & np.isnan(expected)) | (
            np.isinf(expected) & (actual == expected)
        )
        actual, expected = np.where(alike, 0.0, actual), np.where(alike, 0.0, expected)
    finite = np.where(np.isfinite(expected), expected, 0.0)
    allowed = tolerance.allowed(
        finite, floor=None if floor is None else max(floor, tolerance.atol_floor)
    )
    return compare(actual, expected, allowed, parameter=parameter, reference=reference), allowed


def combined(slopes: list[Slope]) -> Slope:
    """One slope of a sum of terms (a JVP moves every input at once): each term's own."""
    return Slope(
        central=sum(s.central for s in slopes),
        allowed=sum(s.allowed for s in slopes),
        right=sum(s.right for s in slopes),
        left=sum(s.left for s in slopes),
        kink=any(s.kink for s in slopes),
        step=max(s.step for s in slopes),
    )


def judged(
    check: str,
    mismatch: Mismatch,
    hand: np.ndarray,
    reference: np.ndarray,
    allowed: np.ndarray,
    slope_along: SlopeAlong,
    *,
    what: str,
    inputs: Mapping[str, np.ndarray],
    dims: Mapping[str, int],
    hint: str = "",
) -> Problem:
    """A mismatch between the Function (``hand``) and the spec (``reference``), judged by
    finite differences along ``hand - reference``. ``what`` names the quantity compared."""
    name = mismatch.parameter
    delta = hand - reference
    slope = slope_along(delta, 1.0)
    along_hand, along_reference = _dot(hand, delta), _dot(reference, delta)
    slack = slope.allowed + _dot(np.abs(delta), allowed)
    if abs(along_hand - along_reference) <= 2 * slack:
        return Problem(
            "unresolved",
            f"{check}: {what} differs from the spec's by less than finite differences resolve "
            f"here (along the difference: Function {along_hand:.6g}, spec "
            f"{along_reference:.6g}, +- {slack:.2g}): not judged.",
            parameter=name,
        )
    if slope.kink:
        return Problem(
            "kink",
            f"{check}: {what} differs from the spec's at a kink (one-sided slopes "
            f"{slope.left:.6g} and {slope.right:.6g} along the difference): not judged.",
            parameter=name,
        )
    agreeing = slope if abs(slope.central - along_reference) <= slack else None
    for widen in WIDER_STEPS if agreeing is None else ():
        wider = slope_along(delta, widen)
        wide_slack = wider.allowed + _dot(np.abs(delta), allowed)
        if (
            abs(wider.central - along_reference)
            <= wide_slack
            < abs(along_hand - along_reference) / 2
        ):
            agreeing = wider
            break
    if agreeing is None:
        return Problem(
            "references_disagree",
            f"{check}: for {name!r}, finite differences ({slope.central:.6g} +- "
            f"{slack:.2g}) do not side with the spec's autograd ({along_reference:.6g}) "
            "along the difference: the spec, or this point, is the problem.",
            parameter=name,
        )
    words = diagnose_gradient(name, hand, reference, allowed, inputs=inputs, dims=dims)
    return Problem(
        check,
        mismatch_message(what, mismatch.reference, agreeing.central, along_reference, along_hand)
        + "".join(f" It looks like this: {w}." for w in words)
        + (f" {hint}" if hint else ""),
        parameter=name,
        mismatch=mismatch,
    )


def mismatch_message(
    what: str, reference: str, slope: float, along_reference: float, along_hand: float
) -> str:
    return (
        f"{what} does not match {reference}. Finite differences agree with the spec along "
        f"the difference (slope {slope:.6g}, spec {along_reference:.6g}, Function "
        f"{along_hand:.6g}), so the Function is wrong, not the spec."
    )


def plain_difference(
    check: str, mismatch: Mismatch, what: str, why: str, *, label: str | None = None
) -> Problem:
    """A Function disagreeing with itself (another layout, a batch, a device): no finite
    differences needed, since both sides are the Function's. ``label`` replaces the
    parameter in the report's brackets (``[grad_output transposed]``)."""
    return Problem(
        check,
        f"{what} differs from {mismatch.reference}. {why}".rstrip(),
        parameter=label or mismatch.parameter,
        mismatch=mismatch,
    )


def spec_not_finite(check: str, name: str, reference: np.ndarray, what: str) -> Problem | None:
    """The spec has no finite ``what`` here (not that many times differentiable at this
    point): nothing to judge the Function by, as at a kink."""
    bad = ~np.isfinite(reference)
    if not bad.any():
        return None
    index = _first(bad)
    return Problem(
        "kink",
        f"{check}: {what} is {reference[index]} at index {index}: the spec is not "
        "differentiable enough at this point; not judged.",
        parameter=name,
    )


def not_finite(
    check: str, mismatch: Mismatch, hand: np.ndarray, reference: np.ndarray, what: str, hint: str
) -> Problem | None:
    """A NaN or inf from the Function where the spec's value is finite: a failure as it
    stands, without finite differences (along a NaN difference they would leave the point)."""
    bad = ~np.isfinite(hand)
    if not bad.any():
        return None
    index = _first(bad)
    return Problem(
        check,
        f"{what} is not finite at {int(bad.sum())} of {bad.size} elements (at index {index}: "
        f"{hand[index]}, where {mismatch.reference} is {reference[index]:.6g}). {hint}",
        parameter=mismatch.parameter,
        mismatch=mismatch,
    )


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))
