"""Shared plumbing of the step and model checks: declarations and the hypothesis search.

A training step and a model spec declare inputs with symbolic shapes, dim ranges and bounds,
exactly as a ``Derivation`` does; building one underneath reuses its validation and the
core's strategies (``gradcheck.strategies.examples``), so shapes shrink the same way.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st

from gradcheck.derivation import Derivation, DerivationError
from gradcheck.evaluation import validated_point as core_validated_point
from gradcheck.references.autograd import call_forward
from gradcheck.report import Example, Report
from gradcheck.search import hypothesis_find

R = TypeVar("R", bound=Report)

__all__ = [
    "SearchResult",
    "as_derivation",
    "call_spec",
    "search",
    "searched_report",
    "validated_point",
    "whole",
]


def whole(argument: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{argument}={value!r} must be an int >= {minimum}.")
    return value


def as_derivation(
    kind: str,
    *,
    name: str,
    forward: Callable[..., Any],
    hand: Callable[..., Any],
    shapes: Mapping[str, tuple[str | int, ...]],
    wrt: Sequence[str],
    backend: str,
    dims: Mapping[str, tuple[int, int]] | None,
    bounds: Mapping[str, tuple[float, float]] | None,
) -> Derivation:
    """A ``Derivation`` carrying the shapes, dims and bounds of a ``kind`` declaration; its
    validation errors name the ``kind`` the user wrote, not the Derivation underneath."""
    try:
        return Derivation(
            name=name, forward=forward, backward=hand, shapes=shapes, wrt=wrt,
            backend=backend, dims=dims, bounds=bounds,
        )  # fmt: skip
    except DerivationError as exc:
        message = str(exc).replace("Derivation ", f"{kind} ", 1)
        message = message.replace("backward must be", "step must be", 1)
        raise DerivationError(message) from None


def call_spec(
    kind: str, role: str, name: str, spec: Callable[..., Any], tensors: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """The core's ``call_forward`` (a floating tensor back, or a ``DerivationError`` naming
    the fix), its messages naming the ``kind`` and ``role`` the user wrote."""
    try:
        return call_forward(name, spec, tensors)
    except DerivationError as exc:
        message = str(exc).replace("Derivation ", f"{kind} ", 1).replace("forward", role, 1)
        raise DerivationError(message) from exc.__cause__


def validated_point(
    caller: str, derivation: Derivation, inputs: Any
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """float64 copies of ``inputs`` (the caller's stay untouched), checked against the
    declared shapes, and the size of every symbolic dim they imply."""
    point, sizes, _ = core_validated_point(derivation, inputs, caller=caller)
    return point, sizes


# Evaluations the shrinker may spend once a failure is found. A training step or a model with
# a few dozen drawn elements otherwise spends thousands of evaluations (measured: 3,600, 15 s
# for seed 000's module) moving single elements toward simpler floats; the first ~200 already
# take every dim to its smallest failing size and most values to 1, 0.5 or 2.
SHRINK_EVALUATIONS = 200


@dataclass(frozen=True)
class SearchResult:
    smallest: Example | None  # the shrunk failing example; None when none failed
    first_error: Example | None  # the first example whose verdict was "error"
    tried: int
    inconclusive: int  # examples at kinks: not judged
    seed: int
    budget: int


def _key(example: Example) -> tuple[Any, ...]:
    arrays = tuple(
        (name, value.shape, value.tobytes()) for name, value in sorted(example.inputs.items())
    )
    return (tuple(sorted(example.dims.items())), arrays)


def search(
    strategy: st.SearchStrategy[Example],
    verdict_of: Callable[[Example], str],
    *,
    max_examples: int | None,
    seed: int | None,
) -> SearchResult:
    """Search ``strategy`` (e.g. ``gradcheck.strategies.examples(derivation)``) for an
    example whose verdict is "fail", and shrink it.

    A ``DerivationError`` (the declaration or spec is at fault) stops the search and is
    raised: no example can be judged until it is fixed.
    """
    budget = settings().max_examples if max_examples is None else max_examples
    budget = whole("max_examples", budget, minimum=1)
    if seed is None:
        # A derandomized hypothesis profile (as in CI) asks for the same search every run.
        seed = 0 if settings().derandomize else random.SystemRandom().randrange(2**32)
    seed = whole("seed", seed, minimum=0)
    tried = [0]
    inconclusive = [0]
    failures = [0]
    shrinks = [0]
    first_error: list[Example] = []
    declaration_error: list[DerivationError] = []

    seen: dict[tuple[Any, ...], bool] = {}

    def fails(example: Example) -> bool:
        key = _key(example)
        if key in seen:  # hypothesis replays the smallest failure: answer as before
            return seen[key]
        if declaration_error or shrinks[0] > SHRINK_EVALUATIONS:
            return False  # the smallest failure so far stands
        if failures[0]:
            shrinks[0] += 1
        try:
            verdict = verdict_of(example)
        except DerivationError as exc:
            declaration_error.append(exc)
            return False
        seen[key] = verdict == "fail"
        tried[0] += 1
        inconclusive[0] += verdict == "inconclusive"
        if verdict == "error" and not first_error:
            first_error.append(example)
        failures[0] += verdict == "fail"
        return verdict == "fail"

    smallest: Example | None = hypothesis_find(strategy, fails, budget, seed)
    if declaration_error:
        raise declaration_error[0]
    return SearchResult(
        smallest=smallest,
        first_error=first_error[0] if first_error else None,
        tried=tried[0],
        inconclusive=inconclusive[0],
        seed=seed,
        budget=budget,
    )


def searched_report(
    report: R, found: SearchResult, notes: tuple[str, ...], started: float, reproduce: str
) -> R:
    """``report`` with what the search adds: notes (and the inconclusive count), the seed,
    the examples tried, the time, and how to reproduce it."""
    if found.inconclusive:
        notes += (f"{found.inconclusive} of {found.tried} examples were inconclusive (kinks)",)
    return replace(
        report,
        notes=notes,
        seed=found.seed,
        examples=found.tried,
        inconclusive=found.inconclusive,
        elapsed=time.perf_counter() - started,
        reproduce=reproduce,
    )
