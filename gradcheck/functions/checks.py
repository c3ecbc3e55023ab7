"""What a ``torch.autograd.Function`` is checked for at each example, beyond its backward.

``FunctionChecks`` is the ``extra_checks`` of a Derivation made by ``function_derivation``:
check and verify call it at every example with the point and grad_output the backward check
used, and merge what it finds into the report. Each check is a function of one ``Run`` (the
Function, the spec, the point on one device) returning the problems it found.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradcheck.compare import Mismatch
from gradcheck.derivation import DerivationError
from gradcheck.functions import messages
from gradcheck.functions.function import (
    Forward,
    describe_raised,
    differentiable,
    double_backward,
    jvp_by_double_backward,
    jvp_by_forward_ad,
    raised_in_forward,
    split,
    tensors_at,
    vjp,
    vjp_twice,
    vjp_without,
    vmapped_then_vjp,
    vmapped_vjp,
)
from gradcheck.functions.judge import (
    combined,
    differs,
    judged,
    not_finite,
    plain_difference,
    spec_not_finite,
)
from gradcheck.functions.layouts import LAYOUTS, in_layout
from gradcheck.references.autograd import call_forward
from gradcheck.references.finite_differences import ScalarSpec
from gradcheck.report import Problem
from gradcheck.tolerances import Tolerance

__all__ = [
    "CHECKS",
    "OPTIONAL_CHECKS",
    "Findings",
    "Raised",
    "Run",
    "agreement_check",
    "as_numpy",
    "by_function",
    "determinism_check",
    "differing_result",
    "double_backward_check",
    "forward_check",
    "jvp_check",
    "reentrant_check",
    "same_function_mismatch",
    "strided_check",
    "undefined_check",
    "vmap_check",
]

# Every check a Function can get, in the order they run; ``checks=`` picks among them.
CHECKS = (
    "backward",
    "jvp",
    "double_backward",
    "strided",
    "vmap",
    "determinism",
    "reentrant",
    "undefined_grad",
    "cuda",
)

# Checks run only when asked for by checks=: each costs seconds (a compile a shape).
OPTIONAL_CHECKS = ("compile",)

# Members of the batch the vmap check maps over: the example itself and two resamplings of
# its values (the same magnitudes, so no new kinks or overflow).
VMAP_BATCH = 3


@dataclass(frozen=True)
class Findings:
    """What the Function checks found at one example, for the report."""

    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    probes: int = 0


class Raised(Exception):
    """A check could not finish: the problem says who raised (the Function or the spec)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def by_function(check: str, call: Callable[[], Any], doing: str, *, phased: bool = True) -> Any:
    """``call()``; what the Function raises in it, as the check's problem. ``phased``: the
    call runs apply then backward, so that a raise in apply is its forward's (under forward
    AD or vmap, apply runs the jvp or vmap rule too)."""
    try:
        return call()
    except DerivationError:
        raise
    except Exception as exc:  # the Function is user code: its failure is a verdict
        phase = ("forward" if raised_in_forward(exc) else "backward") if phased else None
        message = messages.raised(doing, describe_raised(exc), phase)
        raise Raised(Problem(check, message)) from exc


def by_spec(check: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except DerivationError:
        raise
    except Exception as exc:  # the reference cannot be taken: the Function is not judged
        message = messages.spec_raised(check, f"{type(exc).__name__}: {exc}")
        raise Raised(Problem("references_disagree", message)) from exc


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.array(tensor.detach().cpu().to(torch.float64).numpy())


@dataclass
class Run:
    """One example on one device: the Function and the spec ready to call, the point, and
    the Function's contiguous results every other check is compared with."""

    function: Forward  # several outputs joined into one (function.joined)
    spec: Forward
    spec_name: str
    spec_forward: Callable[..., Any]
    outputs: Callable[[Mapping[str, torch.Tensor]], Any]  # apply as it returns
    spec_outputs: Callable[..., Any]  # the spec as the user wrote it
    params: Mapping[str, Any]
    point: Mapping[str, np.ndarray]  # float64 (int64 for integer inputs), the example
    grad_output: np.ndarray | None
    values: dict[str, torch.Tensor]  # the point in the Function's dtype, on the device
    seed_tensor: torch.Tensor | None  # grad_output likewise
    wrt: tuple[str, ...]
    tolerance: Tolerance
    rng: np.random.Generator
    dims: Mapping[str, int]
    prefix: str  # "" on the CPU, "cuda " on a GPU
    functorch_vjp: bool = True  # see UnderTest.functorch_vjp
    output: np.ndarray = field(default_factory=lambda: np.zeros(()))
    gradients: dict[str, np.ndarray] = field(default_factory=dict)
    probes: int = 0
    notes: list[str] = field(default_factory=list)
    measured_noise: dict[str, float] | None = None  # see rounding_noise

    def rounding_noise(self) -> dict[str, float]:
        """How far the Function's own output and gradients move when every input moves by
        a few eps of itself, times 8: what two correct evaluations in another order (a
        layout, a batch) may differ by. At a constant row of a layer norm, (x - mean) is
        rounding alone and 1/std is 316: the gradient of w is 0 in one order and 2e-11 in
        another. Measured once, when a comparison first needs it."""
        if self.measured_noise is None:
            nudged = {
                name: value * (1 + 4 * torch.finfo(value.dtype).eps * _signs(value, self.rng))
                if value.is_floating_point()
                else value
                for name, value in self.values.items()
            }
            try:
                output, grads = vjp(self.function, nudged, self.wrt, self.seed_tensor)
            except Exception:  # the Function fails a step away: no measure of its rounding
                self.measured_noise = {}
                return self.measured_noise
            moved = {"output": output, **{n: g for n, g in grads.items() if g is not None}}
            base = {"output": self.output, **self.gradients}
            self.measured_noise = {
                name: 8 * float(np.max(np.abs(as_numpy(value) - base[name]), initial=0.0))
                for name, value in moved.items()
                if name in base and tuple(value.shape) == np.shape(base[name])
            }
        return self.measured_noise

    def label(self, check: str) -> str:
        return self.prefix + check

    def floating(self) -> list[str]:
        return [n for n, t in self.values.items() if t.is_floating_point()]

    def reference_point(self) -> dict[str, torch.Tensor]:
        return tensors_at(self.point, torch.float64, "cpu")


def forward_check(run: Run) -> list[Problem]:
    """The Function's output is the spec's: a right backward of the wrong function is no
    use, and the engine's backward check never looks at the Function's forward. Several
    outputs are compared one by one; integer ones (indices) are noted and left out."""
    got = by_function("forward", lambda: run.outputs(run.values), "At the example")
    if not isinstance(got, torch.Tensor):
        wanted = by_spec("forward", lambda: run.spec_outputs(**run.reference_point(), **run.params))
        return _outputs_check(run, tuple(got), wanted)
    expected = as_numpy(
        call_forward(run.spec_name, run.spec_forward, run.reference_point(), run.params)
    )
    if run.output.shape != expected.shape:
        return [
            Problem("forward", messages.output_shape(run.output.shape, expected.shape), "output")
        ]
    mismatch, _ = differs(
        run.output,
        expected,
        run.tolerance,
        parameter="output",
        reference="the spec's output (float64)",
    )
    return (
        []
        if mismatch is None
        else [plain_difference("forward", mismatch, "the Function's output", "")]
    )


def _outputs_check(run: Run, got: tuple[Any, ...], wanted: Any) -> list[Problem]:
    if isinstance(wanted, torch.Tensor) or len(wanted) != len(got):
        count = 1 if isinstance(wanted, torch.Tensor) else len(wanted)
        return [Problem("forward", messages.output_count(len(got), count), "output")]
    problems = []
    for i, (mine, theirs) in enumerate(zip(got, wanted, strict=True)):
        label = f"output {i}"
        floating = [isinstance(t, torch.Tensor) and t.is_floating_point() for t in (mine, theirs)]
        if floating[0] != floating[1]:
            kinds = [_dtype(mine), _dtype(theirs)]
            problems.append(Problem("forward", messages.output_kinds(i, *kinds), label))
            continue
        if not floating[0]:
            run.notes.append(messages.not_differentiable(i, _dtype(mine)))
            continue
        actual, expected = as_numpy(mine), as_numpy(theirs)
        if actual.shape != expected.shape:
            message = messages.output_shape(actual.shape, expected.shape, label)
            problems.append(Problem("forward", message, label))
            continue
        mismatch, _ = differs(
            actual, expected, run.tolerance, parameter=label,
            reference=f"the spec's {label} (float64)",
        )  # fmt: skip
        if mismatch is not None:
            problems.append(plain_difference("forward", mismatch, f"the Function's {label}", ""))
    return problems


def _dtype(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(value.dtype).removeprefix("torch.")
    return type(value).__name__


def undefined_check(run: Run) -> list[Problem]:
    """With several outputs, a loss that uses only some of them: autograd hands the
    backward None for each unused output (zeros where materialize_grads is on). Dropping
    each output in turn, the backward must not raise, and must give what it gives with
    zeros there."""
    check = run.label("undefined grad")
    output = by_function(check, lambda: run.outputs(run.values), "At the example")
    if isinstance(output, torch.Tensor) or run.seed_tensor is None:
        return []
    used = differentiable(output)
    if len(used) < 2:
        return []
    problems = []
    for unused in used:
        seed = run.seed_tensor.clone()
        piece = split(seed, output)[unused]
        if piece is not None:
            piece.zero_()  # a view into seed: zeros for this output, the rest as drawn
        doing = messages.undefined_doing(unused)
        try:
            got = by_function(
                check,
                functools.partial(
                    vjp_without, run.outputs, run.values, run.wrt, run.seed_tensor, unused
                ),
                doing,
            )
            _, expected = by_function(
                check, functools.partial(vjp, run.function, run.values, run.wrt, seed), doing
            )
        except Raised as raised:
            problems.append(Problem(check, raised.problem.message, f"output {unused}"))
            continue
        for name in run.wrt:
            wanted, found = expected[name], got[name]
            if wanted is None and found is None:
                continue
            reference = as_numpy(wanted if wanted is not None else torch.zeros_like(found))
            actual = as_numpy(found) if found is not None else np.zeros_like(reference)
            if actual.shape != reference.shape:
                continue  # the backward check reports a gradient of the wrong shape
            mismatch = same_function_mismatch(
                run, actual, reference, parameter=name,
                reference=f"the same backward given zeros for output {unused}",
            )  # fmt: skip
            if mismatch is not None:
                what = messages.undefined_result(name, unused)
                problems.append(plain_difference(check, mismatch, what, messages.UNDEFINED_HINT))
    return problems


def determinism_check(run: Run, nondet_tol: float) -> list[Problem]:
    check = run.label("determinism")
    _, again = by_function(
        check,
        lambda: vjp(run.function, run.values, run.wrt, run.seed_tensor),
        "Run a second time",
    )
    problems = []
    for name, first in run.gradients.items():
        second = again[name]
        if second is None:
            continue
        difference = np.abs(as_numpy(second) - first)
        worst = (
            float(np.nanmax(difference, initial=0.0)) if not np.isnan(difference).any() else np.inf
        )
        if not worst <= nondet_tol:
            index = tuple(
                int(i)
                for i in np.unravel_index(
                    int(np.argmax(np.nan_to_num(difference, nan=np.inf))), difference.shape
                )
            )
            problems.append(
                Problem(check, messages.nondeterministic(name, worst, index, nondet_tol), name)
            )
    return problems


def reentrant_check(run: Run) -> list[Problem]:
    """Backward twice through one graph gives the same gradients both times (to the dtype's
    rounding: a nondeterministic sum is the determinism check's). A backward that edits what
    its ctx holds in place is right once and wrong ever after; the check names the tensor."""
    check = run.label("reentrant")
    twice = by_function(
        check,
        lambda: vjp_twice(run.function, run.values, run.wrt, run.seed_tensor),
        "Before its second backward through one graph",
    )
    if twice is None:
        return []
    edited = list(twice.edited)
    if twice.second is None:
        error = f"{type(twice.raised).__name__}: {twice.raised}"
        return [Problem(check, messages.not_reentrant_raised(error, edited), "every input")]
    problems = []
    for name, first in twice.first.items():
        second = twice.second[name]
        if first is None or second is None or first.shape != second.shape:
            continue
        what, why = messages.not_reentrant(name, edited)
        problems += differing_result(
            run, check, name, as_numpy(second), as_numpy(first),
            reference="the first backward through it", what=what, hint=why,
        )  # fmt: skip
    return problems


def strided_check(run: Run) -> list[Problem]:
    """Every tensor the Function is handed, in each layout: the results must be those of
    contiguous copies of the same values. On a difference, each tensor alone names the
    culprit. Problems are keyed by the tensor, not the layout (``[grad_output] strided:
    given grad_output transposed ...``): which layouts exist depends on the dims, and a
    search that saw the layouts change with a dim would blame the dim."""
    tensors = {n: run.values[n] for n in run.floating()}
    if run.seed_tensor is not None:
        tensors["grad_output"] = run.seed_tensor
    problems: list[Problem] = []
    for layout in LAYOUTS:
        laid: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, tensor in tensors.items():
            pair = in_layout(tensor, layout)
            if pair is not None:
                laid[name] = pair
        if laid:
            problems.extend(_one_layout(run, tensors, laid, layout))
    return problems


Results = tuple[np.ndarray, dict[str, np.ndarray]]


def _one_layout(
    run: Run,
    tensors: Mapping[str, torch.Tensor],
    laid: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    layout: str,
) -> list[Problem]:
    check = run.label("strided")
    contiguous = {**tensors, **{n: values for n, (values, _) in laid.items()}}

    def results(strided: Sequence[str]) -> Results:
        chosen = {**contiguous, **{n: laid[n][1] for n in strided}}
        seed = chosen.pop("grad_output", None)
        given = ", ".join(f"{n} {layout}{_strides(laid[n][1])}" for n in strided)
        output, grads = by_function(
            check, lambda: vjp(run.function, {**run.values, **chosen}, run.wrt, seed),
            f"Given {given}",
        )  # fmt: skip
        return as_numpy(output), {n: as_numpy(g) for n, g in grads.items() if g is not None}

    try:
        # A new layout's values (expanded) need their own contiguous results.
        expected = results([]) if layout == "expanded" else (run.output, run.gradients)
    except Raised as raised:
        return [Problem(check, raised.problem.message, "every input")]
    together: Problem | None = None
    try:
        if not _layout_mismatches(run, results(list(laid)), expected):
            return []
    except Raised as raised:
        together = Problem(check, raised.problem.message, "every input")
    problems = []
    for name in laid:
        try:
            found = _layout_mismatches(run, results([name]), expected)
        except Raised as raised:
            problems.append(Problem(check, raised.problem.message, name))
            continue
        if found:
            problems.append(_layout_problem(check, found, name, layout, _strides(laid[name][1])))
    if problems:
        return problems
    if together is not None:  # only the combination raises, or differs
        return [together]
    found = _layout_mismatches(run, results(list(laid)), expected)
    return [_layout_problem(check, found, "every input", layout, "")]


def _strides(view: torch.Tensor) -> str:
    return f" (strides {tuple(view.stride())})"


def _layout_problem(
    check: str, found: list[Mismatch], tensor: str, layout: str, strides: str
) -> Problem:
    """One problem per tensor and layout: the first quantity that differs, the others named."""
    first = found[0]
    what = messages.layout_result(first.parameter, tensor, layout, strides)
    why = messages.layout_hint(tensor, [m.parameter for m in found[1:]])
    return plain_difference(check, first, what, why, label=tensor)


def _layout_mismatches(run: Run, got: Results, expected: Results) -> list[Mismatch]:
    reference = "the same values, contiguous"
    found = []
    pairs: list[tuple[str, np.ndarray | None, np.ndarray]] = [("output", got[0], expected[0])]
    pairs += [(n, got[1].get(n), g) for n, g in expected[1].items()]
    for name, actual, wanted in pairs:
        if actual is None or actual.shape != wanted.shape:
            continue
        mismatch = same_function_mismatch(run, actual, wanted, parameter=name, reference=reference)
        if mismatch is not None:
            found.append(mismatch)
    return found


def jvp_check(run: Run) -> list[Problem]:
    """Forward mode through the Function's ``jvp`` against the spec's J v."""
    check = run.label("jvp")
    tangents = {n: run.rng.standard_normal(run.point[n].shape) for n in run.wrt}
    dtype, device = run.values[run.wrt[0]].dtype, run.values[run.wrt[0]].device
    got = as_numpy(
        by_function(
            check,
            lambda: jvp_by_forward_ad(
                run.function,
                run.values,
                {n: torch.tensor(t, dtype=dtype, device=device) for n, t in tangents.items()},
            ),
            "In forward-mode AD (its jvp)",
            phased=False,
        )
    )
    expected = as_numpy(
        by_spec(
            check,
            lambda: jvp_by_double_backward(
                run.spec,
                run.reference_point(),
                {n: torch.from_numpy(t) for n, t in tangents.items()},
            ),
        )
    )
    if got.shape != expected.shape:
        return [Problem(check, messages.tangent_shape(got.shape, expected.shape), "output")]
    what = "the Function's forward-mode tangent of the output"
    against = "the spec's JVP (autograd, float64)"
    unjudged = spec_not_finite(check, "output", expected, against)
    if unjudged is not None:
        return [unjudged]
    mismatch, allowed = differs(got, expected, run.tolerance, parameter="output", reference=against)
    if mismatch is None:
        return []
    infinite = not_finite(check, mismatch, got, expected, what, messages.NON_FINITE_JVP_HINT)
    if infinite is not None:
        return [infinite]

    def slope_along(delta: np.ndarray, widen: float) -> Any:
        # <f(x + t v), delta> moves at <J v, delta>: one probe per input moved
        spec = ScalarSpec(run.spec_name, run.spec_forward, run.point, delta, run.params)
        run.probes += len(tangents)
        return combined([spec.slope(n, tangents[n], widen) for n in run.wrt])

    return [
        judged(
            check, mismatch, got, expected, allowed, slope_along,
            what=what, inputs=run.point, dims=run.dims, hint=messages.JVP_HINT,
        )
    ]  # fmt: skip


def double_backward_check(run: Run) -> list[Problem]:
    """The Function's VJP differentiated again, against the spec's second derivatives."""
    check = run.label("double backward")
    directions = {n: run.rng.standard_normal(run.point[n].shape) for n in run.wrt}
    dtype, device = run.values[run.wrt[0]].dtype, run.values[run.wrt[0]].device
    got = by_function(
        check,
        lambda: double_backward(
            run.function, run.values, run.wrt, run.seed_tensor,
            {n: torch.tensor(d, dtype=dtype, device=device) for n, d in directions.items()},
        ),
        "When its backward was differentiated (create_graph=True)",
    )  # fmt: skip
    reference_seed = None if run.grad_output is None else torch.tensor(run.grad_output)
    expected = by_spec(
        check,
        lambda: double_backward(
            run.spec, run.reference_point(), run.wrt, reference_seed,
            {n: torch.from_numpy(d) for n, d in directions.items()},
        ),
    )  # fmt: skip
    spec = _first_derivative_spec(run, directions)
    problems = []
    for target, value in got.items():
        hand, reference = as_numpy(value), as_numpy(expected[target])
        what, against = messages.second_derivative(target)
        unjudged = spec_not_finite(check, target, reference, against)
        if unjudged is not None:
            problems.append(unjudged)
            continue
        mismatch, allowed = differs(
            hand, reference, run.tolerance, parameter=target, reference=against
        )
        if mismatch is None:
            continue
        infinite = not_finite(
            check, mismatch, hand, reference, what, messages.NON_FINITE_SECOND_HINT
        )
        if infinite is not None:
            problems.append(infinite)
            continue

        def slope_along(delta: np.ndarray, widen: float, target: str = target) -> Any:
            run.probes += 1
            return spec().slope(target, delta, widen)

        problems.append(
            judged(
                check, mismatch, hand, reference, allowed, slope_along,
                what=what, inputs=run.point, dims=run.dims,
                hint=_second_order_hint(run, hand, reference, allowed),
            )
        )  # fmt: skip
    return problems


def _second_order_hint(
    run: Run, hand: np.ndarray, reference: np.ndarray, allowed: np.ndarray
) -> str:
    """Why the second derivative differs, from what can be seen: the derivative of a
    backward whose values already differ follows them; one that is zero where the spec's is
    not was cut from the graph; else a term's derivative is off."""
    seed = None if run.grad_output is None else torch.tensor(run.grad_output)
    _, expected = by_spec(
        run.label("double backward"), lambda: vjp(run.spec, run.reference_point(), run.wrt, seed)
    )
    for name, gradient in run.gradients.items():
        wanted = expected.get(name)
        if wanted is None:
            continue
        mismatch, _ = differs(
            gradient, as_numpy(wanted), run.tolerance, parameter=name, reference="the spec's"
        )
        if mismatch is not None:
            return messages.FIRST_ORDER_HINT
    wrong = ~(np.abs(hand - reference) <= allowed)
    if np.all(hand[wrong] == 0):
        return messages.DOUBLE_BACKWARD_HINT
    return messages.SECOND_ORDER_HINT


def _first_derivative_spec(
    run: Run, directions: Mapping[str, np.ndarray]
) -> Callable[[], ScalarSpec]:
    """Finite differences of the spec's first derivative: psi(x, u) = <J(x)^T u, w>, taken
    by autograd in float64, whose gradient is what the double backward computes."""
    param_names = set(run.params)

    def psi(**arguments: Any) -> torch.Tensor:
        params = {k: arguments.pop(k) for k in list(arguments) if k in param_names}
        seed = arguments.pop("grad_output", None)
        leaves = [arguments[n].detach().requires_grad_(True) for n in run.wrt]
        with torch.enable_grad():
            output = run.spec_forward(
                **{**arguments, **dict(zip(run.wrt, leaves, strict=True))}, **params
            )
            grads = torch.autograd.grad(output, leaves, seed, allow_unused=True)
        total = torch.zeros((), dtype=torch.float64)
        for name, grad in zip(run.wrt, grads, strict=True):
            if grad is not None:
                total = total + (grad * torch.from_numpy(directions[name])).sum()
        return total.detach()

    inputs = dict(run.point)
    if run.grad_output is not None:
        inputs["grad_output"] = run.grad_output
    made: list[ScalarSpec] = []

    def spec() -> ScalarSpec:  # built on the first mismatch only: it costs two spec VJPs
        if not made:
            made.append(ScalarSpec(run.spec_name, psi, inputs, None, run.params))
        return made[0]

    return spec


def _rearranged(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The example's own values drawn with replacement: inside its bounds and off its kinks
    like the example, yet with other sums and means (a permutation keeps those, and a vmap
    rule that reduces over the batch would go unseen)."""
    return rng.choice(value.ravel(), size=value.shape)


def vmap_check(run: Run) -> list[Problem]:
    """``torch.func.vmap`` over a batch (the example and two resamplings of its values)
    against the Function applied to each member in a loop: outputs and VJPs."""
    check = run.label("vmap")
    floating = run.floating()
    members = [dict(run.point)] + [
        {**run.point, **{n: _rearranged(run.point[n], run.rng) for n in floating}}
        for _ in range(VMAP_BATCH - 1)
    ]
    seeds = [run.grad_output] + [
        None if run.grad_output is None else _rearranged(run.grad_output, run.rng)
        for _ in range(VMAP_BATCH - 1)
    ]
    dtype, device = run.values[floating[0]].dtype, run.values[floating[0]].device
    looped_outputs: list[np.ndarray] = []
    looped_grads: dict[str, list[np.ndarray]] = {n: [] for n in run.wrt}
    for member, seed in zip(members, seeds, strict=True):
        values = tensors_at(member, dtype, device)
        seed_tensor = None if seed is None else torch.tensor(seed, dtype=dtype, device=device)

        def one(
            values: dict[str, torch.Tensor] = values, seed_tensor: torch.Tensor | None = seed_tensor
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
            return vjp(run.function, values, run.wrt, seed_tensor)

        output, grads = by_function(check, one, "In a loop over the batch")
        looped_outputs.append(as_numpy(output))
        for name in run.wrt:
            if grads[name] is not None:
                looped_grads[name].append(as_numpy(grads[name]))
    batched = {
        n: torch.tensor(np.stack([m[n] for m in members]), dtype=dtype, device=device)
        for n in floating
    }
    shared = {n: t for n, t in run.values.items() if n not in batched}
    stacked_seeds = (
        torch.ones(VMAP_BATCH, dtype=dtype, device=device)
        if run.grad_output is None
        else torch.tensor(np.stack([s for s in seeds if s is not None]), dtype=dtype, device=device)
    )
    mapped = vmapped_vjp if run.functorch_vjp else vmapped_then_vjp
    outputs, grads = by_function(
        check,
        lambda: mapped(run.function, batched, shared, run.wrt, stacked_seeds),
        f"Under torch.func.vmap over a batch of {VMAP_BATCH}",
        phased=False,
    )
    problems = []
    pairs = [("output", as_numpy(outputs), np.stack(looped_outputs))]
    pairs += [
        (n, as_numpy(grads[n]), np.stack(looped_grads[n]))
        for n in run.wrt
        if len(looped_grads[n]) == VMAP_BATCH
    ]
    for name, got, expected in pairs:
        if got.shape != expected.shape:
            problems.append(
                Problem(check, messages.vmap_shape(name, got.shape, expected.shape), name)
            )
            continue
        problems += differing_result(
            run, check, name, got, expected,
            reference="the same Function applied to each member in a loop",
            what=messages.vmap_result(name, VMAP_BATCH), hint=messages.VMAP_HINT,
        )  # fmt: skip
    return problems


def agreement_check(run: Run, cpu: Run) -> list[Problem]:
    """The Function on the GPU gives what it gives on the CPU, to the dtype's rounding."""
    check = run.label("agreement")
    problems = []
    pairs = [("output", run.output, cpu.output)]
    pairs += [(n, run.gradients[n], cpu.gradients[n]) for n in cpu.gradients if n in run.gradients]
    for name, got, expected in pairs:
        problems += differing_result(
            run, check, name, got, expected, reference="the Function's result on the CPU",
            what=f"the Function's {name} on CUDA", hint=messages.CUDA_HINT,
        )  # fmt: skip
    return problems


def differing_result(
    run: Run,
    check: str,
    name: str,
    got: np.ndarray,
    expected: np.ndarray,
    *,
    reference: str,
    what: str,
    hint: str,
) -> list[Problem]:
    """The problem, if any, where the Function run one way (``got``) gives ``name`` other
    than it gives run another (``expected``) by more than the dtype's rounding, and more
    than the Function's own rounding at the point (``Run.rounding_noise``)."""
    mismatch = same_function_mismatch(run, got, expected, parameter=name, reference=reference)
    return [] if mismatch is None else [plain_difference(check, mismatch, what, hint)]


def same_function_mismatch(
    run: Run, got: np.ndarray, expected: np.ndarray, *, parameter: str, reference: str
) -> Mismatch | None:
    """The Function against itself run another way (a layout, a batch, an unused output,
    a second backward): beyond the dtype's rounding and, where that is exceeded, beyond
    the Function's own rounding at the point, measured then."""
    mismatch, _ = differs(
        got, expected, run.tolerance, parameter=parameter, reference=reference,
        same_function=True,
    )  # fmt: skip
    if mismatch is None:
        return None
    noise = run.rounding_noise().get(parameter, 0.0)
    if not (np.isfinite(noise) and noise > 0):
        return mismatch
    mismatch, _ = differs(
        got, expected, run.tolerance, parameter=parameter, reference=reference,
        same_function=True, floor=noise,
    )  # fmt: skip
    return mismatch


def _signs(value: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """+-1 at random, of ``value``'s shape, dtype and device."""
    signs = rng.integers(0, 2, size=tuple(value.shape)) * 2 - 1
    return torch.as_tensor(signs, dtype=value.dtype, device=value.device)
