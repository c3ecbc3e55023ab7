"""Arguments refused where they enter the engine: check's inputs and grad_output, the dtype,
the strategies' ranges. Each refusal names the argument, its value and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import Derivation, DerivationError, check
from gradcheck.derivation import ParamChoices
from gradcheck.evaluation.options import make_options
from gradcheck.strategies import (
    ELEMENTWISE_LIMIT,
    dim_range,
    examples_at,
    integer_array,
    param,
    smallest_params_and_dims,
    values,
)


def _squares(**shapes):
    return Derivation(
        name="squares",
        forward=lambda x: (x**2).sum(),
        backward=lambda x: {"x": 2 * x},
        shapes=shapes or {"x": ("N",)},
        wrt=["x"],
    )


def _vjp():
    return Derivation(
        name="double",
        forward=lambda x: 2 * x,
        backward=lambda x, grad_output: {"x": 2 * grad_output},
        shapes={"x": ("N",)},
        wrt=["x"],
    )


def test_inputs_that_are_not_a_mapping_are_refused_by_type():
    with pytest.raises(DerivationError, match=r"check\('squares'\): inputs must be a mapping "
                       r"\{input name: array\}, got list\."):  # fmt: skip
        check(_squares(), [np.ones(3)])


def test_an_input_off_a_fixed_size_names_the_axis_and_the_size():
    with pytest.raises(DerivationError, match=r"inputs\['x'\] has size 4 on axis 1; shapes fixes "
                       r"it at 3\."):  # fmt: skip
        check(_squares(x=("N", 3)), {"x": np.ones((2, 4))})


def test_non_integers_in_an_integer_input_are_refused():
    derivation = Derivation(
        name="pick",
        forward=lambda x, label: x[label].sum(),
        backward=lambda x, label: {"x": np.bincount(label, minlength=x.size) * 1.0},
        shapes={"x": ("N",), "label": ("M",)},
        wrt=["x"],
        integers={"label": (0, 2)},
    )
    with pytest.raises(DerivationError, match=r"inputs\['label'\] is an integer input but holds "
                       r"non-integers\."):  # fmt: skip
        check(derivation, {"x": np.ones(3), "label": [0.5, 1.0]})
    assert check(derivation, {"x": np.ones(3), "label": [0.0, 2.0]}).verdict == "pass"


def test_a_grad_output_of_the_wrong_shape_names_both_shapes():
    with pytest.raises(DerivationError, match=r"grad_output has shape \(2,\), but the forward "
                       r"returns shape \(3,\)\."):  # fmt: skip
        check(_vjp(), {"x": np.ones(3)}, grad_output=np.ones(2))
    assert check(_vjp(), {"x": np.ones(3)}, grad_output=np.ones(3)).verdict == "pass"


def test_a_grad_output_for_a_scalar_forward_is_refused():
    with pytest.raises(DerivationError, match="the forward returns a scalar; grad_output is only"):
        check(_squares(), {"x": np.ones(3)}, grad_output=np.ones(3))


@pytest.mark.parametrize("dtype", ["bogus", object(), 3], ids=["a name numpy lacks", "an object",
                                                              "an int"])  # fmt: skip
def test_a_dtype_neither_numpy_nor_torch_knows_is_refused_with_the_supported_ones(dtype):
    with pytest.raises(ValueError, match=r"is not supported; use 'float64' \(the default\) or "
                       r"'float32'\."):  # fmt: skip
        make_options(dtype, 16, 32, 0)


@pytest.mark.parametrize("dtype", ["float32", np.float32, "f4"], ids=["name", "numpy", "code"])
def test_a_dtype_numpy_spells_otherwise_is_read_as_its_name(dtype):
    assert make_options(dtype, 16, 32, 0).dtype == "float32"


# -- strategies -----------------------------------------------------------------------------


@pytest.mark.parametrize("low, high", [(1.0, 1.0), (2.0, -2.0)], ids=["empty", "reversed"])
def test_values_refuse_a_range_without_room(low, high):
    with pytest.raises(ValueError, match=rf"values\(low={low!r}, high={high!r}\): need low < high"):
        values(low=low, high=high)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_a_continuous_param_stays_in_its_range_on_a_decimal_grid(data):
    value = data.draw(param(ParamChoices(low=0.25, high=0.75, continuous=True)))
    assert 0.25 <= value <= 0.75
    assert value == round(value, 12)


def test_a_continuous_param_shrinks_to_its_low_end():
    from hypothesis import find

    assert find(param(ParamChoices(low=0.25, high=0.75, continuous=True)), lambda _: True) == 0.25


def test_a_dim_range_below_one_is_refused_naming_the_dim():
    derivation = Derivation(
        name="empty",
        forward=lambda x: (x**2).sum(),
        backward=lambda x: {"x": 2 * x},
        shapes={"x": ("N",)},
        wrt=["x"],
        dims={"N": lambda context: (0, 3)},
    )
    with pytest.raises(DerivationError, match=r"dims\['N'\] gives \(0, 3\) for \{\}; a dim is at "
                       r"least 1\."):  # fmt: skip
        dim_range(derivation, "N", {})


def test_where_refusing_every_setting_is_a_declaration_error():
    derivation = Derivation(
        name="never",
        forward=lambda x: (x**2).sum(),
        backward=lambda x: {"x": 2 * x},
        shapes={"x": ("N",)},
        wrt=["x"],
        dims={"N": (1, 4)},
        where=lambda context: False,
    )
    with pytest.raises(DerivationError, match="where refuses every setting tried"):
        smallest_params_and_dims(derivation)


def test_the_smallest_setting_where_allows_is_found_when_the_lowest_is_refused():
    derivation = Derivation(
        name="even",
        forward=lambda x: (x**2).sum(),
        backward=lambda x: {"x": 2 * x},
        shapes={"x": ("N",)},
        wrt=["x"],
        dims={"N": (1, 8)},
        where=lambda context: context["N"] % 2 == 0,
    )
    assert smallest_params_and_dims(derivation) == ({}, {"N": 2})


@settings(max_examples=10, deadline=None)
@given(st.data())
def test_a_large_integer_array_stays_in_its_range(data):
    shape = (ELEMENTWISE_LIMIT + 1, 3)
    array = data.draw(integer_array(shape, low=-2, high=5))
    assert array.shape == shape
    assert array.dtype == np.int64
    assert array.min() >= -2 and array.max() <= 5


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_special_points_at_fixed_dims_keep_the_dims_and_say_what_is_special(data):
    derivation = _squares()
    example = data.draw(examples_at(derivation, {"N": 3}, {}, special=True))
    assert example.dims == {"N": 3}
    assert example.inputs["x"].shape == (3,)
    assert np.isfinite(example.inputs["x"]).all()
    if example.special is not None:
        assert example.special.input == "x"
