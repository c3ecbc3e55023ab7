"""method_step: seed 004's numpy class, as the seed wrote it, checked in one line against
SGD; its stale-w2 bug fails, the fixed class passes."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import DerivationError
from gradcheck.derivations.two_layer import loss
from gradcheck.training import method_step, verify_step


class SimpleReLUNN:
    """Seed 004's class as written (its __init__ draws weights, prints, uses np.float)."""

    def __init__(self, x, y, sample_num, sample_feature, hidden_units, hidden_output_dim, lr):
        self.lr = lr
        self.w1 = np.random.randn(sample_feature, hidden_units)
        self.w2 = np.random.randn(hidden_units, hidden_output_dim)
        self.x = x
        self.y = y
        print("x.shape\n", x.shape)
        self.y_predict = np.zeros((sample_num, hidden_output_dim), dtype=np.float)

    def forward(self):
        h = self.x.dot(self.w1)
        relu_output = np.maximum(h, 0)
        self.y_predict = relu_output.dot(self.w2)

    def back_propagation(self):
        grad_y_predict = 2.0 * (self.y_predict - self.y)
        grad_w2 = np.maximum(self.x.dot(self.w1), 0).T.dot(grad_y_predict)
        self.w2 = self.w2 - self.lr * grad_w2
        relu_inner = self.x.dot(self.w1)
        grad_h = grad_y_predict.dot(self.w2.T)
        grad_h[relu_inner < 0] = 0
        grad_w1 = self.x.T.dot(grad_h)
        self.w1 = self.w1 - self.lr * grad_w1


class FixedReLUNN(SimpleReLUNN):
    def back_propagation(self):
        grad_y_predict = 2.0 * (self.y_predict - self.y)
        relu_inner = self.x.dot(self.w1)
        grad_w2 = np.maximum(relu_inner, 0).T.dot(grad_y_predict)
        grad_h = grad_y_predict.dot(self.w2.T)  # the old w2: both gradients first
        grad_h[relu_inner < 0] = 0
        self.w2 = self.w2 - self.lr * grad_w2
        self.w1 = self.w1 - self.lr * self.x.T.dot(grad_h)


SHAPES = {
    "params": {"w1": ("D", "H"), "w2": ("H", "O")},
    "batch": {"x": ("N", "D"), "y": ("N", "O")},
    "dims": {"N": (1, 4), "D": (1, 4), "H": (1, 4), "O": (1, 3)},
    "bounds": {"w1": (-1.0, 1.0), "w2": (-1.0, 1.0), "x": (-1.0, 1.0), "y": (-1.0, 1.0)},
}


def _step(cls):
    return method_step(cls, calls=("forward", "back_propagation"), loss=loss, lr=1e-3, **SHAPES)


def test_the_fixed_class_passes_against_sgd():
    report = verify_step(_step(FixedReLUNN), steps=3, max_examples=5, seed=0)
    assert report.verdict == "pass", str(report)


def test_seed_004_as_written_fails_at_its_first_step_in_w1():
    report = verify_step(_step(SimpleReLUNN), steps=3, max_examples=5, seed=0)
    assert report.verdict == "fail", str(report)
    assert report.step == 1  # the first step: the stale w2 shows at once
    assert "step 1 of 3" in str(report)
    assert report.parameter == "w1"


def test_a_call_the_class_does_not_have_is_named():
    with pytest.raises(DerivationError, match="no method 'backward'"):
        method_step(SimpleReLUNN, calls=("forward", "backward"), loss=loss, lr=1e-3, **SHAPES)
