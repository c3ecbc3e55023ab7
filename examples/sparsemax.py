"""Sparsemax (Martins & Astudillo, 2016) as a ``torch.autograd.Function``: the Euclidean
projection of each row onto the simplex, sparse where softmax is dense.

Its Jacobian is diag(s) - s s^T / |S| on the support S (s its indicator), so the backward
centres grad_output over the support only. The planted bug: the mean taken over the whole
row (/ D) instead of over the support (/ |S|), which is right only where nothing is zero.
The ``backward`` check catches it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from gradcheck import function_derivation

SHAPES = {"x": ("N", "D")}
CAUGHT_BY = "mismatch"  # the backward check (a wrong gradient)


def spec(x: torch.Tensor) -> torch.Tensor:
    """tau with sum(relu(x - tau)) = 1, found on the sorted row; sparsemax = relu(x - tau)."""
    z, _ = torch.sort(x, dim=-1, descending=True)
    k = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    cumulative = z.cumsum(-1) - 1
    support = (k * z > cumulative).sum(-1, keepdim=True)
    tau = cumulative.gather(-1, support - 1) / support.to(x.dtype)
    return torch.clamp(x - tau, min=0)


class Sparsemax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = spec(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        support = (y > 0).to(grad_output.dtype)
        # (diag(s) - s s^T / |S|) g = s * (g - <s, g> / |S|)
        mean = (grad_output * support).sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
        return support * (grad_output - mean)


class SparsemaxRowMean(Sparsemax):
    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        support = (y > 0).to(grad_output.dtype)
        mean = (grad_output * support).sum(-1, keepdim=True) / y.shape[-1]  # planted: / D
        return support * (grad_output - mean)


correct = function_derivation(Sparsemax, spec=spec, shapes=SHAPES, wrt=["x"])
planted = function_derivation(SparsemaxRowMean, spec=spec, shapes=SHAPES, wrt=["x"])
