"""``evaluate``: one derivation judged at one validated point, stage by stage.

1. references: torch autograd's gradient in float64, with the hand backward run between its
   forward and backward pass (``references``);
2. comparison: each hand gradient against autograd's within its allowance (``allowance``);
3. evidence: finite differences along the difference and along probe directions
   (``evidence``, ``steps``, ``directions``);
4. verdict: the problems found, sorted into failures and doubts (``verdict``).

It decides nothing itself that a stage below decides; it never explains a failure (that is
``gradcheck.explain``'s job, above it) and never searches for a point (``gradcheck.search``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradcheck.backward import (
    DTYPES,
    BackwardResult,
    half_precision_problem,
    run_backward,
    single_threaded_blas,
)
from gradcheck.compare import Mismatch
from gradcheck.derivation import Derivation
from gradcheck.evaluation.allowance import (
    DTYPE_SAFETY,
    UNRESOLVABLE_SHARE,
    Allowance,
    dtype_rounding,
    noise_floors,
    scale_floors,
)
from gradcheck.evaluation.directions import (
    TIE_DIRECTIONS,
    probe_directions,
    random_signs,
    tie_group_directions,
)
from gradcheck.evaluation.evidence import confirm_jointly, judge_mismatch, judge_probes
from gradcheck.evaluation.options import Options
from gradcheck.evaluation.point import grad_output_maker, point_seed
from gradcheck.evaluation.steps import Jumps, jumps_for
from gradcheck.evaluation.verdict import (
    DOUBTS,
    compare_to_autograd,
    precision_problems,
    verdict_of,
)
from gradcheck.paths import took
from gradcheck.references.autograd import AutogradResult, autograd_gradients
from gradcheck.references.finite_differences import ScalarSpec
from gradcheck.report import Example, GradientPair, Problem, Report
from gradcheck.spec_domain import non_finite_spec_problem
from gradcheck.tolerances import for_dtype

__all__ = ["SMALL_POINT", "evaluate", "torch_threads_for"]

# Torch spreads even tiny ops over its threads; on a loaded 2-core machine a 6x5
# convolution took 23 ms on two threads and 8 us on one. Points this small gain nothing from
# threads, so their references (and a torch backward) run on one.
SMALL_POINT = 1 << 16  # elements over all inputs


@contextlib.contextmanager
def torch_threads_for(point: Mapping[str, np.ndarray]) -> Iterator[None]:
    if sum(int(np.size(v)) for v in point.values()) >= SMALL_POINT:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def evaluate(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    sizes: Mapping[str, int],
    options: Options,
    grad_output: Any = None,
    params: Mapping[str, Any] | None = None,
) -> Report:
    """Everything ``check`` does, at a point already validated. numpy's own work here (dot
    products along probes, comparisons) runs on one BLAS thread too: OpenBLAS workers left
    spinning after a dot of 1e5 elements made each torch forward after it 10x slower."""
    with torch_threads_for(point), single_threaded_blas():
        return _evaluate(derivation, point, sizes, options, grad_output, params)


# One input's comparison: hand gradient, autograd's, the allowance, and the mismatch if any.
Compared = tuple[np.ndarray, np.ndarray, Allowance, Mismatch | None]


@dataclass
class _Point:
    """One evaluation's state, as the stages hand it on."""

    derivation: Derivation
    point: Mapping[str, np.ndarray]
    params: dict[str, Any]
    options: Options
    autograd: AutogradResult
    hand: BackwardResult
    rng: np.random.Generator
    spec: Callable[[], ScalarSpec]
    jumps: Jumps
    direction_seeds: dict[str, int]
    failures: list[Problem] = field(default_factory=list)
    doubts: list[Problem] = field(default_factory=list)  # the derivation not judged
    probes: int = 0
    measured_floors: dict[str, float] | None = None  # see floors()

    def add(self, problem: Problem) -> None:
        (self.doubts if problem.kind in DOUBTS else self.failures).append(problem)

    def floors(self) -> dict[str, float]:
        """The noise floor of each input, and under 'dtype:name' the rounding of torch's
        own gradient in the check's dtype (float32 only); measured once, when first asked
        for: they cost autograd calls."""
        if self.measured_floors is None:
            noise = noise_floors(
                self.derivation, self.point, self.autograd, self.params, self.options, self.rng
            )
            rounding = dtype_rounding(
                self.derivation, self.point, self.autograd, self.params, self.options
            )
            took("noise floor")
            if rounding:
                took("dtype rounding")
            dtype = {f"dtype:{name}": value for name, value in rounding.items()}
            self.measured_floors = {**noise, **dtype}
        return self.measured_floors


def _evaluate(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    sizes: Mapping[str, int],
    options: Options,
    grad_output: Any,
    params: Mapping[str, Any] | None,
) -> Report:
    params = dict(params or {})
    started = time.perf_counter()
    point = _as_the_hand_sees_it(point, options.dtype)
    autograd, hand = _references(derivation, point, options, grad_output, params)
    example = Example(
        dims=dict(sizes), inputs=dict(point), grad_output=autograd.grad_output, params=params
    )
    if hand is None:
        # The spec is NaN/inf here: no reference exists. Say so once, and judge nothing.
        return Report(
            derivation=derivation.name,
            verdict="error",
            problems=(non_finite_spec_problem(derivation, point, autograd.output, params),),
            example=example,
            dtype=options.dtype,
            seed=options.seed,
            elapsed=time.perf_counter() - started,
        )
    at = _at_point(derivation, point, params, options, autograd, hand)
    pairs, compared = _compare(at)
    _probe(at, compared)
    notes = _extra_checks(at)
    for name, half in hand.half_precision.items():
        if any(p.parameter == name and p.kind == "mismatch" for p in at.failures):
            at.failures.insert(0, half_precision_problem(name, half, options.dtype))
    if at.failures and options.dtype != "float64":
        at.failures.extend(
            precision_problems(derivation, point, autograd, at.failures, options, params)
        )
    if hand.unchecked:
        notes = (
            f"the backward also returned {', '.join(map(repr, hand.unchecked))}, not in wrt: "
            "not checked (add to wrt to check it)",
            *notes,
        )
    verdict = verdict_of(at.failures, at.doubts)
    at.doubts.sort(key=lambda p: p.kind != "references_disagree")
    return Report(
        derivation=derivation.name,
        verdict=verdict,  # type: ignore[arg-type]
        problems=tuple(at.failures + at.doubts),
        notes=notes,
        example=example,
        dtype=options.dtype,
        seed=options.seed,
        inconclusive=int(verdict == "inconclusive"),
        elapsed=time.perf_counter() - started,
        probes=at.probes,
        gradients=pairs,
    )


def _as_the_hand_sees_it(point: Mapping[str, np.ndarray], dtype: str) -> Mapping[str, np.ndarray]:
    """The references are taken at the point the hand code actually sees: rounded to its
    dtype (and held in float64)."""
    if dtype == "float64":
        return point
    np_dtype = DTYPES[dtype][0]
    return {
        k: v if np.issubdtype(v.dtype, np.integer) else v.astype(np_dtype).astype(np.float64)
        for k, v in point.items()
    }


def _references(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    options: Options,
    grad_output: Any,
    params: dict[str, Any],
) -> tuple[AutogradResult, BackwardResult | None]:
    """Autograd's gradients, and the hand backward's (None where the spec is not finite:
    there is nothing to hold it to)."""
    hands: list[BackwardResult] = []
    autograd = autograd_gradients(
        derivation.name,
        derivation.forward,
        point,
        derivation.wrt,
        grad_output_maker(derivation.name, grad_output, point_seed(options.seed, point)),
        params,
        before_backward=lambda seed, output: (
            hands.append(run_backward(derivation, point, seed, options.dtype, params))
            if bool(torch.isfinite(output).all())
            else None
        ),
    )
    finite = hands and np.isfinite(autograd.output).all()
    return autograd, hands[0] if finite else None


def _at_point(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    params: dict[str, Any],
    options: Options,
    autograd: AutogradResult,
    hand: BackwardResult,
) -> _Point:
    rng = np.random.default_rng(options.seed)
    # Made when first asked for: a point where hand and autograd agree and no probe is
    # wanted (see Options.agreeing_directions) never needs it.
    spec = functools.cache(
        functools.partial(
            ScalarSpec, derivation.name, derivation.forward, point, autograd.grad_output,
            params, output=autograd.output, shared=derivation.wrt,
            bounds={name: derivation.input_bounds[name] for name in derivation.bounds or {}},
        )
    )  # fmt: skip
    return _Point(
        derivation=derivation,
        point=point,
        params=params,
        options=options,
        autograd=autograd,
        hand=hand,
        rng=rng,
        spec=spec,
        jumps=jumps_for(derivation, point, autograd.grad_output, params),
        # Each input's probe directions come from a generator of its own, made as used.
        direction_seeds={name: int(rng.integers(2**63)) for name in derivation.wrt},
    )


def _compare(at: _Point) -> tuple[dict[str, GradientPair], dict[str, Compared]]:
    """Each hand gradient against autograd's. Where autograd's own gradient is NaN or inf
    the spec has no derivative to hold the hand to (std at a constant row, sqrt at 0):
    nothing about that input is judged, not even a NaN of the hand's own there."""
    derivation, autograd, options = at.derivation, at.autograd, at.options
    undefined = [name for name in derivation.wrt if not np.isfinite(autograd.gradients[name]).all()]
    at.failures.extend(
        p for p in at.hand.problems if not (p.kind == "non_finite" and p.parameter in undefined)
    )
    tolerance = for_dtype(options.dtype)
    scale = scale_floors(derivation, at.point, tolerance, autograd)
    pairs: dict[str, GradientPair] = {}
    compared: dict[str, Compared] = {}
    for name in derivation.wrt:
        reference = autograd.gradients[name]
        if name in undefined:
            at.doubts.append(_undefined_problem(name))
            continue
        if name not in at.hand.gradients:
            continue
        hand_grad = at.hand.gradients[name]
        allowance = Allowance(
            tolerance.atol(reference, floor=scale[name]), tolerance.rtol, reference
        )
        mismatch = None
        if not allowance.holds(hand_grad):
            # The point's own floors only widen the allowance; they cost autograd calls, so
            # they are measured only where the narrower allowance is exceeded.
            floors = at.floors()
            rounding = floors.get(f"dtype:{name}", 0.0)
            largest = float(np.max(np.abs(reference), initial=0.0))
            if rounding > 0.0 and rounding >= UNRESOLVABLE_SHARE * largest:
                at.doubts.append(_unresolvable_problem(name, rounding, largest, options.dtype))
                continue
            floor = scale[name] + floors[name] + rounding
            allowance = Allowance(tolerance.atol(reference, floor=floor), tolerance.rtol, reference)
            mismatch = compare_to_autograd(hand_grad, reference, allowance.array(), name, options)
        # The allowance is kept with a mismatch only: a picture of it outlines exactly the
        # elements the comparison counted.
        allowed = None if mismatch is None else allowance.array()
        pairs[name] = GradientPair(hand=hand_grad, reference=reference, allowed=allowed)
        compared[name] = (hand_grad, reference, allowance, mismatch)
    return pairs, compared


def _undefined_problem(name: str) -> Problem:
    return Problem(
        "kink",
        f"torch autograd's own gradient for {name!r} is not finite at this point: the spec "
        "has no derivative here, so the hand gradient is not judged.",
        parameter=name,
    )


def _unresolvable_problem(name: str, rounding: float, largest: float, dtype: str) -> Problem:
    return Problem(
        "unresolved",
        f"torch autograd's own {dtype} gradient for {name!r} is off by "
        f"{rounding / DTYPE_SAFETY:.2g} here, as large as the gradient itself "
        f"({largest:.2g}): terms that cancel leave nothing {dtype} can resolve, so it is not "
        "judged at this point.",
        parameter=name,
    )


def _probe(at: _Point, compared: dict[str, Compared]) -> None:
    """Finite differences: along each difference from autograd, then along each input's
    own directions. Where hand and autograd agree everywhere the probes only confirm
    autograd, with cheap central differences first (and fewer where the options say so)."""
    options = at.options
    agreeing = not at.failures and all(found[3] is None for found in compared.values())
    fewer = agreeing and options.agreeing_directions is not None
    joint: dict[str, np.ndarray] = {}
    if fewer:
        joint = _joint_probe(at, compared)
        if not joint:
            at.probes += options.agreeing_directions or 0
            return  # every input confirmed at once: nothing left to probe
    judged = {
        name: judge_mismatch(at.spec(), mismatch, hand_grad, reference, allowance, at.jumps)
        for name, (hand_grad, reference, allowance, mismatch) in compared.items()
        if mismatch is not None
    }
    if options.verdict_only and (at.failures or any(p.kind == "mismatch" for p in judged.values())):
        for problem in judged.values():  # failed already: probes could not change that
            at.add(problem)
            at.probes += 1
        return
    for name, (hand_grad, reference, allowance, mismatch) in compared.items():
        if mismatch is not None:
            at.add(judged[name])
            at.probes += 1
        _probe_input(at, name, hand_grad, reference, allowance, agreeing, fewer, joint)


def _joint_probe(at: _Point, compared: dict[str, Compared]) -> dict[str, np.ndarray]:
    """Every input moved at once along random signs, ``agreeing_directions`` times: {} when
    each confirms autograd, else the joint direction that did not (probed first below). One
    generator for all inputs: a generator per input cost more than a small example's
    forward."""
    generator = np.random.default_rng(at.direction_seeds[at.derivation.wrt[0]])
    for _ in range(at.options.agreeing_directions or 0):
        along = {name: random_signs(generator, found[1].shape) for name, found in compared.items()}
        if not confirm_jointly(at.spec(), compared, along):
            return along
    took("joint probe")
    return {}


def _probe_input(
    at: _Point,
    name: str,
    hand_grad: np.ndarray,
    reference: np.ndarray,
    allowance: Allowance,
    agreeing: bool,
    fewer: bool,
    joint: Mapping[str, np.ndarray],
) -> None:
    """``name``'s own probes: element by element when small, random signs otherwise."""
    options = at.options
    per_parameter = max(2, math.ceil(options.directions / len(at.derivation.wrt)))
    directions, unit = probe_directions(
        at.point[name].shape,
        options.agreeing_directions if fewer else per_parameter,  # type: ignore[arg-type]
        0 if fewer else options.elementwise_limit,
        np.random.default_rng(at.direction_seeds[name]),
    )
    if name in joint:  # the direction the joint probe did not confirm, first
        directions = itertools.chain([joint[name]], itertools.islice(directions, 1, None))
    confirmed = any(p.kind == "mismatch" and p.parameter == name for p in at.failures)

    def tie_probes(with_signs: bool) -> Iterator[np.ndarray]:
        groups = tie_group_directions(at.point[name])
        if not with_signs:
            return iter(groups)
        rng = np.random.default_rng(at.direction_seeds[name] + 1)
        signs = probe_directions(at.point[name].shape, TIE_DIRECTIONS, 0, rng)[0]
        return itertools.chain(groups, signs)

    def autograd_noise(direction: np.ndarray) -> float:
        """Autograd's own rounding along ``direction``: its noise floor (how far its
        gradient moves when the inputs move by a few eps) spread over the direction."""
        return at.floors()[name] * float(np.abs(direction).sum())

    found, count = judge_probes(
        at.spec(), name, directions, unit, hand_grad, reference, allowance, at.jumps,
        screen=agreeing, extra=tie_probes, autograd_noise=autograd_noise,
    )  # fmt: skip
    at.probes += count
    for problem in found:
        if problem.kind == "mismatch" and confirmed:
            continue  # already failed against autograd, with finite differences agreeing
        at.add(problem)


def _extra_checks(at: _Point) -> tuple[str, ...]:
    """A declaration's checks beyond the gradient (a Function's jvp, double backward...),
    at the same point; their problems join the others, their notes are returned."""
    derivation = at.derivation
    if derivation.extra_checks is None:
        return ()
    extra = derivation.extra_checks(
        at.point, at.autograd.grad_output, at.params, dtype=at.options.dtype, seed=at.options.seed
    )
    for problem in extra.problems:
        at.add(problem)
    at.probes += extra.probes
    return tuple(extra.notes)
