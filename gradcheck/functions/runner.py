"""Run a Function's checks at one example: ``FunctionChecks`` is what check and verify call.

The checks run on the CPU, and again on a CUDA device where one is visible, where the
Function's results must also agree with the CPU's. A check the Function has no capability
for (no ``jvp``), or that was switched off, is not run, and every report says so.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck.backward import DTYPES
from gradcheck.derivation import DerivationError
from gradcheck.functions import checks as run_checks
from gradcheck.functions import messages
from gradcheck.functions.checks import CHECKS, OPTIONAL_CHECKS, Findings, Raised, Run
from gradcheck.functions.compiled import CompileCheck, compile_unavailable
from gradcheck.functions.function import UnderTest, tensors_at, vjp
from gradcheck.guard import user_call
from gradcheck.references.autograd import call_forward
from gradcheck.report import Problem
from gradcheck.tolerances import for_dtype

__all__ = ["LABELS", "FunctionChecks"]

# How each check is named in a report.
LABELS = {name: name.replace("_", " ") for name in (*CHECKS, *OPTIONAL_CHECKS)}

# The device the "cuda" check runs the Function on besides the CPU (a name, so that the
# path can be exercised on a machine without one).
ACCELERATOR = "cuda"


def accelerator_available() -> bool:
    return torch.cuda.is_available()


class FunctionChecks:
    """The ``extra_checks`` of a Function's Derivation (see ``Derivation.extra_checks``)."""

    def __init__(
        self,
        function: UnderTest,
        *,
        name: str,
        spec: Callable[..., Any],
        spec_outputs: Callable[..., Any],
        shapes: Mapping[str, tuple[str | int, ...]],
        wrt: Sequence[str],
        checks: Sequence[str],
        nondet_tol: float,
        dtype: str | None,
    ) -> None:
        self.function = function
        self.name = name
        self.spec = spec  # one tensor (several outputs joined)
        self.spec_outputs = spec_outputs  # as the user wrote it
        self.shapes = dict(shapes)
        self.wrt = tuple(wrt)
        self.nondet_tol = nondet_tol
        self.dtype = dtype
        self.enabled, self.notes = self._plan(set(checks))
        self._compile = CompileCheck(function)  # compiles once, at a few shapes

    def _plan(self, asked: set[str]) -> tuple[frozenset[str], tuple[str, ...]]:
        """Which checks run, and a note for every one that does not, with the reason."""
        missing: dict[str, str | None] = dict(self.function.missing())
        missing["cuda"] = None if accelerator_available() else "no CUDA device is visible"
        missing["compile"] = compile_unavailable()
        enabled, notes = set(), []
        optional = tuple(check for check in OPTIONAL_CHECKS if check in asked)
        for check in (*CHECKS, *optional):
            if check not in asked:
                notes.append(messages.not_run(LABELS[check], "switched off by checks="))
            elif missing.get(check) is not None:
                notes.append(messages.not_run(LABELS[check], str(missing[check])))
            else:
                enabled.add(check)
        return frozenset(enabled), tuple(notes)

    def __call__(
        self,
        point: Mapping[str, np.ndarray],
        grad_output: np.ndarray | None,
        params: Mapping[str, Any],
        *,
        dtype: str,
        seed: int,
    ) -> Findings:
        devices = ["cpu"] + ([ACCELERATOR] if "cuda" in self.enabled else [])
        problems: list[Problem] = []
        notes: list[str] = list(self.notes)
        probes = 0
        cpu: Run | None = None
        for device in devices:
            accelerated = cpu is not None or device != "cpu"
            run = self._run(point, grad_output, params, self.dtype or dtype, seed, device)
            run.prefix = f"{device} " if accelerated else ""
            try:
                self._baseline(run)
            except Raised as raised:
                if not accelerated:  # the backward check reports the same call raising
                    return Findings((), self.notes, 0)
                problems.append(raised.problem)
                continue
            if cpu is None:
                cpu = run
                try:
                    problems.extend(run_checks.forward_check(run))
                except Raised as raised:
                    problems.append(raised.problem)
                notes.extend(run.notes)
            else:
                problems.extend(run_checks.agreement_check(run, cpu))
            problems.extend(self._checks(run))
            probes += run.probes
        return Findings(tuple(problems), tuple(notes), probes)

    def _run(
        self,
        point: Mapping[str, np.ndarray],
        grad_output: np.ndarray | None,
        params: Mapping[str, Any],
        dtype: str,
        seed: int,
        device: str,
    ) -> Run:
        torch_dtype = DTYPES[dtype][1]
        # Directions differ from example to example, and are the same at the same example.
        digest = zlib.crc32(b"".join(np.ascontiguousarray(v).tobytes() for v in point.values()))
        params = dict(params)

        def spec(values: Mapping[str, torch.Tensor]) -> torch.Tensor:
            return call_forward(self.name, self.spec, values, params)

        return Run(
            function=self.function.bound(params),
            spec=spec,
            spec_name=self.name,
            spec_forward=self.spec,
            outputs=self.function.outputs(params),
            spec_outputs=self._spec_outputs,
            params=params,
            point=point,
            grad_output=grad_output,
            values=tensors_at(point, torch_dtype, device),
            seed_tensor=None
            if grad_output is None
            else torch.tensor(grad_output, dtype=torch_dtype, device=device),
            wrt=self.wrt,
            tolerance=for_dtype(dtype),
            rng=np.random.default_rng([seed, digest]),
            dims=self.dims_of(point),
            prefix="",
            functorch_vjp=self.function.functorch_vjp,
        )

    def _spec_outputs(self, **arguments: Any) -> Any:
        with user_call("forward"):
            return self.spec_outputs(**arguments)

    def dims_of(self, point: Mapping[str, np.ndarray]) -> dict[str, int]:
        """The size of each symbolic dim at ``point``."""
        dims: dict[str, int] = {}
        for name, declared in self.shapes.items():
            for dim, size in zip(declared, np.shape(point[name]), strict=True):
                if isinstance(dim, str):
                    dims[dim] = size
        return dims

    def _baseline(self, run: Run) -> None:
        """The Function's contiguous output and gradients, which the other checks vary."""
        output, grads = run_checks.by_function(
            run.label("backward"),
            lambda: vjp(run.function, run.values, run.wrt, run.seed_tensor),
            "At the example",
        )
        run.output = run_checks.as_numpy(output)
        run.gradients = {n: run_checks.as_numpy(g) for n, g in grads.items() if g is not None}

    def _checks(self, run: Run) -> list[Problem]:
        steps: list[tuple[str, Callable[[], list[Problem]]]] = [
            ("determinism", lambda: run_checks.determinism_check(run, self.nondet_tol)),
            ("reentrant", lambda: run_checks.reentrant_check(run)),
            ("undefined_grad", lambda: run_checks.undefined_check(run)),
            ("strided", lambda: run_checks.strided_check(run)),
            ("jvp", lambda: run_checks.jvp_check(run)),
            ("double_backward", lambda: run_checks.double_backward_check(run)),
            ("vmap", lambda: run_checks.vmap_check(run)),
            ("compile", lambda: self._compile(run)),
        ]
        problems: list[Problem] = []
        for check, step in steps:
            if check not in self.enabled:
                continue
            try:
                problems.extend(step())
            except Raised as raised:
                problems.append(raised.problem)
            except DerivationError as exc:  # the spec, away from the point the engine checked
                message = messages.spec_failed(run.label(LABELS[check]), str(exc))
                problems.append(Problem("references_disagree", message))
        return problems
