"""Pure builders of the human report: a Report in, text out. Tested by fragments."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gradcheck.compare import Mismatch
from gradcheck.report import Example, Report

__all__ = ["format_example", "format_mismatch", "format_report"]

HEADLINES = {
    "pass": "PASSED",
    "fail": "FAILED",
    "error": "ERROR",
    "inconclusive": "INCONCLUSIVE",
}


def _index(index: tuple[int, ...]) -> str:
    return f"({index[0]},)" if len(index) == 1 else str(index)


def format_mismatch(mismatch: Mismatch) -> list[str]:
    """torch.testing's four lines, naming the parameter and the reference."""
    return [
        f"Mismatched {mismatch.unit}: {mismatch.mismatched} / {mismatch.total} "
        f"({100 * mismatch.share:.1f}%)",
        f"Greatest absolute difference: {mismatch.max_abs:.6g} at index "
        f"{_index(mismatch.max_abs_index)} (up to {mismatch.max_abs_allowed:.2g} allowed)",
        f"Greatest relative difference: {mismatch.max_rel:.6g} at index "
        f"{_index(mismatch.max_rel_index)} (up to {mismatch.max_rel_allowed:.2g} allowed)",
    ]


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


def format_example(example: Example, *, indent: str = "  ") -> list[str]:
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


def format_report(report: Report) -> str:
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
