"""Seed 002's scalar models trained on a DataLoader's minibatches, with a learning rate per
parameter (the seed's slopes at 1e-4, intercepts at 1e-3; scaled here to its small data):
``a * x + b`` and the chain ``a2 * (a1 * x + b1) + b2``, loss ``sum((y_pred - y)**2) / 2``.

Both keep persistent leaf tensors, zero their gradients before each backward and update
through ``.data``, as the seed does. ``batch_size=5`` makes the checker feed both the hand
step and the reference through ``DataLoader(TensorDataset(x, y), batch_size=5)``.
"""

from __future__ import annotations

from typing import Any

import torch

from gradcheck.derivations.scalar_chain import loss as chain_loss
from gradcheck.training.optimizers import sgd
from gradcheck.training.steps import TrainingStep
from gradcheck.training.systems._shared import persistent_leaves

__all__ = ["LINEAR_DATALOADER", "SCALAR_CHAIN_DATALOADER", "linear_loss"]

BATCH_SIZE = 5  # the seed's DataLoader(batch_size=5)
BATCH = {"x": ("N",), "y": ("N",)}
# Up to three minibatches, the last one short: epochs turn over within 100 steps.
DIMS = {"N": (1, 12)}
# Per-parameter rates, slopes slower than intercepts as in the seed. For a * x + b with every
# value within 1 and 5 samples a batch, the Hessian is [[sum x^2, sum x], [sum x, n]], each
# entry at most 5, so lr_a * 5 + lr_b * 5 = 0.75 < 2 bounds every step's stability. The chain's
# curvature moves with a1 and a2; its rates let no search diverge (120 starting points, 100
# steps each, measured).
LINEAR_LR = {"a": 0.05, "b": 0.1}
CHAIN_LR = {"a1": 0.02, "b1": 0.05, "a2": 0.02, "b2": 0.05}
BOUNDS_LINEAR = {name: (-1.0, 1.0) for name in ("a", "b", "x", "y")}
BOUNDS_CHAIN = {name: (-1.0, 1.0) for name in ("a1", "b1", "a2", "b2", "x", "y")}


def linear_loss(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    y_pred = a * x + b
    return torch.sum((y_pred - y) ** 2) / 2


def linear_step(
    a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, state: dict[str, Any]
) -> dict[str, Any]:
    """Seed 002's loop body, zeroing fixed: ``is not None``, not the tensor's truth value."""
    leaves = persistent_leaves(state, a=a, b=b)
    loss = linear_loss(leaves["a"], leaves["b"], x, y)
    for leaf in leaves.values():
        if leaf.grad is not None:
            leaf.grad.data.zero_()
    loss.backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None
        leaf.data = leaf.data - leaf.grad.data * LINEAR_LR[name]
    return {name: leaf.detach().clone() for name, leaf in leaves.items()}


def chain_step(
    a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor,
    x: torch.Tensor, y: torch.Tensor, state: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Seed 002's two-layer scalar chain: the seed's flag (no gradient yet on the first
    step), then zero, backward, update through ``.data``."""
    leaves = persistent_leaves(state, a1=a1, b1=b1, a2=a2, b2=b2)
    linear1 = leaves["a1"] * x + leaves["b1"]
    y_pred = leaves["a2"] * linear1 + leaves["b2"]
    loss = torch.sum((y_pred - y) ** 2) / 2
    if state.setdefault("flag", 0) != 0:
        for leaf in leaves.values():
            assert leaf.grad is not None
            leaf.grad.data.zero_()
    else:
        state["flag"] = 1
    loss.backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None
        leaf.data = leaf.data - leaf.grad.data * CHAIN_LR[name]
    return {name: leaf.detach().clone() for name, leaf in leaves.items()}


LINEAR_DATALOADER = TrainingStep(
    name="linear_dataloader", step=linear_step, loss=linear_loss,
    params={"a": (), "b": ()}, batch=BATCH, optimizer=sgd(lr=LINEAR_LR), backend="torch",
    state=dict, batch_size=BATCH_SIZE, dims=DIMS, bounds=BOUNDS_LINEAR,
)  # fmt: skip

SCALAR_CHAIN_DATALOADER = TrainingStep(
    name="scalar_chain_dataloader", step=chain_step, loss=chain_loss,
    params={"a1": (), "b1": (), "a2": (), "b2": ()}, batch=BATCH, optimizer=sgd(lr=CHAIN_LR),
    backend="torch", state=dict, batch_size=BATCH_SIZE, dims=DIMS, bounds=BOUNDS_CHAIN,
)  # fmt: skip
