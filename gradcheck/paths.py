"""Which of the engine's fast paths and fallbacks a run took, counted.

The ground-truth tests (tests/test_ground_truth.py) read these counts to say, and to insist,
that a run exercised each path: a path that no generated derivation takes is a path whose
verdicts nothing checks. Counting is one dict increment; nothing here changes a verdict.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["PATHS", "TAKEN", "took"]

# Every path counted, with what it is.
PATHS = {
    "sweep": "a point of the numpy sweep that runs before hypothesis",
    "hypothesis": "a hypothesis search (after the sweep found a failure)",
    "sampled probes": "a passing point checked without finite differences (1 in 3 skipped)",
    "screen": "a cheap central difference that confirmed autograd",
    "joint probe": "one probe moving every input at once that confirmed autograd",
    "vmap batch": "finite differences evaluated as one vmapped batch",
    "noise floor": "the point's rounding noise measured to widen an allowance",
    "dtype rounding": "torch's own float32 rounding measured to widen an allowance",
    "special point": "a point made special (zeros, ties, equal rows) on purpose",
    "autograd noise": "a probe that differs from autograd by no more than autograd's rounding",
    "narrower step": "a finite difference at a step narrower than the usual one",
    "bounded step": "a finite-difference step shortened to stay inside the bounds",
    "subgradient": "a hand gradient accepted as another subgradient at a kink",
}

TAKEN: Counter[str] = Counter()


def took(path: str) -> None:
    TAKEN[path] += 1
