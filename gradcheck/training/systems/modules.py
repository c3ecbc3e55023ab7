"""The seeds' two-layer net built from ``torch.nn`` (seeds 000, 001, 004): ``nn.Sequential``
with a manual update, with ``optim.SGD`` and with ``optim.Adam``; a custom ``nn.Module`` with
Adam; seed 004's bias-free module with Adam.

The spec is the function the seeds meant, ``relu(x @ w1 + b1) @ w2 + b2`` with the sum of
squares (``nn.MSELoss(reduction="sum")``); ``w1`` is ``linear1.weight`` transposed. Each step
keeps its module (and optimizer) in its state, as the seeds' loops do, so the checks see the
real ``zero_grad`` / ``backward`` / ``step`` sequence and the optimizer's own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from gradcheck.derivations.two_layer import SHAPES as BIAS_FREE_SHAPES
from gradcheck.derivations.two_layer import loss as bias_free_loss
from gradcheck.training.models import ModelSpec
from gradcheck.training.optimizers import OptimizerSpec, adam, sgd
from gradcheck.training.steps import TrainingStep
from gradcheck.training.systems._shared import (
    TWO_LAYER_SHAPES,
    load,
    read,
    two_layer_loss_with_bias,
)

__all__ = [
    "BIAS_FREE_MODULE_ADAM",
    "BIAS_FREE_SPEC",
    "CUSTOM_MODULE_ADAM",
    "NET_SPEC",
    "SEQUENTIAL_ADAM",
    "SEQUENTIAL_MANUAL_SGD",
    "SEQUENTIAL_OPTIM_SGD",
    "SEQUENTIAL_SPEC",
    "BiasFreeTwoLayerNet",
    "TwoLayerNet",
    "two_layer_sequential",
]

BATCH = {"x": ("N", "D_in"), "y": ("N", "D_out")}
DIMS = {"N": (1, 8), "D_in": (1, 6), "H": (1, 6), "D_out": (1, 4)}
BOUNDS = {name: (-1.0, 1.0) for name in (*TWO_LAYER_SHAPES, *BATCH)}
# As for the bias-free net (systems.two_layer): no search diverged at these sizes.
SGD_LR = 1e-3
# Adam moves every weight by about lr per step whatever the gradient's scale; 1e-2 lets the
# loss fall visibly within 100 steps (the seeds' 1e-4 needs their 500).
ADAM_LR = 1e-2

SEQUENTIAL_MAPPING = {"w1": "0.weight.T", "b1": "0.bias", "w2": "2.weight.T", "b2": "2.bias"}
NET_MAPPING = {
    "w1": "linear1.weight.T",
    "b1": "linear1.bias",
    "w2": "linear2.weight.T",
    "b2": "linear2.bias",
}
BIAS_FREE_MAPPING = {"w1": "linear1.weight.T", "w2": "linear2.weight.T"}


def two_layer_sequential(d_in: int, h: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, d_out))


class TwoLayerNet(nn.Module):
    """Seed 000's custom module, as it was meant: the second layer reads ``relu(h)``."""

    def __init__(self, d_in: int, h: int, d_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, h)
        self.linear2 = nn.Linear(h, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        h_relu = torch.nn.functional.relu(h)
        return self.linear2(h_relu)


class BiasFreeTwoLayerNet(nn.Module):
    """Seed 004's module: two bias-free layers with a clamp between them."""

    def __init__(self, d_in: int, h: int, d_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, h, bias=False)
        self.linear2 = nn.Linear(h, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.linear1(x).clamp(min=0))


def two_layer_spec(
    x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
) -> torch.Tensor:
    return torch.relu(x @ w1 + b1) @ w2 + b2


def bias_free_spec(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ w1) @ w2


SEQUENTIAL_SPEC = ModelSpec(
    name="two_layer_sequential", forward=two_layer_spec, inputs={"x": ("N", "D_in")},
    parameters=SEQUENTIAL_MAPPING, shapes=TWO_LAYER_SHAPES, dims={"N": (1, 8)},
)  # fmt: skip
NET_SPEC = ModelSpec(
    name="two_layer_net", forward=two_layer_spec, inputs={"x": ("N", "D_in")},
    parameters=NET_MAPPING, shapes=TWO_LAYER_SHAPES, dims={"N": (1, 8)},
)  # fmt: skip
BIAS_FREE_SPEC = ModelSpec(
    name="bias_free_two_layer_net", forward=bias_free_spec, inputs={"x": ("N", "D_in")},
    parameters=BIAS_FREE_MAPPING,
    shapes={name: BIAS_FREE_SHAPES[name] for name in BIAS_FREE_MAPPING}, dims={"N": (1, 8)},
)  # fmt: skip


def _model(state: dict[str, Any], make: Any, params: Mapping[str, torch.Tensor]) -> nn.Module:
    """The step's module, built on the first call at the parameters' sizes and device."""
    if "model" not in state:
        d_in, h = params["w1"].shape
        d_out = params["w2"].shape[1]
        state["model"] = make(d_in, h, d_out).to(torch.float64).to(params["w1"].device)
    model: nn.Module = state["model"]
    return model


def sequential_manual_sgd_step(
    w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
    x: torch.Tensor, y: torch.Tensor, state: dict[str, Any],
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Seeds 000/001: ``model.zero_grad()``, backward, ``param -= lr * param.grad``."""
    params = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    model = _model(state, two_layer_sequential, params)
    load(model, SEQUENTIAL_MAPPING, params)
    loss = nn.MSELoss(reduction="sum")(model(x), y)
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            assert param.grad is not None
            param.sub_(SGD_LR * param.grad)  # param -= lr * param.grad
    return read(model, SEQUENTIAL_MAPPING)


def _optimizer_step(
    make: Any,
    mapping: Mapping[str, str],
    optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer],
) -> Any:
    """The seeds' optimizer loop: ``zero_grad``, backward, ``step``, with one module and one
    optimizer kept across steps."""

    def step(*, x: torch.Tensor, y: torch.Tensor, state: dict[str, Any], **params: Any) -> Any:
        model = _model(state, make, params)
        if "optimizer" not in state:
            state["optimizer"] = optimizer(model.parameters())
        load(model, mapping, params)
        loss = nn.MSELoss(reduction="sum")(model(x), y)
        state["optimizer"].zero_grad()
        loss.backward()
        state["optimizer"].step()
        return read(model, mapping)

    return step


def _declare(name: str, step: Any, optimizer: OptimizerSpec, *, bias: bool = True) -> TrainingStep:
    shapes = TWO_LAYER_SHAPES if bias else {k: BIAS_FREE_SHAPES[k] for k in BIAS_FREE_MAPPING}
    return TrainingStep(
        name=name, step=step, loss=two_layer_loss_with_bias if bias else bias_free_loss,
        params=shapes, batch=BATCH, optimizer=optimizer, backend="torch", state=dict,
        dims=DIMS, bounds={k: v for k, v in BOUNDS.items() if k in shapes or k in BATCH},
    )  # fmt: skip


SEQUENTIAL_MANUAL_SGD = _declare(
    "sequential_manual_sgd", sequential_manual_sgd_step, sgd(lr=SGD_LR)
)


def _torch_sgd(parameters: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=SGD_LR)


def _torch_adam(parameters: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=ADAM_LR)


SEQUENTIAL_OPTIM_SGD = _declare(
    "sequential_optim_sgd",
    _optimizer_step(two_layer_sequential, SEQUENTIAL_MAPPING, _torch_sgd),
    sgd(lr=SGD_LR),
)
SEQUENTIAL_ADAM = _declare(
    "sequential_adam",
    _optimizer_step(two_layer_sequential, SEQUENTIAL_MAPPING, _torch_adam),
    adam(lr=ADAM_LR),
)
CUSTOM_MODULE_ADAM = _declare(
    "custom_module_adam", _optimizer_step(TwoLayerNet, NET_MAPPING, _torch_adam),
    adam(lr=ADAM_LR),
)  # fmt: skip
BIAS_FREE_MODULE_ADAM = _declare(
    "bias_free_module_adam",
    _optimizer_step(BiasFreeTwoLayerNet, BIAS_FREE_MAPPING, _torch_adam),
    adam(lr=ADAM_LR),
    bias=False,
)
