"""Finite-difference steps other than the usual one, and what they can conclude.

Wider steps see through a forward that rounds coarsely; narrower ones resolve a function that
varies faster than the inputs' size suggests; autograd a step away on either side tells a
kink. It decides whether the differences settle, and so whether they are evidence at all; it
never compares the hand gradient with anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck.compare import Mismatch
from gradcheck.derivation import Derivation
from gradcheck.evaluation.directions import dot
from gradcheck.evaluation.verdict import mismatch_problem
from gradcheck.paths import took
from gradcheck.references.autograd import autograd_gradients
from gradcheck.references.finite_differences import UNRESOLVED, ScalarSpec, Slope
from gradcheck.report import Problem

__all__ = [
    "NARROWER_STEPS",
    "WIDER_STEPS",
    "Jumps",
    "agreeing_narrower",
    "agreeing_wider",
    "jumps_for",
    "narrower_mismatch",
    "settled",
    "unsettled_problem",
]


# (input name, direction, its slope, autograd's slope at the point) -> whether autograd's
# gradient changes within the finite-difference step: a non-differentiable point.
Jumps = Callable[[str, np.ndarray, Slope, float], bool]


def jumps_for(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    grad_output: np.ndarray | None,
    params: Mapping[str, Any],
) -> Jumps:
    """When finite differences and autograd disagree, look at autograd's slope a step away
    on either side. At a kink the finite difference lies between them while autograd's value
    at the point is not theirs (several hinges can even make the spec smooth along one
    direction with a slope no single subgradient gives). A spec autograd misreads (a
    detach) is misread the same way a step away: then the disagreement stands."""

    def slope_at(name: str, direction: np.ndarray, t: float) -> float:
        moved = dict(point)
        moved[name] = point[name] + t * direction
        nearby = autograd_gradients(
            derivation.name, derivation.forward, moved, [name], lambda _: grad_output, params
        )
        return dot(nearby.gradients[name], direction)

    def jumps(name: str, direction: np.ndarray, slope: Slope, along_reference: float) -> bool:
        after = slope_at(name, direction, slope.step)
        before = slope_at(name, direction, -slope.step)
        # Where the spec is smooth, the mean of the two is autograd's slope at the point up
        # to O(step**2), whatever the curvature; at a hinge it is the finite difference.
        mean = (after + before) / 2
        return (
            abs(mean - along_reference) > slope.allowed
            and abs(mean - slope.central) <= slope.allowed + abs(after - before) / 2
        )

    return jumps


# Wider steps tried before finite differences are said to disagree with autograd. A forward
# that cancels internally (a residual out - y of 5e-6 from terms of 1e-3, raised to the 4th
# power) rounds far above eps * |f|; its differences at the usual step carry that noise
# (measured 2e-5 relative) while a step 16-4096 times wider is accurate to 1e-9.
WIDER_STEPS = (16.0, 256.0, 4096.0)


# Narrower steps tried next. The usual step is relative to the inputs' size, and a function
# can vary far faster than that suggests: sin(u * v) with u, v ~ 1000 turns a full period
# within a step of 6e-3. A step 4096 times narrower (~1e-6, torch.autograd.gradcheck's)
# resolves it; like numdifftools, several are tried, and one is trusted only where it sees
# no kink.
NARROWER_STEPS = (1 / 64, 1 / 4096, 1 / 262144)


def agreeing_wider(
    spec: ScalarSpec, name: str, direction: np.ndarray, along_reference: float
) -> Slope | None:
    """The first wider-step slope that agrees with autograd, if any does."""
    for widen in WIDER_STEPS:
        slope = spec.slope(name, direction, widen)
        if abs(slope.central - along_reference) <= slope.allowed:
            return slope
    return None


def agreeing_narrower(
    spec: ScalarSpec, name: str, direction: np.ndarray, along_reference: float
) -> tuple[Slope | None, Slope]:
    """The first narrower-step slope that agrees with autograd without a kink (or None),
    and the narrowest slope taken: the evidence of whether the differences settle."""
    slope = UNRESOLVED
    for narrow in NARROWER_STEPS:
        took("narrower step")
        slope = spec.slope(name, direction, narrow)
        if (
            slope.resolved
            and not slope.kink
            and abs(slope.central - along_reference) <= (slope.allowed)
        ):
            return slope, slope
    return None, slope


def narrower_mismatch(
    mismatch: Mismatch, narrower: Slope, along_reference: float, along_hand: float
) -> Problem:
    return mismatch_problem(
        mismatch,
        "Finite differences with a narrower step (the spec varies faster than the usual "
        f"step resolves) agree with autograd along the difference (slope "
        f"{narrower.central:.6g}, autograd {along_reference:.6g}, hand {along_hand:.6g}), so "
        "the derivation is wrong, not the spec.",
    )


def settled(first: Slope, narrowest: Slope) -> bool:
    """Whether finite differences at the usual and the narrowest step agree with each
    other: only then is their disagreement with autograd evidence against the spec (a
    detach or an in-place op is smooth and wrong at every step; an ill-conditioned point
    gives a different answer at each)."""
    return (
        first.resolved
        and narrowest.resolved
        and abs(first.central - narrowest.central) <= first.allowed + narrowest.allowed
    )


def unsettled_problem(name: str, first: Slope, narrowest: Slope, along: str) -> Problem:
    if not first.resolved:
        reason = (
            "are not finite (a step leaves the spec's domain, or no step fits inside its bounds)"
        )
    else:
        reason = (
            f"do not settle (slope {first.central:.6g} at step {first.step:.2g}, "
            f"{narrowest.central:.6g} at step {narrowest.step:.2g}): the point is "
            "ill-conditioned"
        )
    return Problem(
        "unresolved",
        f"finite differences on {name!r} along {along} {reason}, so the derivation is not "
        "judged here.",
        parameter=name,
    )
