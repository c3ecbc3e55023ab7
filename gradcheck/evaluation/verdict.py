"""From problems to a verdict: which problems fail a derivation, which leave it unjudged, and
what a mismatch or a float32 failure is called.

It decides the verdict of one point from the problems the stages before it found; it never
takes a probe or calls user code, except the float64 rerun of a failing float32 backward that
tells a lost precision from a wrong derivation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gradcheck.backward import run_backward
from gradcheck.compare import Mismatch, compare
from gradcheck.derivation import Derivation
from gradcheck.evaluation.options import Options
from gradcheck.report import Problem
from gradcheck.tolerances import for_dtype

__all__ = [
    "DOUBTS",
    "compare_to_autograd",
    "mismatch_problem",
    "precision_problems",
    "verdict_of",
]


def mismatch_problem(mismatch: Mismatch, note: str) -> Problem:
    return Problem(
        "mismatch",
        f"gradient for {mismatch.parameter!r} does not match {mismatch.reference}. {note}",
        parameter=mismatch.parameter,
        mismatch=mismatch,
    )


# Problems that leave the derivation unjudged at a point rather than failing it.
DOUBTS = ("kink", "references_disagree", "unresolved")


def compare_to_autograd(
    hand_grad: np.ndarray,
    reference: np.ndarray,
    allowed: np.ndarray,
    name: str,
    options: Options,
) -> Mismatch | None:
    return compare(
        hand_grad,
        reference,
        allowed,
        parameter=name,
        reference=f"torch autograd ({options.dtype} hand vs float64)",
    )


def precision_problems(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    autograd: Any,
    failures: list[Problem],
    options: Options,
    params: Mapping[str, Any],
) -> list[Problem]:
    """Is a failure in float32 a wrong derivation, or a right one that loses its accuracy?"""
    if any(p.kind not in ("mismatch", "non_finite") for p in failures):
        return []
    wide = run_backward(derivation, point, autograd.grad_output, "float64", params)
    if wide.problems:
        return []
    tolerance = for_dtype("float64")
    for name, reference in autograd.gradients.items():
        if (
            compare(
                wide.gradients[name],
                reference,
                tolerance.allowed(reference),
                parameter=name,
                reference="",
            )
            is not None
        ):
            return []
    return [
        Problem(
            "precision",
            f"the same backward is correct in float64 at this point: it loses its accuracy "
            f"in {options.dtype} (overflow, underflow or cancellation), it is not wrongly "
            "derived. Rewrite it to be stable (e.g. subtract the max before exp).",
        )
    ]


def verdict_of(failures: list[Problem], doubts: list[Problem]) -> str:
    """fail over error (the spec is at fault) over inconclusive (a kink) over pass."""
    if failures:
        return "fail"
    if any(p.kind == "references_disagree" for p in doubts):
        return "error"
    return "inconclusive" if doubts else "pass"
