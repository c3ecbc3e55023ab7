"""Derivations with one planted bug each: the seeds' own bugs and the classic slips.

Each is the correct derivation from gradcheck.derivations with exactly one thing changed,
so a test that expects it to fail is testing the checker, not a different function.
"""

from __future__ import annotations

import numpy as np

from gradcheck import Derivation
from gradcheck.derivations import linear_stack as stack
from gradcheck.derivations import two_layer

TWO_LAYER = {"forward": two_layer.loss, "shapes": two_layer.SHAPES, "wrt": two_layer.WRT}


def _two_layer_parts(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    return h, h_relu, grad_y_pred


def mask_from_gradient(x, y, w1, w2):
    """Seed 001: the ReLU mask is taken from grad_h instead of h."""
    _h, h_relu, grad_y_pred = _two_layer_parts(x, y, w1, w2)
    grad_h = (grad_y_pred @ w2.T).copy()
    grad_h[grad_h < 0] = 0
    return {"w1": x.T @ grad_h, "w2": h_relu.T @ grad_y_pred}


def mask_from_gradient_torch(x, y, w1, w2):
    """Seed 001, torch version."""
    h = x.mm(w1)
    h_relu = h.clamp(min=0)
    grad_y_pred = 2 * (h_relu.mm(w2) - y)
    grad_h = grad_y_pred.mm(w2.t()).clone()
    grad_h[grad_h < 0] = 0
    return {"w1": x.t().mm(grad_h), "w2": h_relu.t().mm(grad_y_pred)}


def stale_w2(x, y, w1, w2, learning_rate=1e-2):
    """Seed 004: w2 is updated first, and grad_w1 back-propagates through the new w2."""
    h, h_relu, grad_y_pred = _two_layer_parts(x, y, w1, w2)
    grad_w2 = h_relu.T @ grad_y_pred
    updated_w2 = w2 - learning_rate * grad_w2
    grad_h = grad_y_pred @ updated_w2.T
    grad_h[h < 0] = 0
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def missing_factor_two(x, y, w1, w2):
    h, h_relu, grad_y_pred = _two_layer_parts(x, y, w1, w2)
    grad_y_pred = grad_y_pred / 2.0  # d/dy of (y - t)**2 taken as (y - t)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": h_relu.T @ grad_y_pred}


def flipped_sign(x, y, w1, w2):
    h, h_relu, grad_y_pred = _two_layer_parts(x, y, w1, w2)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": -(h_relu.T @ grad_y_pred)}


def missing_relu_mask(x, y, w1, w2):
    _h, h_relu, grad_y_pred = _two_layer_parts(x, y, w1, w2)
    grad_h = grad_y_pred @ w2.T
    return {"w1": x.T @ grad_h, "w2": h_relu.T @ grad_y_pred}


def mutates_input(x, y, w1, w2):
    result = two_layer.backward_numpy(x, y, w1, w2)
    w1 -= 0.01 * result["w1"]  # an update step left inside the backward
    return result


def nan_result(x, y, w1, w2):
    result = two_layer.backward_numpy(x, y, w1, w2)
    result["w2"] = result["w2"] * np.nan
    return result


def mask_less_equal(x, y, w1, w2):
    """Correct: relu'(0) taken as 0."""
    h, h_relu, grad_y_pred = _two_layer_parts(x, y, w1, w2)
    grad_h = grad_y_pred @ w2.T
    grad_h[h <= 0] = 0
    return {"w1": x.T @ grad_h, "w2": h_relu.T @ grad_y_pred}


def mask_less(x, y, w1, w2):
    """Correct: relu'(0) taken as 1 (the seeds' `grad_h[h < 0] = 0`)."""
    h, h_relu, grad_y_pred = _two_layer_parts(x, y, w1, w2)
    grad_h = grad_y_pred @ w2.T
    grad_h[h < 0] = 0
    return {"w1": x.T @ grad_h, "w2": h_relu.T @ grad_y_pred}


def wrong_only_for_large_batches(x, y, w1, w2):
    """Right for N <= 12, wrong above: the search must reach the top of the default range."""
    result = two_layer.backward_numpy(x, y, w1, w2)
    if x.shape[0] > 12:
        result["w2"] = result["w2"] * 1.5
    return result


def squeezing_layer_vjp(prev, grad_out, weight):
    """Seed 002's cal_grad: per-sample products, then .squeeze() on everything."""
    grad_prev = np.matmul(weight, grad_out[:, :, None]).squeeze()
    grad_weight = np.matmul(prev[:, :, None], grad_out[:, None, :]).squeeze()
    return grad_prev, grad_weight.sum(axis=0), grad_out.sum(axis=0)


def squeezing_stack_backward(x, y, w1, b1, w2, b2, w3, b3):
    out1 = x @ w1 + b1
    out2 = out1 @ w2 + b2
    residual = (out2 @ w3 + b3)[:, 0] - y
    grad_out3 = (np.sum(residual**2) * 2.0 * residual)[:, None]
    grad_out2, grad_w3, grad_b3 = squeezing_layer_vjp(out2, grad_out3, w3)
    grad_out1, grad_w2, grad_b2 = squeezing_layer_vjp(out1, grad_out2, w2)
    _, grad_w1, grad_b1 = squeezing_layer_vjp(x, grad_out1, w1)
    return {
        "w1": grad_w1,
        "b1": grad_b1,
        "w2": grad_w2,
        "b2": grad_b2,
        "w3": grad_w3,
        "b3": grad_b3,
    }


def stack_without_bias_gradient(x, y, w1, b1, w2, b2, w3, b3):
    result = stack.stack_backward(x, y, w1, b1, w2, b2, w3, b3)
    del result["b1"]
    return result


def square_layer_forward(x, weight):
    return x @ weight


def transposed_weight_gradient(x, weight, grad_output):
    """grad_weight written as grad_out.T @ x: the right shape only because weight is square."""
    return {"x": grad_output @ weight.T, "weight": grad_output.T @ x}


def _two_layer(backward, name=None, backend="numpy"):
    return Derivation(
        name=name or backward.__name__, backward=backward, backend=backend, **TWO_LAYER
    )


def _stack(backward):
    correct = stack.linear_stack
    return Derivation(
        name=backward.__name__,
        forward=correct.forward,
        backward=backward,
        shapes=correct.shapes,
        wrt=correct.wrt,
        bounds=correct.bounds,
    )


seed001_mask_from_gradient = _two_layer(mask_from_gradient)
seed001_mask_from_gradient_torch = _two_layer(mask_from_gradient_torch, backend="torch")
seed004_stale_w2 = _two_layer(stale_w2)
seed002_squeeze = _stack(squeezing_stack_backward)
missing_factor_two_net = _two_layer(missing_factor_two)
flipped_sign_net = _two_layer(flipped_sign)
missing_relu_mask_net = _two_layer(missing_relu_mask)
mutated_input_net = _two_layer(mutates_input)
nan_result_net = _two_layer(nan_result)
large_batch_only_net = _two_layer(wrong_only_for_large_batches)
missing_bias_gradient = _stack(stack_without_bias_gradient)
transposed_weight = Derivation(
    name="transposed_weight",
    forward=square_layer_forward,
    backward=transposed_weight_gradient,
    shapes={"x": ("N", "D"), "weight": ("D", "D")},
    wrt=("x", "weight"),
)


def _summed_instead_of_mean(x, w):
    return {"w": x.sum(axis=0)}  # forgot the 1/N of the mean


mean_loss_summed_gradient = Derivation(
    name="mean_loss_summed_gradient",
    forward=lambda x, w: (x @ w).mean(),
    backward=_summed_instead_of_mean,
    shapes={"x": ("N", "D"), "w": ("D",)},
    wrt=["w"],
    dims={"N": (3, 8)},  # from 3: at N = 2 a factor N reads as a plain 2
)


def _wrong_when_square(x, w):
    grad = x.T @ np.ones((x.shape[0], w.shape[1]))
    return {"w": grad.T if w.shape[0] == w.shape[1] else grad}


square_only_bug = Derivation(
    name="square_only_bug",
    forward=lambda x, w: (x @ w).sum(),
    backward=_wrong_when_square,
    shapes={"x": ("N", "D"), "w": ("D", "H")},
    wrt=["w"],
)

correct_mask_less = _two_layer(mask_less)
correct_mask_less_equal = _two_layer(mask_less_equal)

# The mutants whose bugs show on integer grids full of ReLU hinges (tests/test_check.py).
GRID_MUTANTS = (
    seed004_stale_w2,
    missing_relu_mask_net,
    seed001_mask_from_gradient,
    missing_factor_two_net,
)
