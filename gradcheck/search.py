"""Search for a point where a derivation fails, and shrink it to the smallest one.

Three passes, each deterministic for a given seed:

1. hypothesis generates points (dims across their whole range, then arrays) and shrinks the
   first failure it finds;
2. the dims are lowered one at a time, smallest size first, trying a few random points at
   each size: hypothesis cannot lower a dim well on its own, because the values drawn at the
   new size are its simplest ones (alike, often symmetric), at which a transposition or a
   missing mask does not show;
3. at those dims, hypothesis searches and shrinks again so the values become simple.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from gradcheck.checking import (
    Options,
    evaluate,
    make_options,
    require_derivation,
    whole,
    with_diagnoses,
)
from gradcheck.derivation import Derivation, DerivationError
from gradcheck.explain_failure import explain_failure
from gradcheck.report import Example, Problem, Report
from gradcheck.strategies import dim_range, examples, inputs, seeded_inputs

__all__ = ["verify"]

# Random points tried at each smaller size of a dim before that size is given up.
TRIES_PER_SIZE = 6


class _Search:
    """Runs ``evaluate`` for the passes and keeps the tally the report needs."""

    def __init__(
        self,
        derivation: Derivation,
        options: Options,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.derivation = derivation
        self.options = options
        self.progress = progress
        self.examples = 0
        self.inconclusive = 0
        self.conclusive = 0
        self.first_error: Report | None = None
        self.declaration_error: DerivationError | None = None
        # dim -> the size from which it fails, when every smaller size passed
        self.thresholds: dict[str, int] = {}
        self.last_report: Report | None = None

    def fails(self, example: Example) -> bool:
        self.last_report = None
        if self.declaration_error is not None:
            return False
        try:
            report = evaluate(
                self.derivation, example.inputs, example.dims, self.options, None, example.params
            )
        except DerivationError as exc:
            self.declaration_error = exc
            return False
        self.examples += 1
        self.last_report = report
        if self.progress is not None:
            self.progress(self.examples)
        if report.verdict == "error" and self.first_error is None:
            self.first_error = report
        self.inconclusive += report.verdict == "inconclusive"
        self.conclusive += report.verdict in ("pass", "fail")
        return report.verdict == "fail"

    def find(self, strategy: st.SearchStrategy[Example], budget: int) -> Example | None:
        search = settings(
            max_examples=budget,
            database=None,
            deadline=None,
            derandomize=False,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        try:
            return find(
                strategy, self.fails, settings=search, random=random.Random(self.options.seed)
            )
        except NoSuchExample:
            return None

    def lower_dims(self, failing: Example) -> Example:
        """Lower each dim to the smallest size at which a random point still fails."""
        rng = np.random.default_rng(self.options.seed)
        best = failing
        for dim in self.derivation.dim_ranges:
            lowest = self._lowest(dim, best)
            for size in range(lowest, best.dims[dim]):
                sizes = self._repaired({**best.dims, dim: size}, best.params)
                if not self._consistent(sizes, best.params):
                    continue
                found = self._random_failure(sizes, best.params, rng)
                if found is not None:
                    best = found
                    break
            else:
                if best.dims[dim] > lowest:
                    self.thresholds[dim] = best.dims[dim]
        return self._lower_together(best, rng)

    def _lower_together(self, best: Example, rng: np.random.Generator) -> Example:
        """Dims of equal size lowered together: a bug only for square weights (D == H)
        cannot be lowered one dim at a time."""
        groups: dict[int, list[str]] = {}
        for dim, size in best.dims.items():
            groups.setdefault(size, []).append(dim)
        for size, dims in groups.items():
            if len(dims) < 2:
                continue
            lowest = max(self._lowest(dim, best) for dim in dims)
            for smaller in range(lowest, size):
                sizes = self._repaired({**best.dims, **dict.fromkeys(dims, smaller)}, best.params)
                if not self._consistent(sizes, best.params):
                    continue
                found = self._random_failure(sizes, best.params, rng)
                if found is not None:
                    for dim in dims:
                        self.thresholds.pop(dim, None)  # lowered after all
                    best = found
                    break
        return best

    def shape_diagnoses(self, failing: Example, report: Report) -> list[str]:
        """'only when N > 12', 'only when a dim is 1': from more random points, not a guess."""
        found = [
            f"fails only from {dim} = {size}: every smaller {dim} passed at "
            f"{TRIES_PER_SIZE} random points, the other dims as in this example"
            for dim, size in self.thresholds.items()
            if failing.dims.get(dim) == size
        ]
        ones = [dim for dim, size in failing.dims.items() if size == 1]
        widened = {dim: (2 if size == 1 else size) for dim, size in failing.dims.items()}
        if not ones or not self._consistent(widened, failing.params):
            return found
        rng = np.random.default_rng(self.options.seed + 1)
        signature = _signature(report)
        elsewhere = self._random_failure(widened, failing.params, rng)
        other = None if self.last_report is None else _signature(self.last_report)
        if elsewhere is not None and other == signature:
            return found  # the same failure without any size-1 dim: not about size 1
        triggers = []
        for dim in ones:
            sizes = {**widened, dim: 1}
            if not self._consistent(sizes, failing.params):
                continue
            if self._random_failure(sizes, failing.params, rng) is not None and (
                self.last_report is not None and _signature(self.last_report) == signature
            ):
                triggers.append(dim)
        if not triggers:
            return found
        when = " or ".join(f"{dim} = 1" for dim in triggers)
        if elsewhere is None:
            found.append(
                f"fails only when {when}, and passes when every dim is 2: a .squeeze(), "
                "reshape or broadcast collapses a size-1 dim"
            )
        else:
            found.append(
                f"{_describe(signature)} only when {when} (with every dim 2 it fails "
                f"differently: {_describe(other or frozenset())}): a .squeeze(), reshape or "
                "broadcast collapses a size-1 dim"
            )
        return found

    def _lowest(self, dim: str, example: Example) -> int:
        earlier = {**example.params, **example.dims}
        return dim_range(self.derivation, dim, earlier)[0]

    def _repaired(self, sizes: Mapping[str, int], params: Mapping[str, Any]) -> dict[str, int]:
        """Dims computed from others (D = C * H * W) follow a lowered dim to their new range."""
        repaired = dict(sizes)
        for dim, bound in self.derivation.dim_ranges.items():
            if callable(bound):
                low, high = dim_range(self.derivation, dim, {**params, **repaired})
                if not low <= repaired[dim] <= high:
                    repaired[dim] = low
        return repaired

    def _consistent(self, sizes: Mapping[str, int], params: Mapping[str, Any]) -> bool:
        """Whether every dim still lies in its declared range (ranges may depend on dims)."""
        for dim in self.derivation.dim_ranges:
            low, high = dim_range(self.derivation, dim, {**params, **sizes})
            if not low <= sizes[dim] <= high:
                return False
        return True

    def _random_failure(
        self, sizes: Mapping[str, int], params: Mapping[str, Any], rng: np.random.Generator
    ) -> Example | None:
        for _ in range(TRIES_PER_SIZE):
            point = seeded_inputs(self.derivation, sizes, int(rng.integers(2**32)), params)
            example = Example(dims=dict(sizes), inputs=point, params=dict(params))
            if self.fails(example):
                return example
        return None

    def simplify_values(self, failing: Example, budget: int) -> Example:
        """At fixed dims, let hypothesis find and shrink a failure to simple values."""
        sizes, params = dict(failing.dims), dict(failing.params)
        strategy = inputs(self.derivation, sizes, params).map(
            lambda point: Example(dims=sizes, inputs=point, params=params)
        )
        simpler = self.find(strategy, budget)
        return failing if simpler is None else simpler


def verify(
    derivation: Derivation,
    *,
    max_examples: int | None = None,
    seed: int | None = None,
    dtype: Any = "float64",
    directions: int = 16,
    elementwise_limit: int = 32,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Search shapes and values with hypothesis for a point where ``derivation`` fails.

    A failure is shrunk to the smallest example (fewest and smallest dims, simplest values)
    and reported with the seed that reproduces the search. ``max_examples`` defaults to the
    active hypothesis profile's; ``seed`` to a random one (0 under a derandomized profile).
    ``progress`` is called with the number of examples tried after each one. The other
    options are those of ``check``.

    >>> from gradcheck.derivations import BUILTINS
    >>> verify(BUILTINS[0], max_examples=5, seed=0).ok
    True
    """
    derivation = require_derivation(derivation)
    budget = settings().max_examples if max_examples is None else max_examples
    budget = whole("max_examples", budget, minimum=1)
    if seed is None:
        # A derandomized hypothesis profile (as in CI) asks for the same search every run.
        seed = 0 if settings().derandomize else random.SystemRandom().randrange(2**32)
    options = make_options(dtype, directions, elementwise_limit, seed)
    started = time.perf_counter()
    search = _Search(derivation, options, progress)

    failing = search.find(examples(derivation), budget)
    if failing is not None and search.declaration_error is None:
        failing = search.lower_dims(failing)
        failing = search.simplify_values(failing, budget)
    if search.declaration_error is not None:
        raise search.declaration_error
    tried = search.examples
    reproduce = f"verify({derivation.name}, seed={seed}, max_examples={budget})"
    notes: tuple[str, ...]
    if failing is not None:
        report = evaluate(derivation, failing.inputs, failing.dims, options, None, failing.params)
        report = with_diagnoses(derivation, report)
        shapes = tuple(search.shape_diagnoses(failing, report))
        report = replace(report, diagnoses=report.diagnoses + shapes)
        report = explain_failure(derivation, report, options)
        tried = search.examples
        notes = (f"failure found and shrunk over {tried} examples",)
    elif search.first_error is not None:
        report = search.first_error
        notes = (f"{tried} examples tried",)
    elif search.conclusive == 0:
        report = _nothing_conclusive(derivation, options, tried)
        notes = ()
    else:
        report = Report(derivation=derivation.name, verdict="pass", dtype=options.dtype)
        notes = (f"{tried} examples passed",)
    if search.inconclusive:
        notes += (
            f"{search.inconclusive} of {tried} examples were inconclusive (kinks, or "
            "differences below what finite differences resolve)",
        )
    return replace(
        report,
        notes=report.notes + notes,
        seed=seed,
        examples=tried,
        inconclusive=search.inconclusive,
        elapsed=time.perf_counter() - started,
        reproduce=reproduce,
    )


def _signature(report: Report) -> frozenset[tuple[str, str | None]]:
    """What went wrong, without the numbers: to tell one failure from another."""
    return frozenset((p.kind, p.parameter) for p in report.problems)


_WHAT = {
    "raised": "the backward raises",
    "shape": "{} has the wrong shape",
    "missing": "{} is missing",
    "mismatch": "{} is wrong",
    "non_finite": "{} is not finite",
    "mutated": "{} is mutated",
}


def _describe(signature: frozenset[tuple[str, str | None]]) -> str:
    parts = sorted(_WHAT.get(kind, kind).format(repr(parameter)) for kind, parameter in signature)
    return "; ".join(parts) or "no failure"


def _nothing_conclusive(derivation: Derivation, options: Options, tried: int) -> Report:
    return Report(
        derivation=derivation.name,
        verdict="error",
        problems=(
            Problem(
                "kink",
                f"none of {tried} examples was conclusive: every point sat on or next to a "
                "non-differentiable point. Narrow the bounds away from the kinks.",
            ),
        ),
        dtype=options.dtype,
    )
