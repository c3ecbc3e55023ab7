"""Softmax and its log-normaliser from one pass, as attention kernels return them: two
outputs, with ``materialize_grads`` off so that an unused output costs nothing in backward.

With p = softmax(x) and l = logsumexp(x): dl/dx = p, and the softmax Jacobian is
diag(p) - p p^T, so x's gradient is p * (g_p - <g_p, p>) + g_l p. The planted bug: the
backward adds g_l without asking whether it is None, which it is whenever the loss uses
the probabilities only. The ``undefined_grad`` check catches it (and so does the double
backward, which differentiates through the saved p and hands the backward None for l).
"""

from __future__ import annotations

from typing import Any

import torch

from gradcheck import function_derivation

SHAPES = {"x": ("N", "D")}
CAUGHT_BY = "undefined grad"


def spec(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.softmax(x, dim=-1), torch.logsumexp(x, dim=-1)


class SoftmaxLSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        lse = torch.logsumexp(x, dim=-1)
        p = torch.exp(x - lse[..., None])
        ctx.save_for_backward(p)
        return p, lse

    @staticmethod
    def backward(ctx: Any, grad_p: torch.Tensor | None, grad_lse: torch.Tensor | None) -> Any:
        (p,) = ctx.saved_tensors
        grad = torch.zeros_like(p)
        if grad_p is not None:
            grad = grad + p * (grad_p - (grad_p * p).sum(-1, keepdim=True))
        if grad_lse is not None:
            grad = grad + grad_lse[..., None] * p
        return grad


class SoftmaxLSEUnguarded(SoftmaxLSE):
    @staticmethod
    def backward(ctx: Any, grad_p: torch.Tensor | None, grad_lse: torch.Tensor | None) -> Any:
        (p,) = ctx.saved_tensors
        assert grad_p is not None and grad_lse is not None  # planted: either may be None
        return p * (grad_p - (grad_p * p).sum(-1, keepdim=True)) + grad_lse[..., None] * p


correct = function_derivation(SoftmaxLSE, spec=spec, shapes=SHAPES, wrt=["x"])
planted = function_derivation(SoftmaxLSEUnguarded, spec=spec, shapes=SHAPES, wrt=["x"])
