"""A bilinear form per sample, y_b = x_b^T W z_b, as a ``torch.autograd.Function`` with the
three gradients written as einsums.

dy_b/dx_b = W z_b, dy_b/dz_b = W^T x_b and dy_b/dW = x_b z_b^T, each scaled by g_b. The
planted bug: the weight's gradient without g_b, the product of the saved inputs alone;
right where grad_output is all ones (a plain ``.sum()`` loss), wrong in any real network.
The ``backward`` check catches it, since its grad_output is drawn at random.
"""

from __future__ import annotations

from typing import Any

import torch

from gradcheck import function_derivation

SHAPES = {"x": ("B", "I"), "w": ("I", "J"), "z": ("B", "J")}
CAUGHT_BY = "mismatch"


def spec(x: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return ((x @ w) * z).sum(-1)


class Bilinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w, z)
        return torch.einsum("bi,ij,bj->b", x, w, z)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w, z = ctx.saved_tensors
        grad_x = torch.einsum("b,ij,bj->bi", g, w, z)
        grad_w = torch.einsum("b,bi,bj->ij", g, x, z)
        grad_z = torch.einsum("b,bi,ij->bj", g, x, w)
        return grad_x, grad_w, grad_z


class BilinearUnscaledWeight(Bilinear):
    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w, z = ctx.saved_tensors
        grad_x = torch.einsum("b,ij,bj->bi", g, w, z)
        grad_w = torch.einsum("bi,bj->ij", x, z)  # planted: g left out
        grad_z = torch.einsum("b,bi,ij->bj", g, x, w)
        return grad_x, grad_w, grad_z


correct = function_derivation(Bilinear, spec=spec, shapes=SHAPES, wrt=["x", "w", "z"])
planted = function_derivation(BilinearUnscaledWeight, spec=spec, shapes=SHAPES, wrt=["x", "w", "z"])
