"""The ``gradcheck`` command: a thin layer over ``verify`` and the built-in derivations.

Exit status: 0 when every derivation passes, 1 when any fails (or its spec is in error),
2 for a usage problem (a missing file, an import error, nothing found), with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TextIO

from gradcheck.derivation import Derivation, DerivationError
from gradcheck.report import Report
from gradcheck.targets import TargetError, load_target

__all__ = ["Outcome", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"gradcheck: error: {message} (see gradcheck --help)\n")


@dataclass(frozen=True)
class Outcome:
    """One derivation's result, as the command prints it."""

    derivation: Derivation
    verdict: str  # "pass" | "fail" | "error"
    message: str
    report: Report | None
    elapsed: float

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.derivation.name,
            "verdict": self.verdict,
            "message": self.message,
            "parameters": list(self.derivation.wrt),
            "backend": self.derivation.backend,
            "elapsed_s": round(self.elapsed, 4),
        }
        if self.report is not None:
            entry.update(
                examples=self.report.examples,
                inconclusive=self.report.inconclusive,
                seed=self.report.seed,
                dtype=self.report.dtype,
                problems=[
                    {"kind": p.kind, "parameter": p.parameter, "message": p.message}
                    for p in self.report.problems
                ],
                diagnoses=list(self.report.diagnoses),
            )
            if self.report.verdict == "fail":
                found = self.report.localization
                entry["localization"] = None if found is None else found.as_json()
        return entry


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gradcheck",
        description="Check hand-derived gradients against torch autograd and finite differences.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    verify = commands.add_parser(
        "verify",
        help="search shapes and values for a point where a derivation fails",
        description="Verify every module-level Derivation in each TARGET "
        "(a .py file or module[:attribute]); with no TARGET, the built-in derivations.",
    )
    verify.add_argument("targets", nargs="*", metavar="TARGET")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--seed", type=_seed, help="seed of the search (default: random)")
    verify.add_argument(
        "--max-examples",
        type=_positive,
        default=100,
        help="examples to try per derivation (default: 100)",
    )
    verify.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the verdicts: auto = only on a terminal, and not when NO_COLOR is set",
    )
    verify.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="dtype the backward receives (the references stay float64)",
    )
    listing = commands.add_parser("list", help="show the built-in derivations")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _derivations(targets: Sequence[str]) -> list[tuple[str, Derivation]]:
    """(the target to name in a reproduce line, the derivation) for every derivation found."""
    if not targets:
        from gradcheck.derivations import BUILTINS

        return [("", derivation) for derivation in BUILTINS]
    found: list[tuple[str, Derivation]] = []
    for target in targets:
        try:
            found.extend((target, derivation) for derivation in load_target(target))
        except TargetError as exc:
            raise UsageError(str(exc)) from exc
        except DerivationError as exc:
            raise UsageError(f"{target}: {exc}") from exc
    return found


def _run_one(
    target: str, derivation: Derivation, args: argparse.Namespace, progress: _Progress
) -> Outcome:
    from gradcheck.search import verify

    started = time.perf_counter()
    try:
        report = verify(
            derivation,
            max_examples=args.max_examples,
            seed=args.seed,
            dtype=args.dtype,
            progress=progress.update,
        )
    except DerivationError as exc:
        return Outcome(derivation, "error", str(exc), None, time.perf_counter() - started)
    except Exception as exc:  # one derivation's surprise must not cost the others' results
        reason = f"gradcheck could not verify {derivation.name!r}: {type(exc).__name__}: {exc}"
        return Outcome(derivation, "error", reason, None, time.perf_counter() - started)
    command = " ".join(
        part
        for part in (
            "gradcheck verify",
            target,
            f"--seed {report.seed}",
            f"--max-examples {args.max_examples}",
            f"--dtype {args.dtype}" if args.dtype != "float64" else "",
        )
        if part
    )
    report = replace(report, reproduce=command)
    verdict = {"pass": "pass", "inconclusive": "pass", "fail": "fail"}.get(report.verdict, "error")
    return Outcome(derivation, verdict, str(report), report, time.perf_counter() - started)


class _Progress:
    """One line on a terminal's stderr, rewritten as examples are tried; silent elsewhere."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.total = total
        self.index = 0
        self.name = ""

    def start(self, name: str) -> None:
        self.index += 1
        self.name = name
        self.update(0)

    def update(self, examples: int) -> None:
        if self.enabled:
            line = f"[{self.index}/{self.total}] {self.name}: {examples} examples"
            self.stream.write("\r\033[K" + line)
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


COLOURS = {"PASS": "\033[32m", "FAIL": "\033[31m", "ERROR": "\033[33m"}


def _use_colour(choice: str, out: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return out.isatty()


def format_table(outcomes: Sequence[Outcome], *, colour: bool = False) -> str:
    """A plain table: derivation, parameters, examples tried, verdict, time."""
    rows = [("derivation", "parameters", "examples", "verdict", "time")]
    for outcome in outcomes:
        examples = str(outcome.report.examples) if outcome.report else "-"
        rows.append(
            (
                outcome.derivation.name,
                ", ".join(outcome.derivation.wrt),
                examples,
                outcome.verdict.upper(),
                f"{outcome.elapsed:.2f}s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        if colour and row[3] in COLOURS:  # pad first, so colour codes do not skew columns
            cells[3] = COLOURS[row[3]] + cells[3] + "\033[0m"
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    derivations = _derivations(args.targets)
    progress = _Progress(sys.stderr, len(derivations))
    outcomes = []
    for target, derivation in derivations:
        progress.start(derivation.name)
        outcomes.append(_run_one(target, derivation, args, progress))
    progress.close()
    if args.json:
        payload = {
            "results": [outcome.as_json() for outcome in outcomes],
            "seed": args.seed,
            "max_examples": args.max_examples,
            "dtype": args.dtype,
        }
        out.write(json.dumps(payload, indent=2) + "\n")
    else:
        out.write(format_table(outcomes, colour=_use_colour(args.color, out)) + "\n")
        for outcome in outcomes:
            if outcome.verdict != "pass":
                out.write("\n" + outcome.message + "\n")
        failed = sum(o.verdict == "fail" for o in outcomes)
        errors = sum(o.verdict == "error" for o in outcomes)
        passed = len(outcomes) - failed - errors
        out.write(f"\n{passed} passed, {failed} failed, {errors} errors\n")
    return EXIT_OK if all(o.verdict == "pass" for o in outcomes) else EXIT_FAILED


def _list(args: argparse.Namespace, out: TextIO) -> int:
    from gradcheck.derivations import BUILTINS

    if args.json:
        entries = [
            {
                "name": d.name,
                "backend": d.backend,
                "parameters": list(d.wrt),
                "shapes": {k: list(v) for k, v in d.shapes.items()},
            }
            for d in BUILTINS
        ]
        out.write(json.dumps({"derivations": entries}, indent=2) + "\n")
        return EXIT_OK
    width = max(len(d.name) for d in BUILTINS)
    for d in BUILTINS:
        shapes = ", ".join(f"{k}{tuple(v)}" for k, v in d.shapes.items())
        out.write(f"{d.name.ljust(width)}  [{d.backend}]  wrt {', '.join(d.wrt)}; {shapes}\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``gradcheck`` console script and ``python -m gradcheck``."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list(args, out)
        return _verify(args, out)
    except UsageError as exc:
        sys.stderr.write(f"gradcheck: error: {exc}\n")
        return EXIT_USAGE
