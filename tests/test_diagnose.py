"""Each diagnosis, on a derivation that has exactly that bug, and never on a correct one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck import Derivation, check, verify
from gradcheck.derivations import BUILTINS
from gradcheck.diagnose import clean_factor, describe_factor, diagnose_gradient
from tests import mutants
from tests.catalogue import entry_for


def _diagnoses(derivation) -> str:
    report = verify(derivation)
    assert report.verdict == "fail", str(report)
    said = "\n".join(report.diagnoses)
    entry = entry_for(derivation)  # held to the catalogue's labels here, verified once
    if entry is not None:
        assert not [claim for claim in entry.must_not_name if claim in said], str(report)
        assert all(name in said for name in entry.must_name), str(report)
    return said


def _elementwise(backward, name):
    return Derivation(
        name=name,
        forward=lambda x: (torch.relu(x) ** 2).sum(),
        backward=backward,
        shapes={"x": ("N", "D")},
        wrt=["x"],
    )


def _rows_after_the_first_doubled(x):
    grad = 2 * np.maximum(x, 0)
    grad[1:] *= 2
    return {"x": grad}


@pytest.mark.parametrize(
    ("derivation", "fragment"),
    [
        (mutants.missing_factor_two_net, "off by a constant factor: hand = 1/2 x reference"),
        (mutants.mean_loss_summed_gradient, "off by a constant factor: hand = N (N="),
        (mutants.flipped_sign_net, "'w2' has its sign flipped"),
        (mutants.transposed_weight, "'weight' is transposed"),
        (mutants.seed001_mask_from_gradient, "'w1' is zero everywhere"),
        (
            _elementwise(lambda x: {"x": 2 * x}, "relu_mask_missing"),
            "where the reference is exactly zero, and right elsewhere: a mask",
        ),
        (
            _elementwise(_rows_after_the_first_doubled, "later_rows_doubled"),
            "right only in the first 1 rows",
        ),
        (mutants.large_batch_only_net, "fails only from N = 13"),
        (mutants.seed002_squeeze, "only when N = 1"),
        (mutants.nan_result_net, "'w2' is non-finite"),
        (mutants.mutated_input_net, "input 'w1' was mutated"),
    ],
    ids=[
        "missing factor 2 is a factor 1/2",
        "a sum for a mean is a factor N",
        "sign flip",
        "transposed weight",
        "all-zero gradient",
        "non-zero only where the ReLU is inactive",
        "right only in the first rows",
        "wrong only for N > 12",
        "wrong only when a dim is 1",
        "non-finite",
        "mutated input",
    ],
)
def test_each_kind_of_bug_gets_its_diagnosis(derivation, fragment):
    assert fragment in _diagnoses(derivation)


@pytest.mark.parametrize(
    ("derivation", "fragment"),
    [
        (mutants.seed001_mask_from_gradient, "the mask comes from the wrong tensor"),
        (mutants.seed001_mask_from_gradient_torch, "the mask comes from the wrong tensor"),
        (mutants.seed004_stale_w2, "'w2' was updated before it was used to back-propagate"),
        (mutants.seed002_squeeze, "collapses a size-1 dim"),
        (mutants.missing_relu_mask_net, "ReLU masks left out"),
    ],
    ids=[
        "seed 001 numpy",
        "seed 001 torch",
        "seed 004 stale w2",
        "seed 002 squeeze",
        "missing mask",
    ],
)
def test_seed_bugs_get_the_right_diagnosis(derivation, fragment):
    assert fragment in _diagnoses(derivation)


def test_seed004_diagnosis_recovers_the_learning_rate():
    assert "w2 - 0.01 * grad_w2" in _diagnoses(mutants.seed004_stale_w2)


def test_a_one_element_gradient_is_not_called_off_by_an_odd_factor():
    found = diagnose_gradient(
        "w", np.array([1.02]), np.array([1.0]), np.array([1e-9]), inputs={}, dims={}
    )
    assert not any("factor" in line for line in found)


def test_factor_descriptions():
    assert describe_factor(2.0, {}) == "2"
    assert describe_factor(0.25, {"N": 3}) == "1/4"
    assert describe_factor(1 / 7, {"N": 7}) == "1/N (N=7)"
    assert describe_factor(1.0123, {}) == "1.0123"
    assert clean_factor(1.0123, {}) is None


def test_a_gradient_that_matches_gets_no_pattern_diagnosis():
    reference = np.array([[1.0, -2.0], [0.5, 3.0]])
    allowed = np.full(reference.shape, 1e-9)
    assert diagnose_gradient("w", reference.copy(), reference, allowed, inputs={}, dims={}) == []


def test_rounding_sized_differences_are_not_called_a_factor_of_1():
    reference = np.array([1.0, 2.0, 3.0])
    found = diagnose_gradient(
        "w", reference * (1 + 1e-12), reference, np.full(3, 1e-15), inputs={}, dims={}
    )
    assert not any("factor" in line for line in found)


@pytest.mark.parametrize("derivation", BUILTINS[:2], ids=["numpy net", "torch net"])
def test_no_known_mistake_reproduces_a_correct_gradient(derivation):
    from gradcheck.counterfactual import explain
    from gradcheck.tolerances import for_dtype

    point = {
        "x": np.array([[1.0, -0.5]]),
        "y": np.array([[0.3]]),
        "w1": np.array([[0.7, -1.2], [0.4, 0.9]]),
        "w2": np.array([[1.1], [-0.8]]),
    }
    report = check(derivation, point)
    assert report.verdict == "pass" and report.example is not None
    assert explain(derivation, report.example, report.gradients, for_dtype("float64")) == []


def test_check_diagnoses_at_a_single_point_too():
    point = {"x": np.ones((2, 2)), "y": np.zeros((2, 2)), "w1": np.eye(2), "w2": np.eye(2)}
    report = check(mutants.flipped_sign_net, point)
    assert "'w2' has its sign flipped" in "\n".join(report.diagnoses)


def test_a_mask_from_the_wrong_side_is_named_by_the_sign_of_the_input():
    def backward(x):
        return {"x": 2 * np.maximum(x, 0) + 5.0 * (x < 0) * (x + 10)}

    point = {"x": np.array([[1.0, -2.0], [-0.5, 3.0]])}
    report = check(_elementwise(backward, "leaky_where_negative"), point)
    assert "wrong only where x < 0" in "\n".join(report.diagnoses)
