"""A labelled catalogue of wrong derivations whose cause is known.

Each entry is one mistake with what a report must say about it (``must_name``: fragments of
the diagnosis that names the cause) and what it must not say (``must_not_name``: mechanisms
that are not the cause but that one shrunk example can make look plausible). The first
entries are the misleading cases of issue 11; the rest are the classic slips and a few more.
``tests/test_catalogue.py`` holds every report to its labels; ``score`` counts the misses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gradcheck import Derivation, verify
from gradcheck.layers import standard_layer
from tests import mutants

# Fragments of the mechanism claims a report can make, for must-not-name lists.
WRONG_TENSOR = "the mask comes from the wrong tensor"
MASKS_LEFT_OUT = "ReLU masks left out"
MASK_NOT_APPLIED = "a mask that is not applied"
FACTOR = "off by a constant factor"
SIGN = "sign flipped"
TRANSPOSED = "transposed"
SQUEEZE = "collapses a size-1 dim"
ONLY_FROM = "fails only from"
STALE = "stale weights"
WRONG_SIDE = "a mask taken from the wrong tensor, or from the wrong side"
EVERY_CLAIM = (WRONG_TENSOR, MASKS_LEFT_OUT, MASK_NOT_APPLIED, FACTOR, SIGN, TRANSPOSED,
               SQUEEZE, ONLY_FROM, STALE, WRONG_SIDE)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    label: str
    derivation: Derivation
    must_name: tuple[str, ...] = ()
    must_not_name: tuple[str, ...] = ()
    # The "First wrong line" the report must point at: a fragment of that line's source.
    wrong_line: str | None = None
    # False where tests/test_diagnose.py already verifies the derivation and holds its report
    # to these labels (``entry_for``): scored by ``score``, not verified a second time.
    in_suite: bool = True


def _others(*named: str) -> tuple[str, ...]:
    """Every claim except the ones that are the cause (and their synonyms)."""
    return tuple(claim for claim in EVERY_CLAIM if claim not in named)


TWO_LAYER = mutants.TWO_LAYER


# -- the misleading cases of issue 11 ---------------------------------------------------------


def thresholded_mask(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_h_relu = grad_y_pred @ w2.T
    grad_h = grad_h_relu * (h > 0.05)  # the mask is h > 0, not h > 0.05
    return {"w1": x.T @ grad_h, "w2": h_relu.T @ grad_y_pred}


REG = 0.1


def _ridge_loss(x, y, w):
    return ((x @ w - y) ** 2).sum() + REG * (w**2).sum()


def ridge_regularisation_off_by_two(x, y, w):
    grad_pred = 2.0 * (x @ w - y)
    grad_w = x.T @ grad_pred + REG * w  # d/dw of reg * sum(w**2) is 2 * reg * w
    return {"w": grad_w}


ridge = Derivation(
    name="ridge_regularisation_off_by_two",
    forward=_ridge_loss,
    backward=ridge_regularisation_off_by_two,
    shapes={"x": ("N", "D"), "y": ("N", "K"), "w": ("D", "K")},
    wrt=["w"],
)


def _softmax_loss(scores, labels):
    return F.cross_entropy(scores, labels, reduction="sum")


def correct_class_twice(scores, labels):
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    grad_scores = probs.copy()
    rows = np.arange(scores.shape[0])
    grad_scores[rows, labels] -= 1
    grad_scores[rows, labels] -= 1  # the correct class subtracted twice
    return {"scores": grad_scores}


softmax_twice = Derivation(
    name="correct_class_twice",
    forward=_softmax_loss,
    backward=correct_class_twice,
    shapes={"scores": ("N", "C"), "labels": ("N",)},
    wrt=["scores"],
    integers={"labels": lambda s: (0, s["C"] - 1)},
)


def straight_through(x, grad_output):
    return {"x": grad_output.copy()}  # tanh's straight-through estimator: not its derivative


straight_through_tanh = Derivation(
    name="straight_through_tanh",
    forward=torch.tanh,
    backward=straight_through,
    shapes={"x": ("N", "D")},
    wrt=["x"],
)


def first_12_rows(x, y, w1, w2):
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_w2 = h_relu[:12].T @ grad_y_pred[:12]  # only the first 12 samples
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": grad_w2}


def _square_layer(x, weight):
    return x @ weight


def transposed_square_weight_backward(x, weight, grad_output):
    grad_x = grad_output @ weight  # should be grad_output @ weight.T
    return {"x": grad_x, "weight": x.T @ grad_output}


transposed_square_weight = Derivation(
    name="transposed_square_weight",
    forward=_square_layer,
    backward=transposed_square_weight_backward,
    shapes={"x": ("N", "D"), "weight": ("D", "D")},
    wrt=["x", "weight"],
)


def conv_forward_rounded(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, _, H, W = x.shape
    F_, _, HH, WW = w.shape
    H_out = 1 + round((H + 2 * pad - HH) / stride)  # round(): one too many when it rounds up
    W_out = 1 + round((W + 2 * pad - WW) / stride)
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F_, H_out, W_out))
    for n in range(N):
        for f in range(F_):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
                    if window.shape[1:] == (HH, WW):
                        out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, conv_param)


def conv_backward_plain(dout, cache):
    x, w, _, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, F_, H_out, W_out = dout.shape
    _, _, HH, WW = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad, dw = np.zeros_like(x_pad), np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F_):
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * stride, i * stride + HH)
                    cols = slice(j * stride, j * stride + WW)
                    dw[f] += x_pad[n, :, rows, cols] * dout[n, f, i, j]
                    dx_pad[n, :, rows, cols] += w[f] * dout[n, f, i, j]
    dx = dx_pad[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dw, db


# The standard conv searched beyond its valid strides (where=None): round() goes wrong only
# where the stride does not step exactly to the far edge.
conv_rounded = dataclasses.replace(
    standard_layer(
        "conv", conv_forward_rounded, conv_backward_plain, name="conv_rounded_output_size"
    ),
    where=None,
)


# -- more of the same kind --------------------------------------------------------------------


def relu_recomputed_as_abs(x, y, w1, w2):
    h = x @ w1
    h_relu = np.abs(h)  # the spec has a ReLU
    grad_y_pred = 2.0 * (h_relu @ w2 - y)
    grad_h = (grad_y_pred @ w2.T) * (h > 0)
    return {"w1": x.T @ grad_h, "w2": h_relu.T @ grad_y_pred}


def _sigmoid_layer(x, w, b):
    return torch.sigmoid(x @ w + b)


def sigmoid_without_one_minus(x, w, b, grad_output):
    s = 1 / (1 + np.exp(-(x @ w + b)))
    grad_z = grad_output * s  # forgot the (1 - s)
    return {"x": grad_z @ w.T, "w": x.T @ grad_z, "b": grad_z.sum(axis=0)}


sigmoid_missing_term = Derivation(
    name="sigmoid_without_one_minus",
    forward=_sigmoid_layer,
    backward=sigmoid_without_one_minus,
    shapes={"x": ("N", "D_in"), "w": ("D_in", "D_out"), "b": ("D_out",)},
    wrt=["x", "w", "b"],
)


def _mean_linear(x, w, b):
    return (x @ w + b).mean(dim=0)


def bias_mean_for_sum(x, w, b, grad_output):
    n = x.shape[0]
    return {"w": x.T @ (grad_output[None, :] / n).repeat(n, 0), "b": grad_output / n}  # db = dout


bias_divided_twice = Derivation(
    name="bias_gradient_divided_by_n",
    forward=_mean_linear,
    backward=bias_mean_for_sum,
    shapes={"x": ("N", "D"), "w": ("D", "K"), "b": ("K",)},
    wrt=["w", "b"],
    dims={"N": (3, 8)},
)


def _leaky(x):
    return F.leaky_relu(x, 0.01)


def leaky_slope_wrong(x, grad_output):
    return {"x": grad_output * np.where(x > 0, 1.0, 0.1)}  # the slope is 0.01


leaky_wrong_slope = Derivation(
    name="leaky_relu_wrong_slope",
    forward=_leaky,
    backward=leaky_slope_wrong,
    shapes={"x": ("N", "D")},
    wrt=["x"],
)


def _scaled_torch(x, w):
    return ((x @ w) ** 2).sum()


def torch_half_gradient(x, w):
    pred = x.mm(w)
    grad_pred = pred  # d/dpred of pred**2 is 2 * pred
    return {"w": x.t().mm(grad_pred)}


torch_missing_two = Derivation(
    name="torch_missing_factor_two",
    forward=_scaled_torch,
    backward=torch_half_gradient,
    shapes={"x": ("N", "D"), "w": ("D", "K")},
    wrt=["w"],
    backend="torch",
)


CATALOGUE = (
    Entry("thresholded ReLU mask", mutants._two_layer(thresholded_mask),
          must_not_name=EVERY_CLAIM, wrong_line="grad_h = grad_h_relu * (h > 0.05)"),
    Entry("regularisation gradient off by 2", ridge, must_not_name=EVERY_CLAIM,
          wrong_line="grad_w = x.T @ grad_pred + REG * w"),
    Entry("correct class subtracted twice", softmax_twice, must_not_name=EVERY_CLAIM,
          wrong_line="grad_scores[rows, labels] -= 1  # the correct"),
    Entry("straight-through estimator for tanh", straight_through_tanh,
          must_not_name=EVERY_CLAIM),
    # N from 10: the search need not climb from 1 (its cost, not the diagnosis's).
    Entry("sums only the first 12 rows",
          Derivation(name="first_12_rows", backward=first_12_rows, dims={"N": (10, 16)},
                     **TWO_LAYER),
          must_name=("fails only from N = 13",), must_not_name=_others(ONLY_FROM),
          wrong_line="grad_w2 = h_relu[:12].T @ grad_y_pred[:12]"),
    Entry("transposed square weight in grad_x", transposed_square_weight,
          must_name=("'weight' used transposed",), must_not_name=_others(TRANSPOSED),
          wrong_line="grad_x = grad_output @ weight"),
    Entry("conv output size with round()", conv_rounded, must_not_name=EVERY_CLAIM),
    Entry("factor 2 missing", mutants.missing_factor_two_net, in_suite=False,
          must_name=("off by a constant factor: hand = 1/2",), must_not_name=_others(FACTOR)),
    Entry("a sum for a mean", mutants.mean_loss_summed_gradient, in_suite=False,
          must_name=("off by a constant factor: hand = N",), must_not_name=_others(FACTOR)),
    Entry("sign flipped", mutants.flipped_sign_net, in_suite=False,
          must_name=("'w2' has its sign flipped",), must_not_name=_others(SIGN)),
    Entry("grad_weight transposed", mutants.transposed_weight, in_suite=False,
          must_name=("'weight' is transposed",), must_not_name=_others(TRANSPOSED)),
    Entry("seed 001: mask from grad_h", mutants.seed001_mask_from_gradient, in_suite=False,
          must_name=(WRONG_TENSOR,), must_not_name=_others(WRONG_TENSOR, WRONG_SIDE),
          wrong_line="grad_h[grad_h < 0] = 0"),
    Entry("seed 001 in torch", mutants.seed001_mask_from_gradient_torch, in_suite=False,
          must_name=(WRONG_TENSOR,), must_not_name=_others(WRONG_TENSOR, WRONG_SIDE),
          wrong_line="grad_h[grad_h < 0] = 0"),
    Entry("missing ReLU mask", mutants.missing_relu_mask_net, in_suite=False,
          must_name=(MASKS_LEFT_OUT,),
          must_not_name=_others(MASKS_LEFT_OUT, MASK_NOT_APPLIED, WRONG_SIDE)),
    Entry("seed 004: stale w2", mutants.seed004_stale_w2, in_suite=False,
          must_name=(STALE, "w2 - 0.01 * grad_w2"), must_not_name=_others(STALE),
          wrong_line="updated_w2 = w2 - learning_rate * grad_w2"),
    Entry("seed 002: squeeze", mutants.seed002_squeeze, in_suite=False,
          must_name=(SQUEEZE,), must_not_name=_others(SQUEEZE)),
    Entry("wrong only from N = 13", mutants.large_batch_only_net,
          must_name=("fails only from N = 13",),
          must_not_name=_others(ONLY_FROM, FACTOR), in_suite=False),
    Entry("ReLU recomputed as abs in the backward", mutants._two_layer(relu_recomputed_as_abs),
          must_not_name=EVERY_CLAIM, wrong_line="h_relu = np.abs(h)"),
    Entry("sigmoid without (1 - s)", sigmoid_missing_term, must_not_name=EVERY_CLAIM,
          wrong_line="grad_z = grad_output * s"),
    Entry("bias gradient divided by N", bias_divided_twice,
          must_name=("'b' is off by a constant factor: hand = 1/N",),
          must_not_name=_others(FACTOR)),
    Entry("leaky ReLU with the wrong slope", leaky_wrong_slope,
          must_name=("wrong only where x < 0",), must_not_name=_others(WRONG_SIDE)),
    Entry("torch backend, factor 2 missing", torch_missing_two,
          must_name=("off by a constant factor: hand = 1/2",), must_not_name=_others(FACTOR),
          wrong_line="grad_pred = pred"),
)  # fmt: skip


def entry_for(derivation: Derivation) -> Entry | None:
    """The catalogue's entry for ``derivation``, if it has one."""
    return next((entry for entry in CATALOGUE if entry.derivation is derivation), None)


def score(entries=CATALOGUE, *, seed: int = 0, max_examples: int = 50) -> dict[str, list[str]]:
    """Wrong diagnoses (a must-not-name said) and missed names (a must-name not said)."""
    wrong, missed = [], []
    for entry in entries:
        report = verify(entry.derivation, seed=seed, max_examples=max_examples)
        said = "\n".join(report.diagnoses)
        wrong += [f"{entry.label}: {claim}" for claim in entry.must_not_name if claim in said]
        missed += [f"{entry.label}: {name}" for name in entry.must_name if name not in said]
    return {"wrong": wrong, "missed": missed}


if __name__ == "__main__":
    result = score()
    print(f"wrong diagnoses: {len(result['wrong'])}, missed names: {len(result['missed'])}")
    for line in result["wrong"]:
        print("  wrong:", line)
    for line in result["missed"]:
        print("  missed:", line)
