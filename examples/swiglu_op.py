"""SwiGLU, silu(a) * b, as a ``torch.library.custom_op`` with a fake kernel, its backward
registered with ``register_autograd``, and a vmap rule registered with ``register_vmap``
(so that ``torch.func.vmap`` calls the op once on the batch instead of looping).

The planted bug: the vmap rule says the batch dim of its result is 1 (where it is 0), as
happens when a rule is copied from one whose op moved it. Every unbatched test passes. The
``vmap`` check catches it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gradcheck.ops import op_derivation

SHAPES = {"a": ("N", "D"), "b": ("N", "D")}
CAUGHT_BY = "vmap"


def spec(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.silu(a) * b


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = ctx.saved_tensors
    s = torch.sigmoid(a)
    # silu(a) = a s, silu'(a) = s + a s (1 - s)
    return grad_output * b * (s + a * s * (1 - s)), grad_output * a * s


def _batched(in_dims: tuple[Any, ...], *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Each input with its batch dim first (an unbatched one is broadcast)."""
    size = next(t.shape[d] for t, d in zip(tensors, in_dims, strict=True) if d is not None)
    return [
        t.movedim(d, 0) if d is not None else t.expand(size, *t.shape)
        for t, d in zip(tensors, in_dims, strict=True)
    ]


@torch.library.custom_op("examples::swiglu", mutates_args=())
def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.silu(a) * b


@torch.library.custom_op("examples::swiglu_wrong_out_dim", mutates_args=())
def swiglu_wrong_out_dim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.silu(a) * b


def _vmap(info: Any, in_dims: tuple[Any, ...], a: torch.Tensor, b: torch.Tensor) -> Any:
    return swiglu(*_batched(in_dims, a, b)), 0


def _wrong_vmap(info: Any, in_dims: tuple[Any, ...], a: torch.Tensor, b: torch.Tensor) -> Any:
    return swiglu_wrong_out_dim(*_batched(in_dims, a, b)), 1  # planted: the batch is at 0


for _op, _rule in ((swiglu, _vmap), (swiglu_wrong_out_dim, _wrong_vmap)):
    _op.register_fake(lambda a, b: torch.empty_like(a))
    _op.register_autograd(_backward, setup_context=_setup_context)
    torch.library.register_vmap(_op, _rule)

correct = op_derivation(swiglu, spec=spec, shapes=SHAPES, wrt=["a", "b"])
planted = op_derivation(swiglu_wrong_out_dim, spec=spec, shapes=SHAPES, wrt=["a", "b"])
