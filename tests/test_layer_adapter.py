"""course_layer, course_loss and standard_layer: course-style functions in, a Derivation out,
with no glue; a wrong declaration fails where it is written, naming the argument and the fix.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gradcheck import DerivationError, check, verify
from gradcheck.cli import main
from gradcheck.layers import (
    ForwardMismatch,
    course_layer,
    course_loss,
    relu_backward,
    relu_forward,
    standard_layer,
)
from gradcheck.layers import specs as layer_specs

# ---- a small layer with settings: out = scale * (x @ w), scale from a settings dict -------


def scaled_forward(x, w, scale_param):
    out = scale_param["scale"] * (x @ w)
    return out, (x, w, scale_param["scale"])


def scaled_backward(dout, cache):
    x, w, scale = cache
    dx = scale * dout @ w.T
    dw = scale * x.T @ dout
    return dx, dw


def scaled_spec(x, w, scale):
    return scale * (x @ w)


def _scaled(forward=scaled_forward, backward=scaled_backward, **options):
    declaration = {
        "spec": scaled_spec,
        "shapes": {"x": ("N", "D"), "w": ("D", "M")},
        "params": {"scale": [2, -1, 3]},
        "param_dict": "scale_param",
        "dims": {"N": (1, 3), "D": (1, 3), "M": (1, 3)},
    }
    return course_layer(forward, backward, **{**declaration, **options})


def _point(**params):
    x = np.array([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.25]])
    w = np.array([[0.5, -1.0, 2.0], [1.5, 0.75, -0.5]])
    return {"x": x, "w": w, **params}


def test_arrays_fill_positions_in_order_and_gradients_come_back_by_name():
    layer = _scaled()
    assert layer.name == "scaled"  # from scaled_forward
    assert tuple(layer.wrt) == ("x", "w")
    assert check(layer, _point(scale=3)).verdict == "pass"
    assert verify(layer, max_examples=20, seed=0).verdict == "pass"


def test_params_are_packed_into_the_settings_dict_with_the_fixed_entries():
    seen = []

    def forward(x, w, scale_param):
        seen.append(dict(scale_param))
        return scaled_forward(x, w, scale_param)

    layer = _scaled(forward, fixed={"mode": "train"})
    assert check(layer, _point(scale=-1)).verdict == "pass"
    assert seen == [{"mode": "train", "scale": -1}]


def test_without_a_settings_dict_params_are_passed_as_keywords():
    def forward(x, w, *, scale):
        return scaled_forward(x, w, {"scale": scale})

    layer = _scaled(forward, param_dict=None)
    assert check(layer, _point(scale=2)).verdict == "pass"


def test_grads_names_the_gradients_in_the_order_the_backward_returns_them():
    def backward_w_first(dout, cache):
        dx, dw = scaled_backward(dout, cache)
        return dw, dx

    assert check(_scaled(backward=backward_w_first, grads=("w", "x")), _point(scale=2)).ok
    swapped = check(_scaled(backward=backward_w_first), _point(scale=2))
    assert swapped.verdict == "fail"
    assert {p.kind for p in swapped.problems} == {"shape"}


def test_a_single_gradient_may_come_back_bare():
    relu = course_layer(
        relu_forward, relu_backward, spec=torch.relu, shapes={"x": ("N", "D")}, name="relu"
    )
    assert check(relu, {"x": np.array([[1.0, -2.0, 0.5]])}).verdict == "pass"


def test_a_scalar_forward_gets_dout_of_one():
    def half_square_forward(x):
        return 0.5 * float(np.sum(x**2)), x

    def half_square_backward(dout, cache):
        assert np.shape(dout) == () and dout == 1.0
        return dout * cache

    layer = course_layer(
        half_square_forward,
        half_square_backward,
        spec=lambda x: 0.5 * (x**2).sum(),
        shapes={"x": ("N",)},
    )
    assert verify(layer, max_examples=10, seed=0).verdict == "pass"


def test_a_dout_written_in_place_is_seen_through_the_adapter():
    def relu_backward_in_place(dout, cache):
        dout[cache <= 0] = 0.0
        return dout

    layer = standard_layer("relu", relu_forward, relu_backward_in_place)
    report = check(layer, {"x": np.array([[1.0, -2.0]])})
    assert report.verdict == "fail"
    assert ("grad_output", "mutated") in {(p.parameter, p.kind) for p in report.problems}


def test_a_cache_written_in_place_is_seen_as_a_mutated_input():
    def relu_backward_clobbering_x(dout, cache):
        cache[cache <= 0] = 0.0  # the cache is x itself
        return dout * (cache > 0)

    report = check(
        standard_layer("relu", relu_forward, relu_backward_clobbering_x),
        {"x": np.array([[1.0, -2.0]])},
    )
    assert ("x", "mutated") in {(p.parameter, p.kind) for p in report.problems}


def test_a_wrong_forward_fails_even_when_its_backward_is_right():
    def relu_forward_leaky(x):
        return np.where(x > 0, x, 0.01 * x), x  # not what the spec computes

    layer = standard_layer("relu", relu_forward_leaky, relu_backward)
    report = check(layer, {"x": np.array([[1.0, -2.0]])})
    assert report.verdict == "fail"
    text = str(report)
    # The forward's problem, located in the forward, with both values; the backward never ran.
    assert [p.kind for p in report.problems] == ["forward_mismatch"]
    assert "relu_forward_leaky's out does not match the spec forward" in text
    assert "backward raised" not in text
    assert "in relu_forward_leaky)" in text and "test_layer_adapter.py:" in text
    assert "At out(0, 1): expected 0 (spec forward), got -0.02." in text
    assert "Mismatched elements: 1 / 2 (50.0%)" in text
    assert "inf (up to inf allowed)" not in text


def test_check_forward_false_judges_the_backward_alone():
    def relu_forward_leaky(x):
        return np.where(x > 0, x, 0.01 * x), x

    layer = course_layer(
        relu_forward_leaky,
        relu_backward,
        spec=torch.relu,
        shapes={"x": ("N", "D")},
        check_forward=False,
    )
    assert check(layer, {"x": np.array([[1.0, -2.0]])}).verdict == "pass"


def test_a_forward_mismatch_message_names_the_layer_and_the_worst_element():
    from gradcheck.layers.adapter import _forward_mismatch_message

    message = _forward_mismatch_message(
        "my_forward", np.array([1.0, 2.5]), torch.tensor([1.0, 2.0]), np.dtype(np.float64)
    )
    assert message is not None
    assert message.startswith("my_forward's out does not match the spec forward")
    assert "Greatest absolute difference: 0.5 at index (1,)" in message
    shape = _forward_mismatch_message(
        "my_forward", np.ones((2, 1)), torch.ones(2), np.dtype(np.float64)
    )
    assert shape == (
        "my_forward returned out of shape (2, 1), but the spec forward returns shape (2,)."
    )
    assert ForwardMismatch.__mro__[1] is AssertionError


@pytest.mark.parametrize(
    ("returned", "fragment"),
    [
        (lambda out, cache: out, "relu_forward_bare returned one ndarray; a course-style forward"),
        (lambda out, cache: (out, cache, 1), "returned a tuple of 3; a course-style forward"),
    ],
    ids=["a forward returning out alone", "a forward returning three things"],
)
def test_a_forward_that_returns_no_cache_fails_with_what_to_return(returned, fragment):
    def relu_forward_bare(x):
        return returned(*relu_forward(x))

    report = check(standard_layer("relu", relu_forward_bare, relu_backward), {"x": np.ones((1, 2))})
    assert report.verdict == "fail"
    assert fragment in str(report)


def test_a_backward_returning_too_few_gradients_names_them():
    def affine_backward_without_db(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout

    from gradcheck.layers import affine_forward

    report = check(
        standard_layer("affine", affine_forward, affine_backward_without_db),
        {"x": np.ones((2, 3)), "w": np.ones((3, 2)), "b": np.ones(2)},
    )
    assert report.verdict == "fail"
    assert "returned a tuple of 2, but grads names 3 (x, w, b)" in str(report)


# ---- losses ----------------------------------------------------------------------------


def test_a_course_loss_is_one_function_returning_the_loss_and_its_gradient():
    def mean_square_loss(x, y):
        n = x.shape[0]
        diff = x - y
        return float(np.sum(diff**2)) / n, 2.0 * diff / n

    loss = course_loss(
        mean_square_loss,
        spec=lambda x, y: ((x - y) ** 2).sum() / x.shape[0],
        shapes={"x": ("N", "D"), "y": ("N", "D")},
        grads=("x",),
    )
    assert loss.name == "mean_square_loss"
    assert verify(loss, max_examples=10, seed=0).verdict == "pass"


def test_a_course_loss_with_integer_labels_passes_and_labels_are_not_differentiated():
    from gradcheck.layers import softmax_loss

    loss = course_loss(
        softmax_loss,
        spec=layer_specs.softmax_loss,
        shapes={"x": ("N", "C"), "y": ("N",)},
        integers={"y": lambda s: (0, s["C"] - 1)},
    )
    assert tuple(loss.wrt) == ("x",)
    assert verify(loss, max_examples=10, seed=0).verdict == "pass"


# ---- a learner's file, in the course's own words -----------------------------------------


def cs231n_dropout_forward(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = None
    out = None
    if mode == "train":
        mask = (np.random.rand(*x.shape) < p) / p
        out = x * mask
    elif mode == "test":
        out = x
    cache = (dropout_param, mask)
    return out, cache


def cs231n_dropout_backward(dout, cache):
    _, mask = cache
    return dout * mask


def test_a_dropout_written_as_the_course_writes_it_draws_the_same_mask_and_passes():
    state = np.random.get_state()
    try:
        layer = standard_layer("dropout", cs231n_dropout_forward, cs231n_dropout_backward)
        assert verify(layer, max_examples=20, seed=0).verdict == "pass"
    finally:
        np.random.set_state(state)


def _learner_file() -> str:
    """The layer file docs/course-layers.md shows, character for character."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "course-layers.md").read_text()
    return re.findall(r'```python title="my_layers.py"\n(.*?)```', page, re.DOTALL)[0]


def test_a_course_layer_file_is_checked_in_one_command(tmp_path):
    path = tmp_path / "my_layers.py"
    path.write_text(_learner_file())
    out = io.StringIO()
    code = main(["verify", str(path), "--seed", "0", "-j", "1"], out=out)
    text = out.getvalue()
    assert code == 1, text
    assert "gradcheck: conv FAILED (float64)" in text
    assert "params: stride=1, pad=0\n  dims: N=1, C=1, F=1, HH=1, WW=1, H=1, W=1" in text
    assert "gradient for 'x' has shape (1, 1, 0, 0), but 'x' has shape (1, 1, 1, 1)" in text
    assert "reproduce: gradcheck verify " + str(path) + ":conv --seed 0 --max-examples 100" in text
    assert "1 passed, 1 failed, 0 errors" in text


# ---- declarations are checked where they are written -------------------------------------


def _bad(**changes):
    def declare():
        return _scaled(**changes)

    return declare


def _spec_without_scale(x, w):
    return x @ w


def _forward_taking_w_first(w, x, scale_param):
    return scaled_forward(x, w, scale_param)


def _forward_without_settings(x, w):
    return scaled_forward(x, w, {"scale": 1})


@pytest.mark.parametrize(
    ("declare", "fragments"),
    [
        (
            lambda: course_layer(
                scaled_forward(np.ones((1, 1)), np.ones((1, 1)), {"scale": 1}),
                scaled_backward,
                spec=scaled_spec,
                shapes={"x": ("N",)},
            ),
            ["forward=(", "is not callable", "not the result of calling it"],
        ),
        (
            _bad(forward=_forward_taking_w_first),
            [
                "shapes lists the arrays as (x, w)",
                "takes them as (w, x)",
                "shapes={'w': ..., 'x': ...}",
            ],
        ),
        (
            _bad(forward=_forward_without_settings),
            [
                "forward _forward_without_settings(x, w) cannot be called as",
                "(x, w, scale_param)",
                "one dict scale_param holding scale",
            ],
        ),
        (
            _bad(backward=lambda dout: dout),
            [
                "backward <lambda>(dout) cannot be called as <lambda>(dout, cache)",
                "takes (dout, cache)",
            ],
        ),
        (
            _bad(spec=_spec_without_scale),
            [
                "spec _spec_without_scale(x, w) cannot be called as",
                "scale=...",
                "every array and every param as a keyword argument",
            ],
        ),
        (
            _bad(param_dict="scale param"),
            ["param_dict='scale param'", "e.g. param_dict='conv_param'"],
        ),
        (
            _bad(fixed={"scale": 1}),
            ["'scale' is both searched (params) and fixed"],
        ),
        (
            _bad(grads=("x", "ww")),
            ["grads names 'ww'", "did you mean 'w'?"],
        ),
        (
            _bad(grads="x"),
            ["grads='x' must be a non-empty sequence", "grads=('x', 'w')"],
        ),
        (
            _bad(check_forward="yes"),
            ["check_forward='yes' must be True or False"],
        ),
        (
            _bad(shapes={}),
            ["shapes={} must be a non-empty mapping"],
        ),
        (
            lambda: course_loss(
                lambda x, y: (0.0, x),
                spec=layer_specs.softmax_loss,
                shapes={"x": ("N", "C"), "y": ("N",)},
                integers={"y": (0, 1)},
                grads=("x", "y"),
            ),
            ["grads names 'y', an integer input", "never differentiated"],
        ),
        (
            lambda: standard_layer("convolution", relu_forward, relu_backward),
            ["kind='convolution' is not a standard layer", "did you mean 'conv'?"],
        ),
        (
            lambda: standard_layer("svm_loss", relu_forward, relu_backward),
            ["a course loss is one function", "leave out backward"],
        ),
        (
            lambda: standard_layer("relu", relu_forward),
            ["pass both the forward and the backward", "relu_forward, relu_backward"],
        ),
    ],
    ids=[
        "forward called instead of passed",
        "shapes in another order than the forward's arguments",
        "a forward with no settings argument",
        "a backward without the cache",
        "a spec missing a param",
        "a settings dict name that is no identifier",
        "a setting both searched and fixed",
        "a misspelled gradient name",
        "grads given as one string",
        "check_forward not a bool",
        "no shapes",
        "an integer input among the gradients",
        "an unknown standard layer",
        "a loss given a backward",
        "a layer missing its backward",
    ],
)
def test_a_wrong_declaration_fails_where_it_is_written_with_the_fix(declare, fragments):
    with pytest.raises(DerivationError) as raised:
        declare()
    for fragment in fragments:
        assert fragment in str(raised.value)
