"""Cross-entropy per sample, fused as memory-efficient kernels do it: the gradient
softmax(x) - onehot(label) is computed in forward, where the softmax is at hand, kept on
ctx, and scaled by grad_output in backward.

The planted bug: the scaling done in place (``grad.mul_(grad_output)``, as some published
kernels do to save the copy). The first backward is right; a second backward through the
same graph (retain_graph=True, gradient accumulation over one graph, a gradient penalty)
scales it again. The ``reentrant`` check catches it, and names ``ctx.grad``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from gradcheck import function_derivation

SHAPES = {"logits": ("N", "C"), "label": ("N",)}
INTEGERS = {"label": lambda dims: (0, dims["C"] - 1)}
CAUGHT_BY = "reentrant"


def spec(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, label, reduction="none")


class CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        lse = torch.logsumexp(logits, dim=-1)
        picked = logits.gather(-1, label[:, None])[:, 0]
        grad = torch.exp(logits - lse[:, None])  # d loss_i / d logits_i = p_i - onehot
        grad[torch.arange(len(label)), label] -= 1
        ctx.grad = grad
        return lse - picked

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.grad * grad_output[:, None], None


class CrossEntropyInPlace(CrossEntropy):
    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.grad.mul_(grad_output[:, None]), None  # planted: in place


DECLARED: dict[str, Any] = {
    "spec": spec, "shapes": SHAPES, "wrt": ["logits"], "integers": INTEGERS,
}  # fmt: skip
correct = function_derivation(CrossEntropy, **DECLARED)
planted = function_derivation(CrossEntropyInPlace, **DECLARED)
