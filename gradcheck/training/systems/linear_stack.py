"""Seed 002's three-layer linear stack, ``((x @ w1 + b1) @ w2 + b2) @ w3 + b3``, loss
``sum((out - y)**2)**2 / 2``, trained on a DataLoader's minibatches with the hand backward
built from the per-layer VJP (the seed's ``cal_grad``, made shape-safe and given biases in
``gradcheck.derivations.linear_stack.layer_vjp``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck.derivations.linear_stack import layer_vjp, stack_loss
from gradcheck.training.optimizers import sgd
from gradcheck.training.steps import TrainingStep

__all__ = ["LINEAR_STACK_CAL_GRAD"]

PARAMS: dict[str, tuple[str | int, ...]] = {
    "w1": ("D0", "D1"), "b1": ("D1",),
    "w2": ("D1", "D2"), "b2": ("D2",),
    "w3": ("D2", 1), "b3": (1,),
}  # fmt: skip
BATCH: dict[str, tuple[str | int, ...]] = {"x": ("N", "D0"), "y": ("N",)}
BATCH_SIZE = 5  # the seed's DataLoader(batch_size=5)
DIMS = {"N": (1, 12), "D0": (1, 3), "D1": (1, 3), "D2": (1, 3)}
# The loss is quartic in the residuals, so its curvature grows with the outputs: weights and
# biases within 1/2 keep every output within 3 * (3 * (3 * 0.5 + 0.5) * 0.5 + 0.5) * 0.5 + 0.5
# = 5.75 at width 3, and at that scale 1e-3 let no search diverge (120 starting points, 100
# steps each, measured). The seed's layers are 2 wide.
BOUNDS = {**{name: (-0.5, 0.5) for name in PARAMS}, "x": (-1.0, 1.0), "y": (-1.0, 1.0)}
LR = 1e-3


def cal_grad_step(
    w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
    w3: np.ndarray, b3: np.ndarray, x: np.ndarray, y: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Forward, then back layer by layer with ``layer_vjp``, then ``p -= lr * grad``."""
    out1 = x @ w1 + b1
    out2 = out1 @ w2 + b2
    out3 = out2 @ w3 + b3  # (N, 1)
    residual = out3[:, 0] - y  # (N,)
    squared_error = np.sum(residual**2)  # loss = squared_error**2 / 2
    grad_out3 = (squared_error * 2.0 * residual)[:, None]  # dloss/ds = s; ds/dr = 2 r
    grad_out2, grad_w3, grad_b3 = layer_vjp(out2, grad_out3, w3)
    grad_out1, grad_w2, grad_b2 = layer_vjp(out1, grad_out2, w2)
    _, grad_w1, grad_b1 = layer_vjp(x, grad_out1, w1)
    grads = {
        "w1": grad_w1, "b1": grad_b1, "w2": grad_w2, "b2": grad_b2, "w3": grad_w3, "b3": grad_b3,
    }  # fmt: skip
    params = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3, "b3": b3}
    return {name: params[name] - LR * grads[name] for name in params}


LINEAR_STACK_CAL_GRAD = TrainingStep(
    name="linear_stack_cal_grad", step=cal_grad_step, loss=stack_loss, params=PARAMS,
    batch=BATCH, optimizer=sgd(lr=LR), batch_size=BATCH_SIZE, dims=DIMS, bounds=BOUNDS,
)  # fmt: skip
