"""Mish (x tanh(softplus(x))) as timm writes its memory-efficient version: only x is saved,
and the backward recomputes what it needs.

d/dx [x tanh(s)] = tanh(s) + x (1 - tanh(s)^2) sigmoid(x), as softplus' = sigmoid. The
planted bug: ``1 - tanh(s)`` for ``1 - tanh(s)^2``, a slip that leaves the gradient close
for large |x| (where tanh(s) is near 0 or 1) and wrong in between. The ``backward`` check
catches it wherever x is not 0; the search shrinks to x = 0, where the slipped term is
multiplied by 0 and only its derivative is wrong, so the ``double_backward`` check is the
one the smallest example shows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gradcheck import function_derivation

SHAPES = {"x": ("N", "D")}
CAUGHT_BY = "double backward"  # at the smallest example, x = 0


def spec(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))


class Mish(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.tanh(F.softplus(x))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        t = torch.tanh(F.softplus(x))
        return grad_output * (t + x * (1 - t * t) * torch.sigmoid(x))


class MishSquareDropped(Mish):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        t = torch.tanh(F.softplus(x))
        return grad_output * (t + x * (1 - t) * torch.sigmoid(x))  # planted: 1 - t


correct = function_derivation(Mish, spec=spec, shapes=SHAPES, wrt=["x"])
planted = function_derivation(MishSquareDropped, spec=spec, shapes=SHAPES, wrt=["x"])
