"""What the seed systems share: persistent leaves and modules that a step keeps between calls.

A seed training loop keeps its parameters between iterations (leaf tensors, a module, an
optimizer's state). Written as a step, it keeps them in its ``state`` and, on each call, starts
from the values the checker passes, which are the ones it returned the call before.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import torch

__all__ = ["TWO_LAYER_SHAPES", "load", "persistent_leaves", "read", "two_layer_loss_with_bias"]

# The seeds' two-layer net with biases (nn.Linear layers), in the spec's orientation:
# a layer computes x @ w + b, so w is nn.Linear's weight transposed.
TWO_LAYER_SHAPES: dict[str, tuple[str | int, ...]] = {
    "w1": ("D_in", "H"),
    "b1": ("H",),
    "w2": ("H", "D_out"),
    "b2": ("D_out",),
}


def two_layer_loss_with_bias(
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """The spec: ``sum((relu(x @ w1 + b1) @ w2 + b2 - y)**2)``, as MSELoss(reduction="sum")."""
    y_pred = torch.relu(x @ w1 + b1) @ w2 + b2
    return ((y_pred - y) ** 2).sum()


def persistent_leaves(
    state: MutableMapping[str, Any], **values: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The step's own leaf tensors: made on the first call and kept, gradients and all, as a
    training loop keeps them; set to ``values`` on every call."""
    if not state:
        state.update({k: v.detach().clone().requires_grad_(True) for k, v in values.items()})
    else:
        with torch.no_grad():
            for name, value in values.items():
                state[name].copy_(value)
    return {name: state[name] for name in values}


def _target(module: torch.nn.Module, target: str) -> tuple[torch.Tensor, bool]:
    name, transpose = (target[:-2], True) if target.endswith(".T") else (target, False)
    return dict(module.named_parameters())[name], transpose


def load(module: torch.nn.Module, mapping: Mapping[str, str], values: Mapping[str, Any]) -> None:
    """Set the module's parameters from spec-named ``values`` (``mapping``: spec name to
    module parameter, ``.T`` where the spec holds the transpose)."""
    with torch.no_grad():
        for name, target in mapping.items():
            parameter, transpose = _target(module, target)
            value = torch.as_tensor(values[name], dtype=parameter.dtype)
            parameter.copy_(value.T if transpose else value)


def read(module: torch.nn.Module, mapping: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """The module's parameters under their spec names, in the spec's orientation (copies)."""
    out = {}
    for name, target in mapping.items():
        parameter, transpose = _target(module, target)
        value = parameter.detach()
        out[name] = (value.T if transpose else value).clone()
    return out
