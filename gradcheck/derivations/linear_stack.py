"""The seeds' three-layer linear stack with biases, loss ``sum((out - y)**2)**2 / 2``.

The backward is composed from ``layer_vjp``, a shape-robust version of the seed's
``cal_grad``: it never squeezes, so a batch of one sample and a layer one unit wide keep their
shapes, and it also returns the bias gradient.
"""

from __future__ import annotations

import numpy as np
import torch

from gradcheck.derivation import Derivation


def layer_vjp(
    prev: np.ndarray, grad_out: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Back through ``out = prev @ weight + bias``: gradients of prev, weight and bias.

    ``prev`` is (N, D_in), ``grad_out`` is (N, D_out), ``weight`` is (D_in, D_out).
    """
    grad_prev = grad_out @ weight.T  # (N, D_in)
    grad_weight = prev.T @ grad_out  # (D_in, D_out): summed over the batch
    grad_bias = grad_out.sum(axis=0)  # (D_out,): the bias is broadcast over the batch
    return grad_prev, grad_weight, grad_bias


def layer_forward(prev: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return prev @ weight + bias


def layer_backward(
    prev: np.ndarray, weight: np.ndarray, bias: np.ndarray, grad_output: np.ndarray
) -> dict[str, np.ndarray]:
    grad_prev, grad_weight, grad_bias = layer_vjp(prev, grad_output, weight)
    return {"prev": grad_prev, "weight": grad_weight, "bias": grad_bias}


def stack_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    w3: torch.Tensor,
    b3: torch.Tensor,
) -> torch.Tensor:
    out1 = x @ w1 + b1
    out2 = out1 @ w2 + b2
    out3 = out2 @ w3 + b3  # (N, 1)
    out = out3[:, 0]  # not .squeeze(): a batch of one must stay a batch
    return ((out - y) ** 2).sum() ** 2 / 2


def stack_backward(
    x: np.ndarray,
    y: np.ndarray,
    w1: np.ndarray,
    b1: np.ndarray,
    w2: np.ndarray,
    b2: np.ndarray,
    w3: np.ndarray,
    b3: np.ndarray,
) -> dict[str, np.ndarray]:
    out1 = x @ w1 + b1
    out2 = out1 @ w2 + b2
    out3 = out2 @ w3 + b3
    residual = out3[:, 0] - y  # (N,)
    squared_error = np.sum(residual**2)  # s; loss = s**2 / 2
    grad_squared_error = squared_error  # d(s**2 / 2)/ds = s
    grad_out3 = (grad_squared_error * 2.0 * residual)[:, None]  # ds/dresidual = 2 * residual
    grad_out2, grad_w3, grad_b3 = layer_vjp(out2, grad_out3, w3)
    grad_out1, grad_w2, grad_b2 = layer_vjp(out1, grad_out2, w2)
    _, grad_w1, grad_b1 = layer_vjp(x, grad_out1, w1)
    return {
        "w1": grad_w1,
        "b1": grad_b1,
        "w2": grad_w2,
        "b2": grad_b2,
        "w3": grad_w3,
        "b3": grad_b3,
    }


linear_layer_vjp = Derivation(
    name="linear_layer_vjp",
    forward=layer_forward,
    backward=layer_backward,
    shapes={"prev": ("N", "D_in"), "weight": ("D_in", "D_out"), "bias": ("D_out",)},
    wrt=("prev", "weight", "bias"),
)

linear_stack = Derivation(
    name="linear_stack",
    forward=stack_loss,
    backward=stack_backward,
    shapes={
        "x": ("N", "D0"),
        "y": ("N",),
        "w1": ("D0", "D1"),
        "b1": ("D1",),
        "w2": ("D1", "D2"),
        "b2": ("D2",),
        "w3": ("D2", 1),
        "b3": (1,),
    },
    wrt=("w1", "b1", "w2", "b2", "w3", "b3"),
    # sum(...)**2 is quartic in the data: smaller values keep the loss within a few decades.
    bounds={name: (-1.0, 1.0) for name in ("x", "y", "w1", "b1", "w2", "b2", "w3", "b3")},
)
