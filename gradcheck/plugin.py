"""pytest plugin: module-level Derivations in test modules become test items.

Registered through the ``pytest11`` entry point. Importing it is cheap: torch and the engine
load only when a derivation is collected.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradient verification (gradcheck)")
    group.addoption(
        "--gradcheck-max-examples",
        type=int,
        default=None,
        help="examples per derivation (default: the hypothesis profile's max_examples)",
    )
    group.addoption(
        "--gradcheck-seed", type=int, default=None, help="seed of every search (default: random)"
    )
