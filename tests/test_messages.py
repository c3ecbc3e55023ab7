"""The report text, built by pure functions, tested by fragments."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradcheck.compare import Mismatch
from gradcheck.messages import format_example, format_report
from gradcheck.report import Example, Problem, Report

MISMATCH = Mismatch(
    parameter="w1",
    reference="torch autograd",
    mismatched=2,
    total=3,
    max_abs=2.0,
    max_abs_index=(1, 0),
    max_abs_allowed=1e-5,
    max_rel=1.0,
    max_rel_index=(1, 0),
    max_rel_allowed=1.3e-6,
)
EXAMPLE = Example(dims={"N": 1, "D": 2}, inputs={"x": np.array([[1.0, -0.5]])})


def _report(**changes):
    base = {
        "derivation": "net",
        "verdict": "fail",
        "problems": (Problem("mismatch", "gradient for 'w1' is wrong", "w1", MISMATCH),),
        "example": EXAMPLE,
        "seed": 42,
        "examples": 17,
        "reproduce": "gradcheck verify net.py --seed 42",
    }
    return Report(**{**base, **changes})


def test_failure_report_names_derivation_parameter_and_reference():
    text = format_report(_report())
    assert text.splitlines()[0] == "gradcheck: net FAILED (float64)"
    assert "- [w1] mismatch: gradient for 'w1' is wrong" in text
    assert "Mismatched elements: 2 / 3 (66.7%)" in text
    assert "Greatest absolute difference: 2 at index (1, 0) (up to 1e-05 allowed)" in text
    assert "Greatest relative difference: 1 at index (1, 0) (up to 1.3e-06 allowed)" in text


def test_failure_report_shows_smallest_example_seed_and_reproduction():
    text = format_report(_report())
    assert "Smallest failing example (x(1, 2)):" in text
    assert "dims: N=1, D=2" in text
    assert "x = [[ 1.  -0.5]]" in text
    assert "17 examples" in text and "seed 42" in text
    assert "reproduce: gradcheck verify net.py --seed 42" in text


def test_passing_report_is_short_and_shows_no_example():
    text = format_report(_report(verdict="pass", problems=()))
    assert "PASSED" in text
    assert "example" not in text.lower().replace("17 examples", "")
    assert "reproduce" not in text


def test_example_lines_indent_multi_row_arrays():
    lines = format_example(Example(dims={}, inputs={"w": np.eye(2)}), indent="  ")
    assert "\n".join(lines) == "  w = [[1. 0.]\n       [0. 1.]]"


def test_smallest_example_comes_before_the_numbers_and_diagnoses_are_named():
    text = format_report(_report(diagnoses=("'w1' has its sign flipped: hand = -reference",)))
    lines = text.splitlines()
    assert lines[1].startswith("Smallest failing example")
    assert "Diagnosis: 'w1' has its sign flipped: hand = -reference" in text
    assert text.index("Diagnosis:") < text.index("Mismatched elements")


def test_a_report_never_says_up_to_inf_allowed_where_the_reference_is_zero():
    at_zero = replace(
        MISMATCH,
        max_rel=float("inf"),
        max_rel_index=(0, 0),
        max_rel_allowed=float("inf"),
        max_abs_allowed=1e-7,
        zero_reference_allowed=1e-7,
    )
    text = format_report(_report(problems=(Problem("mismatch", "wrong", "w1", at_zero),)))
    assert "(up to inf allowed)" not in text
    assert "inf at index (0, 0) (the reference is 0 there: only an absolute difference" in text
    assert "allowed, up to 1e-07)" in text
