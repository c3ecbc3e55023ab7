"""Check a derivation at one concrete point.

At a point, the hand gradient is compared element-wise with torch autograd in float64, and both
are compared with finite differences of the spec along random directions (and element by
element for small inputs). A mismatch becomes a failure only where the finite differences
side with autograd; where they see a kink, the point is inconclusive; where they side with
neither, the spec or the point is at fault, not the derivation.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import math
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
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
from gradcheck.compare import Mismatch, compare
from gradcheck.derivation import Derivation, DerivationError
from gradcheck.guard import DEFAULT_DEADLINE, guarded_search, validated_deadline
from gradcheck.paths import took
from gradcheck.references.autograd import (
    AutogradResult,
    as_tensor,
    autograd_gradients,
    gradients_in_dtype,
)
from gradcheck.references.finite_differences import UNRESOLVED, ScalarSpec, Screen, Slope, phi
from gradcheck.report import Example, GradientPair, Problem, Report
from gradcheck.spec_domain import non_finite_spec_problem
from gradcheck.tolerances import Tolerance, for_dtype

__all__ = [
    "Options",
    "check",
    "evaluate",
    "make_options",
    "require_derivation",
    "torch_threads_for",
    "whole",
    "with_diagnoses",
]


@dataclass(frozen=True)
class Options:
    dtype: str
    directions: int
    elementwise_limit: int
    seed: int
    # Random directions per input at a point where the hand gradient already agrees with
    # autograd element by element. There the finite differences have one job left, to
    # confirm that autograd differentiates what the spec computes, and a detach or an
    # in-place op shows along any random direction. None: as many as at any other point;
    # 0: none (the search, once finite differences have confirmed autograd at enough points).
    agreeing_directions: int | None = None
    # Only the verdict is wanted (the search asks "does it fail here?" thousands of times):
    # once a failure is established no probe can change it, so none is taken after it.
    verdict_only: bool = False


def _dtype_name(dtype: Any) -> str:
    for name, (np_dtype, torch_dtype) in DTYPES.items():
        if dtype in (name, np_dtype, torch_dtype) or (
            not isinstance(dtype, torch.dtype) and _same_numpy_dtype(dtype, np_dtype)
        ):
            return name
    raise ValueError(f"dtype={dtype!r} is not supported; use 'float64' (the default) or 'float32'.")


def _same_numpy_dtype(dtype: Any, np_dtype: type) -> bool:
    try:
        return bool(np.dtype(dtype) == np.dtype(np_dtype))
    except TypeError:
        return False


def whole(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum}.")
    return value


def make_options(dtype: Any, directions: Any, elementwise_limit: Any, seed: Any) -> Options:
    return Options(
        dtype=_dtype_name(dtype),
        directions=whole("directions", directions, minimum=0),
        elementwise_limit=whole("elementwise_limit", elementwise_limit, minimum=0),
        seed=whole("seed", seed, minimum=0),
    )


def require_derivation(derivation: Any) -> Derivation:
    if not isinstance(derivation, Derivation):
        raise TypeError(
            f"expected a gradcheck.Derivation, got {type(derivation).__name__}; "
            "declare one with Derivation(name=..., forward=..., backward=..., shapes=..., wrt=...)."
        )
    return derivation


def validated_point(
    derivation: Derivation, inputs: Any, *, caller: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, int], dict[str, Any]]:
    """Copies of ``inputs`` (float64, int64 for integer inputs) checked against the declared
    shapes; the dim sizes they imply; the hyperparameters among them. Errors begin with
    ``caller`` (default ``check('name')``)."""
    where = caller or f"check({derivation.name!r})"
    if not isinstance(inputs, Mapping):
        raise DerivationError(
            f"{where}: inputs must be a mapping {{input name: array}}, got {type(inputs).__name__}."
        )
    expected = [*derivation.shapes, *derivation.param_choices]
    missing = [key for key in expected if key not in inputs]
    extra = [key for key in inputs if key not in expected]
    if missing or extra:
        raise DerivationError(
            f"{where}: inputs must hold exactly {', '.join(expected)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; not declared in shapes or params: {', '.join(map(str, extra))}" if extra else "")
            + "."
        )
    params = {key: copy.deepcopy(inputs[key]) for key in derivation.param_choices}
    point: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    seen_at: dict[str, str] = {}
    for key, declared in derivation.shapes.items():
        array = _as_array(where, key, inputs[key], integer=key in (derivation.integers or {}))
        if array.ndim != len(declared):
            raise DerivationError(
                f"{where}: inputs[{key!r}] has shape {array.shape}, but shapes "
                f"declares {declared} ({len(declared)} dims)."
            )
        for axis, (dim, size) in enumerate(zip(declared, array.shape, strict=True)):
            if isinstance(dim, int) and size != dim:
                raise DerivationError(
                    f"{where}: inputs[{key!r}] has size {size} on axis {axis}; "
                    f"shapes fixes it at {dim}."
                )
            if isinstance(dim, str):
                if dim in sizes and sizes[dim] != size:
                    raise DerivationError(
                        f"{where}: dim {dim!r} is {sizes[dim]} in inputs"
                        f"[{seen_at[dim]!r}] but {size} in inputs[{key!r}]."
                    )
                sizes.setdefault(dim, size)
                seen_at.setdefault(dim, key)
        point[key] = array
    return point, sizes, params


def _as_array(where: str, key: str, value: Any, *, integer: bool) -> np.ndarray:
    label = key if key == "grad_output" else f"inputs[{key!r}]"
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        # numpy has no bfloat16: widen any floating tensor first (exact for bf16/f16/f32)
        value = (value.to(torch.float64) if value.is_floating_point() else value).numpy()
    exact = np.int64 if integer else np.float64
    if isinstance(value, np.ndarray) and value.dtype == exact and value.size:
        # Already what the checker works on: read through a view that cannot be written
        # (nothing here writes into a point, and the backward gets copies), instead of a
        # copy that at 3000x3000 was 72 MB.
        view = value.view()
        view.flags.writeable = False
        if not integer and not np.isfinite(view).all():
            raise DerivationError(
                f"{where}: {label} holds NaN or inf; gradients are checked at finite points."
            )
        return view
    try:
        raw = np.asarray(value)
        if np.iscomplexobj(raw):
            raise DerivationError(
                f"{where}: {label} is complex; gradients are checked for real inputs."
            )
        # One copy, whatever came in: the caller's stays untouched.
        array = raw.astype(np.int64 if integer else np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DerivationError):
            raise
        raise DerivationError(f"{where}: {label} is not numeric ({exc}).") from exc
    if array.size == 0:
        raise DerivationError(
            f"{where}: {label} has shape {array.shape}, with no elements; a gradient is "
            "checked at a point with at least one element in every input."
        )
    if integer and not np.array_equal(array, raw.astype(np.float64)):
        raise DerivationError(f"{where}: {label} is an integer input but holds non-integers.")
    if not integer and not np.isfinite(array).all():
        raise DerivationError(
            f"{where}: {label} holds NaN or inf; gradients are checked at finite points."
        )
    return array


# Scales of a drawn grad_output, one chosen per point: a backward that clips grad_output
# (to [-2, 2], say) or drops its sign passes at unit-scale seeds of one or two elements.
GRAD_OUTPUT_SCALES = (1.0, 1.0, 1.0, 100.0, 0.01)


def _point_seed(seed: int, point: Mapping[str, np.ndarray]) -> int:
    """A seed of the point's own: grad_output is drawn afresh at every point of a search
    (one drawn from the search seed alone was the same vector at every point of a shape),
    and again the same whenever the same point is evaluated. Up to 4096 elements of each
    input are hashed: enough to tell drawn points apart, cheap at 3000x3000."""
    digest = zlib.crc32(seed.to_bytes(8, "little"))
    for key in sorted(point):
        value = np.ascontiguousarray(point[key]).reshape(-1)
        digest = zlib.crc32(key.encode(), digest)
        digest = zlib.crc32(value[:4096].tobytes(), digest)
        digest = zlib.crc32(np.asarray(value.shape).tobytes(), digest)
    return digest


def _grad_output_maker(name: str, given: Any, seed: int) -> Any:
    def make(shape: tuple[int, ...]) -> np.ndarray | None:
        if not shape:
            if given is not None:
                raise DerivationError(
                    f"check({name!r}): the forward returns a scalar; grad_output is only for "
                    "a forward that returns a tensor with dims. Drop it."
                )
            return None
        if given is None:
            rng = np.random.default_rng(seed)
            return (
                rng.standard_normal(shape)
                * GRAD_OUTPUT_SCALES[int(rng.integers(len(GRAD_OUTPUT_SCALES)))]
            )
        array = _as_array(f"check({name!r})", "grad_output", given, integer=False)
        if array.shape != shape:
            raise DerivationError(
                f"check({name!r}): grad_output has shape {array.shape}, but the forward "
                f"returns shape {shape}."
            )
        return array

    return make


def _chunks(*arrays: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """The arrays flattened, a million elements at a time: numpy expressions on them then
    need temporaries of a chunk, not of the whole (72 MB each at 3000x3000)."""
    flat = [np.ravel(a) for a in arrays]
    for start in range(0, max(1, flat[0].size), CHUNK):
        yield tuple(f[start : start + CHUNK] for f in flat)


CHUNK = 1 << 20


def _dot(a: np.ndarray, b: np.ndarray, *, absolute: bool = False) -> float:
    """sum(a * b), or with ``absolute`` sum(|a| * |b|)."""
    if absolute:
        return sum(float(np.dot(np.abs(x), np.abs(y))) for x, y in _chunks(a, b))
    return sum(float(np.dot(x, y)) for x, y in _chunks(a, b))


@dataclass
class _Allowance:
    """What the hand gradient may differ from ``reference`` by, element-wise:
    ``atol + rtol * |reference|`` (the table's, with the point's floor), kept as its two
    numbers rather than an array of the gradient's size."""

    atol: float
    rtol: float
    reference: np.ndarray

    def along(self, direction: np.ndarray) -> float:
        """The allowance of a difference projected on ``direction``: sum |d| * allowed."""
        if direction.dtype == np.int8:  # a large +-1 probe: |d| is 1 everywhere
            return self.atol * direction.size + self.rtol * self._absolute_sum
        total = sum(float(np.abs(d).sum()) for (d,) in _chunks(direction))
        return self.atol * total + self.rtol * _dot(direction, self.reference, absolute=True)

    @functools.cached_property
    def _absolute_sum(self) -> float:
        return sum(float(np.abs(r).sum()) for (r,) in _chunks(self.reference))

    def holds(self, hand_grad: np.ndarray) -> bool:
        """|hand - reference| <= allowed everywhere (NaN never does), as ``compare`` judges."""
        return all(
            bool(np.all(np.abs(h - r) <= self.atol + self.rtol * np.abs(r)))
            for h, r in _chunks(hand_grad, self.reference)
        )

    def array(self) -> np.ndarray:
        allowed = np.abs(self.reference)
        allowed *= self.rtol
        allowed += self.atol
        return allowed


def _mismatch_problem(mismatch: Mismatch, note: str) -> Problem:
    return Problem(
        "mismatch",
        f"gradient for {mismatch.parameter!r} does not match {mismatch.reference}. {note}",
        parameter=mismatch.parameter,
        mismatch=mismatch,
    )


# (input name, direction, its slope, autograd's slope at the point) -> whether autograd's
# gradient changes within the finite-difference step: a non-differentiable point.
Jumps = Callable[[str, np.ndarray, Slope, float], bool]


def _jumps_for(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    grad_output: np.ndarray | None,
    params: Mapping[str, Any],
) -> Jumps:
    """When finite differences and autograd disagree, look at autograd's slope a step away
    on either side. At a kink the finite difference lies between them while autograd's value
    at the point is not theirs (several hinges can even make the spec smooth along one
    direction with a slope no single subgradient gives). A spec autograd misreads (a
    detach) is misread the same way a step away: then the disagreement stands."""

    def slope_at(name: str, direction: np.ndarray, t: float) -> float:
        moved = dict(point)
        moved[name] = point[name] + t * direction
        nearby = autograd_gradients(
            derivation.name, derivation.forward, moved, [name], lambda _: grad_output, params
        )
        return _dot(nearby.gradients[name], direction)

    def jumps(name: str, direction: np.ndarray, slope: Slope, along_reference: float) -> bool:
        after = slope_at(name, direction, slope.step)
        before = slope_at(name, direction, -slope.step)
        # Where the spec is smooth, the mean of the two is autograd's slope at the point up
        # to O(step**2), whatever the curvature; at a hinge it is the finite difference.
        mean = (after + before) / 2
        return (
            abs(mean - along_reference) > slope.allowed
            and abs(mean - slope.central) <= slope.allowed + abs(after - before) / 2
        )

    return jumps


# Wider steps tried before finite differences are said to disagree with autograd. A forward
# that cancels internally (a residual out - y of 5e-6 from terms of 1e-3, raised to the 4th
# power) rounds far above eps * |f|; its differences at the usual step carry that noise
# (measured 2e-5 relative) while a step 16-4096 times wider is accurate to 1e-9.
WIDER_STEPS = (16.0, 256.0, 4096.0)


# Narrower steps tried next. The usual step is relative to the inputs' size, and a function
# can vary far faster than that suggests: sin(u * v) with u, v ~ 1000 turns a full period
# within a step of 6e-3. A step 4096 times narrower (~1e-6, torch.autograd.gradcheck's)
# resolves it; like numdifftools, several are tried, and one is trusted only where it sees
# no kink.
NARROWER_STEPS = (1 / 64, 1 / 4096, 1 / 262144)


def _agreeing_wider(
    spec: ScalarSpec, name: str, direction: np.ndarray, along_reference: float
) -> Slope | None:
    """The first wider-step slope that agrees with autograd, if any does."""
    for widen in WIDER_STEPS:
        slope = spec.slope(name, direction, widen)
        if abs(slope.central - along_reference) <= slope.allowed:
            return slope
    return None


def _agreeing_narrower(
    spec: ScalarSpec, name: str, direction: np.ndarray, along_reference: float
) -> tuple[Slope | None, Slope]:
    """The first narrower-step slope that agrees with autograd without a kink (or None),
    and the narrowest slope taken: the evidence of whether the differences settle."""
    slope = UNRESOLVED
    for narrow in NARROWER_STEPS:
        took("narrower step")
        slope = spec.slope(name, direction, narrow)
        if (
            slope.resolved
            and not slope.kink
            and abs(slope.central - along_reference) <= (slope.allowed)
        ):
            return slope, slope
    return None, slope


def _narrower_mismatch(
    mismatch: Mismatch, narrower: Slope, along_reference: float, along_hand: float
) -> Problem:
    return _mismatch_problem(
        mismatch,
        "Finite differences with a narrower step (the spec varies faster than the usual "
        f"step resolves) agree with autograd along the difference (slope "
        f"{narrower.central:.6g}, autograd {along_reference:.6g}, hand {along_hand:.6g}), so "
        "the derivation is wrong, not the spec.",
    )


def _settled(first: Slope, narrowest: Slope) -> bool:
    """Whether finite differences at the usual and the narrowest step agree with each
    other: only then is their disagreement with autograd evidence against the spec (a
    detach or an in-place op is smooth and wrong at every step; an ill-conditioned point
    gives a different answer at each)."""
    return (
        first.resolved
        and narrowest.resolved
        and abs(first.central - narrowest.central) <= first.allowed + narrowest.allowed
    )


def _unsettled_problem(name: str, first: Slope, narrowest: Slope, along: str) -> Problem:
    if not first.resolved:
        reason = (
            "are not finite (a step leaves the spec's domain, or no step fits inside its bounds)"
        )
    else:
        reason = (
            f"do not settle (slope {first.central:.6g} at step {first.step:.2g}, "
            f"{narrowest.central:.6g} at step {narrowest.step:.2g}): the point is "
            "ill-conditioned"
        )
    return Problem(
        "unresolved",
        f"finite differences on {name!r} along {along} {reason}, so the derivation is not "
        "judged here.",
        parameter=name,
    )


def _directions(
    shape: tuple[int, ...], count: int, elementwise_limit: int, rng: np.random.Generator
) -> tuple[Iterator[np.ndarray], str]:
    """Element by element when the input is small, else ``count`` random directions. Made
    one at a time: at 3000x3000 a list of eight directions held 600 MB."""
    size = int(np.prod(shape))
    if size <= elementwise_limit:

        def units() -> Iterator[np.ndarray]:
            for index in range(size):
                unit = np.zeros(size)
                unit[index] = 1.0
                yield unit.reshape(shape)

        return units(), "elements"

    def signs() -> Iterator[np.ndarray]:
        # Random signs: every element moves (unlike a non-negative probe, a sign error
        # cannot cancel out), and they cost a tenth of Gaussian draws at 1e5 elements.
        # Large ones stay int8: an eighth of the memory, and exact.
        for _ in range(count):
            if size >= CHUNK:
                signs = _random_bits(rng, size).view(np.int8).reshape(shape)
                signs *= np.int8(2)
                signs -= np.int8(1)
                yield signs
            else:
                yield _random_signs(rng, shape)

    return signs(), "directions"


def _screened(
    spec: ScalarSpec, name: str, directions: Iterator[np.ndarray], *, screen: bool
) -> Iterator[tuple[np.ndarray, Screen | None]]:
    """Each direction with its screening central difference (None without ``screen``),
    screened a batch at a time where the spec evaluates batches cheaply."""
    if not screen:
        yield from ((direction, None) for direction in directions)
        return
    size = spec.screen_batch(name)
    while chunk := list(itertools.islice(directions, size)):
        yield from zip(chunk, spec.screens(name, chunk), strict=True)


def _judge_probes(
    spec: ScalarSpec,
    name: str,
    directions: Iterator[np.ndarray],
    unit: str,
    hand_grad: np.ndarray,
    reference: np.ndarray,
    allowance: _Allowance,
    jumps: Jumps,
    *,
    screen: bool,
    extra: Callable[[], Iterator[np.ndarray]] | None = None,
) -> tuple[list[Problem], int]:
    """Where the probes side with autograd, hold the hand gradient to them; where they do
    not, say whether a kink or the spec is to blame. With ``screen`` (the hand gradient
    already agrees with autograd), a two-evaluation central difference is tried first and
    the full slope is taken only where it does not confirm autograd. Returns the problems
    and the number of probes."""
    problems: list[Problem] = []
    fd_values, fd_allowed, hand_values = [], [], []
    count = 0
    subgradient: Problem | None = None  # the hand's choice at a kink, said once
    tie_directions = False  # element probes excused a choice: probe several together too
    crossings = 0  # probes whose step crossed a kink
    unsettled: Problem | None = None  # probes where finite differences resolve nothing
    for direction, quick in _screened(spec, name, directions, screen=screen):
        count += 1
        along_reference = _dot(reference, direction)
        if quick is not None and abs(quick.central - along_reference) <= quick.allowed:
            took("screen")
            continue  # confirmed; the hand gradient already agrees with autograd
        slope = spec.slope(name, direction)
        first = narrowest = slope
        if abs(slope.central - along_reference) > slope.allowed and not slope.kink:
            slope = _agreeing_wider(spec, name, direction, along_reference) or slope
        if not abs(slope.central - along_reference) <= slope.allowed:
            narrower, narrowest = _agreeing_narrower(spec, name, direction, along_reference)
            slope = narrower or slope
        if abs(slope.central - along_reference) <= slope.allowed:
            if slope.kink and not screen:
                # At a kink or a tie the central difference is one subgradient (torch's
                # choice often equals it) but not the only one: a hand gradient between
                # the one-sided slopes (|x| with +1 at 0, a tied max given to one element)
                # is as valid, so the probe cannot hold the hand to it.
                along_hand = _dot(hand_grad, direction)
                if _between_one_sided(slope, along_hand, allowance.along(direction)):
                    if abs(along_hand - slope.central) > slope.allowed + allowance.along(direction):
                        took("subgradient")
                        subgradient = subgradient or _subgradient_problem(name, slope)
                        tie_directions = tie_directions or (unit == "elements")
                    continue
            fd_values.append(slope.central)
            # The hand gradient may differ from the reference by its dtype's rounding.
            fd_allowed.append(slope.allowed + allowance.along(direction))
            hand_values.append(_dot(hand_grad, direction))
        elif not _settled(first, narrowest) and not first.kink:
            unsettled = unsettled or _unsettled_problem(name, first, narrowest, "a probe")
        elif slope.kink or jumps(name, direction, slope, along_reference):
            crossings += 1
            if crossings > 1:
                continue  # one line says it; the count is added below
            problems.append(
                Problem(
                    "kink",
                    f"a finite-difference step on {name!r} crosses a kink (one-sided "
                    f"slopes {slope.left:.6g} and {slope.right:.6g}; autograd's gradient "
                    "changes within the step).",
                    parameter=name,
                )
            )
        else:
            problems.append(
                Problem(
                    "references_disagree",
                    f"torch autograd ({along_reference:.6g}) and finite differences "
                    f"({slope.central:.6g} +- {slope.allowed:.2g}) disagree on {name!r} "
                    f"along a probe: the spec forward is not what autograd differentiates "
                    "(a detach, an in-place op, a non-differentiable op) or the point is "
                    "ill-conditioned. The derivation is not judged here.",
                    parameter=name,
                )
            )
    if crossings > 1:
        first = next(i for i, p in enumerate(problems) if p.kind == "kink")
        problems[first] = replace(
            problems[first],
            message=problems[first].message[:-1] + f"; {crossings - 1} more probes like it).",
        )
    if subgradient is not None:
        problems.append(subgradient)
    if unsettled is not None:
        problems.append(unsettled)
    if tie_directions and extra is not None:
        # Element probes each excused a choice of subgradient; several choices together
        # need not be one (a max-pool tie routed to every tied element passes k times the
        # upstream gradient). Random-sign probes move tied elements together, and along
        # one that moves them the same way there is no kink to excuse the sum.
        found, more = _judge_probes(
            spec, name, extra(), "directions", hand_grad, reference, allowance, jumps,
            screen=False, extra=None,
        )  # fmt: skip
        problems.extend(p for p in found if p.kind != "kink" or subgradient is None)
        count += more
    # Always, even when the hand gradient already differs from autograd at a kink: a
    # probe that no hinge disturbs judges it independently of any choice of subgradient.
    # (Not where it agrees with autograd element by element: then it agrees with every
    # probe that agrees with autograd, up to the rounding of the sums.)
    if fd_values and not screen:
        mismatch = compare(
            np.array(hand_values),
            np.array(fd_values),
            np.array(fd_allowed),
            parameter=name,
            reference="finite differences",
            unit=unit,
        )
        if mismatch is not None:
            problems.append(_mismatch_problem(mismatch, "Finite differences agree with autograd."))
    return problems, count


def _between_one_sided(slope: Slope, along_hand: float, hand_allowed: float) -> bool:
    """Whether the hand's slope lies between the one-sided slopes at a kink: a valid
    subgradient along this direction for a convex kink (|x|, max, relu), Clarke's hull for
    the others."""
    margin = slope.allowed + hand_allowed
    low, high = sorted((slope.left, slope.right))
    return low - margin <= along_hand <= high + margin


def _subgradient_problem(name: str, slope: Slope) -> Problem:
    return Problem(
        "kink",
        f"at a kink or tie of {name!r} the hand gradient takes another subgradient than "
        f"autograd (between the one-sided slopes {slope.left:.6g} and {slope.right:.6g}): "
        "a valid choice, not judged here.",
        parameter=name,
    )


def _confirm_jointly(
    spec: ScalarSpec,
    compared: Mapping[str, tuple[np.ndarray, np.ndarray, _Allowance, Mismatch | None]],
    directions: Mapping[str, np.ndarray],
) -> bool:
    """Where hand and autograd already agree, do finite differences confirm autograd along
    one joint direction (every input moved at once along its own ``directions``)? Two
    evaluations, where probing each input apart takes two per input. Only a confirmation
    is concluded: anything else sends every input to its own probes, along the same
    directions."""
    if not compared:
        return False
    screen, steps = spec.screen_jointly(directions)
    along_reference = sum(
        steps[name] * _dot(found[1], directions[name]) for name, found in compared.items()
    )
    return abs(screen.central - along_reference) <= screen.allowed


def _judge_mismatch(
    spec: ScalarSpec,
    mismatch: Mismatch,
    hand_grad: np.ndarray,
    reference: np.ndarray,
    allowance: _Allowance,
    jumps: Jumps,
) -> Problem:
    """Hand and autograd differ: move along the difference itself. If the spec is smooth
    there, finite differences must side with one of the two; if it has a kink there, more
    than one gradient may be valid; if they cannot tell the two apart, nothing is judged."""
    name = mismatch.parameter
    delta = hand_grad - reference
    slope = first = spec.slope(name, delta)
    along_hand, along_reference = _dot(hand_grad, delta), _dot(reference, delta)
    narrowest: Slope | None = None
    if not slope.resolved:  # the usual step leaves the domain: a narrower one may not
        narrower, narrowest = _agreeing_narrower(spec, name, delta, along_reference)
        slope = narrower or narrowest
        if not slope.resolved:
            return _unsettled_problem(name, first, narrowest, "the difference")
    # What separates the two along the difference, against what the finite difference and
    # the hand's own dtype leave uncertain.
    allowed = slope.allowed + allowance.along(delta)
    if abs(along_hand - along_reference) <= 2 * allowed:
        return Problem(
            "unresolved",
            f"{name!r} differs from autograd by less than finite differences resolve here "
            f"(along the difference: hand {along_hand:.6g}, autograd {along_reference:.6g}, "
            f"+- {allowed:.2g}): rounding at an ill-conditioned point, not judged.",
            parameter=name,
        )
    if slope.kink and narrowest is None:
        # The hinge may lie within the usual step but not at the point (x ~ 1e8 steps by
        # 600 past a clamp 50 away): a narrower step that sees no kink settles it.
        narrower, narrowest = _agreeing_narrower(spec, name, delta, along_reference)
        if narrower is not None and abs(along_hand - along_reference) > 2 * (
            narrower.allowed + allowance.along(delta)
        ):
            return _narrower_mismatch(mismatch, narrower, along_reference, along_hand)
    if slope.kink:
        return Problem(
            "kink",
            f"{name!r} differs from autograd at a kink: along the difference the one-sided "
            f"slopes are {slope.left:.6g} and {slope.right:.6g}, so the difference may be "
            "a choice of subgradient. The probes below judge it where no hinge is crossed.",
            parameter=name,
        )
    if abs(slope.central - along_reference) <= allowed:
        return _mismatch_problem(
            mismatch,
            "Finite differences agree with autograd along the difference (slope "
            f"{slope.central:.6g}, autograd {along_reference:.6g}, hand {along_hand:.6g}), "
            "so the derivation is wrong, not the spec.",
        )
    wider = _agreeing_wider(spec, name, delta, along_reference)
    if wider is not None and abs(along_hand - along_reference) > 2 * (
        wider.allowed + allowance.along(delta)
    ):
        return _mismatch_problem(
            mismatch,
            "Finite differences with a wider step (the forward rounds coarsely at the usual "
            f"one) agree with autograd along the difference (slope {wider.central:.6g}, "
            f"autograd {along_reference:.6g}, hand {along_hand:.6g}), so the derivation is "
            "wrong, not the spec.",
        )
    if narrowest is None:
        narrower, narrowest = _agreeing_narrower(spec, name, delta, along_reference)
        if narrower is not None and abs(along_hand - along_reference) > 2 * (
            narrower.allowed + allowance.along(delta)
        ):
            return _narrower_mismatch(mismatch, narrower, along_reference, along_hand)
    if jumps(name, delta, slope, along_reference):
        return Problem(
            "kink",
            f"{name!r} differs from autograd at a point where the spec's gradient jumps: "
            f"autograd's slope along the difference is {along_reference:.6g} here and "
            f"{slope.central:.6g} a step away on either side, so ReLU-style units sit on "
            "their hinges and more than one gradient is valid.",
            parameter=name,
        )
    if not _settled(first, narrowest):
        return _unsettled_problem(name, first, narrowest, "the difference")
    sides_with = "the hand gradient" if abs(slope.central - along_hand) <= allowed else "neither"
    return Problem(
        "references_disagree",
        f"for {name!r}, finite differences ({slope.central:.6g} +- {allowed:.2g}) "
        f"agree with {sides_with} rather than torch autograd ({along_reference:.6g}) along "
        "the difference: the spec forward, or this point, is the problem.",
        parameter=name,
    )


# Random-sign probes added where element probes excused a choice of subgradient at a kink:
# each moves two tied elements the same way with probability 1/2, so a gradient routed to
# every tied element shows along at least one of them with probability 1 - 2**-6.
TIE_DIRECTIONS = 6

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
    rng = np.random.default_rng(options.seed)
    if options.dtype != "float64":
        # The references are taken at the point the hand code actually sees.
        np_dtype = DTYPES[options.dtype][0]
        point = {
            k: v if np.issubdtype(v.dtype, np.integer) else v.astype(np_dtype).astype(np.float64)
            for k, v in point.items()
        }
    hands: list[BackwardResult] = []
    autograd = autograd_gradients(
        derivation.name,
        derivation.forward,
        point,
        derivation.wrt,
        _grad_output_maker(derivation.name, grad_output, _point_seed(options.seed, point)),
        params,
        before_backward=lambda seed, output: (
            # Only where the spec is finite: elsewhere nothing is judged (below).
            hands.append(run_backward(derivation, point, seed, options.dtype, params))
            if bool(torch.isfinite(output).all())
            else None
        ),
    )
    example = Example(
        dims=dict(sizes), inputs=dict(point), grad_output=autograd.grad_output, params=params
    )
    if not np.isfinite(autograd.output).all():
        # No reference exists here: say so once, and judge nothing.
        return Report(
            derivation=derivation.name,
            verdict="error",
            problems=(non_finite_spec_problem(derivation, point, autograd.output, params),),
            example=example,
            dtype=options.dtype,
            seed=options.seed,
            elapsed=time.perf_counter() - started,
        )
    hand = hands[0]
    # Made when first asked for: a point where hand and autograd agree and no probe is
    # wanted (see Options.agreeing_directions) never needs it.
    spec = functools.cache(
        functools.partial(
            ScalarSpec, derivation.name, derivation.forward, point, autograd.grad_output,
            params, output=autograd.output, shared=derivation.wrt,
            bounds={name: derivation.input_bounds[name] for name in derivation.bounds or {}},
        )
    )  # fmt: skip
    jumps = _jumps_for(derivation, point, autograd.grad_output, params)
    # Each input's probe directions come from a generator of its own, made as they are used.
    direction_seeds = {name: int(rng.integers(2**63)) for name in derivation.wrt}
    tolerance = for_dtype(options.dtype)

    # Where autograd's own gradient is NaN or inf the spec has no derivative to hold the
    # hand to (std at a constant row, sqrt at 0): nothing about that input is judged, not
    # even a NaN of the hand's own at the same point.
    undefined = [name for name in derivation.wrt if not np.isfinite(autograd.gradients[name]).all()]
    failures: list[Problem] = [
        p for p in hand.problems if not (p.kind == "non_finite" and p.parameter in undefined)
    ]
    doubts: list[Problem] = []  # kinks and reference disagreements: the derivation not judged
    pairs: dict[str, GradientPair] = {}
    compared: dict[str, tuple[np.ndarray, np.ndarray, _Allowance, Mismatch | None]] = {}
    scale_floors = _scale_floors(derivation, point, tolerance, autograd)
    noise_floors: dict[str, float] | None = None
    rounding: dict[str, float] = {}
    for name in derivation.wrt:
        reference = autograd.gradients[name]
        if name in undefined:
            doubts.append(
                Problem(
                    "kink",
                    f"torch autograd's own gradient for {name!r} is not finite at this point: "
                    "the spec has no derivative here, so the hand gradient is not judged.",
                    parameter=name,
                )
            )
            continue
        if name not in hand.gradients:
            continue
        hand_grad = hand.gradients[name]
        allowance = _Allowance(
            tolerance.atol(reference, floor=scale_floors[name]), tolerance.rtol, reference
        )
        mismatch = None
        if not allowance.holds(hand_grad):
            # The point's rounding noise only widens the allowance: it costs an autograd
            # call, so it is measured only where the narrower allowance is exceeded.
            if noise_floors is None:
                noise_floors = _noise_floors(derivation, point, autograd, params, options, rng)
                rounding = _dtype_rounding(derivation, point, autograd, params, options)
                took("noise floor")
                if rounding:
                    took("dtype rounding")
            largest = float(np.max(np.abs(reference), initial=0.0))
            if rounding.get(name, 0.0) > 0.0 and rounding[name] >= UNRESOLVABLE_SHARE * largest:
                doubts.append(
                    Problem(
                        "unresolved",
                        f"torch autograd's own {options.dtype} gradient for {name!r} is off by "
                        f"{rounding[name] / DTYPE_SAFETY:.2g} here, as large as the gradient "
                        f"itself ({largest:.2g}): terms that cancel leave nothing "
                        f"{options.dtype} can resolve, so it is not judged at this point.",
                        parameter=name,
                    )
                )
                continue
            floor = scale_floors[name] + noise_floors[name] + rounding.get(name, 0.0)
            atol = tolerance.atol(reference, floor=floor)
            allowance = _Allowance(atol, tolerance.rtol, reference)
            mismatch = _compare_to_autograd(hand_grad, reference, allowance.array(), name, options)
        # The allowance is kept with a mismatch only: a picture of it outlines exactly the
        # elements the comparison counted.
        allowed = None if mismatch is None else allowance.array()
        pairs[name] = GradientPair(hand=hand_grad, reference=reference, allowed=allowed)
        compared[name] = (hand_grad, reference, allowance, mismatch)

    # Hand and autograd agree everywhere: the probes confirm autograd, with cheap central
    # differences first (and fewer of them where the options say so).
    agreeing = not failures and all(found[3] is None for found in compared.values())
    fewer = agreeing and options.agreeing_directions is not None
    per_parameter = max(2, math.ceil(options.directions / len(derivation.wrt)))
    probe_count = 0
    joint: dict[str, np.ndarray] = {}
    if fewer:
        # One generator for the joint directions (a generator per input cost more than a
        # small example's forward); where they do not confirm, each input is probed along
        # its own part of them first.
        generator = np.random.default_rng(direction_seeds[derivation.wrt[0]])
        for _ in range(options.agreeing_directions or 0):
            along = {
                name: _random_signs(generator, found[1].shape) for name, found in compared.items()
            }
            if not _confirm_jointly(spec(), compared, along):
                joint = along
                break
        else:
            took("joint probe")
            probe_count = options.agreeing_directions or 0
            compared = {}  # every input confirmed at once: nothing left to probe
    judged = {
        name: _judge_mismatch(spec(), mismatch, hand_grad, reference, allowance, jumps)
        for name, (hand_grad, reference, allowance, mismatch) in compared.items()
        if mismatch is not None
    }
    if options.verdict_only and (failures or any(p.kind == "mismatch" for p in judged.values())):
        compared = {}  # failed already: the probes could add problems, never change that
        for problem in judged.values():
            (failures if problem.kind == "mismatch" else doubts).append(problem)
            probe_count += 1
    for name, (hand_grad, reference, allowance, mismatch) in compared.items():
        if mismatch is not None:
            verdict_problem = judged[name]
            probe_count += 1
            (failures if verdict_problem.kind == "mismatch" else doubts).append(verdict_problem)
        directions, unit = _directions(
            point[name].shape,
            options.agreeing_directions if fewer else per_parameter,  # type: ignore[arg-type]
            0 if fewer else options.elementwise_limit,
            np.random.default_rng(direction_seeds[name]),
        )
        if name in joint:  # the direction the joint probe did not confirm, first
            rest = itertools.islice(directions, 1, None)
            directions = itertools.chain([joint[name]], rest)
        confirmed = any(p.kind == "mismatch" and p.parameter == name for p in failures)

        def tie_probes(name: str = name) -> Iterator[np.ndarray]:
            rng = np.random.default_rng(direction_seeds[name] + 1)
            return _directions(point[name].shape, TIE_DIRECTIONS, 0, rng)[0]

        found, count = _judge_probes(
            spec(), name, directions, unit, hand_grad, reference, allowance, jumps,
            screen=agreeing, extra=tie_probes,
        )  # fmt: skip
        probe_count += count
        for problem in found:
            if problem.kind == "mismatch" and confirmed:
                continue  # already failed against autograd, with finite differences agreeing
            (failures if problem.kind == "mismatch" else doubts).append(problem)

    extra_notes: tuple[str, ...] = ()
    if derivation.extra_checks is not None:
        extra = derivation.extra_checks(
            point, autograd.grad_output, params, dtype=options.dtype, seed=options.seed
        )
        for problem in extra.problems:
            (doubts if problem.kind in _DOUBTS else failures).append(problem)
        extra_notes, probe_count = tuple(extra.notes), probe_count + extra.probes
    for name, half in hand.half_precision.items():
        if any(p.parameter == name and p.kind == "mismatch" for p in failures):
            failures.insert(0, half_precision_problem(name, half, options.dtype))
    if failures and options.dtype != "float64":
        failures.extend(_precision_problems(derivation, point, autograd, failures, options, params))
    notes: tuple[str, ...] = ()
    if hand.unchecked:
        notes = (
            f"the backward also returned {', '.join(map(repr, hand.unchecked))}, not in wrt: "
            "not checked (add to wrt to check it)",
        )
    notes += extra_notes
    if failures:
        verdict = "fail"
    elif any(p.kind == "references_disagree" for p in doubts):
        verdict = "error"
    elif doubts:
        verdict = "inconclusive"
    else:
        verdict = "pass"
    doubts.sort(key=lambda p: p.kind != "references_disagree")
    return Report(
        derivation=derivation.name,
        verdict=verdict,  # type: ignore[arg-type]
        problems=tuple(failures + doubts),
        notes=notes,
        example=example,
        dtype=options.dtype,
        seed=options.seed,
        inconclusive=int(verdict == "inconclusive"),
        elapsed=time.perf_counter() - started,
        probes=probe_count,
        gradients=pairs,
    )


# Problems that leave the derivation unjudged at a point rather than failing it.
_DOUBTS = ("kink", "references_disagree", "unresolved")


def _mixed_signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random signs with both present (two or more elements): nudging every element the
    same way leaves x - mean(x) unchanged, and an ill-conditioned point (values ~1e8 a
    hundredth apart) then looked perfectly conditioned half the time at N = 2."""
    signs = _random_signs(rng, shape)
    flat = signs.reshape(-1)
    if flat.size >= 2 and np.all(flat == flat[0]):
        flat[0] = -flat[0]
    return signs


def _random_signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """+-1.0 at random: ten times cheaper than rng.choice at 1e5 elements, and made in
    place (no float temporaries of the full size)."""
    size = int(np.prod(shape))
    if size >= MANY_SIGNS:
        signs = _random_bits(rng, size).astype(np.float64).reshape(shape)
    else:
        signs = rng.integers(0, 2, size=shape, dtype=np.int8).astype(np.float64)
    signs *= 2.0
    signs -= 1.0
    return signs


# From this many elements on, random signs come from random bytes, eight signs a byte:
# drawing one integer per sign was most of the time of making a direction (390 us against
# 99 us at 1e5 elements; 16 directions of 9e6 elements at the large point). Smaller arrays
# keep one integer a sign, and so the directions they always had.
MANY_SIGNS = 1 << 12


def _random_bits(rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` random 0/1 as uint8."""
    packed = rng.integers(0, 256, size=(size + 7) // 8, dtype=np.uint8)
    return np.unpackbits(packed, count=size)


def _compare_to_autograd(
    hand_grad: np.ndarray,
    reference: np.ndarray,
    allowed: np.ndarray,
    name: str,
    options: Options,
) -> Mismatch | None:
    return compare(
        hand_grad,
        reference,
        allowed,
        parameter=name,
        reference=f"torch autograd ({options.dtype} hand vs float64)",
    )


def _scale_floors(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    tolerance: Tolerance,
    autograd: AutogradResult,
) -> dict[str, float]:
    """The first part of each absolute allowance: the typical size of a gradient of this
    function, |f| / |x|, times the table's ``atol_scale`` (a fixed 1e-12 hid every bug in a
    loss of size 1e-13). |f| is the size of the terms phi sums (``phi``)."""
    grad_output = autograd.grad_output
    seed = None if grad_output is None else as_tensor(grad_output)
    _, magnitude = phi(torch.from_numpy(autograd.output), seed)
    rms = {
        key: float(np.sqrt(np.vdot(value, value) / value.size))
        for key, value in point.items()
        if value.size and not np.issubdtype(value.dtype, np.integer)
    }
    floors = {}
    for name in derivation.wrt:
        typical = rms.get(name, 0.0)
        gradient_scale = magnitude / typical if typical > 0 else 0.0
        if magnitude == 0.0:
            # A loss exactly zero (a one-class softmax: log 1) has no size to scale by: its
            # terms cancelled exactly, and a correct hand gradient that cancels them in
            # another order leaves a few eps of those terms (2e-16), not of the zero result.
            # The terms of d/d name are products of the other inputs (x.T @ (p - 1) for w)
            # and the output's seed, so that is their scale. A wrong gradient is of that size.
            seed_scale = (
                1.0
                if grad_output is None or grad_output.size == 0
                else float(np.sqrt(np.vdot(grad_output, grad_output) / grad_output.size))
            )
            others = [value for key, value in rms.items() if key != name]
            gradient_scale = max(others, default=1.0) * seed_scale
        floors[name] = tolerance.atol_scale * gradient_scale
    return floors


def _noise_floors(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    autograd: AutogradResult,
    params: Mapping[str, Any],
    options: Options,
    rng: np.random.Generator,
) -> dict[str, float]:
    """The second part: the rounding noise of the point itself. Autograd's gradient moves
    when every input is nudged by a few eps of its own size, and an ill-conditioned
    derivation (a mean subtracted from values ~1e8) cannot do better than that. Capped, so
    it excuses rounding, never a bug."""
    tolerance = for_dtype(options.dtype)
    eps = float(np.finfo(np.float32 if options.dtype == "float32" else np.float64).eps)
    nudged = {
        key: value
        if np.issubdtype(value.dtype, np.integer)
        else value * (1 + 4 * eps * _mixed_signs(rng, value.shape))
        for key, value in point.items()
    }
    moved = autograd_gradients(
        derivation.name, derivation.forward, nudged, derivation.wrt,
        lambda _: autograd.grad_output, params,
    )  # fmt: skip
    floors = {}
    terms = max(
        (
            float(np.sqrt(np.vdot(value, value) / value.size))
            for value in point.values()
            if value.size and not np.issubdtype(value.dtype, np.integer)
        ),
        default=0.0,
    )
    for name in derivation.wrt:
        reference = autograd.gradients[name]
        largest = float(np.max(np.abs(reference))) if reference.size else 0.0
        noise = 8 * float(np.max(np.abs(moved.gradients[name] - reference), initial=0.0))
        noise = noise if np.isfinite(noise) else 0.0
        if largest <= noise:
            # The reference is no larger than its own rounding (equal values ~1e8 with
            # their mean subtracted: 0 or 1.5e-8 depending on the order of the sums), so it
            # gives no size to cap by: the terms that cancelled to it are the inputs' size.
            largest = terms
        floors[name] = min(noise, tolerance.conditioning_cap * largest)
    return floors


# The rounding of torch's own gradient in the check's dtype, times this, is allowed to a
# hand gradient in that dtype: a correct one sums the same cancelling terms in another
# order. Where that allowance reaches this share of the gradient itself, nothing is left
# to judge at the point.
DTYPE_SAFETY = 8.0
UNRESOLVABLE_SHARE = 0.1


def _dtype_rounding(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    autograd: AutogradResult,
    params: Mapping[str, Any],
    options: Options,
) -> dict[str, float]:
    """The third part, in float32 only: how far torch autograd's own float32 gradient lies
    from its float64 one at this point (see ``gradients_in_dtype``). The table's rtol
    scales with each element, and an element far smaller than the terms that cancel to
    it (a softmax probability of 1 - 1e-8 minus its label) has a float32 error of the
    terms' size."""
    if options.dtype == "float64":
        return {}
    narrow = gradients_in_dtype(
        derivation.forward, point, derivation.wrt, autograd.grad_output, params,
        DTYPES[options.dtype][1],
    )  # fmt: skip
    if narrow is None:
        return {}
    return {
        name: DTYPE_SAFETY
        * float(np.max(np.abs(narrow[name] - autograd.gradients[name]), initial=0.0))
        for name in derivation.wrt
        if narrow[name].shape == autograd.gradients[name].shape and np.isfinite(narrow[name]).all()
    }


def _precision_problems(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    autograd: Any,
    failures: list[Problem],
    options: Options,
    params: Mapping[str, Any],
) -> list[Problem]:
    """Is a failure in float32 a wrong derivation, or a right one that loses its accuracy?"""
    if any(p.kind not in ("mismatch", "non_finite") for p in failures):
        return []
    wide = run_backward(derivation, point, autograd.grad_output, "float64", params)
    if wide.problems:
        return []
    tolerance = for_dtype("float64")
    for name, reference in autograd.gradients.items():
        if (
            compare(
                wide.gradients[name],
                reference,
                tolerance.allowed(reference),
                parameter=name,
                reference="",
            )
            is not None
        ):
            return []
    return [
        Problem(
            "precision",
            f"the same backward is correct in float64 at this point: it loses its accuracy "
            f"in {options.dtype} (overflow, underflow or cancellation), it is not wrongly "
            "derived. Rewrite it to be stable (e.g. subtract the max before exp).",
        )
    ]


def check(
    derivation: Derivation,
    inputs: Mapping[str, Any],
    *,
    dtype: Any = "float64",
    grad_output: Any = None,
    directions: int = 16,
    elementwise_limit: int = 32,
    seed: int = 0,
    deadline: float | None = DEFAULT_DEADLINE,
) -> Report:
    """Check ``derivation`` at one concrete point.

    ``inputs`` maps every name in ``derivation.shapes`` to an array (numpy, torch or nested
    lists); nothing passed is modified. ``dtype`` is what the backward receives ('float64'
    or 'float32'); the references are always float64. ``grad_output`` seeds a non-scalar
    forward (drawn from ``seed`` when omitted). ``directions`` random finite-difference probes
    are spread over the ``wrt`` inputs larger than ``elementwise_limit`` elements; smaller
    ones are probed element by element. A forward or backward call past ``deadline``
    seconds fails with a ``timeout`` problem (None: no limit).

    >>> from gradcheck.derivations import BUILTINS
    >>> import numpy as np
    >>> chain = next(d for d in BUILTINS if d.name == "scalar_chain")
    >>> point = {"x": np.arange(3.0), "y": np.ones(3), "a1": 2.0, "b1": 1.0, "a2": 0.5, "b2": 0.0}
    >>> check(chain, point).ok
    True
    """
    derivation = require_derivation(derivation)
    options = make_options(dtype, directions, elementwise_limit, seed)
    point, sizes, params = validated_point(derivation, inputs)

    def run() -> Report:
        report = evaluate(derivation, point, sizes, options, grad_output, params)
        from gradcheck.explain_failure import explain_failure  # it builds on this module

        return explain_failure(derivation, with_diagnoses(derivation, report), options)

    return guarded_search(derivation.name, options, validated_deadline(deadline), run)


def with_diagnoses(derivation: Derivation, report: Report) -> Report:
    """The report of a failure, with what the wrong gradients look like in words: every
    finding at its own example (``confirm.findings_at``, which also weighs them against more
    points), a reproduced mistake first, as the most specific thing to say."""
    if report.verdict != "fail" or report.example is None:
        return report
    from gradcheck.confirm import findings_at  # it builds on this module

    found = [finding.text for finding in findings_at(derivation, report) if finding.said]
    return replace(report, diagnoses=tuple(dict.fromkeys(found)))
