"""The strategies draw what a gradient check needs: every size, no kinks, no oddities."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck.derivations import two_layer
from gradcheck.strategies import KINK_MARGIN, array, dims, examples, seeded_inputs, values


@given(values(low=-2.0, high=2.0))
def test_values_are_finite_normal_and_off_the_zero_band(value):
    assert np.isfinite(value)
    assert abs(value) >= 2.0 / KINK_MARGIN


@given(values(low=0.5, high=3.0))
def test_values_in_a_positive_range_stay_in_it(value):
    assert 0.5 <= value <= 3.0


@given(st.data())
def test_arrays_large_and_small_stay_in_bounds_and_off_the_zero_band(data):
    shape = data.draw(st.sampled_from([(2, 3), (40, 3), (1,), ()]))
    low, high = data.draw(st.sampled_from([(-1.0, 1.0), (-50.0, 50.0), (-10.0, 3.0), (2.0, 5.0)]))
    drawn = data.draw(array(shape, low=low, high=high))
    assert drawn.shape == shape
    assert np.all((low <= drawn) & (drawn <= high))
    if low < 0 < high:
        assert np.all(np.abs(drawn) >= max(-low, high) / KINK_MARGIN)


def test_seeded_arrays_spread_over_both_sides_of_a_wide_range():
    from gradcheck.strategies import _seeded_array

    drawn = _seeded_array((2000,), -50.0, 50.0, 0)
    assert drawn.min() < -40 and drawn.max() > 40
    assert np.abs(drawn).min() >= 50.0 / KINK_MARGIN
    assert np.abs(drawn).min() < 1.0  # the band is narrow: values near zero are drawn too


@settings(max_examples=200)
@given(examples(two_layer.two_layer_relu_numpy))
def test_examples_share_symbolic_dims_across_inputs(example):
    sizes = example.dims
    assert example.inputs["x"].shape == (sizes["N"], sizes["D_in"])
    assert example.inputs["w1"].shape == (sizes["D_in"], sizes["H"])
    assert example.inputs["w2"].shape == (sizes["H"], sizes["D_out"])


def test_dims_reach_both_ends_of_the_default_range():
    seen: set[int] = set()

    @settings(max_examples=200, derandomize=True)
    @given(dims(two_layer.two_layer_relu_numpy))
    def collect(sizes):
        seen.update(sizes.values())

    collect()
    assert 1 in seen and 16 in seen and any(13 <= s <= 16 for s in seen)


def test_seeded_inputs_are_reproducible_and_not_degenerate():
    sizes = {"N": 4, "D_in": 3, "H": 3, "D_out": 2}
    first = seeded_inputs(two_layer.two_layer_relu_numpy, sizes, 5)
    second = seeded_inputs(two_layer.two_layer_relu_numpy, sizes, 5)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert len(np.unique(first["w1"])) == first["w1"].size
    assert not np.allclose(first["w1"], first["w1"].T)
