"""Assertions for ordinary tests: ``assert_gradients_close`` and the error it raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradcheck.derivation import Derivation
from gradcheck.report import Report

__all__ = ["GradcheckFailure", "assert_gradients_close"]


class GradcheckFailure(AssertionError):
    """A derivation disagrees with its references; ``report`` holds the evidence."""

    def __init__(self, report: Report) -> None:
        super().__init__(str(report))
        self.report = report


def assert_gradients_close(
    derivation: Derivation,
    inputs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Report:
    """Check ``derivation`` at ``inputs`` (or ``verify`` it over a search when omitted) and
    raise ``GradcheckFailure``, an ``AssertionError``, with the report unless it passes.

    >>> from gradcheck.derivations import BUILTINS
    >>> assert_gradients_close(BUILTINS[2], max_examples=5, seed=0).verdict
    'pass'
    """
    __tracebackhide__ = True
    if inputs is None:
        from gradcheck.search import verify

        report = verify(derivation, **options)
    else:
        from gradcheck.checking import check

        report = check(derivation, inputs, **options)
    if not report.ok:
        raise GradcheckFailure(report)
    return report
