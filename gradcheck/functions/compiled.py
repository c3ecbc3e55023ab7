"""The ``compile`` check: a Function or op under ``torch.compile(fullgraph=True)`` gives what
it gives eagerly, forward and gradients, at the drawn points.

An op registered so that it works under ``torch.compile`` is the reason to write a custom op
at all, and a Function that calls numpy, ``.item()`` or Python-side state in its forward
breaks the graph there. Compiling costs seconds a shape, so the check runs at the first
``COMPILED_SHAPES`` distinct shapes of a search, and only when asked for
(``checks=(..., "compile")``). It decides whether the compiled results agree; it never
judges a gradient against the spec (the backward check does).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import torch

from gradcheck.functions import messages
from gradcheck.functions.checks import as_numpy, differing_result
from gradcheck.functions.function import UnderTest, joined, vjp
from gradcheck.report import Problem

__all__ = ["COMPILED_SHAPES", "CompileCheck", "compile_unavailable"]

# Distinct shapes compiled in one search: each costs a compile of seconds.
COMPILED_SHAPES = 2


def compile_unavailable() -> str | None:
    """Why ``torch.compile`` cannot run here, or None: its CPU backend compiles C++."""
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(c and shutil.which(c) for c in compilers):
        return "no C++ compiler found (torch.compile's CPU backend needs one; set CXX)"
    return None


class CompileCheck:
    """Compiles the call once, and compares it with eager at up to ``COMPILED_SHAPES``."""

    def __init__(self, under_test: UnderTest) -> None:
        self.under_test = under_test
        self.shapes: set[tuple[tuple[int, ...], ...]] = set()
        self._compiled: Callable[..., Any] | None = None

    def __call__(self, run: Any) -> list[Problem]:
        shape = tuple(tuple(v.shape) for v in run.values.values())
        if shape not in self.shapes:
            if len(self.shapes) >= COMPILED_SHAPES:
                return []  # enough shapes compiled: each costs seconds
            self.shapes.add(shape)
        if self._compiled is None:
            self._compiled = torch.compile(self.under_test.call, fullgraph=True, dynamic=False)
        compiled, called_as = self._compiled, self.under_test.called_as
        arguments = self.under_test.arguments

        def forward(values: Any) -> torch.Tensor:
            merged = {**run.params, **values}
            return joined(compiled(*(merged[name] for name in arguments)), called_as)

        try:
            with warnings.catch_warnings():
                # torch's own deprecations, raised while it compiles: not the user's
                warnings.simplefilter("ignore", DeprecationWarning)
                output, grads = vjp(forward, run.values, run.wrt, run.seed_tensor)
        except Exception as exc:  # dynamo's and inductor's errors: the call does not compile
            first = " ".join(str(exc).strip().splitlines()[:1])[:300]
            return [Problem("compile", messages.does_not_compile(called_as, type(exc), first))]
        check = run.label("compile")
        pairs = [("output", output, run.output)]
        pairs += [(n, g, run.gradients[n]) for n, g in grads.items() if g is not None]
        found: list[Problem] = []
        for name, got, expected in pairs:
            found += differing_result(
                run, check, name, as_numpy(got), expected,
                reference=f"{called_as} run eagerly",
                what=f"{called_as}'s {name} under torch.compile", hint=messages.COMPILE_HINT,
            )  # fmt: skip
        return found
