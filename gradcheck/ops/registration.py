"""opcheck's registration checks, run where the Function checks run, at a bounded number of
distinct shapes, with what failed said in words and without opcheck's stack.

``torch.library.opcheck`` tests the schema (what the op mutates and aliases), the autograd
registration, the fake (meta) kernel against the real one, and AOT dispatch with dynamic
shapes (what ``torch.compile`` does). They cost seconds at the first call and a fraction of
one after, and depend on the shapes, not on the values: they run at the first
``REGISTRATION_SHAPES`` distinct shapes (and params) the search draws (as many again once
one fails, for shrinking), and a shape seen before gets its earlier findings again, so that
shrinking sees one verdict per shape.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck.backward import DTYPES
from gradcheck.functions.checks import Findings
from gradcheck.functions.function import tensors_at
from gradcheck.functions.runner import FunctionChecks
from gradcheck.report import Problem

__all__ = [
    "REGISTRATION_SHAPES",
    "TESTS",
    "RegistrationChecks",
    "checked_at",
    "fake_mismatch",
    "first_line",
    "registration_problem",
    "registration_problems",
]

# Distinct shapes (and params) at which opcheck runs: its first call costs seconds (AOT
# dispatch compiles), and a registration bug shows at any shape; three catch one that
# shows only where two dims differ, or only at a size of 1.
REGISTRATION_SHAPES = 3

# opcheck's tests, in its order, and how a report names each.
TESTS = {
    "test_schema": "schema",
    "test_autograd_registration": "autograd registration",
    "test_faketensor": "fake tensor",
    "test_aot_dispatch_dynamic": "aot dispatch",
}

_FIXES = {
    "test_schema": (
        "The schema must say what the op does: name every argument it writes in "
        "mutates_args, and return fresh tensors, never an input or a view of one."
    ),
    "test_autograd_registration": (
        "Register the backward with op.register_autograd(backward, setup_context=...), not "
        "with an autograd.Function called inside the op or a kernel for the Autograd key."
    ),
    "test_faketensor": (
        "register_fake must return what the op returns for any inputs: the same shapes, "
        "dtypes and strides (e.g. x.new_empty(the op's output shape))."
    ),
    "test_aot_dispatch_dynamic": (
        "Under torch.compile the op is traced with symbolic sizes through its fake kernel, "
        "backward and setup_context: none may turn a size into a Python int (.item(), "
        "int(x.shape[0]) used as data) or depend on the values."
    ),
}
_AFTER_FAKE = "It traces the op with its fake kernel: fix register_fake first."


class RegistrationChecks:
    """The ``extra_checks`` of an op's Derivation: the Function checks, then opcheck's at
    the first ``limit`` distinct shapes."""

    def __init__(
        self,
        inner: FunctionChecks,
        op: Any,
        *,
        arguments: Sequence[str],
        wrt: Sequence[str],
        enabled: bool,
        limit: int = REGISTRATION_SHAPES,
    ) -> None:
        self.inner = inner
        self.op = op
        self.arguments = tuple(arguments)
        self.wrt = tuple(wrt)
        self.enabled = enabled
        self.limit = limit
        self.found: dict[tuple[Any, ...], tuple[tuple[Problem, ...], tuple[str, ...]]] = {}

    def __call__(
        self,
        point: Mapping[str, np.ndarray],
        grad_output: np.ndarray | None,
        params: Mapping[str, Any],
        *,
        dtype: str,
        seed: int,
    ) -> Findings:
        findings = self.inner(point, grad_output, params, dtype=dtype, seed=seed)
        if not self.enabled:
            return _with(findings, (), ("registration: not run: switched off by checks=",))
        dtype = self.inner.dtype or dtype
        key = (
            dtype,
            tuple((n, np.shape(v)) for n, v in point.items()),
            repr(sorted(params.items())),
        )
        if key not in self.found:
            if len(self.found) >= self._budget():
                return _with(findings, (), (self._limit_note(),))
            self.found[key] = self._registration(point, params, dtype)
        problems, notes = self.found[key]
        return _with(findings, problems, (self._limit_note(), *notes))

    def _budget(self) -> int:
        """``limit`` shapes; once one fails, as many more again, so that shrinking can
        reach a smaller shape that fails too."""
        failed = any(problems for problems, _ in self.found.values())
        return self.limit * (2 if failed else 1)

    def _limit_note(self) -> str:
        return (
            f"registration: opcheck's {', '.join(TESTS.values())} checks run at the first "
            f"{self.limit} distinct shapes only (seconds each; {self.limit} more to shrink "
            "a failure)"
        )

    def _registration(
        self, point: Mapping[str, np.ndarray], params: Mapping[str, Any], dtype: str
    ) -> tuple[tuple[Problem, ...], tuple[str, ...]]:
        values = tensors_at(point, DTYPES[dtype][1], "cpu")
        for name in self.wrt:
            values[name].requires_grad_(True)
        merged = {**params, **values}
        arguments = tuple(merged[name] for name in self.arguments)
        where = checked_at(point)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results = torch.library.opcheck(
                    self.op, arguments, test_utils=tuple(TESTS), raise_exception=False
                )
        except Exception as exc:  # opcheck refused the op itself: nothing was checked
            return (), (f"registration: not run at {where}: opcheck raised {first_line(exc)}",)
        failed = {t: r for t, r in results.items() if t in TESTS and _failed(r)}
        fake = None
        if "test_faketensor" in failed:
            fake = fake_mismatch(self.op, arguments, self.inner.dims_of(point))
        problems = registration_problems(failed, fake)
        return tuple(problems), (f"registration: checked at {where}",)


def _failed(result: Any) -> bool:
    return not (isinstance(result, str) and result in ("SUCCESS", "SKIPPED", "xfail"))


def _with(findings: Findings, problems: Sequence[Problem], notes: Sequence[str]) -> Findings:
    return Findings((*findings.problems, *problems), (*findings.notes, *notes), findings.probes)


def checked_at(point: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{n}{tuple(np.shape(v))}" for n, v in point.items())


def first_line(exc: Any) -> str:
    """An exception in one line, without the stack or the op's long-winded preamble."""
    text = str(exc).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if len(line) > 300:
        line = line[:297] + "..."
    return f"{type(exc).__name__}: {line}" if isinstance(exc, BaseException) else line


def registration_problems(failed: Mapping[str, Any], fake: str | None) -> list[Problem]:
    """One problem per failing test; tests failing with the same words are said once."""
    problems: list[Problem] = []
    said: dict[str, int] = {}
    for test, result in failed.items():
        error = fake if test == "test_faketensor" and fake else first_line(result)
        if error in said:
            index = said[error]
            previous = problems[index]
            problems[index] = Problem(
                previous.kind,
                previous.message + f" ({TESTS[test]} fails the same way.)",
                previous.parameter,
            )
            continue
        said[error] = len(problems)
        after_fake = test == "test_aot_dispatch_dynamic" and "test_faketensor" in failed
        problems.append(registration_problem(test, error, after_fake=after_fake))
    return problems


def registration_problem(test: str, error: str, *, after_fake: bool = False) -> Problem:
    fix = _AFTER_FAKE if after_fake else _FIXES[test]
    return Problem("registration", f"opcheck's {test}: {error}. {fix}", TESTS[test])


def fake_mismatch(op: Any, arguments: Sequence[Any], dims: Mapping[str, int]) -> str | None:
    """What register_fake returns against what the op returns, output by output, in the
    dims' names where a size names one dim only: "register_fake returns shape (D, N) where
    the op returns (N, D) (N=2, D=3)". None where they agree, or the fake cannot be run."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in arguments]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            real = op(*plain)
            with FakeTensorMode() as mode:
                fakes = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in plain]
                fake = op(*fakes)
    except Exception:  # opcheck's own words are said instead
        return None
    reals = real if isinstance(real, tuple | list) else (real,)
    fakes_out = fake if isinstance(fake, tuple | list) else (fake,)
    if len(reals) != len(fakes_out):
        return f"register_fake returns {len(fakes_out)} outputs where the op returns {len(reals)}"
    for i, (r, f) in enumerate(zip(reals, fakes_out, strict=True)):
        which = "" if len(reals) == 1 else f" for output {i}"
        if tuple(r.shape) != tuple(f.shape):
            return (
                f"register_fake returns shape {_named(f.shape, dims)}{which} where the op "
                f"returns {_named(r.shape, dims)}{_sizes(dims)}"
            )
        if r.dtype != f.dtype:
            return f"register_fake returns dtype {f.dtype}{which} where the op returns {r.dtype}"
        if r.stride() != f.stride():
            return (
                f"register_fake returns strides {f.stride()}{which} where the op returns "
                f"{r.stride()}"
            )
    return None


def _named(shape: Sequence[int], dims: Mapping[str, int]) -> str:
    """(D, N) where every size names one dim; the sizes themselves otherwise."""
    names = []
    for size in shape:
        matching = [name for name, value in dims.items() if value == size]
        if len(matching) != 1:
            return str(tuple(int(s) for s in shape))
        names.append(matching[0])
    return f"({', '.join(names)}{',' if len(names) == 1 else ''})"


def _sizes(dims: Mapping[str, int]) -> str:
    return f" ({', '.join(f'{k}={v}' for k, v in dims.items())})" if dims else ""
