"""Checks for a ``torch.autograd.Function`` beyond its backward: forward mode, double
backward, strided inputs and grad_output, vmap, determinism, reentrancy, CUDA.

``function_derivation`` declares one; ``check``, ``verify``, the CLI and the pytest plugin
treat it like any other Derivation.
"""

from __future__ import annotations

from gradcheck.functions.checks import CHECKS
from gradcheck.functions.declaration import function_derivation

__all__ = ["CHECKS", "function_derivation"]
