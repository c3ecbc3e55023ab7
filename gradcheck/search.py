"""Search for a point where a derivation fails, and shrink it to the smallest one.

A sweep of plain random points first (``gradcheck.random_points``): hypothesis's own work
per test case costs more than checking a small derivation, and a derivation that passes
never needs its shrinker. Where the sweep finds a failure, three passes follow, each
deterministic for a given seed:

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
from hypothesis.errors import FailedHealthCheck, Flaky, NoSuchExample, Unsatisfiable

from gradcheck.backward import single_threaded_blas
from gradcheck.checking import with_diagnoses
from gradcheck.derivation import Derivation, DerivationError, ParamChoices
from gradcheck.determinism import nondeterminism
from gradcheck.evaluation import Options, evaluate, make_options, require_derivation, whole
from gradcheck.explain_failure import explain_failure
from gradcheck.guard import DEFAULT_DEADLINE, CallTimeout, guarded_search, validated_deadline
from gradcheck.paths import took
from gradcheck.progress import notebook_progress
from gradcheck.random_points import random_examples, starts_where_hypothesis_starts
from gradcheck.report import Example, Picture, Problem, Report
from gradcheck.special_values import (
    Special,
    describe,
    made_special,
    special_note,
    special_schedule,
)
from gradcheck.strategies import dim_range, examples_at, seeded_batches, seeded_inputs

__all__ = ["hypothesis_find", "verify"]

# Random points tried at each smaller size of a dim before that size is given up.
TRIES_PER_SIZE = 6

# A failure shrunk below PICTURE_SIZE on every axis is pictured again at a larger failing
# point, its dims held to PICTURE_MAX (a 24x24 heatmap still reads cell by cell).
PICTURE_SIZE = 4
PICTURE_MAX = 24
PICTURE_DIM = 8  # each dim drawn at least this large for the picture, where its range allows

# At the first point and every DETERMINISM_EVERY-th after it, the backward is called twice
# more at the same point: the search meets a point once, and a backward that keeps state
# between calls is right at every first call.
DETERMINISM_EVERY = 10

# The sweep makes at most every SPECIAL_STRIDE-th point special by schedule.
SPECIAL_STRIDE = 4

# A dim whose range below the failing size holds more sizes than this is bisected rather
# than walked size by size.
WALK_SIZES = 16

# Shrinking (lowering dims, then simplifying values) takes at most this many times
# ``max_examples`` examples; the smallest failure found by then is reported.
SHRINK_BUDGET = 10

# Finite-difference directions per input at an example where the hand gradient agrees with
# autograd element by element. One random +-1 direction already shows a spec that autograd
# misreads (a detach, an in-place op) unless the error cancels exactly along it, and the
# search draws a new direction at every example. Where hand and autograd disagree, every
# probe of ``check`` is taken, as before.
AGREEING_DIRECTIONS = 1

# Finite differences at a point where hand and autograd agree only confirm that autograd
# differentiates the spec; that needs no new evidence at every point. Once they have
# confirmed it at CONFIRMED_ENOUGH points, such points are probed 1 in PROBE_ONE_IN (and at
# every special point, where kinks and a spec's own trouble live, and at every point of a
# derivation with params, whose values can switch the spec's code path). The probe was a third
# of the time of checking a small derivation at a point. A point never decides "fail"
# through these probes: hand and autograd agree there, so at most the point becomes
# inconclusive or shows the spec wrong (an error), and those still show 1 in PROBE_ONE_IN.
CONFIRMED_ENOUGH = 10
PROBE_ONE_IN = 3

# Points drawn in one hypothesis test case in the first pass, each with params, dims and
# seed of its own. Hypothesis spends ~0.4 ms on a test case besides its draws, as much as
# checking a small derivation at a point; two points a test case halve that share, and the
# search still sees one draw of the dims per point.
POINTS_PER_DRAW = 2


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
        self.searching = replace(options, verdict_only=True)  # the final report: ``options``
        self.unprobed = replace(self.searching, agreeing_directions=0)
        self.confirmed = 0  # points where finite differences confirmed autograd
        self.progress = progress
        self.examples = 0
        self.inconclusive = 0
        self.conclusive = 0
        self.first_error: Report | None = None
        self.declaration_error: DerivationError | None = None
        # dim -> the size from which it fails, when every smaller size passed
        self.thresholds: dict[str, int] = {}
        self.last_report: Report | None = None
        self.failing: Example | None = None
        self.point_budget = 0
        # What the passes look for: a failure, or (when none is found) a point where the
        # spec itself is NaN/inf, so that it too is reported at its smallest.
        self.target: Callable[[Report], bool] = _failed
        self.first_non_finite_spec: Report | None = None
        self.non_finite_spec_at: Example | None = None  # the example of that report
        self.failed_first = False  # the sweep's failure is its first point
        self.float_bounds = {
            name: derivation.input_bounds[name]
            for name in derivation.shapes
            if name not in (derivation.integers or {})
        }
        self.notes: dict[str, None] = {}  # every example's notes (extra keys), in order, once
        self.specials_tried: dict[str, set[str]] = {}  # input -> special kinds met
        self.shrink_limit = float("inf")  # examples at which shrinking stops (see SHRINK_BUDGET)
        self.found_after = 0  # examples tried when the failure was first found
        self.first_failing: Example | None = None  # that failure, before shrinking
        self.refused = 0  # draws that where= refused in the sweep

    def fails(self, example: Example) -> bool:
        self.last_report = None
        if self.declaration_error is not None or self.examples >= self.shrink_limit:
            return False  # the shrinking budget is spent: what is found so far stands
        sampled = (
            self.confirmed >= CONFIRMED_ENOUGH
            and example.special is None
            and not example.params  # a param can switch the spec's code path (a detach)
            and self.examples % PROBE_ONE_IN != 0
        )
        options = self.unprobed if sampled else self.searching
        if sampled:
            took("sampled probes")
        if example.special is not None:
            took("special point")
        try:
            report = evaluate(
                self.derivation, example.inputs, example.dims, options, None, example.params
            )
        except DerivationError as exc:
            self.declaration_error = exc
            return False
        except CallTimeout as exc:
            exc.example = example  # type: ignore[attr-defined]  # shown in the report
            raise
        self.examples += 1
        if self.examples % DETERMINISM_EVERY == 1 and report.verdict != "fail":
            report = _called_again(self.derivation, report)
        if example.special is not None:
            self.specials_tried.setdefault(example.special.input, set()).add(example.special.kind)
        if example.special is not None and report.verdict == "error":
            # A point drawn special on purpose (an all-zero input) where the spec has no
            # gradient, or no value: the spec's kink, not the user's declaration.
            report = replace(report, verdict="inconclusive")
        self.last_report = report
        self.notes.update(dict.fromkeys(report.notes))
        if self.progress is not None:
            self.progress(self.examples)
        if report.verdict == "error" and self.first_error is None:
            self.first_error = report
        if _spec_non_finite(report) and self.first_non_finite_spec is None:
            self.first_non_finite_spec, self.non_finite_spec_at = report, example
        self.inconclusive += report.verdict == "inconclusive"
        self.confirmed += report.verdict == "pass" and report.probes > 0
        self.conclusive += report.verdict in ("pass", "fail")
        return self.target(report)

    def sweep(self, budget: int) -> Example | None:
        """``budget`` random points (``random_examples``), up to the first that fails. A
        draw that ``where`` refuses does not count, as hypothesis does not count an invalid
        example; after ``budget`` refusals the sweep ends with the points it has."""
        self.failed_first = False
        checked = refused = 0
        schedule = special_schedule(self.float_bounds)
        # Every (input, kind) pair gets a point of its own, spread evenly over the budget:
        # drawn 1 in 16 at random, a given kind on a given input was missed by whole runs.
        # At most one point in SPECIAL_STRIDE is scheduled, so that a small budget keeps its
        # ordinary points (special ones often sit on kinks: inconclusive).
        stride = max(SPECIAL_STRIDE, budget // (len(schedule) + 1))
        for example in random_examples(self.derivation, self.options.seed):
            if checked >= budget or refused > budget:
                break
            if example is None:
                refused += 1
                continue
            checked += 1
            took("sweep")
            if schedule and example.special is None and checked % stride == 0:
                example = self._made_special(example, schedule.pop(0), checked)
            self.refused = refused
            if self.fails(example):
                self.failed_first = checked == 1
                return example
            if self.declaration_error is not None:
                return None
        return None

    def _made_special(self, example: Example, pair: tuple[str, str], seed: int) -> Example:
        name, kind = pair
        special = Special(kind=kind, input=name, seed=seed)
        return replace(
            example,
            inputs=made_special(example.inputs, special, self.float_bounds),
            special=special,
        )

    def batch_fails(self, batch: tuple[Example, ...]) -> bool:
        """Whether any point of ``batch`` fails; the first that does is kept in ``failing``.
        Until a failure is found, no more than ``point_budget`` points are checked in all."""
        for example in batch:
            if self.failing is None and self.examples >= self.point_budget:
                return False
            if self.fails(example):
                self.failing = example
                return True
        return False

    def find_in_batches(self, budget: int) -> Example | None:
        """Pass 1: hypothesis draws ``POINTS_PER_DRAW`` points a test case; the failing
        point of the smallest failing test case comes back."""
        strategy = seeded_batches(self.derivation, points=POINTS_PER_DRAW, special=True)
        draws = max(1, -(-budget // POINTS_PER_DRAW))
        self.point_budget, self.failing = self.examples + budget, None
        batch = self.find(strategy, draws, self.batch_fails)
        if batch is None or not self.batch_fails(batch):
            return None
        return self.failing

    def find(
        self,
        strategy: st.SearchStrategy[Any],
        budget: int,
        fails: Callable[[Any], bool] | None = None,
    ) -> Any:
        took("hypothesis")
        return hypothesis_find(strategy, fails or self.fails, budget, self.options.seed)

    def larger_picture(self, report: Report) -> Picture | None:
        """Where the shrunk example is smaller than ``PICTURE_SIZE`` on every axis, the
        same failure at a larger failing point: the one the search first met where its dims
        lie between ``PICTURE_DIM`` and ``PICTURE_MAX``, else a random failing one at dims
        brought into that band (as far as the declared ranges allow)."""
        example = report.example
        first = self.first_failing
        if example is None or first is None or not report.gradients:
            return None
        if any(max(np.shape(v), default=1) >= PICTURE_SIZE for v in example.inputs.values()):
            return None  # large enough to show a pattern already
        sizes = self._repaired(
            {
                dim: min(max(size, PICTURE_DIM), PICTURE_MAX, self._highest(dim, first))
                for dim, size in first.dims.items()
            },
            first.params,
        )
        if sizes == dict(example.dims):
            return None
        candidate: Example | None = first if sizes == dict(first.dims) else None
        if candidate is None and self._consistent(sizes, first.params):
            rng = np.random.default_rng(self.options.seed + 3)
            candidate = self._random_failure(sizes, first.params, rng, first.special)
        if candidate is None:
            return None
        larger = evaluate(
            self.derivation, candidate.inputs, candidate.dims, self.options, None,
            candidate.params,
        )  # fmt: skip
        pictured = {n: p for n, p in larger.gradients.items() if p.allowed is not None}
        if larger.verdict != "fail" or larger.example is None or not pictured:
            return None
        return Picture(example=larger.example, gradients=pictured)

    def lower_params(self, failing: Example) -> Example:
        """Lower each param to the simplest value at which a random point still fails: an
        earlier choice of a list, a smaller int. A failure met at layers=2 is reported at
        layers=1 when it fails there too. Float ranges are left as found."""
        rng = np.random.default_rng(self.options.seed + 2)
        best = failing
        for name, choice in self.derivation.param_choices.items():
            for value in _simpler_values(choice, best.params[name]):
                params = {**best.params, name: value}
                sizes = self._repaired(best.dims, params)
                if not self._consistent(sizes, params):
                    continue
                found = self._random_failure(sizes, params, rng, best.special)
                if found is not None:
                    best = found
                    break
        return best

    def lower_dims(self, failing: Example) -> Example:
        """Lower each dim to the smallest size at which a random point still fails: every
        size walked up from the lowest where there are at most ``WALK_SIZES`` of them, else
        bisected (a bug only from N = 400 walked 2,474 examples)."""
        rng = np.random.default_rng(self.options.seed)
        best = failing
        for dim in self.derivation.dim_ranges:
            lowest = self._lowest(dim, best)
            if best.dims[dim] - lowest > WALK_SIZES:
                best = self._bisected(dim, lowest, best, rng)
                continue
            skipped = False  # a size where= refuses was not tried: no "fails only from"
            for size in range(lowest, best.dims[dim]):
                sizes = self._repaired({**best.dims, dim: size}, best.params)
                if not self._consistent(sizes, best.params):
                    skipped = skipped or self.derivation.where is not None
                    continue
                found = self._random_failure(sizes, best.params, rng, best.special)
                if found is not None:
                    best = found
                    break
            else:
                if best.dims[dim] > lowest and not skipped:
                    self.thresholds[dim] = best.dims[dim]
        return self._lower_together(best, rng)

    def _bisected(self, dim: str, lowest: int, best: Example, rng: np.random.Generator) -> Example:
        """``best`` lowered along ``dim`` by bisection: the lowest size first, then halves
        of the range between a size that passed and one that failed. Makes no claim that
        every smaller size passes (``thresholds``): most of them were never tried."""
        passed, failed = lowest - 1, best.dims[dim]
        size = lowest
        while failed - passed > 1:
            sizes = self._repaired({**best.dims, dim: size}, best.params)
            found = (
                self._random_failure(sizes, best.params, rng, best.special)
                if self._consistent(sizes, best.params)
                else None
            )
            if found is not None:
                best, failed = found, size
            else:
                passed = size
            size = (passed + failed) // 2
        return best

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
                found = self._random_failure(sizes, best.params, rng, best.special)
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
        # Compared with the other points' reports, which are made as the search makes them
        # (verdict only): the failure's own is made the same way.
        self.fails(failing)
        signature = _signature(self.last_report or report)
        elsewhere = self._random_failure(widened, failing.params, rng, failing.special)
        other = None if self.last_report is None else _signature(self.last_report)
        if elsewhere is not None and other == signature:
            return found  # the same failure without any size-1 dim: not about size 1
        triggers = []
        for dim in ones:
            sizes = {**widened, dim: 1}
            if not self._consistent(sizes, failing.params):
                continue
            if self._random_failure(sizes, failing.params, rng, failing.special) is not None and (
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

    def _highest(self, dim: str, example: Example) -> int:
        return dim_range(self.derivation, dim, {**example.params, **example.dims})[1]

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
        return self.derivation.allows({**params, **sizes})

    def _random_failure(
        self,
        sizes: Mapping[str, int],
        params: Mapping[str, Any],
        rng: np.random.Generator,
        special: Special | None = None,
    ) -> Example | None:
        """A random point at ``sizes`` that fails; made special like the failure being
        lowered, so that a failure found only at special points lowers its dims too."""
        for _ in range(TRIES_PER_SIZE):
            point = seeded_inputs(self.derivation, sizes, int(rng.integers(2**32)), params)
            point = made_special(point, special, self.float_bounds)
            example = Example(dims=dict(sizes), inputs=point, params=dict(params), special=special)
            if self.fails(example):
                return example
        return None

    def simplify_values(self, failing: Example, budget: int) -> Example:
        """At fixed dims, let hypothesis find and shrink a failure to simple values (at a
        point made special the same way, when the failure was found at one)."""
        sizes, params, special = dict(failing.dims), dict(failing.params), failing.special
        strategy = examples_at(self.derivation, sizes, params).map(
            lambda plain: replace(
                plain,
                inputs=made_special(plain.inputs, special, self.float_bounds),
                special=special,
            )
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
    deadline: float | None = DEFAULT_DEADLINE,
) -> Report:
    """Search shapes and values with hypothesis for a point where ``derivation`` fails.

    A failure is shrunk to the smallest example (fewest and smallest dims, simplest values)
    and reported with the seed that reproduces the search. ``max_examples`` defaults to the
    active hypothesis profile's; ``seed`` to a random one (0 under a derandomized profile).
    ``progress`` is called with the number of examples tried after each one; without it,
    inside Jupyter, a progress bar is shown. A forward or backward call past ``deadline``
    seconds fails the derivation with a ``timeout`` problem (None: no limit). The other
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
    options = replace(
        make_options(dtype, directions, elementwise_limit, seed),
        agreeing_directions=AGREEING_DIRECTIONS,
    )
    return guarded_search(
        derivation.name,
        options,
        validated_deadline(deadline),
        lambda: _verify(derivation, options, budget, progress),
        reproduce=f"verify({derivation.name}, seed={seed}, max_examples={budget})",
    )


def _verify(
    derivation: Derivation,
    options: Options,
    budget: int,
    progress: Callable[[int], None] | None,
) -> Report:
    seed = options.seed
    started = time.perf_counter()
    bar = notebook_progress(derivation.name, budget) if progress is None else None
    search = _Search(derivation, options, progress if bar is None else bar.update)
    with single_threaded_blas():  # once for the search, not once an example
        report = _search(derivation, search, options, budget)
    report = replace(
        report,
        seed=seed,
        elapsed=time.perf_counter() - started,
        reproduce=f"verify({derivation.name}, seed={seed}, max_examples={budget})",
    )
    if bar is not None:
        bar.close(report.verdict)
    return report


def _search(derivation: Derivation, search: _Search, options: Options, budget: int) -> Report:
    """The sweep, the three passes, and the report of what they found."""
    failing = search.sweep(budget)
    if failing is not None and not (
        search.failed_first and starts_where_hypothesis_starts(derivation)
    ):
        # hypothesis searches again from the start, as it did before there was a sweep, so
        # that a failure is found and shrunk the same way at the same seed; one that only
        # the sweep met is shrunk from where the sweep met it. (A failure at the simplest
        # point, where hypothesis starts, is already what it would return.)
        failing = search.find_in_batches(budget) or failing
    elif search.non_finite_spec_at is not None and search.declaration_error is None:
        # No failure, but the spec is NaN/inf inside its bounds: shrink that point like a
        # failure, searched for by hypothesis in the same way.
        search.target = _spec_non_finite
        failing = search.find_in_batches(budget) or search.non_finite_spec_at
    if failing is not None and search.declaration_error is None:
        search.found_after = search.examples
        search.first_failing = failing
        search.shrink_limit = search.examples + SHRINK_BUDGET * budget
        failing = search.lower_params(failing)
        failing = search.lower_dims(failing)
        failing = search.simplify_values(failing, budget)
    if search.declaration_error is not None:
        raise search.declaration_error
    tried = search.examples
    notes: tuple[str, ...]
    search.shrink_limit = float("inf")  # the final report's own evaluations always run
    if failing is not None:
        report = evaluate(derivation, failing.inputs, failing.dims, options, None, failing.params)
        report = _with_nondeterminism(derivation, report, search)
        report = with_diagnoses(derivation, report)
        if report.example is not None:
            report = replace(report, example=replace(report.example, special=failing.special))
        if report.verdict == "fail":
            shapes = tuple(search.shape_diagnoses(failing, report))
            report = replace(report, diagnoses=report.diagnoses + shapes)
        report = explain_failure(derivation, report, options)
        tried = search.examples  # the picture's own points below are not examples searched
        if report.verdict == "fail":
            report = replace(report, larger=search.larger_picture(report))
        what = "failure found" if report.verdict == "fail" else "found"
        found_after = search.found_after
        notes = (
            f"{what} after {found_after} example{'s' if found_after != 1 else ''} and "
            f"shrunk over {tried - found_after} more",
        )
        special = describe(failing.special)
        notes += (special,) if special else ()
    elif search.first_error is not None:
        report = search.first_error
        notes = (f"{tried} examples tried",)
    elif search.conclusive == 0:
        report = _nothing_conclusive(derivation, options, tried)
        notes = ()
    else:
        report = Report(derivation=derivation.name, verdict="pass", dtype=options.dtype)
        notes = (f"{tried} examples passed",)
    notes += tuple(note for note in search.notes if note not in report.notes)
    # a spec that judged by a convention it read off the layer says which (reg * sum(W*W))
    spec_notes = getattr(derivation.forward, "notes", None)
    notes += tuple(spec_notes()) if callable(spec_notes) else ()
    if search.refused and tried < budget:
        notes += (
            f"where= refused {search.refused} drawn settings: only {tried} of the "
            f"{budget} examples asked for could be checked",
        )
    if search.specials_tried:
        notes += (special_note(search.specials_tried),)
    if search.inconclusive:
        notes += (
            f"{search.inconclusive} of {tried} examples were inconclusive (kinks, or "
            "differences below what finite differences resolve)",
        )
    return replace(
        report, notes=report.notes + notes, examples=tried, inconclusive=search.inconclusive
    )


def _called_again(derivation: Derivation, report: Report) -> Report:
    """The report, failed where a second call of the backward at the same point answers
    differently (a gradient accumulated across calls: right at a first call at each shape,
    wrong after; the search rarely evaluates one point twice)."""
    example = report.example
    if example is None:
        return report
    earlier = {name: pair.hand for name, pair in report.gradients.items()}
    problem = nondeterminism(
        derivation, example.inputs, example.grad_output, report.dtype, example.params,
        calls=1, earlier=earlier,
    )  # fmt: skip
    if problem is None:
        return report
    return replace(report, verdict="fail", problems=(problem, *report.problems), inconclusive=0)


def _with_nondeterminism(derivation: Derivation, report: Report, search: _Search) -> Report:
    """The final evaluation of a point where the search saw a failure, with the backward
    called again there: a backward that answers differently for the same inputs fails,
    named as such, even when this one call happened to be right (else the report passed a
    backward wrong on every other call). Where the calls agree at the final point (a
    gradient accumulated across calls shows nothing where it is 0), they are repeated where
    the failure was first found; and a final point that failed in the search and passes
    now is itself the evidence."""
    example = report.example
    if search.target is not _failed or example is None or report.verdict == "error":
        return report
    problem = nondeterminism(
        derivation, example.inputs, example.grad_output, report.dtype, example.params
    )
    first = search.first_failing
    if problem is None and report.verdict != "fail" and first is not None:
        again = evaluate(derivation, first.inputs, first.dims, search.searching, None, first.params)
        if again.example is not None:
            problem = nondeterminism(
                derivation, again.example.inputs, again.example.grad_output, report.dtype,
                again.example.params,
            )  # fmt: skip
    if problem is None and report.verdict != "fail":
        problem = Problem(
            "nondeterministic",
            "the backward failed at this very point during the search and passes now: its "
            "answer depends on more than its inputs (state kept between calls, such as a "
            "gradient accumulated across calls and never reset).",
        )
    if problem is None:
        return report
    if report.verdict == "fail":
        return replace(report, problems=(*report.problems, problem))
    return replace(report, verdict="fail", problems=(problem, *report.problems), inconclusive=0)


# Simpler values of a param tried, simplest first, before the one a failure was found at.
SIMPLER_PARAM_VALUES = 8


def _simpler_values(choice: ParamChoices, current: Any) -> list[Any]:
    """The values of ``choice`` simpler than ``current``, simplest first: the choices before
    it in a list, the ints below it in a range (at most ``SIMPLER_PARAM_VALUES``)."""
    if choice.continuous:
        return []
    if choice.low is not None and choice.high is not None:
        if not isinstance(current, int) or isinstance(current, bool):
            return []
        return list(range(int(choice.low), current))[:SIMPLER_PARAM_VALUES]
    earlier = []
    for value in choice.choices:
        if value is current or _same(value, current):
            break
        earlier.append(value)
    else:
        return []  # not among the choices: nothing is known to be simpler
    return earlier[:SIMPLER_PARAM_VALUES]


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and other values without a plain equality
        return False


def hypothesis_find(
    strategy: st.SearchStrategy[Any], fails: Callable[[Any], bool], budget: int, seed: int
) -> Any:
    """The smallest value of ``strategy`` for which ``fails`` holds, searched and shrunk by
    hypothesis within ``budget`` examples and deterministic for ``seed``; None where none
    is found, and where hypothesis gives up (see below): the caller then keeps what its
    own sweep found."""
    search = settings(
        max_examples=budget,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    try:
        return find(strategy, fails, settings=search, random=random.Random(seed))
    except (NoSuchExample, Unsatisfiable):
        # Unsatisfiable: ``where`` refuses nearly every setting hypothesis draws.
        return None
    except FailedHealthCheck:
        # Called inside the user's own @given test: hypothesis refuses to nest unless that
        # outer test allows it.
        return None
    except Flaky:
        # A point that failed did not fail again when hypothesis replayed it: the
        # backward answers differently for the same inputs (named by ``nondeterminism``).
        return None


def _failed(report: Report) -> bool:
    return report.verdict == "fail"


def _spec_non_finite(report: Report) -> bool:
    """The spec is NaN/inf at an ordinary point (at a special one it is not held against
    the declaration: its verdict was made inconclusive)."""
    return report.verdict == "error" and any(p.kind == "spec_non_finite" for p in report.problems)


def _signature(report: Report) -> frozenset[tuple[str, str | None]]:
    """What went wrong, without the numbers: to tell one failure from another."""
    return frozenset((p.kind, p.parameter) for p in report.problems)


_WHAT = {
    "raised": "the backward raises",
    "forward_mismatch": "the course forward disagrees with the spec",
    "shape": "{} has the wrong shape",
    "missing": "{} is missing",
    "mismatch": "{} is wrong",
    "non_finite": "{} is not finite",
    "mutated": "{} is mutated",
    "nondeterministic": "{} differs between calls",
    "reentrant": "{} differs on a second backward",
    "undefined_grad": "{} is wrong with an output unused",
    "registration": "the op's registration fails",
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
