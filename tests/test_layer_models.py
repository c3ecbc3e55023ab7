"""standard_model and course_model: a course's numpy model class checked whole, through
model.params and model.loss; the reference classes pass, a broken copy fails at its smallest
settings (a depth, a normalization, a reg), and either L2 convention is accepted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradcheck import DerivationError, check, verify
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


def test_the_penalty_missing_from_middle_layers_fails_from_two_hidden_layers():
    model = standard_model("fully_connected_net", FullyConnectedNetRegOnFirstLayer)
    report = verify(model, max_examples=5, seed=0)
    assert report.verdict == "fail", str(report)
    assert report.example.params["layers"] == 2 and report.example.params["reg"] > 0
    assert {p.parameter for p in report.problems} == {"W2"}  # the middle layer's weight
    assert "params: layers=2" in str(report)


def _fc_point(model, *, layers, normalization):
    """One point of the fully connected net's declaration, at the given depth and norm."""
    from gradcheck.strategies import seeded_inputs

    settings = {"layers": layers, "normalization": normalization, "reg": 0.5, "C": 3}
    dims = {"N": 3, "D": 2, "H1": 3, "O2": 2 if layers == 2 else 3, "O3": 3 if layers == 2 else 1}
    return {**seeded_inputs(model, dims, 0, settings), **settings}


@pytest.mark.parametrize("normalization", ["batchnorm", "layernorm"])
def test_swapped_dgamma_and_dbeta_fail_with_a_normalization_and_pass_without(normalization):
    model = standard_model("fully_connected_net", FullyConnectedNetSwappingGammaBeta)
    with_norm = check(model, _fc_point(model, layers=1, normalization=normalization))
    assert with_norm.verdict == "fail", str(with_norm)
    assert {p.parameter for p in with_norm.problems} == {"gamma1", "beta1"}
    without = check(model, _fc_point(model, layers=2, normalization=None))
    assert without.verdict == "pass", str(without)


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
