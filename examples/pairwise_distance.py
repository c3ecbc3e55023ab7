"""Pairwise Euclidean distances d_ij = |x_i - y_j| as a ``torch.autograd.Function`` that
saves the distances instead of the differences (memory: N x M, not N x M x D).

dd_ij/dx_i = (x_i - y_j) / d_ij, so grad_x = (G / d) summed against (x_i - y_j), written as
two matmuls: grad_x = diag(rowsum W) x - W y with W = G / d (and grad_y likewise). The
planted bug: the backward flattens grad_output with ``.view``, which needs contiguous
memory; training hands it the gradient of ``d.t()`` or of a slice, which is not. The
``strided`` check catches it.
"""

from __future__ import annotations

from typing import Any

import torch

from gradcheck import function_derivation

SHAPES = {"x": ("N", "D"), "y": ("M", "D")}
CAUGHT_BY = "strided"


def spec(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x[:, None, :] - y[None, :, :]).pow(2).sum(-1).sqrt()


class PairwiseDistance(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = spec(x, y)
        ctx.save_for_backward(x, y, d)
        return d

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, d = ctx.saved_tensors
        w = grad_output / d
        grad_x = w.sum(1, keepdim=True) * x - w @ y
        grad_y = w.sum(0)[:, None] * y - w.T @ x
        return grad_x, grad_y


class PairwiseDistanceView(PairwiseDistance):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, d = ctx.saved_tensors
        n, m = d.shape
        w = (grad_output.view(n * m) / d.reshape(n * m)).view(n, m)  # planted: .view
        grad_x = w.sum(1, keepdim=True) * x - w @ y
        grad_y = w.sum(0)[:, None] * y - w.T @ x
        return grad_x, grad_y


# Points apart: the distance has a kink where two points meet.
BOUNDS = {"x": (-2.0, -0.5), "y": (0.5, 2.0)}
correct = function_derivation(
    PairwiseDistance, spec=spec, shapes=SHAPES, wrt=["x", "y"], bounds=BOUNDS
)
planted = function_derivation(
    PairwiseDistanceView, spec=spec, shapes=SHAPES, wrt=["x", "y"], bounds=BOUNDS
)
