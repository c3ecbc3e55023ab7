"""Checks for a ``torch.library.custom_op`` with ``register_autograd``: every check a
``torch.autograd.Function`` gets, and opcheck's registration checks at a bounded number of
shapes.

``op_derivation`` declares one; ``check``, ``verify``, the CLI and the pytest plugin treat
it like any other Derivation.
"""

from __future__ import annotations

from gradcheck.ops.declaration import OP_CHECKS, op_derivation

__all__ = ["OP_CHECKS", "op_derivation"]
