"""Confirm a diagnosis at independent failing points before it is printed.

At the shrunk example many hypotheses coincide: with one sample, a threshold on a mask, a
regularisation term or a straight-through estimator can all look like "a constant factor".
A mechanism (a factor, a sign, a transposition, a mask, a reproduced mistake, a size that
triggers the failure) is a claim about the derivation, so it is printed only when it holds
at several more failing points drawn here with ``seeded_inputs``, at the example's dims and
at larger ones, with new values. A claim with a fitted parameter (the learning rate of a
stale weight) must fit with the same value everywhere. What is not confirmed is replaced by
what is observed at the example ("right for 3 of 4 elements"), or by nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from gradcheck.counterfactual import explain_findings
from gradcheck.derivation import Derivation
from gradcheck.diagnose import Finding, gradient_findings
from gradcheck.evaluation import Options, evaluate
from gradcheck.report import Report
from gradcheck.strategies import dim_range, seeded_inputs
from gradcheck.tolerances import for_dtype

__all__ = ["confirm", "findings_at"]

# Failing points, besides the shrunk example, a claim must hold at; and how many random
# points are tried to find them.
MIN_FAILING_POINTS = 2
MAX_POINTS = 6
# Dims are grown for new points only up to this size (the default range's top).
GROW_UP_TO = 16


def findings_at(derivation: Derivation, report: Report) -> list[Finding]:
    """Everything that can be said about a failing report at its own example."""
    if report.verdict != "fail" or report.example is None:
        return []
    tolerance = for_dtype(report.dtype)
    wrong = [p.parameter for p in report.problems if p.kind == "mismatch"]
    found: list[Finding] = []
    if wrong:
        found.extend(explain_findings(derivation, report.example, report.gradients, tolerance))
    for name in dict.fromkeys(wrong):
        if name is None or name not in report.gradients:
            continue
        pair = report.gradients[name]
        found.extend(
            gradient_findings(
                name, pair.hand, pair.reference, tolerance.allowed(pair.reference),
                inputs=report.example.inputs, dims=report.example.dims,
            )
        )  # fmt: skip
    for problem in report.problems:
        if problem.kind == "non_finite":
            text = f"{problem.parameter!r} is non-finite where the spec's gradient is finite"
            found.append(Finding(("non_finite", str(problem.parameter)), text, claim=False))
        elif problem.kind == "mutated":
            text = f"input {problem.parameter!r} was mutated by the backward"
            found.append(Finding(("mutated", str(problem.parameter)), text, claim=False))
    return found


def _consistent(
    derivation: Derivation, sizes: Mapping[str, int], params: Mapping[str, Any]
) -> bool:
    for dim in derivation.dim_ranges:
        low, high = dim_range(derivation, dim, {**params, **sizes})
        if not low <= sizes[dim] <= high:
            return False
    return True


def _larger_sizes(
    derivation: Derivation,
    sizes: Mapping[str, int],
    params: Mapping[str, Any],
    rng: np.random.Generator,
) -> dict[str, int]:
    """Every dim at least its size in the example, drawn up to its range's top, capped at
    twice the size plus two and at ``GROW_UP_TO``: a dim already larger (a check at the
    seeds' size, N=64, D_in=1000) stays as it is, so that confirming costs a few points of
    the example's own size, not of twice it."""
    drawn: dict[str, int] = {}
    for dim in derivation.dim_ranges:
        low, high = dim_range(derivation, dim, {**params, **sizes, **drawn})
        start = min(max(low, sizes[dim]), high)
        top = min(high, max(start, min(2 * start + 2, GROW_UP_TO)))
        drawn[dim] = int(rng.integers(start, top + 1))
    return drawn


def _dims_to_try(
    derivation: Derivation,
    sizes: Mapping[str, int],
    params: Mapping[str, Any],
    rng: np.random.Generator,
) -> list[dict[str, int]]:
    """The example's dims twice, each dim one larger, then larger dims at random."""
    tried = [dict(sizes), dict(sizes)]
    for dim in sizes:
        bigger = {**sizes, dim: sizes[dim] + 1}
        if _consistent(derivation, bigger, params):
            tried.append(bigger)
            break
    while len(tried) < MAX_POINTS:
        tried.append(_larger_sizes(derivation, sizes, params, rng))
    return tried


def _point_report(
    derivation: Derivation,
    sizes: Mapping[str, int],
    params: Mapping[str, Any],
    options: Options,
    seed: int,
    tie: str | None = None,
    *,
    coarse: bool = False,
) -> Report | None:
    point = seeded_inputs(derivation, sizes, seed, params, coarse=coarse)
    if tie is not None:
        point[tie] = _tied(point[tie], np.random.default_rng(seed))
    try:
        # Only whether and where it fails is read here: no probes after a failure.
        searching = replace(options, seed=seed, verdict_only=True)
        return evaluate(derivation, point, sizes, searching, None, params)
    except Exception:  # a point the declaration cannot take: it confirms nothing
        return None


def _failing_points(derivation: Derivation, report: Report, options: Options) -> list[Report]:
    assert report.example is not None
    example = report.example
    rng = np.random.default_rng(options.seed + 11)
    found = []
    for sizes in _dims_to_try(derivation, example.dims, example.params, rng):
        point = _point_report(derivation, sizes, example.params, options, int(rng.integers(2**32)))
        if point is not None and point.verdict == "fail":
            found.append(point)
    return found


_ONLY_FROM = re.compile(r"^fails only from (\w+) = (\d+):")
_ONLY_WHEN_ONE = re.compile(r"only when ((?:\w+ = 1)(?: or \w+ = 1)*)")


def _holds(
    derivation: Derivation,
    report: Report,
    options: Options,
    change: Mapping[str, int],
    rng: np.random.Generator,
) -> bool | None:
    """Whether a random point with the dims of ``report`` changed by ``change`` (the others
    drawn at random, at least 2) fails the way ``report`` does; None when no such point is
    declared."""
    assert report.example is not None
    params = report.example.params
    sizes = _larger_sizes(derivation, {d: max(2, s) for d, s in report.example.dims.items()},
                          params, rng)  # fmt: skip
    sizes.update(change)
    if not _consistent(derivation, sizes, params):
        return None
    point = _point_report(derivation, sizes, params, options, int(rng.integers(2**32)))
    return None if point is None else _signature(point) == _signature(report)


def _signature(report: Report) -> frozenset[tuple[str, str | None]]:
    """What went wrong, without the numbers: the same failure, or another one."""
    if report.verdict != "fail":
        return frozenset()
    return frozenset((p.kind, p.parameter) for p in report.problems if p.kind in _FAILING)


_FAILING = ("raised", "returned", "missing", "type", "dtype", "shape", "non_finite", "mutated",
            "mismatch")  # fmt: skip


# Random points at the size that should pass: a bug that shows at a few points in ten (a
# ReLU mask thresholded at 0.05) passed 2 of them by chance at D = 2 and was blamed on D = 1.
PASSING_POINTS = 12


def _shape_claim_holds(
    derivation: Derivation, report: Report, options: Options, claim: str
) -> bool:
    """The search's size claims, re-tested with the other dims drawn anew: 'only from N = k'
    must fail at k, k + 1 and k + 2 and pass at k - 1; 'only when D = 1' must fail at 1 and
    pass at 2 (sizes outside the declared range are left out)."""
    rng = np.random.default_rng(options.seed + 13)
    only_from = _ONLY_FROM.search(claim)
    if only_from is not None:
        dim, size = only_from.group(1), int(only_from.group(2))
        # "From k" means every larger size fails too, not only k (a size rounded up by
        # round() fails at some sizes and not at the next).
        changes = [({dim: size}, True), ({dim: size + 1}, True), ({dim: size + 2}, True)] * 2
        changes += [({dim: size - 1}, False)] * PASSING_POINTS
    else:
        when = _ONLY_WHEN_ONE.search(claim)
        if when is None:
            return False
        dims = [part.split(" = ")[0] for part in when.group(1).split(" or ")]
        changes = [({dim: 1}, True) for dim in dims] * 2
        changes += [({dim: 2}, False) for dim in dims] * PASSING_POINTS
    # A size that should pass must pass at every point; one that should fail must fail at
    # one point at least (a random point may not show the bug: a row of h all below zero).
    failed: dict[tuple[tuple[str, int], ...], bool] = {}
    for change, should_fail in changes:
        outcome = _holds(derivation, report, options, change, rng)
        if outcome is None:
            continue
        if outcome and not should_fail:
            return False
        key = tuple(sorted(change.items()))
        failed[key] = failed.get(key, False) or outcome
    should = {tuple(sorted(c.items())) for c, fails in changes if fails}
    tested_fail = [key for key in failed if key in should]
    return len(failed) >= 2 and bool(tested_fail) and all(failed[key] for key in tested_fail)


def _only_from_two(text: str) -> bool:
    found = _ONLY_FROM.search(text)
    return found is not None and int(found.group(2)) == 2


def _is_shape_claim(text: str) -> bool:
    return bool(_ONLY_FROM.search(text) or _ONLY_WHEN_ONE.search(text))


def _claim_keys(found: list[Finding]) -> set[tuple[str, ...]]:
    keys = set()
    for finding in found:
        if finding.claim:
            keys.add(finding.key)
            keys.update(key for key, _ in finding.alternatives)
    return keys


# A factor, a sign or a transposition describes every element with nothing fitted; a mask
# pattern describes which elements are wrong. Where both hold, the first is the simpler.
_SIMPLE = ("factor", "sign", "transposed")


def _simplest(claims: list[Finding], everywhere: set[tuple[str, ...]]) -> list[Finding]:
    """The claims that hold everywhere, in the reading that does; for a parameter with a
    confirmed factor, sign or transposition, no mask pattern besides it."""
    kept: list[Finding] = []
    for claim in claims:
        for key, text in ((claim.key, claim.text), *claim.alternatives):
            if key in everywhere:
                kept.append(replace(claim, key=key, text=text, said=True, alternatives=()))
                break
    simple = {f.parameter for f in kept if f.key[0] in _SIMPLE and f.parameter is not None}
    return [f for f in kept if f.parameter not in simple or f.key[0] in _SIMPLE]


# Sizes a tie claim is tested at, each with one seed drawn three times: as drawn (no ties),
# with some of the tied input's values repeated (``_tied``), and with every input's values
# from a coarse grid. A tied point may still pass (no tie where it matters) or be
# inconclusive (a kink the probes cannot pass).
TIE_SIZES = 12
# Tied failing points that must show the tie claim, and untied points that must pass.
TIED_FAILURES = 2
UNTIED_PASSES = 4


def _tied(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``value`` with about one element in three replaced by one of its first two: ties in
    some windows of a pool, a max or a sort, with values the input's own bounds allow. Ties
    in every window leave most probes on a kink, and the point inconclusive."""
    out = value.copy()
    chosen = rng.random(value.shape) < 1 / 3
    out[chosen] = rng.choice(value.ravel()[:2], size=int(chosen.sum()))
    return out


def _tie_confirmed(
    derivation: Derivation, report: Report, options: Options, claim: Finding
) -> Finding | None:
    """``claim`` ('wrong only at tied elements') said, when the same backward is right at
    every untied point drawn and fails the same way at tied ones; else None. A tied failure
    that does not show the claim is allowed beside those that do, up to as many: where one
    upstream gradient feeds several windows (a max summed to a scalar) the windows' tied
    elements cannot be told apart, and the count per tie is not read."""
    assert report.example is not None
    example = report.example
    rng = np.random.default_rng(options.seed + 17)
    shown = unshown = untied_passes = 0
    sizes_tried = _dims_to_try(derivation, example.dims, example.params, rng)
    while len(sizes_tried) < TIE_SIZES:
        sizes_tried.append(_larger_sizes(derivation, example.dims, example.params, rng))
    for sizes in sizes_tried:
        seed = int(rng.integers(2**32))
        untied = _point_report(derivation, sizes, example.params, options, seed)
        if untied is not None and untied.verdict == "fail":
            return None  # wrong without ties too: the ties are not the whole story
        untied_passes += untied is not None and untied.verdict == "pass"
        for tied in (
            _point_report(derivation, sizes, example.params, options, seed, claim.key[2]),
            _point_report(derivation, sizes, example.params, options, seed, coarse=True),
        ):
            if tied is not None and tied.verdict == "fail":
                if claim.key in _claim_keys(findings_at(derivation, tied)):
                    shown += 1
                else:
                    unshown += 1
    if shown < TIED_FAILURES or unshown > shown or untied_passes < UNTIED_PASSES:
        return None
    text = (
        f"{claim.text}. Right at {untied_passes} points without ties; wrong the same way "
        f"at {shown} more with ties"
    )
    return replace(claim, text=text, said=True)


def confirm(derivation: Derivation, report: Report, options: Options) -> Report:
    """``report`` with only the diagnoses that hold at more failing points, the rest
    replaced by what its example shows."""
    if report.verdict != "fail" or report.example is None:
        return report
    here = findings_at(derivation, report)
    ties = [f for f in here if f.claim and f.key[0] == "tie"]
    tied = [t for t in (_tie_confirmed(derivation, report, options, f) for f in ties) if t]
    # A tie confirmed for a parameter says all that its mask patterns would.
    here = [f for f in here if f.parameter not in {t.parameter for t in tied}]
    claims = [f for f in here if f.claim and f.key[0] != "tie"]
    confirmed: list[Finding] = list(tied)
    if claims:
        points = [findings_at(derivation, point) for point in _failing_points(
            derivation, report, options)]  # fmt: skip
        if len(points) >= MIN_FAILING_POINTS:
            everywhere = set.intersection(*(_claim_keys(found) for found in points))
            confirmed += _simplest(claims, everywhere)
    named = {f.parameter for f in confirmed}
    observed = [f for f in here if not f.claim and f.said]
    for finding in here:  # the fallback observation for a parameter nothing else describes
        if not finding.claim and not finding.said and finding.key[0] == "observed":
            described = {f.parameter for f in observed} | named
            if finding.parameter not in described and None not in named:
                observed.append(replace(finding, said=True))
    texts = [f.text for f in confirmed] + [f.text for f in observed]
    # A confirmed transposition already says why a size of 1 passes (a 1 x 1 weight is its
    # own transpose): "fails only from D = 2" beside it would send the reader to the sizes.
    transposed = any(f.key[0] in ("transposed", "transposed_use") for f in confirmed)
    shapes = [
        text
        for text in report.diagnoses
        if _is_shape_claim(text)
        and not (transposed and _only_from_two(text))
        and _shape_claim_holds(derivation, report, options, text)
    ]
    return replace(report, diagnoses=tuple(dict.fromkeys(texts + shapes)))
