"""Issue 20, goal 4: a failure shrunk to a 1x1 or 1x2 example is pictured again at a larger
failing point, where the pattern that tells what is wrong (a whole column) shows."""

from __future__ import annotations

import numpy as np

from gradcheck import Derivation, verify


def _first_column_tripled(x):
    return {"x": 2 * x * np.where(np.arange(x.shape[1]) == 0, 3.0, 1.0)}


def _square(backward) -> Derivation:
    return Derivation(
        name="square",
        forward=lambda x: (x**2).sum(),
        backward=backward,
        shapes={"x": ("N", "D")},
        wrt=["x"],
    )


def test_a_failure_shrunk_to_one_element_is_also_pictured_at_a_larger_failing_point():
    report = verify(_square(_first_column_tripled), seed=0, max_examples=50)
    assert report.verdict == "fail"
    assert max(np.shape(report.example.inputs["x"])) < 4  # the shrunk example stays small
    larger = report.larger
    assert larger is not None
    n, d = larger.example.inputs["x"].shape
    assert n >= 4 and d >= 4 and n <= 24 and d <= 24
    # the picture is of the same failure: exactly the first column is wrong there
    pair = larger.gradients["x"]
    wrong = np.abs(pair.hand - pair.reference) > pair.allowed
    assert wrong[:, 0].all() and not wrong[:, 1:].any()
    html = report._repr_html_()
    assert "The same failure at a larger failing point" in html
    assert f"N={n}, D={d}" in html


def test_a_pass_has_no_larger_picture():
    report = verify(_square(lambda x: {"x": 2 * x}), seed=0, max_examples=20)
    assert report.verdict == "pass" and report.larger is None
