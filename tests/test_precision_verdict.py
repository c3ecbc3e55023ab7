"""A float32 failure is called lost precision only when the same backward, run in float64 at
the same point, is itself clean and right."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import Derivation, check


def _factor_in_float32(float64_gradient):
    """A backward wrong by 1.5 in float32; in float64 it returns ``float64_gradient(x)``."""

    def backward(x):
        if x.dtype == np.float32:
            return {"x": 3 * x}
        return float64_gradient(x)

    return Derivation(
        name="squares",
        forward=lambda x: (x**2).sum(),
        backward=backward,
        shapes={"x": ("N",)},
        wrt=["x"],
    )


@pytest.mark.parametrize(
    "float64_gradient, precision",
    [
        (lambda x: {"x": 2 * x}, True),
        (lambda x: {"x": 3 * x}, False),
        (lambda x: {}, False),
    ],
    ids=[
        "right in float64: precision",
        "wrong in float64 too: not precision",
        "float64 run has its own problem (missing gradient): not precision",
    ],
)
def test_a_float32_failure_is_precision_only_where_float64_runs_clean_and_right(
    float64_gradient, precision
):
    report = check(_factor_in_float32(float64_gradient), {"x": np.array([1.0, -2.0, 3.0])},
                   dtype="float32")  # fmt: skip
    assert report.verdict == "fail"
    kinds = [p.kind for p in report.problems]
    assert "mismatch" in kinds
    assert ("precision" in kinds) is precision
