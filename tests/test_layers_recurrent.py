"""The standard layers of assignments 2 and 3 (spatial norms, RNN, LSTM, embeddings, the
temporal and classifier losses) and the course's conventions: a broken copy of each fails,
and its report names the smallest settings and shapes at which it fails; a correct copy
written another way (p as the drop probability, 0.5 * reg, round() in conv) passes.

The references pass verify in test_layers.py (every STANDARD_LAYERS entry). No Derivation
sits at module level (the gradcheck plugin would collect it).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import Report, verify
from gradcheck.layers import (
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
    rnn_forward,
    rnn_step_backward,
    rnn_step_forward,
    softmax_loss,
    spatial_batchnorm_forward,
    spatial_groupnorm_forward,
    standard_layer,
    svm_loss,
    temporal_affine_forward,
    word_embedding_forward,
)
from gradcheck.layers import temporal_softmax_loss as temporal_softmax_loss_reference
from gradcheck.layers.normalization import batchnorm_backward

# A fixed, small search: the same examples every run, about a second a layer.
BUDGET = {"max_examples": 10, "seed": 0}


def _smallest(report: Report) -> dict:
    """The smallest failing example's params, dims and inputs, in one dict."""
    assert report.verdict == "fail", str(report)
    assert report.example is not None
    example = report.example
    return {**example.inputs, **example.params, **example.dims}


def _problems(report: Report) -> set[tuple[str | None, str]]:
    return {(problem.parameter, problem.kind) for problem in report.problems}


# ---- broken copies -----------------------------------------------------------------------


def spatial_batchnorm_backward_without_transpose(dout, cache):
    rows_cache, shape = cache
    n, c, height, width = shape
    # (N, C, H, W) read as rows of C without moving C last: right only for one pixel or channel
    dx, _, _ = batchnorm_backward(dout.reshape(-1, c), rows_cache)
    dgamma = (dout * rows_cache[0].reshape(n, height, width, c).transpose(0, 3, 1, 2)).sum(
        axis=(0, 2, 3)
    )
    return dx.reshape(shape), dgamma, dout.sum(axis=(0, 2, 3))


def spatial_groupnorm_backward_ignoring_groups(dout, cache):
    xhat, xc, std, G, gamma = cache
    n, c, height, width = dout.shape
    m = c // G * height * width
    dxhat = (dout * gamma).reshape(n, G, m)
    dxc = dxhat / std
    dstd = -(dxhat * xc).sum(axis=2, keepdims=True) / std**2
    dxc = dxc + dstd / (2.0 * std) * 2.0 * xc / (c * height * width)  # the whole sample's count
    dx = dxc - dxc.sum(axis=2, keepdims=True) / m
    dgamma = (dout * xhat).sum(axis=(0, 2, 3), keepdims=True)
    return dx.reshape(dout.shape), dgamma, dout.sum(axis=(0, 2, 3), keepdims=True)


def rnn_step_backward_without_square(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1.0 - next_h)  # tanh' written as 1 - tanh
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def rnn_backward_not_carrying_dprev_h(dh, cache):
    n, t_steps, _ = dh.shape
    x0, _, Wx, Wh, _ = cache[0]
    dx = np.zeros((n, t_steps, x0.shape[1]))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[1])
    dprev_h = np.zeros((n, Wh.shape[0]))
    for t in reversed(range(t_steps)):
        dx[:, t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t], cache[t])  # no +
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db


def word_embedding_backward_overwriting_repeats(dout, cache):
    x, w_shape = cache
    dW = np.zeros(w_shape)
    dW[x] += dout  # a repeated word keeps one of its gradients, not their sum
    return dW


def temporal_affine_backward_first_step_only(dout, cache):
    x, w = cache
    return dout @ w.T, x[:, 0].T @ dout[:, 0], dout.sum(axis=(0, 1))


def lstm_step_backward_ignoring_dnext_c(dnext_h, dnext_c, cache):
    return lstm_step_backward(dnext_h, np.zeros_like(dnext_c), cache)


def lstm_backward_dropping_the_cell_gradient(dh, cache):
    n, t_steps, hidden = dh.shape
    x0, _, _, Wx, Wh = cache[0][:5]
    dx = np.zeros((n, t_steps, x0.shape[1]))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * hidden)
    dprev_h = np.zeros((n, hidden))
    for t in reversed(range(t_steps)):
        # the cell state's gradient from step t + 1 is dropped
        step = lstm_step_backward(dh[:, t] + dprev_h, np.zeros((n, hidden)), cache[t])
        dx[:, t], dprev_h, _, dWx_t, dWh_t, db_t = step
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db


def temporal_softmax_loss_ignoring_mask_in_dx(x, y, mask):
    loss, _ = temporal_softmax_loss_reference(x, y, mask)
    _, dx = temporal_softmax_loss_reference(x, y, np.ones_like(mask))
    return loss, dx


def softmax_classifier_without_reg_gradient(W, X, y, reg):
    data_loss, dscores = softmax_loss(X @ W, y)
    return data_loss + reg * np.sum(W * W), X.T @ dscores  # no 2 * reg * W


def svm_classifier_half_reg_summed_gradient(W, X, y, reg):
    data_loss, dscores = svm_loss(X @ W, y)
    # 0.5 * reg convention, but the data gradient is not averaged over the batch
    return data_loss + 0.5 * reg * np.sum(W * W), X.T @ dscores * X.shape[0] + reg * W


def _case(kind, forward, backward, problem, where, *, id):
    return pytest.param(kind, forward, backward, problem, where, id=id)


BROKEN = [
    _case(
        "spatial_batchnorm",
        spatial_batchnorm_forward,
        spatial_batchnorm_backward_without_transpose,
        ("x", "mismatch"),
        lambda s: s["C"] >= 2 and s["H"] * s["W"] >= 2,
        id="spatial batchnorm reshaping without moving channels last fails from 2 channels",
    ),
    _case(
        "spatial_groupnorm",
        spatial_groupnorm_forward,
        spatial_groupnorm_backward_ignoring_groups,
        ("x", "mismatch"),
        lambda s: s["G"] >= 2,
        id="spatial groupnorm counting the whole sample fails from 2 groups",
    ),
    _case(
        "rnn_step",
        rnn_step_forward,
        rnn_step_backward_without_square,
        ("x", "mismatch"),
        lambda s: s["N"] == 1 and s["D"] == 1 and s["H"] == 1,
        id="rnn step with 1 - tanh for 1 - tanh squared fails at the smallest sizes",
    ),
    _case(
        "rnn",
        rnn_forward,
        rnn_backward_not_carrying_dprev_h,
        ("x", "mismatch"),
        lambda s: s["T"] == 2,
        id="rnn not carrying dprev_h back fails from 2 steps",
    ),
    _case(
        "word_embedding",
        word_embedding_forward,
        word_embedding_backward_overwriting_repeats,
        ("W", "mismatch"),
        lambda s: s["N"] * s["T"] == 2 and s["V"] == 1 and len(set(s["x"].ravel())) == 1,
        id="word embedding overwriting a repeated word fails where a word repeats",
    ),
    _case(
        "temporal_affine",
        temporal_affine_forward,
        temporal_affine_backward_first_step_only,
        ("w", "mismatch"),
        lambda s: s["T"] == 2,
        id="temporal affine summing dw over the first step fails from 2 steps",
    ),
    _case(
        "lstm_step",
        lstm_step_forward,
        lstm_step_backward_ignoring_dnext_c,
        ("prev_c", "mismatch"),
        lambda s: s["N"] == 1 and s["D"] == 1 and s["H"] == 1,
        id="lstm step ignoring dnext_c fails at the smallest sizes",
    ),
    _case(
        "lstm",
        lstm_forward,
        lstm_backward_dropping_the_cell_gradient,
        ("x", "mismatch"),
        lambda s: s["T"] == 2,
        id="lstm dropping the cell state's gradient fails from 2 steps",
    ),
    _case(
        "temporal_softmax_loss",
        temporal_softmax_loss_ignoring_mask_in_dx,
        None,
        ("x", "mismatch"),
        lambda s: s["N"] * s["T"] == 1 and not s["mask"].all(),
        id="temporal softmax loss ignoring the mask in dx fails at one masked-out step",
    ),
    _case(
        "softmax_classifier",
        softmax_classifier_without_reg_gradient,
        None,
        ("W", "mismatch"),
        lambda s: s["reg"] > 0,
        id="softmax classifier without the penalty's gradient fails where reg is above 0",
    ),
    _case(
        "svm_classifier",
        svm_classifier_half_reg_summed_gradient,
        None,
        ("W", "mismatch"),
        lambda s: s["N"] == 2,
        id="svm classifier with a summed data gradient fails from a batch of 2",
    ),
]


@pytest.mark.parametrize(("kind", "forward", "backward", "problem", "where"), BROKEN)
def test_a_broken_copy_of_each_new_layer_fails_with_its_smallest_example(
    kind, forward, backward, problem, where
):
    report = verify(standard_layer(kind, forward, backward, name=f"broken_{kind}"), **BUDGET)
    smallest = _smallest(report)
    assert problem in _problems(report), str(report)
    assert where(smallest), str(report)
    text = str(report)
    assert "Smallest failing example" in text
    assert "dims: " + ", ".join(f"{k}={v}" for k, v in report.example.dims.items()) in text
