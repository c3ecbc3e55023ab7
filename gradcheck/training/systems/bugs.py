"""The seeds' training bugs, rewritten as they were written, for the checks to catch.

- seed 004: ``back_propagation`` updates ``w2`` and then back-propagates through the updated
  ``w2`` for the gradient of ``w1``. Every gradient formula is right; the order is not.
- seed 000: the custom ``TwoLayerNet.forward`` computes ``relu(h)`` and then feeds ``h`` to
  the second layer. Autograd differentiates that consistently: only the spec sees it.
- seed 002: ``if a.grad:`` decides whether to zero *both* gradients by the truth value of
  ``a``'s; when it is exactly 0.0 (a minibatch of zeros), ``b``'s old gradient is kept.
- seed 001: the ReLU mask is taken from the gradient (``grad_h[grad_h < 0] = 0``) instead of
  the pre-activation ``h``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gradcheck.derivations.two_layer import loss
from gradcheck.training.steps import TrainingStep
from gradcheck.training.systems import modules, scalar, two_layer
from gradcheck.training.systems._shared import persistent_leaves

__all__ = [
    "SEED000_H_NOT_RELU_ADAM",
    "SEED001_WRONG_MASK",
    "SEED002_IF_GRAD",
    "SEED002_ZERO_BATCH",
    "SEED004_STALE_W2",
    "Seed000TwoLayerNet",
    "StaleSimpleReLUNN",
]


class StaleSimpleReLUNN(two_layer.SimpleReLUNN):
    """Seed 004's ``back_propagation`` as written."""

    def back_propagation(self) -> None:
        grad_y_predict = 2.0 * (self.y_predict - self.y)
        grad_w2 = np.maximum(self.x @ self.w1, 0).T @ grad_y_predict
        self.w2 = self.w2 - self.lr * grad_w2  # w2 is updated here...
        relu_inner = self.x @ self.w1
        grad_h = grad_y_predict @ self.w2.T  # ...and back-propagated through here
        grad_h[relu_inner < 0] = 0
        grad_w1 = self.x.T @ grad_h
        self.w1 = self.w1 - self.lr * grad_w1


def stale_step(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return two_layer.simple_relu_nn_step(w1, w2, x, y, cls=StaleSimpleReLUNN)


SEED004_STALE_W2 = TrainingStep(
    name="seed004_stale_w2", step=stale_step, loss=loss, params=two_layer.PARAMS,
    batch=two_layer.BATCH, optimizer=two_layer.SIMPLE_RELU_NN.optimizer,
    dims=two_layer.DIMS, bounds=two_layer.BOUNDS,
)  # fmt: skip


class Seed000TwoLayerNet(modules.TwoLayerNet):
    """Seed 000's custom module as written: ``h_relu`` is computed and then not used."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        h_relu = torch.nn.functional.relu(h)  # noqa: F841 (the seed's bug: computed, unused)
        return self.linear2(h)


SEED000_H_NOT_RELU_ADAM = TrainingStep(
    name="seed000_h_not_relu_adam",
    step=modules._optimizer_step(Seed000TwoLayerNet, modules.NET_MAPPING, modules._torch_adam),
    loss=modules.CUSTOM_MODULE_ADAM.loss, params=modules.CUSTOM_MODULE_ADAM.params,
    batch=modules.BATCH, optimizer=modules.CUSTOM_MODULE_ADAM.optimizer, backend="torch",
    state=dict, dims=modules.DIMS, bounds=modules.BOUNDS,
)  # fmt: skip


def if_grad_step(
    a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, state: dict[str, Any]
) -> dict[str, Any]:
    """Seed 002's loop body as written."""
    leaves = persistent_leaves(state, a=a, b=b)
    a, b = leaves["a"], leaves["b"]
    loss = scalar.linear_loss(a, b, x, y)
    if a.grad:
        assert b.grad is not None
        a.grad.data.zero_()
        b.grad.data.zero_()
    loss.backward()
    assert a.grad is not None and b.grad is not None
    a.data = a.data - a.grad.data * scalar.LINEAR_LR["a"]
    b.data = b.data - b.grad.data * scalar.LINEAR_LR["b"]
    return {"a": a.detach().clone(), "b": b.detach().clone()}


SEED002_IF_GRAD = TrainingStep(
    name="seed002_if_grad", step=if_grad_step, loss=scalar.linear_loss,
    params={"a": (), "b": ()}, batch=scalar.BATCH,
    optimizer=scalar.LINEAR_DATALOADER.optimizer, backend="torch", state=dict,
    batch_size=scalar.BATCH_SIZE, dims=scalar.DIMS, bounds=scalar.BOUNDS_LINEAR,
)  # fmt: skip

# A point where the bug shows: the first minibatch is all zeros, so a's gradient is exactly
# 0.0 after step 1 and `if a.grad:` skips zeroing b's before step 2. (Hypothesis draws values
# off zero by design, so this point is written down rather than searched for.)
SEED002_ZERO_BATCH: dict[str, np.ndarray] = {
    "a": np.array(0.5),
    "b": np.array(-0.25),
    "x": np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.5, -1.0, 0.75, 1.0, -0.5]),
    "y": np.array([1.0, -1.0, 0.5, 0.25, 0.0, 1.0, 0.5, -0.5, 0.25, 0.75]),
}


def wrong_mask_step(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Seed 001's numpy step as written: the ReLU mask read off the gradient."""
    h = x @ w1
    h_relu = np.maximum(h, 0.0)
    y_pred = h_relu @ w2
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h = grad_y_pred @ w2.T
    grad_h[grad_h < 0] = 0  # the mask should be h < 0
    grad_w1 = x.T @ grad_h
    return {"w1": w1 - two_layer.LR * grad_w1, "w2": w2 - two_layer.LR * grad_w2}


SEED001_WRONG_MASK = TrainingStep(
    name="seed001_wrong_mask", step=wrong_mask_step, loss=loss, params=two_layer.PARAMS,
    batch=two_layer.BATCH, optimizer=two_layer.NUMPY_HAND_SGD.optimizer,
    dims=two_layer.DIMS, bounds=two_layer.BOUNDS,
)  # fmt: skip
