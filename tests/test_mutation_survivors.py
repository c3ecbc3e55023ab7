"""Properties that a mutation run of the engine found unstated (docs/mutation.md).

Each test here fails on at least one mutant that the rest of the suite let pass (one of
mutmut's, or a table constant loosened by hand) and passes on the real code; the mutant it
kills is named beside it. Survivors judged harmless are listed, with the reason, in
docs/mutation.md.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gradcheck import Derivation, check
from gradcheck.compare import compare
from gradcheck.evaluation.directions import random_bits
from gradcheck.special_values import Special, apply, special_note, special_schedule
from gradcheck.tolerances import for_dtype

# -- random_bits: the random signs of every input of 4096 elements or more -----------------


def test_random_bits_gives_exactly_size_zeros_and_ones_for_any_size():
    # killed: random_bits count=None (sizes rounded up to 8), size=None (one byte drawn)
    for size in (1, 7, 9, 4099):
        bits = random_bits(np.random.default_rng(0), size)
        assert bits.shape == (size,), size
        assert set(np.unique(bits)) <= {0, 1}, size


def test_random_bits_are_random_up_to_the_last_one():
    # killed: too few bytes drawn ((size - 7) // 8, (size + 7) // 9): the tail was zero-padded,
    # so the last elements of every large probe moved the same way
    tails = [random_bits(np.random.default_rng(seed), 4099)[-8:] for seed in range(20)]
    assert any(tail.any() for tail in tails)
    bits = random_bits(np.random.default_rng(0), 4099)
    assert 0.45 < bits[-1024:].mean() < 0.55


def test_random_bits_draw_every_byte_value():
    # killed: bytes drawn from 1..255: the all-zero pattern of eight neighbours never came out
    bits = random_bits(np.random.default_rng(0), 8 * 20_000).reshape(-1, 8)
    assert len(np.unique(np.packbits(bits, axis=1))) == 256


# -- precision: a float32 failure that the same backward gets right in float64 -------------


def _shifted(x: torch.Tensor, c: float) -> torch.Tensor:
    return x**2 / 2 + 0 * c  # an output per element: the backward is seeded by grad_output


def _shifted_backward(x: np.ndarray, c: float, grad_output: np.ndarray) -> dict[str, np.ndarray]:
    # (x + c) - c is x in float64 and x rounded to a 1/128 grid in float32 at c = 1e5
    return {"x": grad_output * ((x + c) - c)}


SHIFTED = Derivation(
    name="shifted",
    forward=_shifted,
    backward=_shifted_backward,
    shapes={"x": ("N",)},
    wrt=["x"],
    params={"c": [1e5]},
)
SHIFTED_POINT = {"x": np.array([0.3, -1.1, 0.7]), "c": 1e5}


def test_a_cancelling_float32_backward_with_params_and_grad_output_is_called_precision():
    # killed: the float64 rerun without grad_output, or without params (it then raised and
    # the failure was left a plain mismatch); "mismatch" misspelt among the kinds it excuses
    assert check(SHIFTED, SHIFTED_POINT).verdict == "pass"
    report = check(SHIFTED, SHIFTED_POINT, dtype="float32")
    assert report.verdict == "fail", str(report)
    assert [p.kind for p in report.problems] == ["mismatch", "precision"], str(report)
    # killed: the reference left unnamed: the reader is told what the hand gradient, in which
    # dtype, was compared with
    assert "does not match torch autograd (float32 hand vs float64)" in str(report)


def test_the_precision_diagnosis_says_what_to_do():
    # killed: the message's last sentence changed (its fragments are what a reader acts on)
    report = check(SHIFTED, SHIFTED_POINT, dtype="float32")
    precision = next(p for p in report.problems if p.kind == "precision")
    assert "it loses its accuracy in float32" in precision.message
    assert "it is not wrongly derived. Rewrite it to be stable (e.g. subtract the max" in (
        precision.message
    )


# -- Tolerance: the absolute part of an allowance ------------------------------------------


def test_the_absolute_allowance_is_atol_scale_times_the_largest_element_above_any_floor():
    # killed: the largest element ignored (the floor alone), or taken of an empty array
    tolerance = for_dtype("float64")
    reference = np.array([-3.0, 2.0, 0.5])
    assert tolerance.atol(reference) == tolerance.atol_scale * 3.0
    assert tolerance.atol(reference, floor=1e-30) == tolerance.atol_scale * 3.0
    assert tolerance.atol(reference, floor=1.0) == 1.0
    assert tolerance.atol(np.array([]), floor=2e-12) == 2e-12
    assert tolerance.atol(np.array([])) == tolerance.atol_floor


def test_a_floor_given_to_allowed_is_the_least_allowed_difference_everywhere():
    # killed: allowed() dropping its floor for the table's fixed one
    reference = np.array([0.0, 1e-3, -2.0])
    allowed = for_dtype("float32").allowed(reference, floor=0.5)
    assert (allowed >= 0.5).all()
    assert allowed[0] == 0.5


# -- the float64 table: the absolute part --------------------------------------------------


def _half_square_norm(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum() / 2


def _off_where_zero(delta: float) -> Derivation:
    def backward(x: np.ndarray) -> dict[str, np.ndarray]:
        gradient = x.copy()
        gradient[2] += delta  # where x, and so the true gradient, is exactly 0
        return {"x": gradient}

    return Derivation(
        name="half_square_norm", forward=_half_square_norm, backward=backward,
        shapes={"x": ("N",)}, wrt=["x"],
    )  # fmt: skip


def test_a_float64_gradient_off_by_2e_8_where_the_reference_is_zero_fails():
    # killed: the float64 atol_scale 1e-9 -> 1e-8. Where the reference is 0 only the absolute
    # part allows anything: 1e-9 times the gradient's typical size (|f| / rms(x) = 2.7 here).
    point = {"x": np.array([2.0, -1.5, 0.0, 1.0])}
    report = check(_off_where_zero(2e-8), point)
    assert report.verdict == "fail", str(report)
    assert [p.kind for p in report.problems] == ["mismatch"], str(report)
    assert check(_off_where_zero(1e-12), point).verdict == "pass"


def test_a_float32_gradient_off_by_1e_3_where_the_reference_is_zero_fails():
    # killed: the float32 atol_scale 1e-4 -> 1e-3 (allowed there: 1e-4 * 2.7, against 2.7e-3)
    point = {"x": np.array([2.0, -1.5, 0.0, 1.0])}
    report = check(_off_where_zero(1e-3), point, dtype="float32")
    assert report.verdict == "fail", str(report)
    assert [p.kind for p in report.problems] == ["mismatch"], str(report)
    assert check(_off_where_zero(0.0), point, dtype="float32").verdict == "pass"


# -- the float64 conditioning cap: rounding noise excuses rounding, never a bug --------------


def _spread(x: torch.Tensor) -> torch.Tensor:
    return ((x - x.mean()) ** 2).sum()


def _spread_off(delta: float) -> Derivation:
    def backward(x: np.ndarray) -> dict[str, np.ndarray]:
        gradient = 2 * (x - x.mean())
        gradient[0] += delta
        return {"x": gradient}

    return Derivation(
        name="spread", forward=_spread, backward=backward, shapes={"x": ("N",)}, wrt=["x"],
        bounds={"x": (-1e9, 1e9)},
    )  # fmt: skip


def test_an_ill_conditioned_point_does_not_excuse_a_bug_above_the_cap():
    # killed: the float64 conditioning_cap 1e-5 -> 1e-4. Values ~1e8 a hundredth apart: the
    # gradient (~0.03) moves by ~1e-6 when the inputs are nudged by their rounding, but only
    # 1e-5 of the largest element (3e-7) may be excused, so an error of 1e-6 still fails.
    point = {"x": 1e8 + np.array([0.0, 0.01, 0.02, 0.03])}
    report = check(_spread_off(1e-6), point)
    assert report.verdict == "fail", str(report)
    assert [p.kind for p in report.problems] == ["mismatch"], str(report)
    assert check(_spread_off(0.0), point).verdict == "pass"


def test_in_float32_an_ill_conditioned_point_does_not_excuse_a_bug_above_the_cap():
    # killed: the float32 conditioning_cap 1e-2 -> 1e-1. Values ~1e4 in float32 are rounded
    # by ~1e-3: the gradient (~3) moves by ~0.1 when nudged, 1e-2 of it (0.03) is excused
    point = {"x": 1e4 + np.array([0.0, 0.7, 1.3, 2.1])}
    report = check(_spread_off(0.1), point, dtype="float32")
    assert report.verdict == "fail", str(report)
    assert [p.kind for p in report.problems] == ["mismatch"], str(report)
    assert check(_spread_off(0.0), point, dtype="float32").verdict == "pass"


# -- float32: torch's own rounding is excused, by DTYPE_SAFETY and no more ------------------


def _shifted_square(x: torch.Tensor) -> torch.Tensor:
    # torch in float32 rounds x + 1e5 to a 1/128 grid: its own gradient is off by ~3e-3
    return (((x + 1e5) - 1e5) ** 2).sum() / 2


def _shifted_square_off(delta: float) -> Derivation:
    def backward(x: np.ndarray) -> dict[str, np.ndarray]:
        gradient = x.copy()
        gradient[0] += delta
        return {"x": gradient}

    return Derivation(
        name="shifted_square", forward=_shifted_square, backward=backward,
        shapes={"x": ("N",)}, wrt=["x"],
    )  # fmt: skip


def test_a_float32_bug_far_above_torchs_own_float32_rounding_fails():
    # killed: DTYPE_SAFETY 8 -> 80. The exact gradient passes, excused torch's rounding
    # (8 times it: 0.027 here); an error of 0.2 is not excused, as 80 times would (0.25).
    point = {"x": np.array([1.3, -1.1, 0.7, 2.9])}
    assert check(_shifted_square_off(0.0), point, dtype="float32").verdict == "pass"
    report = check(_shifted_square_off(0.2), point, dtype="float32")
    assert report.verdict == "fail", str(report)
    assert [p.kind for p in report.problems] == ["mismatch"], str(report)


# -- compare: the worst failing element, not the worst element ------------------------------


def test_a_mismatch_reports_the_worst_failing_elements_with_their_own_allowances():
    # element 1 differs most (3.0) but is allowed 5.0; 2 fails by the most absolute, 3 by the
    # most relative; each is reported with what was allowed there, in the unit given
    expected = np.array([1.0, -4.0, 2.0, 0.01])
    actual = np.array([1.05, -1.0, 2.3, 0.06])
    allowed = np.array([0.1, 5.0, 0.1, 0.001])
    mismatch = compare(actual, expected, allowed, parameter="w", reference="r", unit="probes")
    assert mismatch is not None
    assert (mismatch.mismatched, mismatch.total, mismatch.share) == (2, 4, 0.5)
    assert mismatch.max_abs == pytest.approx(0.3) and mismatch.max_abs_index == (2,)
    assert mismatch.max_abs_allowed == 0.1
    assert mismatch.max_rel == pytest.approx(5.0) and mismatch.max_rel_index == (3,)
    assert mismatch.max_rel_allowed == pytest.approx(0.1)
    assert mismatch.unit == "probes" and mismatch.zero_reference_allowed is None
    assert (mismatch.parameter, mismatch.reference) == ("w", "r")


def test_a_difference_equal_to_its_allowance_is_not_a_mismatch():
    assert compare(np.array([1.5, -2.0]), np.array([1.0, -2.0]), 0.5, parameter="w",
                   reference="r") is None  # fmt: skip


def test_a_nan_element_is_the_worst_difference_at_its_own_index():
    mismatch = compare(
        np.array([2.5, np.nan]), np.array([2.0, 1.0]), 0.1, parameter="w", reference="r"
    )
    assert mismatch is not None and mismatch.mismatched == 2
    assert mismatch.max_abs == np.inf and mismatch.max_abs_index == (1,)
    assert mismatch.max_rel == np.inf and mismatch.max_rel_index == (1,)


def test_a_hand_gradient_too_small_is_a_mismatch_as_much_as_one_too_large():
    # killed: |actual - expected| taken out of place and dropped: every negative difference
    # then passed, whatever its size
    mismatch = compare(np.array([1.0, -7.0]), np.array([1.0, -4.0]), 0.5, parameter="w",
                       reference="r")  # fmt: skip
    assert mismatch is not None and mismatch.mismatched == 1
    assert mismatch.max_abs == 3.0 and mismatch.max_abs_index == (1,)


def test_zero_reference_elements_are_compared_without_numpy_warnings():
    # killed: the errstate around the relative differences dropped: 0/0 and x/0 warned on
    # every report of a gradient with an exact zero in it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mismatch = compare(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.0, 2.0]), 0.1,
                           parameter="w", reference="r")  # fmt: skip
    assert mismatch is not None and mismatch.max_rel == np.inf
    assert mismatch.zero_reference_allowed == 0.1


# -- special_note: the line a report gives to the special points a search met ---------------


def test_the_special_points_note_lists_inputs_by_name_and_kinds_in_table_order():
    # killed: the separator between kinds changed
    note = special_note({"x": {"ties", "all_zero"}, "w": {"zero_elements"}})
    assert note == "special points tried: w (some zeros); x (all zero, ties)"


def test_a_derivation_without_float_inputs_has_an_empty_special_schedule():
    # killed: max() of no inputs without its default (it raised, or ranged over None)
    assert special_schedule({}) == []


@pytest.mark.parametrize("kind", ["zero_elements", "constant", "ties"])
def test_a_special_point_is_made_the_same_way_from_the_same_seed(kind):
    # killed: apply() drawing from a fresh generator rather than the special's seed: a failing
    # special example could then not be made again, at its size or at a shrunk one
    value = np.linspace(-1.0, 1.0, 64)
    first = apply(Special(kind, "x", 5), value, low=-1.0, high=1.0)
    again = apply(Special(kind, "x", 5), value, low=-1.0, high=1.0)
    assert np.array_equal(first, again)


def test_a_zero_kind_on_an_input_kept_off_zero_is_made_constant_instead():
    # killed: the fallback kind misspelt: the input was left as it was, not special at all
    value = np.array([1.25, 1.5, 1.75, 1.9])
    made = apply(Special("all_zero", "x", 1), value, low=1.0, high=2.0)
    assert len(np.unique(made)) == 1
    assert made[0] in value
