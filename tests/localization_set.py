"""A labelled set of wrong backwards, one mistake each, for the first-wrong-line finder.

Each entry names the line the mistake is on (a fragment of that statement's first line) and
the variable that line gets wrong, or says that no single line is wrong (``line=None``): there
the finder must say nothing. The classes are issue 20's: a forward value recomputed wrongly
inside the backward, a mistake inside a ``return`` expression, a statement over several
lines, a gradient accumulated in a loop, a spec that is one composite op (a cross-entropy, a
layer norm), and, as controls, straight-line slips and lines that hold a correct local
derivative, which must never be blamed (issue 18, item 18). ``score`` counts right, null and
wrong.

Measured at seed 0 (``python -c "from tests.localization_set import score; print(score())"``):
31 right, 3 null, 0 wrong of 34 (the same at seeds 1 and 2). The three nulls, marked
``found=False``: a softmax whose exp(scores - max) is no value of the spec's at a point
without coincidences (only a composite's softmax, log-softmax and softmax - one_hot are); a
grad_y_pred whose wrong sign equals dL/dy, a right value under another name; and a boolean
mask computed wrong on a line of its own, which no spec value can vouch for, so the line that
applies it is not blamed either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from gradcheck import Derivation, verify
from gradcheck.layers import course_layer
from tests import mutants


@dataclass(frozen=True)
class Case:
    label: str
    kind: str
    derivation: Derivation
    line: str | None  # the wrong statement's first line (a fragment); None: no single line
    variable: str | None = None  # for a return expression, the gradient it returns wrong
    # Lines that hold right values and must never be blamed.
    never: tuple[str, ...] = ()
    # False for a case the finder does not find yet: held only to saying nothing false.
    found: bool = True


def _net(backward) -> Derivation:
    return Derivation(name=backward.__name__, backward=backward, **mutants.TWO_LAYER)


# -- a forward value recomputed wrongly inside the backward -----------------------------------


def relu_as_abs(x, y, w1, w2):
    h = x @ w1
    h_relu = np.abs(h)  # the forward's relu recomputed as abs
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def relu_forgotten(x, y, w1, w2):
    h = x @ w1
    h_relu = h.copy()  # the relu left out of the recomputed forward
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def hidden_from_transposed_weight(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    y_pred = h_relu @ w2 + 0.5  # a bias the forward does not have
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def relu_clipped(x, y, w1, w2):
    h = x @ w1
    h_relu = np.clip(h, 0.0, 0.5)  # relu6-style clipping the forward does not do
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def residual_with_wrong_sign(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    y_pred = h_relu @ w2
    residual = y - y_pred  # y_pred - y
    grad_y_pred = 2.0 * residual
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


# -- a mistake inside the return expression ----------------------------------------------------


def return_w2_doubled(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": 2 * h_relu.T @ grad_y_pred}


def return_w2_from_h(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": h.T @ grad_y_pred}


def return_w1_negated(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": -(x.T @ grad_h), "w2": h_relu.T @ grad_y_pred}


def return_w1_unmasked(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_h_relu = grad_y_pred @ w2.T
    return {"w1": x.T @ grad_h_relu, "w2": h_relu.T @ grad_y_pred}


def return_w2_halved(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    grad_w1 = x.T @ grad_h
    return {"w1": grad_w1, "w2": h_relu.T @ grad_y_pred / 2}


def sigmoid_forward(x):
    return 1 / (1 + np.exp(-x)), x


def sigmoid_return_slip(dout, cache):
    s = 1 / (1 + np.exp(-cache))
    return dout * s * s  # should be s * (1 - s)


def tanh_forward(x):
    return np.tanh(x), x


def tanh_return_slip(dout, cache):
    t = np.tanh(cache)
    return dout * (1 + t**2)  # should be 1 - t**2


# -- statements over several lines -------------------------------------------------------------


# Each statement below is over several lines on purpose.
# fmt: off
def multiline_mask_from_gradient(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h_relu = grad_y_pred @ w2.T
    grad_h = (
        grad_h_relu
        * (grad_h_relu > 0)  # the mask from the gradient, not from h
    )
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def multiline_missing_factor(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = (
        h_relu @ w2
        - y
    )  # the 2 of d/dy_pred (y_pred - y)**2 left out
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def multiline_transposed(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_w2 = np.dot(
        grad_y_pred.T,
        h_relu,
    ).T * 2  # doubled
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


# fmt: on


# -- gradients accumulated in a loop, one window or sample at a time -------------------------


def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_loop_transposed(dout, cache):
    x, w, _b = cache
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for n in range(x.shape[0]):
        dx[n] += w @ dout[n] * 0.5  # halved
        dw += np.outer(x[n], dout[n])
    return dx, dw, dout.sum(axis=0)


def affine_loop_weight_from_dout_twice(dout, cache):
    x, w, _b = cache
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for n in range(x.shape[0]):
        dx[n] += w @ dout[n]
        dw += np.outer(x[n], dout[n]) * (n + 1)  # scaled by the sample's position
    return dx, dw, dout.sum(axis=0)


def affine_loop_bias_squared(dout, cache):
    x, w, b = cache
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)
    for n in range(x.shape[0]):
        dx[n] += w @ dout[n]
        dw += np.outer(x[n], dout[n])
        db += dout[n] ** 2  # squared
    return dx, dw, db


def max_pool_forward(x):
    n_, c_, h, w = x.shape
    out = np.zeros((n_, c_, h // 2, w // 2))
    for i in range(h // 2):
        for j in range(w // 2):
            out[:, :, i, j] = x[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].max(axis=(2, 3))
    return out, x


def max_pool_backward_swapped(dout, cache):
    x = cache
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    window = x[n, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                    a, b = np.unravel_index(np.argmax(window), (2, 2))
                    dx[n, c, 2 * i + b, 2 * j + a] += dout[n, c, i, j]  # a and b swapped
    return dx


def max_pool_backward_to_the_window(dout, cache):
    x = cache
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    dx[n, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2] += dout[n, c, i, j] / 4
    return dx


def _affine(backward) -> Derivation:
    return course_layer(
        affine_forward,
        backward,
        spec=lambda x, w, b: x @ w + b,
        shapes={"x": ("N", "D"), "w": ("D", "M"), "b": ("M",)},
    )


def _max_pool_layer(backward) -> Derivation:
    return course_layer(
        max_pool_forward,
        backward,
        spec=lambda x: torch.nn.functional.max_pool2d(x, 2, 2),
        shapes={"x": ("N", "C", "H", "W")},
        dims={"H": (2, 6), "W": (2, 6)},
    )


# -- specs whose intermediates sit inside one composite op -------------------------------------


def _cross_entropy(scores, labels):
    return torch.nn.functional.cross_entropy(scores, labels)


def softmax_loss_probs_unshifted_wrong(scores, labels):
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=0, keepdims=True)  # normalised over the batch, not the classes
    grad = probs.copy()
    grad[np.arange(scores.shape[0]), labels] -= 1
    return {"scores": grad / scores.shape[0]}


def softmax_loss_not_averaged(scores, labels):
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=1, keepdims=True)
    grad = probs.copy()
    grad[np.arange(scores.shape[0]), labels] -= 1
    grad_scores = grad * 1.0  # the mean's 1/N left out
    return {"scores": grad_scores}


def _softmax_loss(backward) -> Derivation:
    return Derivation(
        name=backward.__name__,
        forward=_cross_entropy,
        backward=backward,
        shapes={"scores": ("N", "C"), "labels": ("N",)},
        wrt=["scores"],
        integers={"labels": lambda s: (0, s["C"] - 1)},
        dims={"C": (2, 8)},
    )


def layer_norm_eps_outside(x, grad_output):
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mean) / (np.sqrt(var) + 1e-5)  # eps outside the square root
    d = x.shape[1]
    grad_xhat = grad_output
    grad_x = (
        d * grad_xhat
        - grad_xhat.sum(axis=1, keepdims=True)
        - xhat * (grad_xhat * xhat).sum(axis=1, keepdims=True)
    ) / (d * np.sqrt(var + 1e-5))
    return {"x": grad_x}


def layer_norm_sum_left_out(x, grad_output):
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + 1e-5)
    d = x.shape[1]
    grad_x = (d * grad_output - xhat * (grad_output * xhat).sum(axis=1, keepdims=True)) / (
        d * np.sqrt(var + 1e-5)
    )  # the - grad_output.sum(axis=1) term left out
    return {"x": grad_x}


def _layer_norm(backward) -> Derivation:
    return Derivation(
        name=backward.__name__,
        forward=lambda x: torch.nn.functional.layer_norm(x, x.shape[-1:]),
        backward=backward,
        shapes={"x": ("N", "D")},
        wrt=["x"],
        dims={"D": (2, 8)},
    )


# -- more of each: a tuple return, a return over lines, a loop over columns, a sigmoid ---------


def affine_tuple_return_doubled(dout, cache):
    x, w, _b = cache
    dx = dout @ w.T
    db = dout.sum(axis=0)
    return dx, 2 * x.T @ dout, db  # dw doubled


def return_over_lines(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {
        "w1": x.T @ grad_h,
        "w2": h_relu.T @ grad_y_pred + w2,  # a weight decay the loss does not have
    }


def relu_forward(x):
    return np.maximum(x, 0.0), x


def relu_loop_over_columns(dout, cache):
    x = cache
    dx = np.zeros_like(x)
    for j in range(x.shape[1]):
        dx[:, j] += dout[:, j] * (x[:, j] < 0)  # the mask from the wrong side
    return dx


def tanh_recomputed_halved(dout, cache):
    t = np.tanh(cache / 2)  # tanh(x) in the forward
    dx = dout * (1 - t**2)
    return dx


# -- straight-line slips (the finder's first class, as a control) ------------------------------


def mask_threshold(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h_relu = grad_y_pred @ w2.T
    grad_h = grad_h_relu * (h < 0)  # the mask from the wrong side
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def mask_on_its_own_line(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h_relu = grad_y_pred @ w2.T
    mask = h < 0  # the wrong side
    grad_h = grad_h_relu * mask
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def grad_y_pred_sign(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (y - h_relu @ w2)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


# -- a correct local derivative must never be blamed (issue 18, item 18) ----------------------

ALPHA = 0.1


def leaky_forward(x):
    return np.where(x > 0, x, ALPHA * x), x


def leaky_slope_then_forgotten_dout(dout, cache):
    x = cache
    slope = np.where(x > 0, 1.0, ALPHA)  # a correct local derivative
    dx = slope  # dout left out
    return dx


def leaky_slope_then_doubled(dout, cache):
    x = cache
    slope = np.where(x > 0, 1.0, ALPHA)  # a correct local derivative
    dx = 2 * dout * slope  # doubled
    return dx


def sigmoid_local_then_forgotten_dout(dout, cache):
    s = 1 / (1 + np.exp(-cache))
    local = s * (1 - s)  # a correct local derivative
    dx = local + 0 * dout  # dout left out
    return dx


def _leaky(backward) -> Derivation:
    return course_layer(
        leaky_forward,
        backward,
        spec=lambda x: torch.nn.functional.leaky_relu(x, ALPHA),
        shapes={"x": ("N", "D")},
    )


def _elementwise(forward, backward, spec) -> Derivation:
    return course_layer(forward, backward, spec=spec, shapes={"x": ("N", "D")})


CASES: tuple[Case, ...] = (
    Case("relu recomputed as abs", "recomputed forward", _net(relu_as_abs),
         "h_relu = np.abs(h)", "h_relu"),
    Case("relu left out of the recomputed forward", "recomputed forward", _net(relu_forgotten),
         "h_relu = h.copy()", "h_relu"),
    Case("a bias the forward lacks", "recomputed forward", _net(hidden_from_transposed_weight),
         "y_pred = h_relu @ w2 + 0.5", "y_pred"),
    Case("relu recomputed with a clip", "recomputed forward", _net(relu_clipped),
         "h_relu = np.clip(h, 0.0, 0.5)", "h_relu"),
    Case("residual of the wrong sign", "recomputed forward", _net(residual_with_wrong_sign),
         "residual = y - y_pred", "residual"),
    Case("w2 doubled in the return", "return expression", _net(return_w2_doubled),
         "return {", "w2"),
    Case("w2 from h in the return", "return expression", _net(return_w2_from_h),
         "return {", "w2"),
    Case("w1 negated in the return", "return expression", _net(return_w1_negated),
         "return {", "w1"),
    Case("w1 unmasked in the return", "return expression", _net(return_w1_unmasked),
         "return {", "w1"),
    Case("w2 halved in the return", "return expression", _net(return_w2_halved),
         "return {", "w2"),
    Case("sigmoid slip in the return", "return expression",
         _elementwise(sigmoid_forward, sigmoid_return_slip, torch.sigmoid),
         "return dout * s * s", "x"),
    Case("tanh slip in the return", "return expression",
         _elementwise(tanh_forward, tanh_return_slip, torch.tanh),
         "return dout * (1 + t**2)", "x"),
    Case("a mask from the gradient over three lines", "multi-line statement",
         _net(multiline_mask_from_gradient), "grad_h = (", "grad_h"),
    Case("the 2 left out over four lines", "multi-line statement",
         _net(multiline_missing_factor), "grad_y_pred = (", "grad_y_pred"),
    Case("a doubled product over four lines", "multi-line statement",
         _net(multiline_transposed), "grad_w2 = np.dot(", "grad_w2"),
    Case("dx halved per sample", "loop", _affine(affine_loop_transposed),
         "dx[n] += w @ dout[n] * 0.5", "dx"),
    Case("dw scaled by the sample's position", "loop", _affine(affine_loop_weight_from_dout_twice),
         "dw += np.outer(x[n], dout[n]) * (n + 1)", "dw"),
    Case("db accumulates squares", "loop", _affine(affine_loop_bias_squared),
         "db += dout[n] ** 2", "db"),
    Case("max pool with the offsets swapped", "loop", _max_pool_layer(max_pool_backward_swapped),
         "dx[n, c, 2 * i + b, 2 * j + a] += dout[n, c, i, j]", "dx"),
    Case("max pool spread over the window", "loop",
         _max_pool_layer(max_pool_backward_to_the_window),
         "dx[n, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2] += dout[n, c, i, j] / 4", "dx"),
    Case("softmax normalised over the batch", "composite op",
         _softmax_loss(softmax_loss_probs_unshifted_wrong),
         "probs = exp / exp.sum(axis=0, keepdims=True)", "probs", found=False),
    Case("cross-entropy's mean left out", "composite op",
         _softmax_loss(softmax_loss_not_averaged), "grad_scores = grad * 1.0", "grad_scores"),
    Case("layer norm with eps outside the root", "composite op",
         _layer_norm(layer_norm_eps_outside), "xhat = (x - mean) / (np.sqrt(var) + 1e-5)", "xhat"),
    Case("layer norm's mean term left out", "composite op", _layer_norm(layer_norm_sum_left_out),
         "grad_x = (d * grad_output", "grad_x"),
    Case("dw doubled in a returned tuple", "return expression",
         _affine(affine_tuple_return_doubled), "return dx, 2 * x.T @ dout, db", "w"),
    Case("a weight decay in a return over lines", "return expression", _net(return_over_lines),
         "return {", "w2"),
    Case("a relu mask from the wrong side, column by column", "loop",
         _elementwise(relu_forward, relu_loop_over_columns, torch.relu),
         "dx[:, j] += dout[:, j] * (x[:, j] < 0)", "dx"),
    Case("a tanh recomputed at half its argument", "recomputed forward",
         _elementwise(tanh_forward, tanh_recomputed_halved, torch.tanh),
         "t = np.tanh(cache / 2)", "t"),
    Case("a mask from the wrong side", "straight line", _net(mask_threshold),
         "grad_h = grad_h_relu * (h < 0)", "grad_h"),
    Case("a mask from the wrong side on its own line", "straight line",
         _net(mask_on_its_own_line), "mask = h < 0", "mask",
         never=("grad_h = grad_h_relu * mask",), found=False),
    Case("grad_y_pred of the wrong sign", "straight line", _net(grad_y_pred_sign),
         "grad_y_pred = 2.0 * (y - h_relu @ w2)", "grad_y_pred", found=False),
    Case("a leaky slope, then dout left out", "correct local derivative",
         _leaky(leaky_slope_then_forgotten_dout), "dx = slope", "dx",
         never=("slope = np.where",)),
    Case("a leaky slope, then doubled", "correct local derivative",
         _leaky(leaky_slope_then_doubled), "dx = 2 * dout * slope", "dx",
         never=("slope = np.where",)),
    Case("a sigmoid local derivative, then dout left out", "correct local derivative",
         _elementwise(sigmoid_forward, sigmoid_local_then_forgotten_dout, torch.sigmoid),
         "dx = local + 0 * dout", "dx", never=("local = s * (1 - s)",)),
)  # fmt: skip


def outcome(case: Case, seed: int = 0) -> tuple[str, str]:
    """("right" | "null" | "wrong", what was found), for one case."""
    report = verify(case.derivation, seed=seed, max_examples=10)
    found = report.localization
    if report.verdict != "fail":
        return "wrong", f"verdict {report.verdict}"
    if found is None:
        return ("right" if case.line is None else "null"), "null"
    said = f"{found.code!r} ({found.variable})"
    if any(fragment in found.code for fragment in case.never):
        return "wrong", said
    if case.line is None or case.line not in found.code:
        return "wrong", said
    if case.variable is not None and found.variable != case.variable:
        return "wrong", said
    return "right", said


def score(cases: Iterable[Case] = CASES) -> dict[str, list[str]]:
    """The labels of the right, null and wrong cases."""
    tally: dict[str, list[str]] = {"right": [], "null": [], "wrong": []}
    for case in cases:
        tally[outcome(case)[0]].append(case.label)
    return tally
