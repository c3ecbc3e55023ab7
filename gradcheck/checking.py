"""``check`` and ``with_diagnoses``: one point evaluated, then explained.

The thin entry points on top of the engine: ``gradcheck.evaluation`` judges the point (the
references, the comparison, the finite-difference evidence, the verdict) and
``gradcheck.explain_failure`` and ``gradcheck.confirm`` say what a failure looks like. Both
sit below this module; it decides nothing of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gradcheck.confirm import findings_at
from gradcheck.derivation import Derivation
from gradcheck.evaluation import (
    Options,
    evaluate,
    make_options,
    require_derivation,
    torch_threads_for,
    validated_point,
    whole,
)
from gradcheck.explain_failure import explain_failure
from gradcheck.guard import DEFAULT_DEADLINE, guarded_search, validated_deadline
from gradcheck.report import Report

__all__ = [
    "Options",
    "check",
    "evaluate",
    "make_options",
    "require_derivation",
    "torch_threads_for",
    "validated_point",
    "whole",
    "with_diagnoses",
]


def check(
    derivation: Derivation,
    inputs: Mapping[str, Any],
    *,
    dtype: Any = "float64",
    grad_output: Any = None,
    directions: int = 16,
    elementwise_limit: int = 32,
    seed: int = 0,
    deadline: float | None = DEFAULT_DEADLINE,
) -> Report:
    """Check ``derivation`` at one concrete point.

    ``inputs`` maps every name in ``derivation.shapes`` to an array (numpy, torch or nested
    lists); nothing passed is modified. ``dtype`` is what the backward receives ('float64'
    or 'float32'); the references are always float64. ``grad_output`` seeds a non-scalar
    forward (drawn from ``seed`` when omitted). ``directions`` random finite-difference probes
    are spread over the ``wrt`` inputs larger than ``elementwise_limit`` elements; smaller
    ones are probed element by element. A forward or backward call past ``deadline``
    seconds fails with a ``timeout`` problem (None: no limit).

    >>> from gradcheck.derivations import BUILTINS
    >>> import numpy as np
    >>> chain = next(d for d in BUILTINS if d.name == "scalar_chain")
    >>> point = {"x": np.arange(3.0), "y": np.ones(3), "a1": 2.0, "b1": 1.0, "a2": 0.5, "b2": 0.0}
    >>> check(chain, point).ok
    True
    """
    derivation = require_derivation(derivation)
    options = make_options(dtype, directions, elementwise_limit, seed)
    point, sizes, params = validated_point(derivation, inputs)

    def run() -> Report:
        report = evaluate(derivation, point, sizes, options, grad_output, params)
        return explain_failure(derivation, with_diagnoses(derivation, report), options)

    return guarded_search(derivation.name, options, validated_deadline(deadline), run)


def with_diagnoses(derivation: Derivation, report: Report) -> Report:
    """The report of a failure, with what the wrong gradients look like in words: every
    finding at its own example (``confirm.findings_at``, which also weighs them against more
    points), a reproduced mistake first, as the most specific thing to say."""
    if report.verdict != "fail" or report.example is None:
        return report
    found = [finding.text for finding in findings_at(derivation, report) if finding.said]
    return replace(report, diagnoses=tuple(dict.fromkeys(found)))
