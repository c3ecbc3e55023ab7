"""RMSNorm as a ``torch.library.custom_op``, the way a fused-kernel author writes it: a
forward, a fake kernel for ``torch.compile``, and the backward registered with
``register_autograd``.

The planted bug: a fake kernel that returns the weight's layout transposed, (D, N) where
the op returns (N, D). Every eager test passes; ``torch.compile`` traces the wrong shape.
The ``registration`` check catches it (opcheck's fake-tensor check).
"""

from __future__ import annotations

from typing import Any

import torch

from gradcheck.ops import op_derivation

SHAPES = {"x": ("N", "D"), "w": ("D",)}
CAUGHT_BY = "registration"  # the check that fails the planted bug, and only it


@torch.library.custom_op("examples::rms_norm", mutates_args=())
def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


@rms_norm.register_fake
def _(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.empty_like(x)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, w, eps = inputs
    ctx.save_for_backward(x, w)
    ctx.eps = eps


def _backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
    x, w = ctx.saved_tensors
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + ctx.eps)  # 1 / rms
    g = grad_output * w
    # y = x r w: dy/dx applied to g is r g - r^3 x <g, x> / D
    grad_x = r * g - r**3 * x * (g * x).sum(-1, keepdim=True) / x.shape[-1]
    grad_w = (grad_output * x * r).reshape(-1, x.shape[-1]).sum(0)
    return grad_x, grad_w, None


rms_norm.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("examples::rms_norm_transposed_fake", mutates_args=())
def rms_norm_transposed_fake(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


@rms_norm_transposed_fake.register_fake
def _(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x.new_empty(x.shape[1], x.shape[0])  # planted: (D, N)


rms_norm_transposed_fake.register_autograd(_backward, setup_context=_setup_context)


def spec(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


DECLARED: dict[str, Any] = {
    "spec": spec,
    "shapes": SHAPES,
    "wrt": ["x", "w"],
    "params": {"eps": [1e-6]},
}
correct = op_derivation(rms_norm, **DECLARED)
planted = op_derivation(rms_norm_transposed_fake, **DECLARED)
