"""Run a hand-written training step and its reference side by side, step after step.

The trajectory's job, between the declaration below it (``declaration``) and the public
checks above it (``steps``): the schedule of batches, the reference (autograd of the spec
loss and a fresh torch optimizer, taken from the hand's own parameters at every step), the
hand step run safely, the comparison of each update, and the loss curves and diagnoses of a
run that parted.
"""

from __future__ import annotations

import contextlib
import math
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from gradcheck.backward import shape_hint, single_threaded_blas
from gradcheck.compare import Mismatch, compare
from gradcheck.derivation import DerivationError
from gradcheck.references.finite_differences import ScalarSpec
from gradcheck.report import GradientPair, Problem
from gradcheck.tolerances import AUTOGRAD
from gradcheck.training._internal import call_spec
from gradcheck.training.declaration import STATE_KEYWORD, TrainingStep
from gradcheck.training.report import LossCurves

__all__ = [
    "RunOptions",
    "diagnoses_of",
    "loss_curves",
    "run_trajectory",
    "update_pairs",
]

EPS = float(np.finfo(np.float64).eps)

# An update is a gradient passed through the optimizer, so a correct hand update differs from
# the reference's by the rounding of reordered sums, as a gradient does: the core's float64
# autograd table applies as it stands (rtol 1e-7 with four decades of margin over ~1e-13).
UPDATE_TOLERANCE = AUTOGRAD["float64"]
# Each update is read off as new - old parameters. Each side rounds the new parameter once
# (eps * |p|) and the subtraction once more; 4 eps * (|old| + |new|) covers both sides, so a
# learning rate so small that updates sit near eps * |p| does not fail a correct step.
PARAMETER_ROUNDING = 4.0 * EPS


@dataclass(frozen=True)
class RunOptions:
    steps: int
    device: torch.device


# -- the schedule of batches --------------------------------------------------------------


def _schedule(
    declaration: TrainingStep, data: Mapping[str, np.ndarray], steps: int
) -> list[dict[str, np.ndarray]]:
    """The batch of every step: the whole batch each time, or a DataLoader's minibatches in
    order, one per step, starting a new epoch when one runs out."""
    if declaration.batch_size is None:
        return [dict(data)] * steps
    names = list(declaration.batch)
    loader = DataLoader(
        TensorDataset(*(torch.tensor(data[name]) for name in names)),
        batch_size=declaration.batch_size,
        shuffle=False,
    )
    batches: list[dict[str, np.ndarray]] = []
    while len(batches) < steps:
        for items in loader:
            batches.append(
                {name: item.numpy().copy() for name, item in zip(names, items, strict=True)}
            )
            if len(batches) == steps:
                break
    return batches


# -- the reference ------------------------------------------------------------------------


@dataclass(frozen=True)
class _ReferenceStep:
    parameters: dict[str, np.ndarray]  # after the step
    loss: float  # the spec loss at the parameters before the step
    gradients: dict[str, torch.Tensor]


class _Reference:
    """Autograd on the spec loss and a fresh torch optimizer, in float64 on the CPU."""

    def __init__(self, declaration: TrainingStep, start: Mapping[str, np.ndarray]) -> None:
        self.declaration = declaration
        self.leaves = {
            name: torch.tensor(start[name], dtype=torch.float64, requires_grad=True)
            for name in declaration.params
        }
        self.optimizer = declaration.optimizer.build(self.leaves)

    def step(
        self,
        point: Mapping[str, np.ndarray] | None,
        batch: Mapping[str, np.ndarray],
        *,
        extra_gradients: Mapping[str, torch.Tensor] | None = None,
        backward_values: Mapping[str, np.ndarray] | None = None,
    ) -> _ReferenceStep:
        """One step from ``point`` (or from where the last step left off, for ``None``).

        For diagnosis only: ``extra_gradients`` are added to autograd's before the optimizer
        sees them; ``backward_values`` replace parameters wherever the backward reads them
        (the forward still uses ``point``), as code that updates a parameter and then
        back-propagates through it does.
        """
        with torch.no_grad():
            if point is not None:
                for name, leaf in self.leaves.items():
                    leaf.copy_(torch.tensor(point[name], dtype=torch.float64))
        self.optimizer.zero_grad(set_to_none=True)
        data = {name: torch.tensor(value, dtype=torch.float64) for name, value in batch.items()}
        with torch.enable_grad(), _swapped_in_backward(self.leaves, backward_values):
            loss = call_spec(
                "TrainingStep", "loss", self.declaration.name, self.declaration.loss,
                {**self.leaves, **data},
            )  # fmt: skip
            if loss.dim() != 0:
                raise DerivationError(
                    f"TrainingStep {self.declaration.name!r}: loss returned a tensor of shape "
                    f"{tuple(loss.shape)}; it must return the scalar loss (sum or mean it)."
                )
            if loss.requires_grad:
                loss.backward()
        gradients = {
            name: leaf.grad.detach().clone() if leaf.grad is not None else torch.zeros_like(leaf)
            for name, leaf in self.leaves.items()
        }
        if extra_gradients is not None:
            for name, leaf in self.leaves.items():
                leaf.grad = gradients[name] + extra_gradients[name]
        self.optimizer.step()
        return _ReferenceStep(
            parameters={name: leaf.detach().numpy().copy() for name, leaf in self.leaves.items()},
            loss=float(loss.detach()),
            gradients=gradients,
        )


def _swapped_in_backward(
    leaves: Mapping[str, torch.Tensor], values: Mapping[str, np.ndarray] | None
) -> Any:
    """While active, every tensor autograd saves that is (a view of) one of ``leaves`` named
    in ``values`` is read back in the backward as the same view of that value instead."""
    if not values:
        return contextlib.nullcontext()
    swaps = {
        leaves[name].untyped_storage().data_ptr(): torch.tensor(value, dtype=torch.float64)
        for name, value in values.items()
    }

    def pack(tensor: torch.Tensor) -> Any:
        try:
            key = tensor.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):  # no storage (e.g. a sparse tensor)
            return tensor
        if key in swaps:
            return (_SWAP, key, tensor.size(), tensor.stride(), tensor.storage_offset())
        return tensor

    def unpack(packed: Any) -> torch.Tensor:
        if isinstance(packed, tuple) and packed and packed[0] is _SWAP:
            _, key, size, stride, offset = packed
            return swaps[key].as_strided(size, stride, offset)
        return packed  # type: ignore[no-any-return]

    return torch.autograd.graph.saved_tensors_hooks(pack, unpack)


_SWAP = object()  # marks a saved tensor that _swapped_in_backward replaces


# -- the hand step ------------------------------------------------------------------------


def _where_raised(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _run_step(
    declaration: TrainingStep,
    params: Mapping[str, np.ndarray],
    batch: Mapping[str, np.ndarray],
    state: Any,
    options: RunOptions,
    t: int,
) -> tuple[dict[str, np.ndarray], list[Problem]]:
    """Call the hand step on fresh copies; its new parameters as float64 numpy copies, or
    the problems that stop the check at this step."""
    arguments: dict[str, Any] = {}
    for name, value in {**params, **batch}.items():
        array = np.array(value, dtype=np.float64)  # a copy: the step may write into it
        arguments[name] = (
            torch.from_numpy(array).to(options.device) if declaration.backend == "torch" else array
        )
    if declaration.state is not None:
        arguments[STATE_KEYWORD] = state
    at = f"step {t} of {options.steps}"
    try:
        with single_threaded_blas(declaration.backend):
            returned = declaration.step(**arguments)
    except Exception as exc:  # the hand step is user code: any failure is a verdict
        message = f"{at}: the step raised {type(exc).__name__}: {exc}{_where_raised(exc)}"
        return {}, [Problem("raised", message)]

    problems: list[Problem] = []
    for name in declaration.batch:
        after = _to_numpy(arguments[name])
        if after.shape != batch[name].shape or not np.array_equal(after, batch[name]):
            problems.append(
                Problem(
                    "mutated",
                    f"{at}: the step modified its batch input {name!r} in place; a training "
                    "loop that reuses the batch would train on the changed values. Work on "
                    "a copy.",
                    parameter=name,
                )
            )
    if not isinstance(returned, Mapping):
        problems.append(
            Problem(
                "returned",
                f"{at}: the step returned {type(returned).__name__}; it must return a mapping "
                f"{{parameter: new value}} for each of {', '.join(declaration.params)}.",
            )
        )
        return {}, problems
    new: dict[str, np.ndarray] = {}
    for name in declaration.params:
        problem = _returned_problem(name, returned, params[name].shape, at)
        if problem is not None:
            problems.append(problem)
        else:
            new[name] = np.array(_to_numpy(returned[name]), dtype=np.float64)
    return new, problems


def _returned_problem(
    name: str, returned: Mapping[str, Any], shape: tuple[int, ...], at: str
) -> Problem | None:
    if name not in returned:
        return Problem(
            "missing",
            f"{at}: the step returned no new value for {name!r} (it returned: "
            f"{', '.join(map(str, returned)) or 'nothing'}).",
            parameter=name,
        )
    value = returned[name]
    if not isinstance(value, torch.Tensor | np.ndarray | np.generic | float | int):
        return Problem(
            "type",
            f"{at}: the new {name!r} is a {type(value).__name__}; return a numpy array, a "
            "torch tensor, or a float for a scalar parameter.",
            parameter=name,
        )
    array = _to_numpy(value)
    if array.dtype != np.float64 and not isinstance(value, float | int):
        return Problem(
            "dtype",
            f"{at}: the new {name!r} has dtype {array.dtype}; the step receives float64 and "
            "must keep it (a float32 step cannot be held to a float64 reference).",
            parameter=name,
        )
    if tuple(array.shape) != tuple(shape):
        return Problem(
            "shape",
            f"{at}: the new {name!r} has shape {tuple(array.shape)}, but {name!r} has shape "
            f"{tuple(shape)}{shape_hint(tuple(array.shape), tuple(shape))}.",
            parameter=name,
        )
    if not np.isfinite(array).all():
        return Problem(
            "non_finite",
            f"{at}: the new {name!r} holds NaN or inf where the reference step is finite.",
            parameter=name,
        )
    return None


# -- comparing one step -------------------------------------------------------------------


def _update_allowed(before: np.ndarray, after_reference: np.ndarray) -> np.ndarray:
    update = after_reference - before
    return UPDATE_TOLERANCE.allowed(update) + PARAMETER_ROUNDING * (
        np.abs(before) + np.abs(after_reference)
    )


def _compare_update(
    name: str,
    before: np.ndarray,
    after_hand: np.ndarray,
    after_reference: np.ndarray,
    reference: str,
) -> Mismatch | None:
    return compare(
        after_hand - before, after_reference - before, _update_allowed(before, after_reference),
        parameter=name, reference=reference,
    )  # fmt: skip


def _reference_label(declaration: TrainingStep) -> str:
    return f"{declaration.optimizer} on autograd gradients of the spec loss (float64)"


# -- one trajectory -----------------------------------------------------------------------


@dataclass
class _Run:
    """A hand trajectory checked step by step; where it stopped and why."""

    trajectory: list[dict[str, np.ndarray]]  # parameters before step 1, after 1, ...
    hand_losses: list[float]  # the spec loss at the hand's parameters before each step
    schedule: list[dict[str, np.ndarray]]
    failures: list[Problem] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    doubts: list[Problem] = field(default_factory=list)  # kinks: the step is not judged
    step: int | None = None  # the step that failed or errored
    reference_after: dict[str, np.ndarray] | None = None  # reference at the failing step


def run_trajectory(
    declaration: TrainingStep, point: Mapping[str, np.ndarray], options: RunOptions
) -> _Run:
    start = {name: point[name] for name in declaration.params}
    data = {name: point[name] for name in declaration.batch}
    run = _Run(
        trajectory=[start], hand_losses=[], schedule=_schedule(declaration, data, options.steps)
    )
    try:
        state = declaration.state() if declaration.state is not None else None
    except Exception as exc:  # user code
        message = f"the state factory raised {type(exc).__name__}: {exc}{_where_raised(exc)}"
        run.failures.append(Problem("raised", message))
        run.step = 0
        return run
    reference = _Reference(declaration, start)
    label = _reference_label(declaration)
    for t in range(1, options.steps + 1):
        before, batch = run.trajectory[-1], run.schedule[t - 1]
        expected = reference.step(before, batch)
        finite = all(np.isfinite(v).all() for v in expected.parameters.values())
        if not (finite and math.isfinite(expected.loss)):
            run.errors.append(
                Problem(
                    "diverged",
                    f"step {t} of {options.steps}: the reference diverged (loss "
                    f"{expected.loss:.6g} at the parameters before the step, or a non-finite "
                    "update): the learning rate is too large for this point. Lower it, or "
                    f"narrow dims and bounds{_agreed_before(t)}.",
                )
            )
            run.step = t
            return run
        new, problems = _run_step(declaration, before, batch, state, options, t)
        for name in new:
            after = expected.parameters[name]
            mismatch = _compare_update(name, before[name], new[name], after, label)
            if mismatch is None:
                continue
            kink = _kink(declaration, before, batch, name, (new[name] - after))
            if kink is not None:
                run.doubts.append(
                    Problem(
                        "kink",
                        f"step {t} of {options.steps}: the update of {name!r} differs from "
                        "the reference step only where the spec loss is not differentiable "
                        f"(along the difference its one-sided slopes are {kink[0]:.6g} and "
                        f"{kink[1]:.6g}), so more than one step is valid here.",
                        parameter=name,
                    )
                )
                continue
            problems.append(
                Problem(
                    "mismatch",
                    f"step {t} of {options.steps}: the update of {name!r} differs from "
                    f"{label}, taken from the same parameters{_agreed_before(t)}.",
                    parameter=name,
                    mismatch=mismatch,
                )
            )
        if problems or run.doubts:
            run.failures.extend(problems)
            run.step = t
            run.reference_after = expected.parameters
            run.trajectory.append(new)  # what the hand did, complete or not, for diagnosis
            return run
        run.hand_losses.append(expected.loss)
        run.trajectory.append(new)
    return run


def _kink(
    declaration: TrainingStep,
    before: Mapping[str, np.ndarray],
    batch: Mapping[str, np.ndarray],
    name: str,
    direction: np.ndarray,
) -> tuple[float, float] | None:
    """The one-sided slopes of the spec loss along ``direction`` in ``name`` when it has a
    kink there (a ReLU input exactly at 0), by the core's finite differences; else None."""
    spec = ScalarSpec(declaration.name, declaration.loss, {**before, **batch}, None)
    slope = spec.slope(name, direction)
    return (slope.left, slope.right) if slope.kink else None


def _agreed_before(t: int) -> str:
    if t <= 1:
        return ""
    return "; step 1 agreed" if t == 2 else f"; steps 1-{t - 1} agreed"


def loss_curves(declaration: TrainingStep, run: _Run) -> LossCurves:
    """Run the reference on its own from the same start over the steps that agreed."""
    completed = len(run.hand_losses)
    free = _Reference(declaration, run.trajectory[0])
    losses, worst = [], 0.0
    for t in range(1, completed + 1):
        taken = free.step(None, run.schedule[t - 1])
        losses.append(taken.loss)
        for name, value in taken.parameters.items():
            scale = float(np.max(np.abs(value))) if value.size else 0.0
            if scale > 0:
                worst = max(worst, float(np.max(np.abs(run.trajectory[t][name] - value))) / scale)
    return LossCurves(
        hand=np.array(run.hand_losses), reference=np.array(losses), parameter_agreement=worst
    )


# -- diagnoses ----------------------------------------------------------------------------


def _replay(
    declaration: TrainingStep,
    run: _Run,
    t: int,
    point: Mapping[str, np.ndarray],
    *,
    accumulate: bool = False,
    backward_values: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The reference step ``t`` from ``point``, with the optimizer state it had along the
    hand's trajectory; ``accumulate`` adds the previous step's gradients, and
    ``backward_values`` swap parameters in the backward only (see ``_Reference.step``)."""
    reference = _Reference(declaration, run.trajectory[0])
    previous: Mapping[str, torch.Tensor] | None = None
    for s in range(1, t):
        previous = reference.step(run.trajectory[s - 1], run.schedule[s - 1]).gradients
    return reference.step(
        point,
        run.schedule[t - 1],
        extra_gradients=previous if accumulate else None,
        backward_values=backward_values,
    ).parameters


def diagnoses_of(declaration: TrainingStep, run: _Run) -> tuple[str, ...]:
    """Plain-words causes, each confirmed by recomputing the reference the way the cause
    would have it and finding the hand's update there."""
    t = run.step
    if t is None or run.reference_after is None:
        return ()
    mismatched = [p.parameter for p in run.failures if p.kind == "mismatch" and p.parameter]
    if not mismatched or len(mismatched) != len(run.failures):
        return ()
    before, hand = run.trajectory[t - 1], run.trajectory[t]
    agreed = [name for name in declaration.params if name not in mismatched]

    def explains(candidate: Mapping[str, np.ndarray], name: str) -> bool:
        return _compare_update(name, before[name], hand[name], candidate[name], "") is None

    found: list[str] = []
    for name in mismatched:
        for other in agreed:
            through = _replay(declaration, run, t, before, backward_values={other: hand[other]})
            if explains(through, name):
                found.append(
                    f"the update of {name!r} is what back-propagating through the already "
                    f"updated {other!r} gives: {other!r} was changed before the gradient of "
                    f"{name!r} was computed from it. Compute every gradient first, then "
                    "update the parameters."
                )
                break
            at_new = _replay(declaration, run, t, {**before, other: hand[other]})
            if explains(at_new, name):
                found.append(
                    f"the update of {name!r} is the reference's at the already updated "
                    f"{other!r}: the loss was recomputed after {other!r} changed. Compute "
                    "every gradient at the same parameters, then update them all."
                )
                break
    if t > 1:
        accumulated = _replay(declaration, run, t, before, accumulate=True)
        stuck = [name for name in mismatched if explains(accumulated, name)]
        if stuck:
            found.append(
                f"the update of {', '.join(map(repr, stuck))} is the reference's with the "
                f"gradient of step {t - 1} still added: the gradient was not zeroed before "
                "this step's backward (zero it every step; note that `if p.grad:` is False for "
                "a gradient that is exactly 0)."
            )
    if not found:
        factor = _constant_factor(mismatched, before, hand, run.reference_after)
        if factor is not None:
            found.append(factor)
    return tuple(found)


def _constant_factor(
    names: list[str],
    before: Mapping[str, np.ndarray],
    hand: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
) -> str | None:
    """Are the hand updates one constant times the reference's (a learning rate, a dropped
    factor 2, sum against mean, a sign)?"""
    ours = [hand[n] - before[n] for n in names]
    theirs = [reference[n] - before[n] for n in names]
    norm = sum(float(np.sum(r * r)) for r in theirs)
    if norm == 0.0:
        return None
    factor = sum(float(np.sum(o * r)) for o, r in zip(ours, theirs, strict=True)) / norm
    for o, r, n in zip(ours, theirs, names, strict=True):
        allowed = max(abs(factor), 1.0) * _update_allowed(before[n], reference[n])
        if compare(o, factor * r, allowed, parameter=n, reference="") is not None:
            return None
    which = ", ".join(map(repr, names))
    if all(not np.any(o) for o in ours):
        return f"the hand step leaves {which} unchanged where the reference moves it."
    if sum(o.size for o in ours) < 2:
        return None  # one element is always some multiple of another: no evidence
    return (
        f"the updates of {which} are {factor:.6g} times the reference's: the learning rate, "
        "or a constant factor of the loss or its gradient, differs (a dropped 2, sum against "
        "mean, the sign)."
    )


def update_pairs(run: _Run) -> dict[str, GradientPair]:
    """The failing step's updates, the hand's beside the reference's, with the tolerance they
    were compared under: what the report's pictures draw."""
    if run.step is None or run.reference_after is None or len(run.trajectory) <= run.step:
        return {}
    before, after = run.trajectory[run.step - 1], run.trajectory[run.step]
    pairs = {}
    for name, expected in run.reference_after.items():
        if name in after and np.shape(after[name]) == np.shape(expected):
            pairs[name] = GradientPair(
                hand=np.asarray(after[name], dtype=np.float64) - before[name],
                reference=expected - before[name],
                allowed=_update_allowed(before[name], expected),
            )
    return pairs
