"""The built-in derivations: the seed networks, re-derived by hand and verified."""

from __future__ import annotations

from gradcheck.derivation import Derivation
from gradcheck.derivations.linear_stack import linear_layer_vjp, linear_stack
from gradcheck.derivations.relu_function import my_relu_function
from gradcheck.derivations.scalar_chain import scalar_chain
from gradcheck.derivations.two_layer import two_layer_relu_numpy, two_layer_relu_torch

BUILTINS: tuple[Derivation, ...] = (
    two_layer_relu_numpy,
    two_layer_relu_torch,
    scalar_chain,
    linear_stack,
    linear_layer_vjp,
    my_relu_function,
)

__all__ = ["BUILTINS"]
