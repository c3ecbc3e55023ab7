"""Megatron-style fused bias + GeLU as a ``torch.library.custom_op``: y = gelu(x + b), the
exact (erf) GeLU, its derivative written by hand.

The planted bug: the backward of the tanh approximation, as fused kernels often use, under
an exact forward. Their slopes differ by up to about 1e-3, well above float64's rounding.
The ``backward`` check catches it (and would in float32 too).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gradcheck.ops import op_derivation

SHAPES = {"x": ("N", "D"), "b": ("D",)}
CAUGHT_BY = "mismatch"  # the backward check (a wrong gradient)


def _gelu(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))


def _gelu_slope(z: torch.Tensor) -> torch.Tensor:
    # d/dz [z Phi(z)] = Phi(z) + z phi(z)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return cdf + z * pdf


def _tanh_gelu_slope(z: torch.Tensor) -> torch.Tensor:
    # the derivative of 0.5 z (1 + tanh(k (z + 0.044715 z^3))), k = sqrt(2 / pi)
    k = math.sqrt(2 / math.pi)
    t = torch.tanh(k * (z + 0.044715 * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, b = inputs
    ctx.save_for_backward(x, b)


def _backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, b = ctx.saved_tensors
    grad_z = grad_output * _gelu_slope(x + b)
    return grad_z, grad_z.reshape(-1, b.shape[0]).sum(0)


def _tanh_backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, b = ctx.saved_tensors
    grad_z = grad_output * _tanh_gelu_slope(x + b)  # planted: the approximation's slope
    return grad_z, grad_z.reshape(-1, b.shape[0]).sum(0)


@torch.library.custom_op("examples::bias_gelu", mutates_args=())
def bias_gelu(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _gelu(x + b)


@torch.library.custom_op("examples::bias_gelu_tanh_backward", mutates_args=())
def bias_gelu_tanh_backward(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _gelu(x + b)


for _op, _bwd in ((bias_gelu, _backward), (bias_gelu_tanh_backward, _tanh_backward)):
    _op.register_fake(lambda x, b: torch.empty_like(x))
    _op.register_autograd(_bwd, setup_context=_setup_context)


def spec(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x + b)


correct = op_derivation(bias_gelu, spec=spec, shapes=SHAPES, wrt=["x", "b"])
planted = op_derivation(bias_gelu_tanh_backward, spec=spec, shapes=SHAPES, wrt=["x", "b"])
