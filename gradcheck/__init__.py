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

from gradcheck.check import check
from gradcheck.derivation import Derivation, DerivationError
from gradcheck.report import Example, Problem, Report
from gradcheck.search import verify

__all__ = ["Derivation", "DerivationError", "Example", "Problem", "Report", "check", "verify"]
__version__ = "0.1.0"
