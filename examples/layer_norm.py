"""LayerNorm over the last dim with a weight, as apex-style Functions write it: the mean and
the reciprocal standard deviation are computed in forward and saved, so that backward need
not recompute them.

Tensors computed inside forward are saved without a graph, so a backward built on them is
right at first order and its own derivative is not: a gradient penalty, a Hessian-vector
product or ``gradgradcheck`` through it is silently wrong. The correct version says so
with ``@once_differentiable``; the planted bug leaves the decorator off. The
``double_backward`` check catches it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from gradcheck import function_derivation

SHAPES = {"x": ("N", "D"), "w": ("D",)}
CAUGHT_BY = "double backward"
EPS = 1e-5


def spec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), eps=EPS) * w


def _backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x_hat, rstd, w = ctx.saved_tensors
    g = grad_output * w
    # d x_hat / d x applied to g: rstd (g - mean(g) - x_hat mean(g x_hat))
    grad_x = rstd * (g - g.mean(-1, keepdim=True) - x_hat * (g * x_hat).mean(-1, keepdim=True))
    grad_w = (grad_output * x_hat).reshape(-1, x_hat.shape[-1]).sum(0)
    return grad_x, grad_w


class LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        rstd = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + EPS)
        x_hat = (x - mean) * rstd
        ctx.save_for_backward(x_hat, rstd, w)
        return x_hat * w

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _backward(ctx, grad_output)


class LayerNormTwiceDifferentiated(LayerNorm):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _backward(ctx, grad_output)  # planted: claims a derivative it does not have


DECLARED: dict[str, Any] = {"spec": spec, "shapes": SHAPES, "wrt": ["x", "w"]}
correct = function_derivation(LayerNorm, **DECLARED)
planted = function_derivation(LayerNormTwiceDifferentiated, **DECLARED)
