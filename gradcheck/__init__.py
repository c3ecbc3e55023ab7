"""gradcheck: check hand-derived gradients against torch autograd and finite differences.

>>> from gradcheck import Derivation, verify
>>> square = Derivation(
...     name="square",
...     forward=lambda x: (x**2).sum(),
...     backward=lambda x: {"x": 2 * x},
...     shapes={"x": ("N",)},
...     wrt=["x"],
... )
>>> verify(square, max_examples=10, seed=0).ok
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradcheck.derivation import Derivation, DerivationError

if TYPE_CHECKING:
    from gradcheck.checking import check
    from gradcheck.functions import function_derivation
    from gradcheck.ops import op_derivation
    from gradcheck.report import Example, Problem, Report
    from gradcheck.search import verify
    from gradcheck.testing import GradcheckFailure, assert_gradients_close

__all__ = [
    "Derivation",
    "DerivationError",
    "Example",
    "GradcheckFailure",
    "Problem",
    "Report",
    "assert_gradients_close",
    "check",
    "function_derivation",
    "op_derivation",
    "verify",
]
__version__ = "0.1.0"

# Declaring a Derivation needs no torch; checking one does. Loading the engine on first use
# keeps `import gradcheck` (and the pytest plugin) cheap for suites that never check.
_LAZY = {
    "check": "gradcheck.checking",
    "verify": "gradcheck.search",
    "function_derivation": "gradcheck.functions",
    "op_derivation": "gradcheck.ops",
    "Example": "gradcheck.report",
    "Problem": "gradcheck.report",
    "Report": "gradcheck.report",
    "GradcheckFailure": "gradcheck.testing",
    "assert_gradients_close": "gradcheck.testing",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")
