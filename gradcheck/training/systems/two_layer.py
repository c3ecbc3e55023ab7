"""The seeds' bias-free two-layer ReLU net, ``relu(x @ w1) @ w2``, loss ``sum((y_pred - y)**2)``,
trained by plain gradient descent five ways (seeds 000, 001, 003, 004).

Each is held to ``torch.optim.SGD`` on autograd gradients of the same spec loss
(``gradcheck.derivations.two_layer.loss``). The hand-derived backwards are the verified
derivations of ``gradcheck.derivations.two_layer``; what is checked here is the training step
around them: the update, the learning rate, the gradient zeroing, the order of the updates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gradcheck.derivations.relu_function import MyReLU
from gradcheck.derivations.two_layer import SHAPES, backward_numpy, backward_torch, loss
from gradcheck.training.optimizers import sgd
from gradcheck.training.steps import TrainingStep
from gradcheck.training.systems._shared import persistent_leaves

__all__ = [
    "AUTOGRAD_MANUAL_SGD",
    "MY_RELU_MANUAL_SGD",
    "NUMPY_HAND_SGD",
    "SIMPLE_RELU_NN",
    "TORCH_HAND_SGD",
    "SimpleReLUNN",
]

PARAMS = {name: SHAPES[name] for name in ("w1", "w2")}
BATCH = {name: SHAPES[name] for name in ("x", "y")}
# Small nets, so that a search of many starting points over 100 steps stays within seconds;
# size 1 stays in, where broadcasting and squeeze bugs live.
DIMS = {"N": (1, 8), "D_in": (1, 6), "H": (1, 6), "D_out": (1, 4)}
BOUNDS = {name: (-1.0, 1.0) for name in SHAPES}
# The seeds' 1e-6 suits N=64, D_in=1000 with randn values. At these sizes and bounds 1e-3
# let no search diverge (120 starting points per system, 100 steps each, measured) while the
# loss still falls by half or more within 100 steps.
LR = 1e-3


def numpy_sgd_step(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Seeds 000/001/003 in numpy: the hand backward, then ``w -= lr * grad``."""
    grads = backward_numpy(x=x, y=y, w1=w1, w2=w2)
    return {"w1": w1 - LR * grads["w1"], "w2": w2 - LR * grads["w2"]}


def torch_sgd_step(
    w1: torch.Tensor, w2: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> dict[str, Any]:
    """Seeds 000/001/003 in torch tensors (CPU or CUDA): the hand backward, in-place update."""
    grads = backward_torch(x=x, y=y, w1=w1, w2=w2)
    w1 -= LR * grads["w1"]
    w2 -= LR * grads["w2"]
    return {"w1": w1, "w2": w2}


def _backward_and_update(leaves: dict[str, torch.Tensor], loss: torch.Tensor) -> dict[str, Any]:
    """The rest of seed 000's autograd loop: ``loss.backward()``, a manual update under
    ``no_grad``, then ``grad.zero_()`` for the next iteration; the new values, detached."""
    loss.backward()
    with torch.no_grad():
        for leaf in leaves.values():
            assert leaf.grad is not None
            leaf -= LR * leaf.grad
            leaf.grad.zero_()
    return {name: leaf.detach().clone() for name, leaf in leaves.items()}


def autograd_sgd_step(
    w1: torch.Tensor, w2: torch.Tensor, x: torch.Tensor, y: torch.Tensor, state: dict[str, Any]
) -> dict[str, Any]:
    """Seed 000's autograd loop: persistent leaves, ``loss.backward()``, a manual update under
    ``no_grad``, then ``grad.zero_()`` for the next iteration."""
    leaves = persistent_leaves(state, w1=w1, w2=w2)
    y_pred = x.mm(leaves["w1"]).clamp(min=0).mm(leaves["w2"])
    return _backward_and_update(leaves, (y_pred - y).pow(2).sum())


def my_relu_sgd_step(
    w1: torch.Tensor, w2: torch.Tensor, x: torch.Tensor, y: torch.Tensor, state: dict[str, Any]
) -> dict[str, Any]:
    """Seed 000's loop with the custom ``MyReLU`` autograd Function in place of clamp."""
    leaves = persistent_leaves(state, w1=w1, w2=w2)
    y_pred = MyReLU.apply(x.mm(leaves["w1"])).mm(leaves["w2"])
    return _backward_and_update(leaves, (y_pred - y).pow(2).sum())


class SimpleReLUNN:
    """Seed 004's class, with its bug fixed: ``back_propagation`` takes both gradients at the
    same parameters, then updates both."""

    def __init__(self, x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray, lr: float):
        self.x, self.y, self.w1, self.w2, self.lr = x, y, w1, w2, lr

    def forward(self) -> float:
        self.h = self.x @ self.w1  # (N, H)
        self.h_relu = np.maximum(self.h, 0.0)
        self.y_predict = self.h_relu @ self.w2  # (N, D_out)
        return float(np.square(self.y_predict - self.y).sum())

    def back_propagation(self) -> None:
        grad_y_predict = 2.0 * (self.y_predict - self.y)  # d/dy_predict of the sum of squares
        grad_w2 = self.h_relu.T @ grad_y_predict  # y_predict = h_relu @ w2
        grad_h = (grad_y_predict @ self.w2.T) * (self.h > 0)  # through relu, with the old w2
        grad_w1 = self.x.T @ grad_h  # h = x @ w1
        self.w2 = self.w2 - self.lr * grad_w2
        self.w1 = self.w1 - self.lr * grad_w1


def simple_relu_nn_step(
    w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray, *, cls: type = SimpleReLUNN
) -> dict[str, Any]:
    """Seed 004's in-place methods wrapped as a step: forward, back_propagation, read out."""
    net = cls(x, y, w1, w2, LR)
    net.forward()
    net.back_propagation()
    return {"w1": net.w1, "w2": net.w2}


def _declare(name: str, step: Any, backend: str, *, stateful: bool = False) -> TrainingStep:
    return TrainingStep(
        name=name, step=step, loss=loss, params=PARAMS, batch=BATCH, optimizer=sgd(lr=LR),
        backend=backend, state=dict if stateful else None, dims=DIMS, bounds=BOUNDS,
    )  # fmt: skip


NUMPY_HAND_SGD = _declare("numpy_hand_sgd", numpy_sgd_step, "numpy")
TORCH_HAND_SGD = _declare("torch_hand_sgd", torch_sgd_step, "torch")
AUTOGRAD_MANUAL_SGD = _declare("autograd_manual_sgd", autograd_sgd_step, "torch", stateful=True)
MY_RELU_MANUAL_SGD = _declare("my_relu_manual_sgd", my_relu_sgd_step, "torch", stateful=True)
SIMPLE_RELU_NN = _declare("simple_relu_nn", simple_relu_nn_step, "numpy")
