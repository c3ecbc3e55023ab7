"""A Function compared with itself run another way (a layout, a batch, an unused output) is
allowed its own rounding at the point: at a constant row of a layer norm, (x - mean) is
rounding alone and 1/std is 316, so the gradient of w is 0 in one order and 2e-11 in
another. It failed the strided check once every special kind was met by schedule."""

from __future__ import annotations

from examples.layer_norm import correct
from gradcheck import verify


def test_the_layer_norm_example_passes_a_search_that_meets_constant_rows():
    report = verify(correct, seed=0, max_examples=50)
    assert report.ok, report
