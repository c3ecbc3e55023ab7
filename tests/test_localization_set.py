"""The labelled set of tests/localization_set.py: each case found where it is held to be,
and no case, found or not, ever given a wrong line (issue 20, goal 1; issue 18, item 18)."""

from __future__ import annotations

import pytest

from tests.localization_set import CASES, outcome


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}: {c.label}")
def test_the_first_wrong_line_is_the_labelled_one_or_none(case):
    verdict, said = outcome(case)
    assert verdict != "wrong", said
    if case.found:
        assert verdict == "right", said
