"""Finite-difference evidence about a hand gradient at one point: probes, screens, kinks.

Where hand and autograd disagree, the difference itself is probed (``judge_mismatch``); every
input is also probed along its own directions (``judge_probes``), cheaply screened where the
hand already agrees with autograd. A probe holds the hand to finite differences only where
they side with autograd and no kink excuses another subgradient. It decides what the
probes show; it never decides the verdict.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from gradcheck.compare import Mismatch, compare
from gradcheck.evaluation.allowance import Allowance
from gradcheck.evaluation.directions import dot
from gradcheck.evaluation.steps import (
    Jumps,
    agreeing_narrower,
    agreeing_wider,
    narrower_mismatch,
    settled,
    unsettled_problem,
)
from gradcheck.evaluation.verdict import mismatch_problem
from gradcheck.paths import took
from gradcheck.references.finite_differences import ScalarSpec, Screen, Slope
from gradcheck.report import Problem

__all__ = [
    "confirm_jointly",
    "judge_mismatch",
    "judge_probes",
]


def _screened(
    spec: ScalarSpec, name: str, directions: Iterator[np.ndarray], *, screen: bool
) -> Iterator[tuple[np.ndarray, Screen | None]]:
    """Each direction with its screening central difference (None without ``screen``),
    screened a batch at a time where the spec evaluates batches cheaply."""
    if not screen:
        yield from ((direction, None) for direction in directions)
        return
    size = spec.screen_batch(name)
    while chunk := list(itertools.islice(directions, size)):
        yield from zip(chunk, spec.screens(name, chunk), strict=True)


def judge_probes(
    spec: ScalarSpec,
    name: str,
    directions: Iterator[np.ndarray],
    unit: str,
    hand_grad: np.ndarray,
    reference: np.ndarray,
    allowance: Allowance,
    jumps: Jumps,
    *,
    screen: bool,
    extra: Callable[[bool], Iterator[np.ndarray]] | None = None,
    autograd_noise: Callable[[np.ndarray], float] | None = None,
) -> tuple[list[Problem], int]:
    """Where the probes side with autograd, hold the hand gradient to them; where they do
    not, say whether a kink or the spec is to blame. With ``screen`` (the hand gradient
    already agrees with autograd), a two-evaluation central difference is tried first and
    the full slope is taken only where it does not confirm autograd. Returns the problems
    and the number of probes."""
    tally = _Tally(name)
    for direction, quick in _screened(spec, name, directions, screen=screen):
        tally.count += 1
        along_reference = dot(reference, direction)
        if quick is not None and abs(quick.central - along_reference) <= quick.allowed:
            took("screen")
            continue  # confirmed; the hand gradient already agrees with autograd
        _judge_direction(
            tally, spec, direction, along_reference, hand_grad, allowance, jumps,
            screen=screen, autograd_noise=autograd_noise,
        )  # fmt: skip
    problems = tally.said()
    if (tally.subgradient is not None or tally.crossings) and extra is not None:
        # Probes excused a choice of subgradient, or crossed kinks; several choices
        # together need not be one (a max-pool tie routed to every tied element passes k
        # times the upstream gradient). ``extra`` moves each group of equal elements
        # together, where no kink excuses the sum, and after an excused choice random
        # signs too (they would only cross the kinks again otherwise).
        found, more = judge_probes(
            spec, name, extra(tally.subgradient is not None), "directions", hand_grad,
            reference, allowance, jumps, screen=False, extra=None,
            autograd_noise=autograd_noise,
        )  # fmt: skip
        problems.extend(p for p in found if p.kind != "kink")
        tally.count += more
    # Always, even when the hand gradient already differs from autograd at a kink: a
    # probe that no hinge disturbs judges it independently of any choice of subgradient.
    # (Not where it agrees with autograd element by element: then it agrees with every
    # probe that agrees with autograd, up to the rounding of the sums.)
    if tally.fd_values and not screen:
        mismatch = compare(
            np.array(tally.hand_values),
            np.array(tally.fd_values),
            np.array(tally.fd_allowed),
            parameter=name,
            reference="finite differences",
            unit=unit,
        )
        if mismatch is not None:
            problems.append(mismatch_problem(mismatch, "Finite differences agree with autograd."))
    return problems, tally.count


@dataclass
class _Tally:
    """What one input's probes found, as they are taken."""

    name: str
    problems: list[Problem] = field(default_factory=list)
    # Probes where finite differences side with autograd: theirs, what they allow, the hand's.
    fd_values: list[float] = field(default_factory=list)
    fd_allowed: list[float] = field(default_factory=list)
    hand_values: list[float] = field(default_factory=list)
    count: int = 0
    subgradient: Problem | None = None  # the hand's choice at a kink, said once
    crossings: int = 0  # probes whose step crossed a kink, said in one line
    unsettled: Problem | None = None  # probes where finite differences resolve nothing

    def said(self) -> list[Problem]:
        problems = list(self.problems)
        if self.crossings > 1:
            first = next(i for i, p in enumerate(problems) if p.kind == "kink")
            problems[first] = replace(
                problems[first],
                message=problems[first].message[:-1]
                + f"; {self.crossings - 1} more probes like it).",
            )
        return problems + [p for p in (self.subgradient, self.unsettled) if p is not None]


def _judge_direction(
    tally: _Tally,
    spec: ScalarSpec,
    direction: np.ndarray,
    along_reference: float,
    hand_grad: np.ndarray,
    allowance: Allowance,
    jumps: Jumps,
    *,
    screen: bool,
    autograd_noise: Callable[[np.ndarray], float] | None,
) -> None:
    """One probe: a slope at the step that agrees with autograd if any does (the usual,
    wider, narrower), then the hand held to it, or the reason it cannot be."""
    name = tally.name
    slope = first = narrowest = spec.slope(name, direction)
    if abs(slope.central - along_reference) > slope.allowed and not slope.kink:
        slope = agreeing_wider(spec, name, direction, along_reference) or slope
    if not abs(slope.central - along_reference) <= slope.allowed:
        narrower, narrowest = agreeing_narrower(spec, name, direction, along_reference)
        slope = narrower or slope
    if abs(slope.central - along_reference) <= slope.allowed:
        along_hand = dot(hand_grad, direction)
        hand_allowed = allowance.along(direction)
        if slope.kink and not screen and _between_one_sided(slope, along_hand, hand_allowed):
            # At a kink or a tie the central difference is one subgradient (torch's choice
            # often equals it) but not the only one: a hand gradient between the one-sided
            # slopes (|x| with +1 at 0, a tied max given to one element) is as valid, so
            # the probe cannot hold the hand to it.
            if abs(along_hand - slope.central) > slope.allowed + hand_allowed:
                took("subgradient")
                tally.subgradient = tally.subgradient or _subgradient_problem(name, slope)
            return
        tally.fd_values.append(slope.central)
        # The hand gradient may differ from the reference by its dtype's rounding.
        tally.fd_allowed.append(slope.allowed + hand_allowed)
        tally.hand_values.append(along_hand)
    elif not settled(first, narrowest) and not first.kink:
        tally.unsettled = tally.unsettled or unsettled_problem(name, first, narrowest, "a probe")
    elif slope.kink or jumps(name, direction, slope, along_reference):
        tally.crossings += 1
        if tally.crossings == 1:  # one line says it; the count is added to it
            tally.problems.append(_crossing_problem(name, slope))
    elif autograd_noise is not None and abs(slope.central - along_reference) <= (
        slope.allowed + autograd_noise(direction)
    ):
        # Autograd's own rounding: a gradient that is zero (d/dy of a layer norm of x - y)
        # comes back as 3e-16 of noise, while finite differences of a forward that is
        # exactly constant see 0 +- 5e-25. No evidence against the spec.
        took("autograd noise")
    else:
        tally.problems.append(_disagreement_problem(name, slope, along_reference))


def _crossing_problem(name: str, slope: Slope) -> Problem:
    return Problem(
        "kink",
        f"a finite-difference step on {name!r} crosses a kink (one-sided slopes "
        f"{slope.left:.6g} and {slope.right:.6g}; autograd's gradient changes within the step).",
        parameter=name,
    )


def _disagreement_problem(name: str, slope: Slope, along_reference: float) -> Problem:
    return Problem(
        "references_disagree",
        f"torch autograd ({along_reference:.6g}) and finite differences ({slope.central:.6g} "
        f"+- {slope.allowed:.2g}) disagree on {name!r} along a probe: the spec forward is not "
        "what autograd differentiates (a detach, an in-place op, a non-differentiable op) or "
        "the point is ill-conditioned. The derivation is not judged here.",
        parameter=name,
    )


def _between_one_sided(slope: Slope, along_hand: float, hand_allowed: float) -> bool:
    """Whether the hand's slope lies between the one-sided slopes at a kink: a valid
    subgradient along this direction for a convex kink (|x|, max, relu), Clarke's hull for
    the others."""
    margin = slope.allowed + hand_allowed
    low, high = sorted((slope.left, slope.right))
    return low - margin <= along_hand <= high + margin


def _subgradient_problem(name: str, slope: Slope) -> Problem:
    return Problem(
        "kink",
        f"at a kink or tie of {name!r} the hand gradient takes another subgradient than "
        f"autograd (between the one-sided slopes {slope.left:.6g} and {slope.right:.6g}): "
        "a valid choice, not judged here.",
        parameter=name,
    )


def confirm_jointly(
    spec: ScalarSpec,
    compared: Mapping[str, tuple[np.ndarray, np.ndarray, Allowance, Mismatch | None]],
    directions: Mapping[str, np.ndarray],
) -> bool:
    """Where hand and autograd already agree, do finite differences confirm autograd along
    one joint direction (every input moved at once along its own ``directions``)? Two
    evaluations, where probing each input apart takes two per input. Only a confirmation
    is concluded: anything else sends every input to its own probes, along the same
    directions."""
    if not compared:
        return False
    screen, steps = spec.screen_jointly(directions)
    along_reference = sum(
        steps[name] * dot(found[1], directions[name]) for name, found in compared.items()
    )
    return abs(screen.central - along_reference) <= screen.allowed


def judge_mismatch(
    spec: ScalarSpec,
    mismatch: Mismatch,
    hand_grad: np.ndarray,
    reference: np.ndarray,
    allowance: Allowance,
    jumps: Jumps,
) -> Problem:
    """Hand and autograd differ: move along the difference itself. If the spec is smooth
    there, finite differences must side with one of the two; if it has a kink there, more
    than one gradient may be valid; if they cannot tell the two apart, nothing is judged."""
    name = mismatch.parameter
    delta = hand_grad - reference
    slope = first = spec.slope(name, delta)
    along = _Along(dot(hand_grad, delta), dot(reference, delta), allowance.along(delta))
    narrowest: Slope | None = None
    if not slope.resolved:  # the usual step leaves the domain: a narrower one may not
        narrower, narrowest = agreeing_narrower(spec, name, delta, along.reference)
        slope = narrower or narrowest
        if not slope.resolved:
            return unsettled_problem(name, first, narrowest, "the difference")
    # What separates the two along the difference, against what the finite difference and
    # the hand's own dtype leave uncertain.
    allowed = slope.allowed + along.hand_allowed
    if abs(along.hand - along.reference) <= 2 * allowed:
        return _below_resolution_problem(name, along, allowed)
    if slope.kink and narrowest is None:
        # The hinge may lie within the usual step but not at the point (x ~ 1e8 steps by
        # 600 past a clamp 50 away): a narrower step that sees no kink settles it.
        found, narrowest = _narrower_step(spec, mismatch, delta, along)
        if found is not None:
            return found
    if slope.kink:
        return _kink_problem(name, slope)
    if abs(slope.central - along.reference) <= allowed:
        return mismatch_problem(
            mismatch,
            "Finite differences agree with autograd along the difference (slope "
            f"{slope.central:.6g}, autograd {along.reference:.6g}, hand {along.hand:.6g}), "
            "so the derivation is wrong, not the spec.",
        )
    wider = agreeing_wider(spec, name, delta, along.reference)
    if wider is not None and along.separated_by(wider):
        return mismatch_problem(
            mismatch,
            "Finite differences with a wider step (the forward rounds coarsely at the usual "
            f"one) agree with autograd along the difference (slope {wider.central:.6g}, "
            f"autograd {along.reference:.6g}, hand {along.hand:.6g}), so the derivation is "
            "wrong, not the spec.",
        )
    if narrowest is None:
        found, narrowest = _narrower_step(spec, mismatch, delta, along)
        if found is not None:
            return found
    if jumps(name, delta, slope, along.reference):
        return _jump_problem(name, slope, along)
    if not settled(first, narrowest):
        return unsettled_problem(name, first, narrowest, "the difference")
    return _spec_blamed_problem(name, slope, along, allowed)


@dataclass(frozen=True)
class _Along:
    """Slopes along the difference hand - autograd: the hand's, autograd's, and what the
    hand's own dtype leaves uncertain."""

    hand: float
    reference: float
    hand_allowed: float

    def separated_by(self, slope: Slope) -> bool:
        """Whether hand and autograd lie further apart than ``slope`` can blur."""
        return abs(self.hand - self.reference) > 2 * (slope.allowed + self.hand_allowed)


def _narrower_step(
    spec: ScalarSpec, mismatch: Mismatch, delta: np.ndarray, along: _Along
) -> tuple[Problem | None, Slope]:
    """A mismatch where a narrower step agrees with autograd and separates the two (else
    None), and the narrowest slope taken."""
    narrower, narrowest = agreeing_narrower(spec, mismatch.parameter, delta, along.reference)
    if narrower is not None and along.separated_by(narrower):
        return narrower_mismatch(mismatch, narrower, along.reference, along.hand), narrowest
    return None, narrowest


def _below_resolution_problem(name: str, along: _Along, allowed: float) -> Problem:
    return Problem(
        "unresolved",
        f"{name!r} differs from autograd by less than finite differences resolve here "
        f"(along the difference: hand {along.hand:.6g}, autograd {along.reference:.6g}, "
        f"+- {allowed:.2g}): rounding at an ill-conditioned point, not judged.",
        parameter=name,
    )


def _kink_problem(name: str, slope: Slope) -> Problem:
    return Problem(
        "kink",
        f"{name!r} differs from autograd at a kink: along the difference the one-sided "
        f"slopes are {slope.left:.6g} and {slope.right:.6g}, so the difference may be "
        "a choice of subgradient. The probes below judge it where no hinge is crossed.",
        parameter=name,
    )


def _jump_problem(name: str, slope: Slope, along: _Along) -> Problem:
    return Problem(
        "kink",
        f"{name!r} differs from autograd at a point where the spec's gradient jumps: "
        f"autograd's slope along the difference is {along.reference:.6g} here and "
        f"{slope.central:.6g} a step away on either side, so ReLU-style units sit on "
        "their hinges and more than one gradient is valid.",
        parameter=name,
    )


def _spec_blamed_problem(name: str, slope: Slope, along: _Along, allowed: float) -> Problem:
    sides_with = "the hand gradient" if abs(slope.central - along.hand) <= allowed else "neither"
    return Problem(
        "references_disagree",
        f"for {name!r}, finite differences ({slope.central:.6g} +- {allowed:.2g}) "
        f"agree with {sides_with} rather than torch autograd ({along.reference:.6g}) along "
        "the difference: the spec forward, or this point, is the problem.",
        parameter=name,
    )
