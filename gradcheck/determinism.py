"""Does the hand backward answer the same for the same inputs?

A backward that keeps state between calls (a counter, a buffer it accumulates into) or draws
random numbers can fail at one call and pass at the next. The search then finds a failure
that its final evaluation does not reproduce, and without this check the report would pass.
Here the backward is called again at one point, with exactly the same arguments, and any
two answers that differ beyond the dtype's rounding allowance are shown side by side.

This module only calls the backward and compares its answers; it never judges a gradient
against a reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcheck.backward import run_backward
from gradcheck.derivation import Derivation
from gradcheck.report import Problem
from gradcheck.tolerances import for_dtype

__all__ = ["CALLS", "nondeterminism"]

# Calls of the backward at the point. A backward wrong on every other call differs within
# two; one wrong at random 30% of the time differs within six with probability 1 - 0.7**5
# - 0.3**5 (about 83%) per point, and the search meets many points.
CALLS = 6


def nondeterminism(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    grad_output: np.ndarray | None,
    dtype: str,
    params: Mapping[str, Any] | None = None,
    *,
    calls: int = CALLS,
    earlier: Mapping[str, np.ndarray] | None = None,
) -> Problem | None:
    """A ``nondeterministic`` problem when two of ``calls`` calls at ``point`` (and the
    ``earlier`` answer, the gradients a call before these gave, counted as call 1) return
    gradients that differ beyond the dtype's allowance, else None."""
    tolerance = for_dtype(dtype)
    answers: list[Mapping[str, np.ndarray]] = [] if earlier is None else [earlier]
    answers += [
        run_backward(derivation, point, grad_output, dtype, params).gradients for _ in range(calls)
    ]
    calls = len(answers)
    first = answers[0]
    for name in derivation.wrt:
        reference = first.get(name)
        if reference is None:
            continue
        allowed = tolerance.allowed(reference)
        differing = []
        for call, answer in enumerate(answers[1:], start=2):
            other = answer.get(name)
            if other is None or other.shape != reference.shape:
                continue
            excess = np.abs(other - reference) - allowed
            if np.any(excess > 0) or np.isnan(excess).any():
                differing.append((call, other, excess))
        if not differing:
            continue
        call, other, excess = differing[0]
        index = np.unravel_index(
            int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess))), reference.shape
        )
        at = str(tuple(int(i) for i in index)) if reference.ndim else ""
        how = (
            "on every call after the first"
            if len(differing) == calls - 1
            else f"on {len(differing)} of {calls - 1} later calls"
        )
        return Problem(
            "nondeterministic",
            f"the backward returns different gradients for the same inputs: {name!r}{at} was "
            f"{float(reference[index]):.6g} on call 1 and {float(other[index]):.6g} on call "
            f"{call} ({how} of {calls}). A gradient must depend on its inputs alone: look for "
            "state kept between calls, random numbers, or a buffer updated in place.",
            parameter=name,
        )
    return None
