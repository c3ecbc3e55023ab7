"""The ``gradcheck`` command: a thin layer over ``verify`` and the built-in derivations.

Exit status: 0 when every derivation passes, 1 when any fails (or its spec is in error),
2 for a usage problem (a missing file, an import error, nothing found, two derivations with
one name), with a one-line reason; 130 when interrupted (Ctrl-C), after the results so far.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

from gradcheck.derivation import DerivationError
from gradcheck.guard import DEFAULT_DEADLINE
from gradcheck.runner import Outcome, RunOptions, default_jobs, prints_to_stderr, run_all
from gradcheck.targets import Found, TargetError, duplicate_names, find_derivations
from gradcheck.terminal import Progress, Table, format_table, use_colour

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Outcome", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C

# Kept importable from here: the table was built in this module before it had its own.
__all__ += ["format_table"]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"gradcheck: error: {message} (see gradcheck --help)\n")


def _whole_number(text: str, *, least: int, rule: str) -> int:
    """``text`` as an int of at least ``least``; ``rule`` says that bound in the error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def _positive(text: str) -> int:
    return _whole_number(text, least=1, rule="must be at least 1")


def _seed(text: str) -> int:
    return _whole_number(text, least=0, rule="must be >= 0")


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value or None  # 0: no limit


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
    verify.add_argument(
        "--html",
        metavar="FILE",
        help="also write a self-contained HTML page: every result, and each failure with "
        "pictures of where its gradient is wrong (combines with --json)",
    )
    verify.add_argument(
        "--deadline",
        type=_seconds,
        default=DEFAULT_DEADLINE,
        metavar="SECONDS",
        help="time limit of one call of a forward or backward; a call past it fails its "
        f"derivation with a timeout (default: {DEFAULT_DEADLINE:g}; 0: no limit)",
    )
    verify.add_argument(
        "-j",
        "--jobs",
        type=_positive,
        default=None,
        metavar="N",
        help="derivations verified side by side in N processes "
        "(default: the number of cores; 1: in this process)",
    )
    listing = commands.add_parser("list", help="show the built-in derivations")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _derivations(targets: Sequence[str]) -> list[tuple[Found, int]]:
    """Every derivation the targets hold, with its position in its target (how a worker
    process finds it again), after checking that no two share a name."""
    if not targets:
        from gradcheck.runner import _builtins

        return [(found, index) for index, found in enumerate(_builtins())]
    everything: list[tuple[Found, int]] = []
    for target in targets:
        try:
            everything.extend((found, i) for i, found in enumerate(find_derivations(target)))
        except TargetError as exc:
            raise UsageError(str(exc)) from exc
        except DerivationError as exc:
            raise UsageError(f"{target}: {exc}") from exc
    clash = duplicate_names(found for found, _ in everything)
    if clash is not None:
        raise UsageError(clash)
    return everything


@contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """While the results so far are printed, a second Ctrl-C must not cut them short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _html_target(args: argparse.Namespace) -> Any:
    """The --html file, checked before the (long) verification rather than after it."""
    if not args.html:
        return None
    from gradcheck.display.page import HtmlTargetError, check_html_target

    try:
        return check_html_target(args.html)
    except HtmlTargetError as exc:
        raise UsageError(str(exc)) from exc


def _write_html(target: Any, args: argparse.Namespace, outcomes: Sequence[Outcome]) -> None:
    from gradcheck.display.page import write_page

    options = [f"--seed {args.seed}" if args.seed is not None else ""]
    options += [f"--max-examples {args.max_examples}", f"--dtype {args.dtype}"]
    targets = [shlex.quote(target) for target in args.targets]
    command = " ".join(part for part in ["gradcheck verify", *targets, *options] if part)
    try:
        write_page(target, outcomes, command=command)
    except OSError as exc:
        raise UsageError(f"--html {args.html!r} could not be written: {exc}") from exc
    sys.stderr.write(f"gradcheck: wrote {args.html}\n")


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    # The targets' imports, forwards and backwards may print: stdout stays the command's.
    with prints_to_stderr(out) as own:
        return _verify_targets(args, own)


def _verify_targets(args: argparse.Namespace, out: TextIO) -> int:
    html = _html_target(args)
    derivations = _derivations(args.targets)
    options = RunOptions(args.max_examples, args.seed, args.dtype, args.deadline)
    progress = Progress(sys.stderr, len(derivations))
    table = Table(
        [found.derivation for found, _ in derivations], colour=use_colour(args.color, out)
    )
    if not args.json:
        out.write(table.header() + "\n")
        out.flush()
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        for outcome in run_all(
            derivations,
            options,
            jobs=args.jobs or default_jobs(),
            started=lambda found: progress.start(found.derivation.name),
            progress=progress.update,
        ):
            outcomes.append(outcome)
            if not args.json:  # streamed: a killed run still shows what it did
                progress.close()
                out.write(table.row(outcome) + "\n")
                out.flush()
    except KeyboardInterrupt:
        interrupted = True
    with _ignoring_interrupts():
        progress.close()
        _summary(args, outcomes, out, interrupted=interrupted)
        if html is not None:
            _write_html(html, args, outcomes)
        if interrupted:
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
            return EXIT_INTERRUPTED
    return EXIT_OK if all(o.verdict == "pass" for o in outcomes) else EXIT_FAILED


def _summary(
    args: argparse.Namespace, outcomes: Sequence[Outcome], out: TextIO, *, interrupted: bool
) -> None:
    if args.json:
        payload: dict[str, object] = {
            "results": [outcome.as_json() for outcome in outcomes],
            "seed": args.seed,
            "max_examples": args.max_examples,
            "dtype": args.dtype,
        }
        if interrupted:  # the results are those done before Ctrl-C, not all
            payload["interrupted"] = True
        out.write(json.dumps(payload, indent=2) + "\n")
        out.flush()
        return
    for outcome in outcomes:
        if outcome.verdict != "pass":
            out.write("\n" + outcome.message + "\n")
        elif outcome.report is not None and _kept_notes(outcome):
            # A pass with something to say (keys not in wrt, warnings) still says it.
            lines = "\n".join(f"  note: {note}" for note in _kept_notes(outcome))
            out.write(f"\n{outcome.derivation.name} passed, with notes:\n{lines}\n")
    failed = sum(o.verdict == "fail" for o in outcomes)
    errors = sum(o.verdict == "error" for o in outcomes)
    passed = len(outcomes) - failed - errors
    out.write(f"\n{passed} passed, {failed} failed, {errors} errors\n")
    out.flush()


def _kept_notes(outcome: Outcome) -> list[str]:
    """Notes of a passing report worth showing: not the tally of examples, nor of the
    special points tried (the report and --json keep both)."""
    assert outcome.report is not None
    return [
        note
        for note in outcome.report.notes
        if not note.endswith(("examples passed", "examples tried"))
        and "inconclusive" not in note
        and not note.startswith("special points tried")
    ]


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
    except KeyboardInterrupt:  # while the targets were imported: nothing to show yet
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
