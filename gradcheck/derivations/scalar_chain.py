"""The seeds' scalar chain ``a2 * (a1 * x + b1) + b2``, loss ``sum((y_pred - y)**2) / 2``."""

from __future__ import annotations

import numpy as np
import torch

from gradcheck.derivation import Derivation


def loss(
    x: torch.Tensor,
    y: torch.Tensor,
    a1: torch.Tensor,
    b1: torch.Tensor,
    a2: torch.Tensor,
    b2: torch.Tensor,
) -> torch.Tensor:
    y_pred = a2 * (a1 * x + b1) + b2
    return ((y_pred - y) ** 2).sum() / 2


def backward(
    x: np.ndarray,
    y: np.ndarray,
    a1: np.ndarray,
    b1: np.ndarray,
    a2: np.ndarray,
    b2: np.ndarray,
) -> dict[str, np.ndarray]:
    linear1 = a1 * x + b1  # (N,)
    y_pred = a2 * linear1 + b2  # (N,)
    grad_y_pred = y_pred - y  # d/dy_pred of sum((y_pred - y)**2) / 2
    grad_a2 = np.sum(grad_y_pred * linear1)  # y_pred = a2 * linear1 + b2
    grad_b2 = np.sum(grad_y_pred)
    grad_linear1 = grad_y_pred * a2
    grad_a1 = np.sum(grad_linear1 * x)  # linear1 = a1 * x + b1
    grad_b1 = np.sum(grad_linear1)
    return {"a1": grad_a1, "b1": grad_b1, "a2": grad_a2, "b2": grad_b2}


scalar_chain = Derivation(
    name="scalar_chain",
    forward=loss,
    backward=backward,
    shapes={"x": ("N",), "y": ("N",), "a1": (), "b1": (), "a2": (), "b2": ()},
    wrt=("a1", "b1", "a2", "b2"),
)
