"""Every planted bug is found by verify, and the report says what is wrong."""

from __future__ import annotations

import pytest

from gradcheck import Report, verify
from gradcheck.derivations import BUILTINS
from tests import mutants


def _kinds(report: Report) -> set[str]:
    return {problem.kind for problem in report.problems}


@pytest.mark.parametrize("derivation", BUILTINS, ids=lambda d: f"{d.name} passes")
def test_every_builtin_derivation_passes_verify(derivation):
    report = verify(derivation)
    assert report.verdict == "pass", str(report)
    assert report.examples >= 10


@pytest.mark.parametrize(
    ("derivation", "kind", "parameter", "fragment"),
    [
        (mutants.seed001_mask_from_gradient, "mismatch", "w1", "Finite differences agree"),
        (mutants.seed001_mask_from_gradient_torch, "mismatch", "w1", "torch autograd"),
        (mutants.seed004_stale_w2, "mismatch", "w1", "Mismatched elements"),
        (mutants.missing_factor_two_net, "mismatch", "w1", "Greatest relative difference"),
        (mutants.flipped_sign_net, "mismatch", "w2", "Greatest absolute difference"),
        (mutants.missing_relu_mask_net, "mismatch", "w1", "Mismatched elements"),
        (mutants.transposed_weight, "mismatch", "weight", "Mismatched elements"),
        (mutants.missing_bias_gradient, "missing", "b1", "no gradient for 'b1'"),
        (mutants.mutated_input_net, "mutated", "w1", "modified its argument 'w1' in place"),
        (mutants.nan_result_net, "non_finite", "w2", "NaN"),
    ],
    ids=[
        "seed 001 mask from grad_h fails on w1",
        "seed 001 torch mask from grad_h fails on w1",
        "seed 004 stale w2 fails on w1",
        "missing factor 2 fails",
        "flipped sign fails on w2",
        "missing relu mask fails on w1",
        "transposed weight gradient fails",
        "missing bias gradient is named",
        "mutated input is named",
        "NaN result is named",
    ],
)
def test_planted_bug_fails_with_a_report_naming_it(derivation, kind, parameter, fragment):
    report = verify(derivation)
    assert report.verdict == "fail"
    assert not report.ok
    matching = [p for p in report.problems if p.kind == kind and p.parameter == parameter]
    assert matching, str(report)
    assert fragment in str(report)
    assert "Smallest failing example" in str(report)
    assert f"seed {report.seed}" in str(report)


def test_seed001_bug_is_shrunk_to_a_tiny_example():
    report = verify(mutants.seed001_mask_from_gradient)
    assert report.example is not None
    assert all(size <= 2 for size in report.example.dims.values()), str(report)


def test_seed002_squeeze_breaks_at_batch_or_width_one():
    report = verify(mutants.seed002_squeeze)
    assert report.verdict == "fail"
    assert report.example is not None
    dims = report.example.dims
    assert dims["N"] == 1 or 1 in (dims["D0"], dims["D1"], dims["D2"]), str(report)
    assert _kinds(report) & {"shape", "raised", "mismatch"}, str(report)


def test_a_bug_above_n_12_is_found_and_shrunk_to_n_13():
    report = verify(mutants.large_batch_only_net)
    assert report.verdict == "fail", str(report)
    assert report.example is not None
    assert report.example.dims["N"] == 13


def test_the_same_seed_reproduces_the_same_smallest_example():
    first = verify(mutants.missing_factor_two_net, seed=7, max_examples=20)
    second = verify(mutants.missing_factor_two_net, seed=7, max_examples=20)
    assert first.example is not None and second.example is not None
    assert first.example.dims == second.example.dims
    for name, value in first.example.inputs.items():
        assert (value == second.example.inputs[name]).all()


@pytest.mark.parametrize(
    "derivation",
    [mutants.correct_mask_less, mutants.correct_mask_less_equal],
    ids=["relu'(0)=1 convention passes", "relu'(0)=0 convention passes"],
)
def test_both_subgradient_conventions_pass_verify(derivation):
    assert verify(derivation).verdict == "pass"


def test_a_bug_only_for_square_weights_shrinks_with_both_dims_together():
    report = verify(mutants.square_only_bug)
    assert report.example is not None
    assert report.example.dims["D"] == report.example.dims["H"] == 2, str(report)
