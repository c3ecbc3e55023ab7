"""A custom ReLU ``torch.autograd.Function``, checked through its own backward."""

from __future__ import annotations

from typing import Any

import torch

from gradcheck.derivation import Derivation


class MyReLU(torch.autograd.Function):
    """``max(x, 0)`` with a hand-written backward: the gradient passes where x > 0."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_output * (x > 0).to(grad_output.dtype)  # relu'(x): 1 if x > 0 else 0


def relu_spec(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x)


def function_backward(x: torch.Tensor, grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the Function's own backward: apply it, then pull grad_output back through it."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        (grad_x,) = torch.autograd.grad(MyReLU.apply(leaf), leaf, grad_output)
    return {"x": grad_x}


my_relu_function = Derivation(
    name="my_relu_function",
    forward=relu_spec,
    backward=function_backward,
    shapes={"x": ("N", "D")},
    wrt=("x",),
    backend="torch",
)
