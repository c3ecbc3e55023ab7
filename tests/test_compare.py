"""compare() finds what differs and where, in torch.testing's terms."""

from __future__ import annotations

import numpy as np

from gradcheck.compare import compare
from gradcheck.messages import format_mismatch


def test_equal_within_allowance_is_none():
    expected = np.array([1.0, 2.0, 3.0])
    assert compare(expected + 1e-9, expected, 1e-8, parameter="w", reference="r") is None


def test_mismatch_counts_and_locates_the_worst_differences():
    expected = np.array([1.0, 2.0, 3.0])
    actual = np.array([1.0, 4.0, 3.5])
    mismatch = compare(actual, expected, 0.1, parameter="w", reference="torch autograd")
    assert mismatch is not None
    assert (mismatch.mismatched, mismatch.total) == (2, 3)
    assert mismatch.max_abs == 2.0 and mismatch.max_abs_index == (1,)
    assert mismatch.max_rel == 1.0 and mismatch.max_rel_index == (1,)
    lines = format_mismatch(mismatch)
    assert lines[0] == "Mismatched elements: 2 / 3 (66.7%)"
    assert lines[1] == "Greatest absolute difference: 2 at index (1,) (up to 0.1 allowed)"
    assert lines[2].startswith("Greatest relative difference: 1 at index (1,)")


def test_nan_in_the_hand_gradient_is_a_mismatch():
    mismatch = compare(
        np.array([np.nan, 1.0]), np.array([0.0, 1.0]), 1.0, parameter="w", reference="r"
    )
    assert mismatch is not None and mismatch.mismatched == 1


def test_index_of_a_matrix_is_a_tuple():
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[1, 2] = 5.0
    mismatch = compare(actual, expected, 1e-3, parameter="w", reference="r")
    assert mismatch is not None and mismatch.max_abs_index == (1, 2)


def test_where_the_reference_is_zero_the_relative_line_gives_the_absolute_allowance():
    mismatch = compare(
        np.array([[1e-3, 1.0]]), np.array([[0.0, 1.0]]), 1e-7, parameter="w", reference="r"
    )
    assert mismatch is not None
    lines = format_mismatch(mismatch)
    assert lines[2] == (
        "Greatest relative difference: inf at index (0, 0) (the reference is 0 there: "
        "only an absolute difference is allowed, up to 1e-07)"
    )
    assert not any("up to inf allowed" in line for line in lines)


def test_where_the_reference_is_not_zero_the_relative_allowance_is_given_as_before():
    mismatch = compare(np.array([2.0]), np.array([1.0]), 1e-7, parameter="w", reference="r")
    assert mismatch is not None and mismatch.zero_reference_allowed is None
    assert format_mismatch(mismatch)[2].endswith("(up to 1e-07 allowed)")
