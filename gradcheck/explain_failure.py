"""What a failure report says about why: confirmed diagnoses and the first wrong line.

Runs only on a failure, after the verdict: ``confirm`` keeps the diagnoses that hold at more
failing points, ``localize`` traces the hand backward on the failing example.
"""

from __future__ import annotations

from dataclasses import replace

from gradcheck.confirm import confirm
from gradcheck.derivation import Derivation
from gradcheck.evaluation import Options
from gradcheck.localize import localize
from gradcheck.report import Report

__all__ = ["explain_failure"]


def explain_failure(derivation: Derivation, report: Report, options: Options) -> Report:
    """``report`` with its diagnoses confirmed and its localization, when it is a failure."""
    if report.verdict != "fail" or report.example is None:
        return report
    report = confirm(derivation, report, options)
    return replace(report, localization=localize(derivation, report))
