"""Run the command's derivations, in this process or spread over worker processes.

Either way the outcomes come back one by one, in the order the derivations were found, as
each finishes: the command streams its table from them, and a Ctrl-C leaves it with those
done so far. A worker does not receive derivations (their functions are defined by the
user's module-level code and need not pickle): it imports the target again and takes the
derivation at the same position.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, TextIO

from gradcheck.derivation import Derivation, DerivationError
from gradcheck.guard import DEFAULT_DEADLINE
from gradcheck.report import Report
from gradcheck.targets import Found, find_derivations

__all__ = [
    "Outcome",
    "RunOptions",
    "SlowWatch",
    "default_jobs",
    "reproduce_command",
    "run_all",
    "slow_search_warning",
]


@dataclass(frozen=True)
class RunOptions:
    max_examples: int
    seed: int | None
    dtype: str
    deadline: float | None


@dataclass(frozen=True)
class Outcome:
    """One derivation's result, as the command prints it."""

    derivation: Derivation
    verdict: str  # "pass" | "fail" | "error"
    message: str
    report: Report | None
    elapsed: float
    reproduce: str = ""

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.derivation.name,
            "verdict": self.verdict,
            "message": self.message,
            "parameters": list(self.derivation.wrt),
            "backend": self.derivation.backend,
            "elapsed_s": round(self.elapsed, 4),
            "reproduce": self.reproduce,
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
        return entry


def default_jobs() -> int:
    """The cores this process may use (its affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def reproduce_command(target: str, options: RunOptions, seed: int | None) -> str:
    """The command that reruns one derivation's search exactly."""
    parts = ["gradcheck verify", target]
    if seed is not None:
        parts.append(f"--seed {seed}")
    parts.append(f"--max-examples {options.max_examples}")
    if options.dtype != "float64":
        parts.append(f"--dtype {options.dtype}")
    if options.deadline != DEFAULT_DEADLINE:
        parts.append(f"--deadline {options.deadline:g}" if options.deadline else "--deadline 0")
    return " ".join(part for part in parts if part)


def slow_search_warning(name: str, per_example: float, max_examples: int, *, option: str) -> str:
    """What a slow search will cost, and how to bound it."""
    total = per_example * max_examples
    estimate = f"{total / 60:.0f} min" if total >= 120 else f"{total:.0f} s"
    fewer = max(1, min(max_examples - 1, int(10 / per_example)))
    return (
        f"gradcheck: {name}: one example took {per_example:.1f} s, so {max_examples} examples "
        f"will take about {estimate}. Bound it with fewer examples ({option} {fewer}) or "
        "smaller dims (dims= in the Derivation)."
    )


class SlowWatch:
    """Calls ``warn`` once, when one example of a search takes over a second."""

    def __init__(self, warn: Callable[[float], None]) -> None:
        self.warn = warn
        self.last = time.perf_counter()
        self.warned = False
        self.seen = 0

    def __call__(self, examples: int) -> None:
        now = time.perf_counter()
        took, self.last = now - self.last, now
        # Not on the first example alone: it also pays for the first torch calls (and, in a
        # worker process, its imports), which say nothing about the rest.
        self.seen += 1
        if took > 1.0 and not self.warned and (self.seen > 1 or took > 5.0):
            self.warned = True
            self.warn(took)


def run_one(
    found: Found,
    options: RunOptions,
    progress: Callable[[int], None] | None = None,
    stderr: TextIO | None = None,
) -> Outcome:
    """Verify one derivation; any surprise becomes its error, never the run's end."""
    from gradcheck.search import verify

    derivation = found.derivation
    stream = stderr or sys.stderr

    def warn(took: float) -> None:
        text = slow_search_warning(
            derivation.name, took, options.max_examples, option="--max-examples"
        )
        stream.write(text + "\n")
        stream.flush()

    watch = SlowWatch(warn)

    def on_example(examples: int) -> None:
        watch(examples)
        if progress is not None:
            progress(examples)

    started = time.perf_counter()
    without_seed = reproduce_command(found.alone, options, options.seed)
    try:
        report = verify(
            derivation,
            max_examples=options.max_examples,
            seed=options.seed,
            dtype=options.dtype,
            progress=on_example,
            deadline=options.deadline,
        )
    except DerivationError as exc:
        elapsed = time.perf_counter() - started
        return Outcome(derivation, "error", str(exc), None, elapsed, without_seed)
    except Exception as exc:  # one derivation's surprise must not cost the others' results
        reason = f"gradcheck could not verify {derivation.name!r}: {type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        return Outcome(derivation, "error", reason, None, elapsed, without_seed)
    command = reproduce_command(found.alone, options, report.seed)
    report = replace(report, reproduce=command)
    verdict = {"pass": "pass", "inconclusive": "pass", "fail": "fail"}.get(report.verdict, "error")
    elapsed = time.perf_counter() - started
    return Outcome(derivation, verdict, str(report), report, elapsed, command)


# --- worker processes ---------------------------------------------------------------------

_loaded: dict[str, list[Found]] = {}


def _worker_start() -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent alone answers it
    # (it prints what is done and stops the workers), so a worker must not die with a
    # traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _work(target: str, index: int, options: RunOptions) -> tuple[str, str, Report | None, float]:
    """In a worker: import ``target`` (once per worker) and verify its ``index``-th one."""
    if target not in _loaded:
        _loaded[target] = _builtins() if target == "" else find_derivations(target)
    outcome = run_one(_loaded[target][index], options)
    report = outcome.report
    if report is not None:  # what the parent prints needs no arrays: keep the pickle small
        report = replace(report, example=None, gradients={})
    return outcome.verdict, outcome.message, report, outcome.elapsed


def _builtins() -> list[Found]:
    from gradcheck.derivations import BUILTINS

    return [Found("", d.name, d, f"gradcheck.derivations:BUILTINS.{d.name}") for d in BUILTINS]


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the workers now, not when their searches finish."""
    # ProcessPoolExecutor has no public way to stop running work before Python 3.14; its
    # process table is gone after shutdown, so it is read first.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)


def run_all(
    found: Sequence[tuple[Found, int]],
    options: RunOptions,
    *,
    jobs: int,
    started: Callable[[Found], None],
    progress: Callable[[int], None] | None = None,
) -> Iterator[Outcome]:
    """Outcomes in the order of ``found`` ((what, its position in its target)), as they
    finish. ``started`` is called for each derivation before its outcome is awaited."""
    if jobs <= 1 or len(found) <= 1:
        for item, _ in found:
            started(item)
            yield run_one(item, options, progress)
        return
    # spawn, not fork: a forked torch with its thread pools started can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(found)), mp_context=context, initializer=_worker_start
    )
    try:
        futures: list[Future[tuple[str, str, Report | None, float]]] = [
            pool.submit(_work, item.target, index, options) for item, index in found
        ]
        for (item, _), future in zip(found, futures, strict=True):
            started(item)
            try:
                verdict, message, report, elapsed = future.result()
            except BrokenProcessPool:
                reason = (
                    f"gradcheck could not verify {item.derivation.name!r}: its worker process "
                    "died (the derivation, or another one, ended the process: os._exit, a "
                    "crash in native code); rerun with -j 1 to see which"
                )
                verdict, message, report, elapsed = "error", reason, None, 0.0
            except Exception as exc:
                reason = (
                    f"gradcheck could not verify {item.derivation.name!r}: "
                    f"{type(exc).__name__}: {exc}"
                )
                verdict, message, report, elapsed = "error", reason, None, 0.0
            command = reproduce_command(
                item.alone, options, report.seed if report is not None else options.seed
            )
            yield Outcome(item.derivation, verdict, message, report, elapsed, command)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
