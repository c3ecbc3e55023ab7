"""standard_model and course_model: a course's numpy model class checked whole, through
model.params and model.loss; the reference classes pass, a broken copy fails at its smallest
settings (a depth, a normalization, a reg), and either L2 convention is accepted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradcheck import DerivationError, verify
from gradcheck.layers import (
    FullyConnectedNet,
    TwoLayerNet,
    course_model,
    standard_model,
)

BUDGET = {"max_examples": 15, "seed": 0}


class TwoLayerNetHalfReg(TwoLayerNet):
    """Correct, with the other convention: 0.5 * reg * sum(W*W), gradient reg * W."""

    def loss(self, X, y=None, reg=0.0):
        if y is None:
            return super().loss(X)
        loss, grads = super().loss(X, y, reg=0.0)
        W1, W2 = self.params["W1"], self.params["W2"]
        loss += 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        return loss, {**grads, "W1": grads["W1"] + reg * W1, "W2": grads["W2"] + reg * W2}


class TwoLayerNetHalfRegGradient(TwoLayerNet):
    """The loss says reg * sum(W*W), the gradient is that of 0.5 * reg * sum(W*W)."""

    def loss(self, X, y=None, reg=0.0):
        if y is None:
            return super().loss(X)
        loss, grads = super().loss(X, y, reg=reg)
        W1, W2 = self.params["W1"], self.params["W2"]
        return loss, {**grads, "W1": grads["W1"] - reg * W1, "W2": grads["W2"] - reg * W2}


class FullyConnectedNetRegOnFirstLayer(FullyConnectedNet):
    """The penalty's gradient added to W1 and the last W only: a loop that stops early."""

    def loss(self, X, y=None):
        if y is None:
            return super().loss(X)
        loss, grads = super().loss(X, y)
        for k in range(2, self.num_layers):
            grads[f"W{k}"] = grads[f"W{k}"] - self.reg * self.params[f"W{k}"]
        return loss, grads


class FullyConnectedNetSwappingGammaBeta(FullyConnectedNet):
    """dgamma and dbeta returned under each other's names."""

    def loss(self, X, y=None):
        if y is None:
            return super().loss(X)
        loss, grads = super().loss(X, y)
        for k in range(1, self.num_layers):
            if f"gamma{k}" in grads:
                grads[f"gamma{k}"], grads[f"beta{k}"] = grads[f"beta{k}"], grads[f"gamma{k}"]
        return loss, grads


def test_the_reference_two_layer_net_passes_and_names_its_penalty():
    report = verify(standard_model("two_layer_net", TwoLayerNet), **BUDGET)
    assert report.verdict == "pass", str(report)
    assert "L2 penalty judged as reg * sum(W * W)" in str(report)


def test_a_two_layer_net_with_the_half_convention_passes_and_says_so():
    report = verify(standard_model("two_layer_net", TwoLayerNetHalfReg), **BUDGET)
    assert report.verdict == "pass", str(report)
    assert "L2 penalty judged as 0.5 * reg * sum(W * W)" in str(report)


def test_a_gradient_of_the_other_convention_fails_where_reg_is_above_zero():
    report = verify(standard_model("two_layer_net", TwoLayerNetHalfRegGradient), **BUDGET)
    assert report.verdict == "fail", str(report)
    assert report.example.params["reg"] > 0
    assert {p.parameter for p in report.problems} == {"W1", "W2"}
    assert "L2 penalty judged as reg * sum(W * W)" in str(report)


def test_the_reference_fully_connected_net_passes_over_depths_and_normalizations():
    report = verify(standard_model("fully_connected_net", FullyConnectedNet), **BUDGET)
    assert report.verdict == "pass", str(report)
    declared = standard_model("fully_connected_net", FullyConnectedNet).param_choices
    assert (declared["layers"].low, declared["layers"].high) == (1, 2)
    assert declared["normalization"].choices == (None, "batchnorm", "layernorm")


@pytest.mark.parametrize(
    ("model", "where"),
    [
        pytest.param(
            FullyConnectedNetRegOnFirstLayer,
            lambda s: s["layers"] >= 2 and s["reg"] > 0,
            id="the penalty missing from middle layers fails from 2 hidden layers",
        ),
        pytest.param(
            FullyConnectedNetSwappingGammaBeta,
            lambda s: s["normalization"] is not None,
            id="swapped dgamma and dbeta fail with a normalization",
        ),
    ],
)
def test_a_broken_fully_connected_net_fails_at_its_smallest_setting(model, where):
    report = verify(standard_model("fully_connected_net", model), **BUDGET)
    assert report.verdict == "fail", str(report)
    assert where(report.example.params), str(report)
    assert "params: layers=" in str(report)


def test_course_model_checks_any_model_with_params_and_loss():
    def spec(W, X, y, penalty_factor):
        return F.cross_entropy(X @ W, y)

    class Softmax:
        def __init__(self, s):
            self.params = {"W": np.zeros((s["D"], s["C"]))}

        def loss(self, X, y):
            scores = X @ self.params["W"]
            probs = np.exp(scores - scores.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            loss = -np.log(probs[np.arange(len(y)), y]).mean()
            probs[np.arange(len(y)), y] -= 1
            return loss, {"W": X.T @ probs / len(y)}

    report = verify(course_model(Softmax, spec=spec, weights={"W": ("D", "C")}), **BUDGET)
    assert report.verdict == "pass", str(report)
    assert torch.is_tensor(spec(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1).long(), 1))


def test_standard_model_names_the_kinds_it_knows():
    with pytest.raises(DerivationError, match="two_layer_net, fully_connected_net"):
        standard_model("three_layer_net", TwoLayerNet)
