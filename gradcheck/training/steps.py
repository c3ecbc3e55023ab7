"""Check a hand-written training step against autograd and a torch optimizer, step by step.

A ``TrainingStep`` declares the hand-written update (parameters and a batch in, new parameters
out), the spec loss it claims to descend (torch ops), and the torch optimizer it claims to
match. ``check_step`` runs the hand step for K steps from one starting point and, at every
step, takes the reference step from *the same parameters* the hand step started from:
autograd gradients of the spec loss in float64, then the optimizer (whose state, e.g. Adam's
moments, follows the hand's trajectory). The first step and parameter where the two updates
part is the verdict; a second reference runs free from the same start to measure how far the
loss curves drift apart by rounding alone. ``verify_step`` searches shapes and starting
points with hypothesis and shrinks a failure to the smallest example.

The declaration itself lives in ``declaration`` (below the trajectory that runs it) and is
handed on from here, where users have always imported it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from gradcheck.report import Example
from gradcheck.strategies import examples
from gradcheck.training._internal import search, searched_report, validated_point, whole
from gradcheck.training.declaration import TrainingStep
from gradcheck.training.report import LossCurves, TrainingMismatch, TrainingReport
from gradcheck.training.trajectory import (
    RunOptions,
    diagnoses_of,
    loss_curves,
    run_trajectory,
    update_pairs,
)

__all__ = ["TrainingStep", "assert_step_matches", "check_step", "verify_step"]


def _options(declaration: TrainingStep, steps: Any, device: Any) -> RunOptions:
    steps = whole("steps", steps, minimum=1)
    try:
        where = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device ({exc}); use 'cpu'.") from exc
    if where.type != "cpu":
        if declaration.backend != "torch":
            raise ValueError(
                f"device={device!r}: TrainingStep {declaration.name!r} has backend="
                f"{declaration.backend!r}, which runs on the CPU; use device='cpu'."
            )
        if where.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but torch.cuda.is_available() is False; use device='cpu' "
                "or run where a GPU is visible."
            )
    return RunOptions(steps=steps, device=where)


def _require(declaration: Any) -> TrainingStep:
    if not isinstance(declaration, TrainingStep):
        raise TypeError(
            f"expected a gradcheck.training.TrainingStep, got {type(declaration).__name__}; "
            "declare one with TrainingStep(name=..., step=..., loss=..., params=..., "
            "batch=..., optimizer=...)."
        )
    return declaration


# -- reports ------------------------------------------------------------------------------


def _evaluate(
    declaration: TrainingStep, example: Example, options: RunOptions, *, detail: bool
) -> TrainingReport:
    started = time.perf_counter()
    run = run_trajectory(declaration, example.inputs, options)
    if run.failures:
        verdict = "fail"
    elif run.errors:
        verdict = "error"
    elif run.doubts:
        verdict = "inconclusive"
    else:
        verdict = "pass"
    problems = tuple(run.failures + run.errors + run.doubts)
    notes: tuple[str, ...] = ()
    curves: LossCurves | None = None
    diagnoses: tuple[str, ...] = ()
    if detail:
        curves = loss_curves(declaration, run)
        if len(curves.hand):
            notes += (f"against {declaration.optimizer}: {curves.summary()}",)
        diagnoses = diagnoses_of(declaration, run)
    if verdict == "pass":
        notes = (f"every update of {options.steps} steps matched the reference", *notes)
    return TrainingReport(
        derivation=declaration.name,
        verdict=verdict,  # type: ignore[arg-type]
        problems=problems,
        notes=notes,
        example=Example(dims=dict(example.dims), inputs=dict(example.inputs)),
        dtype="float64",
        elapsed=time.perf_counter() - started,
        diagnoses=diagnoses,
        step=run.step if verdict != "pass" else None,
        parameter=next((p.parameter for p in problems if p.parameter), None),
        inconclusive=int(verdict == "inconclusive"),
        steps=options.steps,
        curves=curves,
        gradients=update_pairs(run) if verdict == "fail" else {},
    )


def check_step(
    declaration: TrainingStep,
    inputs: Mapping[str, Any],
    *,
    steps: int = 100,
    device: str | torch.device = "cpu",
) -> TrainingReport:
    """Run ``declaration.step`` for ``steps`` steps from ``inputs`` (every parameter and batch
    input) and hold each update to the reference step from the same parameters.

    Nothing passed is modified. The report's ``step`` and ``parameter`` say where the hand
    step first parted from the reference; ``curves`` compares the loss along the hand's
    trajectory with a reference trajectory run on its own. ``device`` is where a torch step's
    tensors live (the reference always runs in float64 on the CPU).

    >>> import numpy as np
    >>> from gradcheck.training import TrainingStep, sgd
    >>> def hand(w, x, y):
    ...     return {"w": w - 0.01 * 2 * x.T @ (x @ w - y)}
    >>> declaration = TrainingStep(
    ...     name="least_squares", step=hand, loss=lambda w, x, y: ((x @ w - y) ** 2).sum(),
    ...     params={"w": ("D", 1)}, batch={"x": ("N", "D"), "y": ("N", 1)},
    ...     optimizer=sgd(lr=0.01))
    >>> point = {"w": np.zeros((2, 1)), "x": np.eye(2), "y": np.ones((2, 1))}
    >>> check_step(declaration, point, steps=10).ok
    True
    """
    declaration = _require(declaration)
    options = _options(declaration, steps, device)
    point, sizes = validated_point(
        f"check_step({declaration.name!r})", declaration.derivation, inputs
    )
    return _evaluate(declaration, Example(dims=sizes, inputs=point), options, detail=True)


def verify_step(
    declaration: TrainingStep,
    *,
    steps: int = 100,
    max_examples: int | None = None,
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> TrainingReport:
    """Search shapes and starting points with hypothesis for one where the hand step parts
    from the reference within ``steps`` steps; shrink it to the smallest.

    ``max_examples`` defaults to the active hypothesis profile's; ``seed`` (random by
    default) reproduces the search.
    """
    declaration = _require(declaration)
    options = _options(declaration, steps, device)
    started = time.perf_counter()

    def verdict_of(example: Example) -> str:
        return _evaluate(declaration, example, options, detail=False).verdict

    found = search(
        examples(declaration.derivation), verdict_of, max_examples=max_examples, seed=seed
    )
    reproduce = (
        f"verify_step({declaration.name}, steps={options.steps}, seed={found.seed}, "
        f"max_examples={found.budget})"
    )
    shown = found.smallest or found.first_error
    if shown is not None:
        report = _evaluate(declaration, shown, options, detail=True)
        how = "shrunk to the smallest" if found.smallest is not None else "the first in error"
        notes = (*report.notes, f"found after searching {found.tried} examples; {how}")
    else:
        report = TrainingReport(
            derivation=declaration.name, verdict="pass", dtype="float64", steps=options.steps
        )
        notes = (f"{found.tried} examples passed, {options.steps} steps each",)
    return searched_report(report, found, notes, started, reproduce)


def assert_step_matches(
    declaration: TrainingStep,
    inputs: Mapping[str, Any] | None = None,
    *,
    steps: int = 100,
    max_examples: int | None = None,
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> TrainingReport:
    """``check_step`` at ``inputs`` (or ``verify_step`` without them); raise
    ``TrainingMismatch`` with the whole report unless it is ok."""
    __tracebackhide__ = True
    if inputs is None:
        report = verify_step(
            declaration, steps=steps, max_examples=max_examples, seed=seed, device=device
        )
    else:
        if max_examples is not None or seed is not None:
            raise ValueError(
                "max_examples and seed steer a search; with inputs the check runs at that one "
                "point. Drop them, or drop inputs to search."
            )
        report = check_step(declaration, inputs, steps=steps, device=device)
    if not report.ok:
        raise TrainingMismatch(str(report))
    return report
