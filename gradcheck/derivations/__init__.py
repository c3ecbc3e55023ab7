"""The built-in derivations: the seed networks, re-derived by hand and verified."""

from __future__ import annotations

from gradcheck.derivation import Derivation
from gradcheck.derivations import (
    linear_stack,
    relu_function,
    scalar_chain,
    two_layer,
    two_layer_fast,
)

BUILTINS: tuple[Derivation, ...] = (
    two_layer.two_layer_relu_numpy,
    two_layer.two_layer_relu_torch,
    two_layer_fast.two_layer_relu_numpy_fast,
    two_layer_fast.two_layer_relu_torch_fast,
    scalar_chain.scalar_chain,
    linear_stack.linear_stack,
    linear_stack.linear_layer_vjp,
    relu_function.my_relu_function,
)

__all__ = ["BUILTINS"]
