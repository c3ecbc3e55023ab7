"""A correct learner's layer written another year's way is not a false alarm: dropout with p
as the drop probability and its own random draw, the 0.5 * reg penalty, a conv output size
computed with round(); and the declarations behind them (dim expressions, float ranges,
where=, booleans, several outputs) are checked where they are written.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from gradcheck import Derivation, DerivationError, verify
from gradcheck.layers import (
    conv_backward_naive,
    course_layer,
    lstm_step_forward,
    max_pool_backward_naive,
    softmax_loss,
    standard_layer,
    svm_loss,
)
from gradcheck.layers import specs as layer_specs
from gradcheck.strategies import smallest_params_and_dims

BUDGET = {"max_examples": 25, "seed": 0}


# ---- dropout: either meaning of p, the learner's own mask -----------------------------------


def dropout_forward_drop_probability(x, dropout_param):
    """An earlier year's dropout: p is the probability of dropping; the global RNG draws."""
    p = dropout_param["p"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = (np.random.random_sample(x.shape) >= p) / (1 - p)
    return x * mask, (dropout_param, mask)


def dropout_backward_drop_probability(dout, cache):
    _, mask = cache
    return dout * mask


def dropout_backward_scaling_by_keep(dout, cache):
    dropout_param, mask = cache
    return dout * (mask != 0) / dropout_param["p"]  # 1 / p where 1 / (1 - p) belongs


def test_a_dropout_with_p_as_drop_probability_and_its_own_draw_passes():
    layer = standard_layer(
        "dropout", dropout_forward_drop_probability, dropout_backward_drop_probability
    )
    assert verify(layer, **BUDGET).verdict == "pass"


def test_a_dropout_scaling_by_the_other_meaning_of_p_fails_where_p_is_not_one_half():
    layer = standard_layer(
        "dropout", dropout_forward_drop_probability, dropout_backward_scaling_by_keep
    )
    report = verify(layer, **BUDGET)
    assert report.verdict == "fail", str(report)
    assert report.example.params["p"] != 0.5
    assert ("x", "mismatch") in {(p.parameter, p.kind) for p in report.problems}


# ---- classifiers: either L2 convention ----------------------------------------------------


def softmax_loss_half_reg(W, X, y, reg):
    data_loss, dscores = softmax_loss(X @ W, y)
    return data_loss + 0.5 * reg * np.sum(W * W), X.T @ dscores + reg * W


def svm_loss_naive_loops(W, X, y, reg):
    """The course's naive SVM, loops and all, with reg * sum(W * W)."""
    dW = np.zeros(W.shape)
    loss = 0.0
    for i in range(X.shape[0]):
        scores = X[i].dot(W)
        for j in range(W.shape[1]):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + 1
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    loss /= X.shape[0]
    dW /= X.shape[0]
    return loss + reg * np.sum(W * W), dW + 2 * reg * W


@pytest.mark.parametrize(
    ("kind", "loss", "penalty"),
    [
        pytest.param(
            "softmax_classifier",
            softmax_loss_half_reg,
            "0.5 * reg * sum(W * W)",
            id="a softmax classifier with 0.5 * reg passes and says so",
        ),
        pytest.param(
            "svm_classifier",
            svm_loss_naive_loops,
            "judged as reg * sum(W * W)",
            id="the naive svm with reg passes and says so",
        ),
    ],
)
def test_either_penalty_convention_passes_and_the_report_names_it(kind, loss, penalty):
    report = verify(standard_layer(kind, loss), **BUDGET)
    assert report.verdict == "pass", str(report)
    assert penalty in str(report)


def test_a_classifier_mixing_conventions_fails_where_reg_is_above_zero():
    def mixed(W, X, y, reg):  # the loss has reg * sum(W*W), the gradient reg * W
        data_loss, dscores = svm_loss(X @ W, y)
        return data_loss + reg * np.sum(W * W), X.T @ dscores + reg * W

    report = verify(standard_layer("svm_classifier", mixed), **BUDGET)
    assert report.verdict == "fail", str(report)
    assert report.example.params["reg"] > 0
    assert "judged as reg * sum(W * W)" in str(report)


# ---- conv and pool: strides that fit, as the course uses them ------------------------------


def conv_forward_rounding(x, w, b, conv_param):
    """Correct wherever the stride fits, which is everywhere the course uses it."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    n, _, height, width = x.shape
    filters, _, hh, ww = w.shape
    h_out = round(1 + (height + 2 * pad - hh) / stride)
    w_out = round(1 + (width + 2 * pad - ww) / stride)
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, filters, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            window = x_pad[:, :, i * stride : i * stride + hh, j * stride : j * stride + ww]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, conv_param)


def max_pool_forward_rounding(x, pool_param):
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    n, c, height, width = x.shape
    out = np.zeros((n, c, round(1 + (height - ph) / stride), round(1 + (width - pw) / stride)))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out, (x, pool_param)


def test_a_conv_whose_output_size_uses_round_passes_on_the_strides_that_fit():
    layer = standard_layer("conv", conv_forward_rounding, conv_backward_naive)
    assert verify(layer, **BUDGET).verdict == "pass"


def test_a_max_pool_whose_output_size_uses_round_passes_on_the_strides_that_fit():
    layer = standard_layer("max_pool", max_pool_forward_rounding, max_pool_backward_naive)
    assert verify(layer, **BUDGET).verdict == "pass"


def test_the_conv_search_still_reaches_every_stride_and_pad():
    from gradcheck.layers import STANDARD_LAYERS

    conv = next(layer for layer in STANDARD_LAYERS if layer.name == "conv")
    assert conv.allows({"H": 5, "W": 5, "HH": 3, "WW": 3, "pad": 0, "stride": 2})
    assert not conv.allows({"H": 4, "W": 5, "HH": 3, "WW": 3, "pad": 0, "stride": 2})
    assert conv.allows({"H": 4, "W": 4, "HH": 1, "WW": 1, "pad": 0, "stride": 3})


# ---- several outputs ------------------------------------------------------------------------


def test_a_backward_taking_one_upstream_gradient_for_two_outputs_is_refused():
    with pytest.raises(DerivationError, match=r"\(dnext_h, dnext_c, cache\)"):
        standard_layer("lstm_step", lstm_step_forward, lambda dout, cache: None)


def test_a_spec_returning_fewer_outputs_than_declared_is_named():
    layer = course_layer(
        lambda x: (x, 2 * x, None),
        lambda da, db, cache: da + 2 * db,
        spec=lambda x: x,
        shapes={"x": ("N",)},
        outputs=("a", "b"),
    )
    with pytest.raises(DerivationError, match="2 outputs"):
        verify(layer, max_examples=2, seed=0)


# ---- declarations -------------------------------------------------------------------------


def _scale(**options):
    return Derivation(
        name="scale",
        forward=lambda x, w, k: k * (x @ w),
        backward=lambda x, w, k, grad_output: {"w": k * x.T @ grad_output},
        shapes={"x": ("N", "D"), "w": ("D", "M")},
        wrt=["w"],
        **{"params": {"k": [1.0]}, **options},
    )


def test_a_dim_may_be_arithmetic_of_other_dims():
    declared = _scale(dims={"D": (1, 3), "M": "4*D"})
    _, sizes = smallest_params_and_dims(declared)
    assert sizes["M"] == 4 * sizes["D"]
    assert verify(declared, max_examples=5, seed=0).verdict == "pass"


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        pytest.param("4*Q", "'Q', which is neither a dim nor a param", id="an unknown name"),
        pytest.param("len(D)", "Call is not allowed", id="a call"),
        pytest.param("D/2", "Div is not allowed", id="true division"),
    ],
)
def test_a_bad_dim_expression_is_refused_naming_it(expression, fragment):
    with pytest.raises(DerivationError, match=re.escape(f"dims['M'] = '{expression}'")) as caught:
        _scale(dims={"M": expression})
    assert fragment in str(caught.value)


def test_a_float_range_draws_floats_inside_it():
    declared = _scale(params={"k": (0.5, 2.0)})
    assert declared.param_choices["k"].continuous
    report = verify(declared, max_examples=10, seed=0)
    assert report.verdict == "pass"
    drawn = [declared.param_choices["k"].low, declared.param_choices["k"].high]
    assert drawn == [0.5, 2.0]


def test_where_keeps_every_drawn_setting_valid_and_its_smallest_point_too():
    seen = []

    def backward(x, w, k, grad_output):
        seen.append((x.shape[1], w.shape[1]))
        return {"w": k * x.T @ grad_output}

    declared = Derivation(
        name="even",
        forward=lambda x, w, k: k * (x @ w),
        backward=backward,
        shapes={"x": ("N", "D"), "w": ("D", "M")},
        wrt=["w"],
        params={"k": [1.0]},
        where=lambda s: s["M"] % 2 == 0 and s["D"] != s["M"],
    )
    assert verify(declared, max_examples=15, seed=0).verdict == "pass"
    assert seen and all(m % 2 == 0 and d != m for d, m in seen)
    _, sizes = smallest_params_and_dims(declared)
    assert sizes["M"] % 2 == 0 and sizes["D"] != sizes["M"]


def test_a_where_that_is_not_callable_is_refused():
    with pytest.raises(DerivationError, match="where=3 must be a function"):
        _scale(where=3)


def test_a_boolean_input_reaches_both_sides_as_booleans():
    kinds = []

    def masked_forward(x, mask):
        kinds.append(np.asarray(mask).dtype)
        return x * mask, mask

    layer = course_layer(
        masked_forward,
        lambda dout, mask: dout * mask,
        spec=lambda x, mask: kinds.append(mask.dtype) or x * mask,
        shapes={"x": ("N",), "mask": ("N",)},
        booleans=("mask",),
    )
    assert verify(layer, max_examples=5, seed=0).verdict == "pass"
    assert np.dtype(bool) in kinds and torch.bool in kinds


def test_the_spec_of_a_two_output_layer_is_the_course_spec():
    next_h, next_c = layer_specs.lstm_step(
        *(torch.zeros(1, k) for k in (1, 1, 1)),
        torch.zeros(1, 4),
        torch.zeros(1, 4),
        torch.zeros(4),
    )
    assert next_h.shape == next_c.shape == (1, 1)
