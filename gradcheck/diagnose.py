"""Say what a wrong gradient looks like, in words, when the evidence is clear.

Pure functions over the hand gradient, the reference, and the point: no references are
computed here (``counterfactual.py`` does that). Each diagnosis is returned only when the
numbers fit it to within the comparison's own tolerance; otherwise nothing is said.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = [
    "Finding",
    "clean_factor",
    "constant_ratio",
    "describe_factor",
    "describe_ratio",
    "diagnose_gradient",
    "gradient_findings",
]


@dataclass(frozen=True)
class Finding:
    """One thing a report can say about a wrong gradient at one point.

    ``key`` is what must recur at other failing points for a ``claim`` (a named mechanism:
    a factor, a sign, a mask) to be confirmed; an observation (``claim=False``) describes
    this point only. ``said=False`` marks a claim this point is compatible with but cannot
    show (every element wrong and of one sign), or the fallback observation printed when
    nothing else about ``parameter`` survives confirmation."""

    key: tuple[str, ...]
    text: str
    claim: bool
    parameter: str | None = None
    said: bool = True
    # (key, text) of the same claim read another way at this point: a factor 1/2 at N=2 is
    # also 1/N; whichever holds at every point is the one said.
    alternatives: tuple[tuple[tuple[str, ...], str], ...] = ()


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


def factor_label(factor: float, dims: Mapping[str, int]) -> str | None:
    """The factor without the sizes: ``1/N`` at N=4 and at N=7 alike; None if not clean."""
    clean = clean_factor(factor, dims)
    return None if clean is None else clean.split(" (")[0]


# Ratios a wrong loss value is known to come from: a logarithm of the wrong base.
KNOWN_RATIOS = (
    (1 / np.log(10), "1/ln 10: a log10 where the spec has a natural log"),
    (np.log(10), "ln 10: a natural log where the spec has a log10"),
    (1 / np.log(2), "1/ln 2: a log2 where the spec has a natural log"),
    (np.log(2), "ln 2: a natural log where the spec has a log2"),
)


def describe_ratio(ratio: float) -> str | None:
    """What a constant ratio between a computed value and the spec's names, if anything:
    ``0.434294 (1/ln 10: a log10 where the spec has a natural log)``, ``1/2``."""
    for known, meaning in KNOWN_RATIOS:
        if np.isclose(ratio, known, rtol=FACTOR_RTOL, atol=0):
            return f"{ratio:.6g} ({meaning})"
    fraction = Fraction(ratio).limit_denominator(4)
    if fraction not in (0, 1) and np.isclose(float(fraction), ratio, rtol=FACTOR_RTOL, atol=0):
        return str(fraction)
    return None


def constant_ratio(value: np.ndarray, reference: np.ndarray, *, rtol: float) -> float | None:
    """The r with value = r * reference at every element, to ``rtol``; None if none (or
    if the reference is zero anywhere, where no ratio is defined)."""
    if reference.size == 0 or not np.all(reference != 0):
        return None
    ratios = np.asarray(value, dtype=np.float64) / reference
    ratio = float(np.median(ratios))
    if ratio == 0 or not np.allclose(ratios, ratio, rtol=rtol, atol=0):
        return None
    return ratio


def _factor_finding(name: str, factor: float, dims: Mapping[str, int]) -> Finding:
    """A factor, keyed by its value and, where a dim has that size, by the dim too."""

    def said(label: str) -> str:
        return f"{name!r} is off by a constant factor: hand = {label} x reference"

    plain = Fraction(factor).limit_denominator(16)
    if plain.numerator != 0 and np.isclose(float(plain), factor, rtol=FACTOR_RTOL, atol=0):
        value = str(plain)
    else:
        value = f"{factor:.6g}"
    label = factor_label(factor, dims)
    dim_reading = label is not None and any(dim in label for dim in dims)
    alternatives = ((("factor", name, label or ""), said(describe_factor(factor, dims))),)
    return Finding(
        ("factor", name, value),
        said(value),
        claim=True,
        parameter=name,
        alternatives=alternatives if dim_reading else (),
    )


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


def _sign_patterns(
    bad: np.ndarray, reference_nonzero: np.ndarray, inputs: Mapping[str, np.ndarray]
) -> list[tuple[str, str, bool]]:
    """(input, side, shown) for 'wrong only where x < 0': the wrong elements are exactly
    those of one sign. Where every element has that sign and every element is wrong, the
    point is compatible with the pattern but cannot show it (``shown`` False)."""
    found = []
    for name, value in inputs.items():
        if value.shape != bad.shape or not np.issubdtype(value.dtype, np.floating):
            continue
        for label, side in (("< 0", value < 0), ("> 0", value > 0)):
            if not side.any() or not bad.any():
                continue
            # Where the reference is zero a wrong mask can go unseen: compare where it is not.
            if np.array_equal(bad & reference_nonzero, side & reference_nonzero):
                # Shown only where both signs occur: beside zeros alone (bounds (0, 10) with
                # the endpoint drawn), "wrong only where x > 0" says nothing about sign.
                found.append((name, label, bool((value < 0).any() and (value > 0).any())))
    return found


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
    found = gradient_findings(name, hand, reference, allowed, inputs=inputs, dims=dims)
    return [finding.text for finding in found if finding.said]


def gradient_findings(
    name: str,
    hand: np.ndarray,
    reference: np.ndarray,
    allowed: np.ndarray,
    *,
    inputs: Mapping[str, np.ndarray],
    dims: Mapping[str, int],
) -> list[Finding]:
    """``diagnose_gradient``'s findings with the keys that confirmation compares."""
    bad = ~(np.abs(hand - reference) <= allowed)
    if not bad.any():
        return []
    reference_nonzero = np.abs(reference) > allowed
    if not hand.any():
        text = f"{name!r} is zero everywhere, but the reference is not"
        return [Finding(("zero", name), text, claim=False, parameter=name)]
    findings = []
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
    if factor is not None and np.isclose(factor, -1.0, rtol=FACTOR_RTOL, atol=0):
        text = f"{name!r} has its sign flipped: hand = -reference"
        findings.append(Finding(("sign", name), text, claim=True, parameter=name))
    elif factor is not None:
        findings.append(_factor_finding(name, factor, dims))
    if (
        hand.ndim == 2
        and hand.shape[0] == hand.shape[1]
        and np.all(np.abs(hand - reference.T) <= allowed.T)
    ):
        text = (
            f"{name!r} is transposed: hand = reference.T (a product written in the wrong "
            "order, e.g. grad.T @ x for x.T @ grad)"
        )
        findings.append(Finding(("transposed", name), text, claim=True, parameter=name))
    leaked = bad & (reference == 0)
    if np.array_equal(leaked, bad):
        text = (
            f"{name!r} is non-zero at {int(leaked.sum())} of {bad.size} elements where the "
            "reference is exactly zero, and right elsewhere: a mask that is not applied"
        )
        findings.append(Finding(("leak", name), text, claim=True, parameter=name))
    zeroed = bad & (hand == 0) & reference_nonzero
    if zeroed.any() and np.array_equal(zeroed, bad):
        text = (
            f"{name!r} is zero at {int(zeroed.sum())} of {bad.size} elements where the "
            "reference is not, and right elsewhere"
        )
        findings.append(Finding(("zeroed", name), text, claim=False, parameter=name))
    for source, side, shown in _sign_patterns(bad, reference_nonzero, inputs):
        text = f"{name!r} is wrong only where {source} {side}, and right elsewhere"
        findings.append(
            Finding(("side", name, source, side), text, claim=True, parameter=name, said=shown)
        )
    tie = _tie_finding(name, hand, reference, bad, allowed, inputs)
    if tie is not None:
        findings.append(tie)
    block = _leading_block(bad, 0) or _leading_block(bad, 1)
    if block is not None and not any(f.said for f in findings):
        findings.append(Finding(("block", name), f"{name!r}: {block}", claim=False, parameter=name))
    if (~bad).any():
        text = f"{name!r} is right for {int((~bad).sum())} of {bad.size} elements only"
        said = not any(f.said for f in findings)
        findings.append(Finding(("observed", name), text, claim=False, parameter=name, said=said))
    return findings


def _tie_counts(
    hand: np.ndarray,
    reference: np.ndarray,
    bad: np.ndarray,
    allowed: np.ndarray,
    value: np.ndarray,
) -> tuple[set[int], str | None] | None:
    """How many times autograd's gradient each group of tied elements passes on, where
    ``hand`` is wrong only at tied elements of ``value`` and passes on k >= 2 times as much;
    and what autograd does with a group's gradient: gives it to "one" element, splits it
    "evenly", or neither (a sort hands each tied element one of the tied outputs').

    A group is the elements with one value of the input and one value of the hand gradient:
    the tied maxima of one pooling window get that window's upstream gradient each, and
    distinct windows almost surely have distinct upstream gradients. A subgradient passes on
    the group's total unchanged (to one element, or split); a backward that sends it to every
    tied element passes on k times it. None where that is not what ``hand`` does."""
    _, index, count = np.unique(value, return_inverse=True, return_counts=True)
    tied = count[index.reshape(value.shape)] > 1
    if not (bad & tied).any() or (bad & ~tied).any():
        return None
    counts = set()
    ways: set[str | None] = set()
    for at in zip(*np.nonzero(bad), strict=True):
        group = (value == value[at]) & (np.abs(hand - hand[at]) <= allowed)
        received = float(reference[group].sum())
        if received == 0:
            return None
        times = float(hand[group].sum()) / received
        k = round(times)
        if k < 2 or not np.isclose(times, k, rtol=FACTOR_RTOL, atol=0):
            return None
        counts.add(k)
        given = reference[group]
        if np.count_nonzero(given) == 1:
            ways.add("one")
        elif np.allclose(given, given[0], rtol=FACTOR_RTOL, atol=0):
            ways.add("evenly")
        else:
            ways.add(None)
    return counts, ways.pop() if len(ways) == 1 else None


# What a subgradient does with a tie's gradient, and which of it autograd does.
_SUBGRADIENT = {
    "one": "sends it to one of them (as autograd does) or splits it among them",
    "evenly": "splits it among them (as autograd does) or sends it to one of them",
    None: "sends it to one of them or splits it among them",
}


def _tie_finding(
    name: str,
    hand: np.ndarray,
    reference: np.ndarray,
    bad: np.ndarray,
    allowed: np.ndarray,
    inputs: Mapping[str, np.ndarray],
) -> Finding | None:
    """'wrong only at tied elements, each sent the whole gradient', keyed by the input whose
    ties it is. Said only once ``confirm`` has seen it at more tied points and the same
    backward right at points without ties (``said=False`` here)."""
    for source, value in inputs.items():
        if value.shape != hand.shape or not np.issubdtype(value.dtype, np.floating):
            continue
        found = _tie_counts(hand, reference, bad, np.broadcast_to(allowed, hand.shape), value)
        if found is None:
            continue
        counts, autograd = found
        low, high = min(counts), max(counts)
        k = str(low) if low == high else f"{low} to {high}"
        text = (
            f"{name!r} is wrong only at tied elements of {source!r} (a tied maximum or "
            "minimum, equal elements of a sort or median): the backward sends the gradient "
            f"to every tied element ({k} here), passing on {k} times what it receives; a "
            f"subgradient {_SUBGRADIENT[autograd]}"
        )
        return Finding(("tie", name, source), text, claim=True, parameter=name, said=False)
    return None
