"""The standard layers pass verify over shapes and settings; a broken copy of each fails, and
its report names the smallest settings and shapes at which it fails.

The broken layers are the bugs learners write: a padding crop that is empty at pad 0, H used
where W belongs, a keepdims gradient, a backward that zeroes dout in place, a missing eps.
No Derivation sits at module level here (the gradcheck plugin would collect it): each is
built inside its test.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import Report, verify
from gradcheck.layers import (
    STANDARD_LAYERS,
    avg_pool_forward_naive,
    batchnorm_backward,
    batchnorm_forward,
    conv_forward_naive,
    dropout_forward,
    layernorm_forward,
    max_pool_forward_naive,
    relu_forward,
    sigmoid_forward,
    standard_layer,
    tanh_forward,
)
from gradcheck.layers import affine_forward as affine_forward_reference


@pytest.mark.parametrize("layer", STANDARD_LAYERS, ids=lambda layer: f"{layer.name} passes")
def test_every_standard_layer_passes_verify_with_its_params_searched(layer):
    report = verify(layer)
    assert report.verdict == "pass", str(report)
    assert report.examples >= 10


def test_the_standard_set_searches_settings_and_non_square_images():
    layers = {layer.name: layer for layer in STANDARD_LAYERS}
    assert set(layers["conv"].param_choices) == {"stride", "pad"}
    assert set(layers["max_pool"].param_choices) == {"pool_height", "pool_width", "stride"}
    assert set(layers["batchnorm"].param_choices) == {"eps"}
    for name in ("conv", "max_pool", "avg_pool"):
        assert layers[name].shapes["x"] == ("N", "C", "H", "W")  # H and W drawn apart


# ---- broken layers ---------------------------------------------------------------------


def _conv_backward(dout, cache, *, crop_with_negative_end=False, width_from_height=False):
    """A learner's conv backward with one of two bugs switched on."""
    x, w, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, height, width = x.shape
    _, _, hh, ww = w.shape
    h_out = 1 + (height + 2 * pad - hh) // stride
    w_out = 1 + ((height if width_from_height else width) + 2 * pad - ww) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for i in range(h_out):
        for j in range(w_out):
            rows = slice(i * stride, i * stride + hh)
            cols = slice(j * stride, j * stride + ww)
            dw += np.tensordot(dout[:, :, i, j], x_pad[:, :, rows, cols], axes=([0], [0]))
            dx_pad[:, :, rows, cols] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    if crop_with_negative_end:
        return dx_pad[:, :, pad:-pad, pad:-pad], dw, db
    return dx_pad[:, :, pad : pad + height, pad : pad + width], dw, db


def conv_backward_cropping_pad_to_minus_pad(dout, cache):
    return _conv_backward(dout, cache, crop_with_negative_end=True)


def conv_backward_using_h_for_w(dout, cache):
    return _conv_backward(dout, cache, width_from_height=True)


def relu_backward_zeroing_dout_in_place(dout, cache):
    x = cache
    dout[x <= 0] = 0.0
    return dout


def batchnorm_backward_keeping_dims(dout, cache):
    dx, _, dbeta = batchnorm_backward(dout, cache)
    xhat = cache[0]
    dgamma = (dout * xhat).sum(axis=0, keepdims=True)  # (1, D) for gamma (D,)
    return dx, dgamma, dbeta


def batchnorm_backward_without_eps(dout, cache):
    xhat, xc, var, _, gamma = cache
    return batchnorm_backward(dout, (xhat, xc, var, 0.0, gamma))  # sqrt(var), not var + eps


def _smallest(report: Report) -> tuple[dict, dict]:
    assert report.verdict == "fail", str(report)
    assert report.example is not None
    return dict(report.example.params), dict(report.example.dims)


def _problems(report: Report) -> set[tuple[str | None, str]]:
    return {(problem.parameter, problem.kind) for problem in report.problems}


def test_a_crop_of_pad_to_minus_pad_fails_at_pad_0_as_an_empty_gradient():
    layer = standard_layer(
        "conv", conv_forward_naive, conv_backward_cropping_pad_to_minus_pad, name="conv_crop"
    )
    report = verify(layer)
    params, dims = _smallest(report)
    assert params["pad"] == 0
    assert ("x", "shape") in _problems(report)
    text = str(report)
    assert "params: stride=1, pad=0" in text
    assert "gradient for 'x' has shape (1, 1, 0, 0)" in text
    assert f"'x' has shape {(dims['N'], dims['C'], dims['H'], dims['W'])}" in text


def test_h_used_for_w_fails_only_on_a_non_square_image():
    layer = standard_layer(
        "conv", conv_forward_naive, conv_backward_using_h_for_w, name="conv_h_for_w"
    )
    report = verify(layer)
    _, dims = _smallest(report)
    assert dims["H"] != dims["W"]
    assert "x" in {parameter for parameter, _ in _problems(report)}
    assert f"H={dims['H']}" in str(report) and f"W={dims['W']}" in str(report)


def test_a_keepdims_gradient_fails_as_a_shape_problem_not_by_broadcasting():
    layer = standard_layer(
        "batchnorm", batchnorm_forward, batchnorm_backward_keeping_dims, name="bn_keepdims"
    )
    report = verify(layer)
    params, dims = _smallest(report)
    assert _problems(report) == {("gamma", "shape")}
    text = str(report)
    assert f"gradient for 'gamma' has shape (1, {dims['D']}), but 'gamma' has shape" in text
    assert "keepdims=True" in text
    assert f"params: eps={params['eps']!r}" in text


def test_a_relu_backward_zeroing_dout_in_place_fails_as_mutated():
    layer = standard_layer(
        "relu", relu_forward, relu_backward_zeroing_dout_in_place, name="relu_in_place"
    )
    report = verify(layer)
    _, dims = _smallest(report)
    assert ("grad_output", "mutated") in _problems(report)
    assert "backward modified its argument 'grad_output' in place" in str(report)
    assert dims == {"N": 1, "D": 1}
    assert report.example.inputs["x"].item() < 0  # only a negative input is zeroed


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_a_batchnorm_backward_missing_eps_fails_and_names_eps():
    layer = standard_layer(
        "batchnorm", batchnorm_forward, batchnorm_backward_without_eps, name="bn_without_eps"
    )
    report = verify(layer)
    params, dims = _smallest(report)
    assert params == {"eps": 1e-5}
    assert dims == {"N": 2, "D": 1}
    assert {parameter for parameter, _ in _problems(report)} == {"x"}  # gamma, beta are right
    text = str(report)
    assert "params: eps=1e-05" in text and "dims: N=2, D=1" in text


def test_missing_eps_fails_on_a_batch_with_variance_too():
    """Not only where var = 0 and the division blows up: eps changes every gradient."""
    from gradcheck import check

    layer = standard_layer("batchnorm", batchnorm_forward, batchnorm_backward_without_eps)
    point = {
        "x": np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]]),
        "gamma": np.array([1.0, -0.5]),
        "beta": np.zeros(2),
        "eps": 1e-3,
    }
    report = check(layer, point)
    assert report.verdict == "fail"
    assert _problems(report) == {("x", "mismatch")}


# A broken copy of every other standard layer: (kind, forward, broken backward, what the
# report must say). Each bug is right somewhere (a square matrix, p = 1, a batch of one), so
# each report must point at where it is wrong.


def affine_backward_transposing_dw(dout, cache):
    x, w = cache
    x_rows = x.reshape(x.shape[0], -1)
    return (dout @ w.T).reshape(x.shape), dout.T @ x_rows, dout.sum(axis=0)


def affine_backward_not_reshaping_dx(dout, cache):
    x, w = cache
    x_rows = x.reshape(x.shape[0], -1)
    return dout @ w.T, x_rows.T @ dout, dout.sum(axis=0)


def sigmoid_backward_without_one_minus(dout, cache):
    return dout * cache


def tanh_backward_without_square(dout, cache):
    return dout * (1.0 - cache)


def dropout_backward_without_scale(dout, cache):
    return dout * (cache > 0)


def softmax_loss_with_gradient_not_averaged(x, y):
    from gradcheck.layers import softmax_loss

    loss, dx = softmax_loss(x, y)
    return loss, dx * x.shape[0]


def svm_loss_counting_the_right_class(x, y):
    n = x.shape[0]
    margins = np.maximum(0.0, x - x[np.arange(n), y][:, None] + 1.0)  # right class: margin 1
    active = (margins > 0).astype(x.dtype)
    active[np.arange(n), y] = 0.0
    dx = active.copy()
    dx[np.arange(n), y] -= active.sum(axis=1)
    return margins.sum() / n, dx / n  # the loss counts 1 per sample too much


def layernorm_backward_dividing_by_n(dout, cache):
    xhat, xc, var, eps, gamma = cache
    n = dout.shape[0]  # the batch size, where the feature count D belongs
    std = np.sqrt(var + eps)
    dxhat = dout * gamma
    dstd = -(dxhat * xc).sum(axis=1, keepdims=True) / std**2
    dxc = dxhat / std + dstd / (2.0 * std) * 2.0 * xc / n
    dx = dxc - dxc.sum(axis=1, keepdims=True) / n
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def max_pool_backward_overwriting_overlaps(dout, cache):
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    n, c, height, width = x.shape
    dx = np.zeros_like(x)
    batch, channel = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for i in range(1 + (height - ph) // stride):
        for j in range(1 + (width - pw) // stride):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            u, v = np.divmod(window.reshape(n, c, ph * pw).argmax(axis=2), pw)
            dx[batch, channel, i * stride + u, j * stride + v] = dout[:, :, i, j]  # not +=
    return dx


def avg_pool_backward_dividing_by_height_squared(dout, cache):
    x_shape, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros(x_shape)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            share = dout[:, :, i, j][:, :, None, None] / (ph * ph)  # ph where pw belongs
            dx[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw] += share
    return dx


def _case(kind, forward, backward, problem, fragment, where, *, id):
    """A broken layer, the problem its report must name, a fragment of its text, and where
    (as a condition on the smallest example's params and dims) the bug shows."""
    return pytest.param(kind, forward, backward, problem, fragment, where, id=id)


BROKEN = [
    _case(
        "affine",
        affine_forward_reference,
        affine_backward_transposing_dw,
        ("w", "shape"),
        "gradient for 'w' has shape",
        lambda s: s["D"] != s["M"],
        id="affine with dw transposed fails where w is not square",
    ),
    _case(
        "affine_4d",
        affine_forward_reference,
        affine_backward_not_reshaping_dx,
        ("x", "shape"),
        "gradient for 'x' has shape",
        lambda s: s["C"] * s["H"] * s["W"] == s["D"],
        id="affine of images with dx left flat fails as a shape problem",
    ),
    _case(
        "sigmoid",
        sigmoid_forward,
        sigmoid_backward_without_one_minus,
        ("x", "mismatch"),
        "Mismatched elements",
        lambda s: True,
        id="sigmoid without its (1 - out) factor fails as a mismatch",
    ),
    _case(
        "tanh",
        tanh_forward,
        tanh_backward_without_square,
        ("x", "mismatch"),
        "Mismatched elements",
        lambda s: True,
        id="tanh with 1 - out for 1 - out**2 fails as a mismatch",
    ),
    _case(
        "dropout",
        dropout_forward,
        dropout_backward_without_scale,
        ("x", "mismatch"),
        "Mismatched elements",
        lambda s: s["p"] < 1.0,
        id="dropout without its 1 over p fails where p is below 1",
    ),
    _case(
        "softmax_loss",
        softmax_loss_with_gradient_not_averaged,
        None,
        ("x", "mismatch"),
        "Mismatched elements",
        lambda s: s["N"] == 2,
        id="softmax loss with a summed gradient fails from a batch of 2",
    ),
    _case(
        "svm_loss",
        svm_loss_counting_the_right_class,
        None,
        (None, "forward_mismatch"),  # the forward's problem: the backward never ran
        "svm_loss_counting_the_right_class's out does not match the spec forward",
        lambda s: True,
        id="svm loss counting the right class fails in its forward",
    ),
    _case(
        "layernorm",
        layernorm_forward,
        layernorm_backward_dividing_by_n,
        ("x", "mismatch"),
        "Mismatched elements",
        lambda s: s["N"] != s["D"],
        id="layernorm dividing by N for D fails where N differs from D",
    ),
    _case(
        "max_pool",
        max_pool_forward_naive,
        max_pool_backward_overwriting_overlaps,
        ("x", "mismatch"),
        "Mismatched elements",
        lambda s: s["stride"] < max(s["pool_height"], s["pool_width"]),
        id="max pool overwriting overlaps fails where windows overlap",
    ),
    _case(
        "avg_pool",
        avg_pool_forward_naive,
        avg_pool_backward_dividing_by_height_squared,
        ("x", "mismatch"),
        "Mismatched elements",
        lambda s: s["pool_height"] != s["pool_width"],
        id="avg pool dividing by height squared fails where the window is not square",
    ),
]


@pytest.mark.parametrize(("kind", "forward", "backward", "problem", "fragment", "where"), BROKEN)
def test_a_broken_copy_of_each_layer_fails_with_its_smallest_example(
    kind, forward, backward, problem, fragment, where
):
    report = verify(standard_layer(kind, forward, backward, name=f"broken_{kind}"))
    params, dims = _smallest(report)
    assert problem in _problems(report), str(report)
    assert where({**params, **dims}), str(report)
    text = str(report)
    assert fragment in text
    assert "Smallest failing example" in text
    assert "dims: " + ", ".join(f"{k}={v}" for k, v in dims.items()) in text
    if params:
        assert "params: " + ", ".join(f"{k}={v!r}" for k, v in params.items()) in text
