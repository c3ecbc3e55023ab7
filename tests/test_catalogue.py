"""The labelled catalogue: every report names the known cause, and no mechanism that is not.

Each entry of ``tests/catalogue.py`` is verified with a fixed seed; its diagnoses must hold
every ``must_name`` fragment and none of its ``must_not_name`` ones, and where the entry
names the line the bug is on, the report's "First wrong line" must be that line.
"""

from __future__ import annotations

import pytest

from gradcheck import verify
from tests.catalogue import CATALOGUE


@pytest.fixture(scope="module")
def reports():
    return {}


def _report(entry, reports):
    if entry.label not in reports:
        reports[entry.label] = verify(entry.derivation, seed=0, max_examples=10)
    return reports[entry.label]


@pytest.mark.parametrize("entry", [e for e in CATALOGUE if e.in_suite], ids=lambda e: e.label)
def test_a_known_mistake_is_named_and_nothing_false_is_said(entry, reports):
    report = _report(entry, reports)
    assert report.verdict == "fail", str(report)
    said = "\n".join(report.diagnoses)
    for fragment in entry.must_name:
        assert fragment in said, str(report)
    for fragment in entry.must_not_name:
        assert fragment not in said, str(report)


@pytest.mark.parametrize(
    "entry", [e for e in CATALOGUE if e.wrong_line is not None], ids=lambda e: e.label
)
def test_the_first_wrong_line_is_the_line_with_the_bug(entry, reports):
    report = _report(entry, reports)
    found = report.localization
    assert found is not None, str(report)
    assert entry.wrong_line in found.code, str(report)
    assert "First wrong line: " in str(report)
