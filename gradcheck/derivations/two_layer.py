"""The seeds' two-layer ReLU net, ``relu(x @ w1) @ w2`` with loss ``sum((y_pred - y)**2)``.

Each backward recomputes the forward it needs and then walks the chain rule back, one line
per term. The numpy and torch versions are the same derivation in two array libraries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gradcheck.derivation import Derivation

SHAPES: dict[str, tuple[str | int, ...]] = {
    "x": ("N", "D_in"),
    "y": ("N", "D_out"),
    "w1": ("D_in", "H"),
    "w2": ("H", "D_out"),
}
WRT = ("w1", "w2")


def loss(x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """The spec: what the hand derivations claim to differentiate."""
    y_pred = torch.relu(x @ w1) @ w2
    return ((y_pred - y) ** 2).sum()


def backward_numpy(
    x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray
) -> dict[str, np.ndarray]:
    h = x @ w1  # (N, H)
    h_relu = np.maximum(h, 0.0)  # (N, H)
    y_pred = h_relu @ w2  # (N, D_out)
    grad_y_pred = 2.0 * (y_pred - y)  # d/dy_pred of sum((y_pred - y)**2)
    grad_w2 = h_relu.T @ grad_y_pred  # y_pred = h_relu @ w2
    grad_h_relu = grad_y_pred @ w2.T
    grad_h = grad_h_relu * (h > 0)  # relu'(h) is 1 where the unit is active, else 0
    grad_w1 = x.T @ grad_h  # h = x @ w1
    return {"w1": grad_w1, "w2": grad_w2}


def backward_torch(
    x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor
) -> dict[str, torch.Tensor]:
    h = x.mm(w1)
    h_relu = h.clamp(min=0)
    y_pred = h_relu.mm(w2)
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.t().mm(grad_y_pred)
    grad_h_relu = grad_y_pred.mm(w2.t())
    grad_h = grad_h_relu.masked_fill(h <= 0, 0.0)  # relu'(h) = 0 off the active units
    grad_w1 = x.t().mm(grad_h)
    return {"w1": grad_w1, "w2": grad_w2}


def two_layer_relu(name: str, backward: Callable[..., Any], *, backend: str) -> Derivation:
    """The net's ``Derivation`` with ``backward`` as the hand derivation held to ``loss``
    (``two_layer_fast.py`` declares its variants with it too).

    >>> two_layer_relu("mine", backward_numpy, backend="numpy").wrt
    ('w1', 'w2')
    """
    return Derivation(
        name=name, forward=loss, backward=backward, shapes=SHAPES, wrt=WRT, backend=backend
    )


two_layer_relu_numpy = two_layer_relu("two_layer_relu_numpy", backward_numpy, backend="numpy")
two_layer_relu_torch = two_layer_relu("two_layer_relu_torch", backward_torch, backend="torch")
