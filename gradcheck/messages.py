"""Pure builders of the human report: a report's parts in, text out. Tested by fragments.

The data flows one way, derivation -> references -> comparison -> verdict -> report: the
``Report`` dataclass (``report.py``) calls these builders for its ``str()``, and they know
it only by the attributes they read (the protocols below), never by importing it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from gradcheck.compare import Mismatch
from gradcheck.diagnose import describe_ratio

__all__ = [
    "format_example",
    "format_localization",
    "format_mismatch",
    "format_ratio",
    "format_report",
]


class ExampleParts(Protocol):
    @property
    def dims(self) -> Mapping[str, int]: ...
    @property
    def inputs(self) -> Mapping[str, np.ndarray]: ...
    @property
    def grad_output(self) -> np.ndarray | None: ...
    @property
    def params(self) -> Mapping[str, Any]: ...


class ProblemParts(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def parameter(self) -> str | None: ...
    @property
    def mismatch(self) -> Mismatch | None: ...


class LocalizationParts(Protocol):
    @property
    def file(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def matched(self) -> Sequence[str]: ...
    @property
    def matched_lines(self) -> tuple[int, int] | None: ...


class ReportParts(Protocol):
    @property
    def derivation(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def problems(self) -> Sequence[ProblemParts]: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def example(self) -> ExampleParts | None: ...
    @property
    def dtype(self) -> str: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def examples(self) -> int: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def probes(self) -> int: ...
    @property
    def diagnoses(self) -> Sequence[str]: ...
    @property
    def reproduce(self) -> str | None: ...
    @property
    def localization(self) -> LocalizationParts | None: ...


HEADLINES = {
    "pass": "PASSED",
    "fail": "FAILED",
    "error": "ERROR",
    "inconclusive": "INCONCLUSIVE",
}


def _index(index: tuple[int, ...]) -> str:
    return f"({index[0]},)" if len(index) == 1 else str(index)


def format_mismatch(mismatch: Mismatch) -> list[str]:
    """torch.testing's four lines, naming the parameter and the reference. Where the
    reference is 0 no relative difference is allowed, so the relative line gives the absolute
    allowance there instead of "(up to inf allowed)", which reads as a contradiction."""
    return [
        f"Mismatched {mismatch.unit}: {mismatch.mismatched} / {mismatch.total} "
        f"({100 * mismatch.share:.1f}%)",
        f"Greatest absolute difference: {mismatch.max_abs:.6g} at index "
        f"{_index(mismatch.max_abs_index)} (up to {mismatch.max_abs_allowed:.2g} allowed)",
        f"Greatest relative difference: {mismatch.max_rel:.6g} at index "
        f"{_index(mismatch.max_rel_index)} ({_relative_allowance(mismatch)})",
    ]


def _relative_allowance(mismatch: Mismatch) -> str:
    """'up to 1.3e-06 allowed', or, where the reference is 0, what is allowed there."""
    if mismatch.zero_reference_allowed is not None:
        return (
            "the reference is 0 there: only an absolute difference is allowed, "
            f"up to {mismatch.zero_reference_allowed:.2g}"
        )
    if np.isinf(mismatch.max_rel_allowed):  # a Mismatch built by hand, without the above
        return "the reference is 0 there: only an absolute difference is allowed"
    return f"up to {mismatch.max_rel_allowed:.2g} allowed"


def format_ratio(ratio: float | None) -> str:
    """'. It is 0.434294 (1/ln 10: a log10 where the spec has a natural log) times the
    spec's' for a ratio a known slip explains; nothing for any other ratio."""
    if ratio is None:
        return ""
    from_slip = describe_ratio(ratio)
    if from_slip is None:
        return ""
    return f". It is {from_slip} times the spec's"


def _array(value: np.ndarray, indent: str) -> str:
    text = np.array2string(
        np.asarray(value),
        precision=6,
        suppress_small=False,
        threshold=64,
        edgeitems=3,
        max_line_width=88 - len(indent),
    )
    return text.replace("\n", "\n" + indent)


def format_example(example: ExampleParts, *, indent: str = "  ") -> list[str]:
    """The point, dims first, so that the smallest failing example reads at a glance."""
    lines = []
    if example.params:
        lines.append(
            indent + "params: " + ", ".join(f"{k}={v!r}" for k, v in example.params.items())
        )
    if example.dims:
        lines.append(indent + "dims: " + ", ".join(f"{k}={v}" for k, v in example.dims.items()))
    for name, value in example.inputs.items():
        prefix = f"{indent}{name} = "
        lines.append(prefix + _array(value, " " * len(prefix)))
    if example.grad_output is not None:
        prefix = f"{indent}grad_output = "
        lines.append(prefix + _array(example.grad_output, " " * len(prefix)))
    return lines


def _shapes(inputs: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k}{tuple(np.shape(v))}" for k, v in inputs.items())


def format_report(report: ReportParts) -> str:
    """The whole report: verdict, the smallest failing example, what it looks like in words,
    each problem with its numbers, how to reproduce it."""
    lines = [f"gradcheck: {report.derivation} {HEADLINES[report.verdict]} ({report.dtype})"]
    if report.example is not None and report.verdict != "pass":
        searched = report.reproduce is not None  # verify shrank it; check was given it
        title = (
            "Example"
            if report.verdict != "fail"
            else ("Smallest failing example" if searched else "Failing example")
        )
        lines.append(f"{title} ({_shapes(report.example.inputs)}):")
        lines.extend(format_example(report.example, indent="  "))
    lines.extend(f"Diagnosis: {d}" for d in report.diagnoses)
    if report.localization is not None:
        lines.extend(format_localization(report.localization))
    for problem in report.problems:
        where = f"[{problem.parameter}] " if problem.parameter else ""
        lines.append(f"- {where}{problem.kind}: {problem.message}")
        if problem.mismatch is not None:
            lines.extend("    " + line for line in format_mismatch(problem.mismatch))
    lines.extend(f"  note: {note}" for note in report.notes)
    tail = [f"{report.examples} example{'s' if report.examples != 1 else ''}"]
    if report.probes:
        tail.append(f"{report.probes} finite-difference probes")
    if report.seed is not None:
        tail.append(f"seed {report.seed}")
    tail.append(f"{report.elapsed:.3g} s")
    lines.append("  " + ", ".join(tail))
    if report.reproduce and report.verdict != "pass":
        lines.append(f"  reproduce: {report.reproduce}")
    return "\n".join(lines)


def format_localization(found: LocalizationParts) -> list[str]:
    """The "First wrong line" section: where, what it should have been, what came before."""
    lines = [
        f"First wrong line: {_short_path(found.file)}:{found.line}  {found.code}",
        found.detail,
    ]
    if found.matched and found.matched_lines is not None:
        first, last = found.matched_lines
        where = f"Line {first}" if first == last else f"Lines {first}-{last}"
        lines.append(f"{where} match: {', '.join(found.matched)}.")
    return lines


def _short_path(path: str) -> str:
    """The file as the user knows it: relative to the working directory when inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative
