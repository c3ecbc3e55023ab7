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
import pickle
import queue
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
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
    "prints_to_stderr",
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
            if self.report.verdict == "fail":
                found = self.report.localization
                entry["localization"] = None if found is None else found.as_json()
        return entry


def default_jobs() -> int:
    """The cores this process may use (its affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def reproduce_command(target: str, options: RunOptions, seed: int | None) -> str:
    """The command that reruns one derivation's search exactly, as a shell reads it (a
    target with a space or a quote in its path or name is quoted)."""
    parts = ["gradcheck verify", shlex.quote(target)]
    if seed is not None:
        parts.append(f"--seed {seed}")
    parts.append(f"--max-examples {options.max_examples}")
    if options.dtype != "float64":
        parts.append(f"--dtype {options.dtype}")
    if options.deadline != DEFAULT_DEADLINE:
        parts.append(f"--deadline {options.deadline:g}" if options.deadline else "--deadline 0")
    return " ".join(part for part in parts if part)


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


@contextmanager
def prints_to_stderr(out: TextIO) -> Iterator[TextIO]:
    """While the user's code runs in this process, what it prints goes to stderr, so that
    stdout carries the command's output alone (``--json`` stays one JSON object). Yields the
    stream that the command's own output goes to: ``out``, or where ``out`` is file
    descriptor 1, a copy of it, as descriptor 1 itself goes to stderr too (native code and
    ``os.write(1, ...)`` write there, and worker processes inherit it)."""
    for stream in (out, sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(1) if _fileno(out) == 1 and _fileno(sys.stderr) == 2 else None
    if saved is not None:
        os.dup2(2, 1)
        encoding = getattr(out, "encoding", None) or "utf-8"
        own: TextIO = open(saved, "w", encoding=encoding, buffering=1, closefd=False)  # noqa: SIM115
    else:
        own = out
    previous, sys.stdout = sys.stdout, sys.stderr
    try:
        yield own
    finally:
        sys.stdout = previous
        if saved is not None:
            own.flush()
            sys.stderr.flush()
            os.dup2(saved, 1)
            os.close(saved)


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
    """Calls ``warn`` once, with the time per example, when examples take over a second.

    The first example is left out (it also pays for the first torch calls and, in a worker,
    for its imports) unless it alone takes over 5 s; after it, the mean of the examples so
    far decides, so that one example slowed by a busy machine does not warn."""

    def __init__(
        self, warn: Callable[[float], None], *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.warn = warn
        self.clock = clock
        self.last = clock()
        self.warned = False
        self.seen = 0
        self.total = 0.0  # seconds of the examples after the first

    def __call__(self, examples: int) -> None:
        now = self.clock()
        took, self.last = now - self.last, now
        self.seen += 1
        if self.warned:
            return
        if self.seen == 1:
            if took > 5.0:
                self.warned = True
                self.warn(took)
            return
        self.total += took
        mean = self.total / (self.seen - 1)
        if mean > 1.0:
            self.warned = True
            self.warn(mean)


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
#
# The command's own process verifies derivations from the front of the list, in order, while
# N - 1 workers start (a spawned worker imports torch and the target again: seconds) and then
# take derivations from the back. A short run therefore never waits for workers, a long one
# is spread over all N, and the rows still come out in the order of -j 1.


@dataclass
class _Claims:
    """The two ends of the list still to do, shared by the processes under one lock."""

    lock: Any
    front: Any  # multiprocessing.Value("i"): the next index the command takes
    back: Any  # the next index a worker takes

    def take_front(self) -> int | None:
        with self.lock:
            if self.front.value > self.back.value:
                return None
            self.front.value += 1
            return int(self.front.value - 1)

    def take_back(self) -> int | None:
        with self.lock:
            if self.back.value < self.front.value:
                return None
            self.back.value -= 1
            return int(self.back.value + 1)


_loaded: dict[str, list[Found]] = {}


def _load(target: str) -> list[Found]:
    if target not in _loaded:
        _loaded[target] = _builtins() if target == "" else find_derivations(target)
    return _loaded[target]


def _worker(
    jobs: list[tuple[str, int]], options: RunOptions, claims: _Claims, results: Any
) -> None:
    """In a worker: take derivations from the back until none is left; each is found again
    by its target and position (the user's functions need not pickle)."""
    # Ctrl-C reaches every process of the terminal's group: the command alone answers it
    # (it prints what is done and stops the workers), so a worker ends without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker has no output of its own on stdout: what the user's code prints goes to
    # stderr, whatever the command's descriptor 1 is (its results travel on the queue).
    sys.stdout.flush()
    with suppress(OSError):
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    while (index := claims.take_back()) is not None:
        results.put(("started", index, os.getpid()))
        target, position = jobs[index]
        try:
            outcome = run_one(_load(target)[position], options)
            payload: Any = (outcome.verdict, outcome.message, _packed(outcome.report))
            payload += (outcome.elapsed,)
        except Exception as exc:  # a target that no longer imports the same, say
            payload = ("error", f"{type(exc).__name__}: {exc}", None, 0.0)
        results.put(("done", index, payload))


# A worker's report crosses to the command whole, so that the command's page and JSON have
# what a report made in its own process has: the example, the gradients pictured, the
# localization. It is pickled by the worker rather than by the queue's feeder thread, which
# would drop a report that does not pickle and leave the command waiting, and unpickled by
# the command apart from the verdict and message, which reach it whatever happens to it.


def _packed(report: Report | None) -> bytes | None:
    """The report as bytes; one that does not pickle (a hyperparameter that is a lambda,
    say) without its example and gradients, saying so."""
    if report is None:
        return None
    try:
        return pickle.dumps(report)
    except Exception as exc:  # whatever fails to pickle is answered alike
        note = (
            "the example and the gradients stayed in the worker process, as they do not "
            f"pickle ({type(exc).__name__}: {exc}); rerun with -j 1 to see them"
        )
        stripped = replace(
            report, example=None, gradients={}, larger=None, notes=(*report.notes, note)
        )
        return pickle.dumps(stripped)


def _unpacked(payload: tuple[str, str, bytes | None, float]) -> tuple[str, str, Any, float]:
    verdict, message, packed, elapsed = payload
    try:
        report = None if packed is None else pickle.loads(packed)
    except Exception:  # the verdict and message stand without it
        report = None
    return verdict, message, report, elapsed


def _builtins() -> list[Found]:
    from gradcheck.derivations import BUILTINS

    return [Found("", d.name, d, f"gradcheck.derivations:BUILTINS.{d.name}") for d in BUILTINS]


def _died(name: str) -> tuple[str, str, None, float]:
    reason = (
        f"gradcheck could not verify {name!r}: its worker process died (the derivation ended "
        "the process: os._exit, a crash in native code); rerun it with -j 1"
    )
    return "error", reason, None, 0.0


def run_all(
    found: Sequence[tuple[Found, int]],
    options: RunOptions,
    *,
    jobs: int,
    started: Callable[[Found], None],
    progress: Callable[[int], None] | None = None,
) -> Iterator[Outcome]:
    """Outcomes in the order of ``found`` ((what, its position in its target)), each as
    soon as it and those before it are done. ``started`` is called for each derivation
    before its outcome is awaited."""
    if jobs <= 1 or len(found) <= 1:
        for item, _ in found:
            started(item)
            yield run_one(item, options, progress)
        return
    # spawn, not fork: a forked torch whose thread pools have started can deadlock.
    context = multiprocessing.get_context("spawn")
    claims = _Claims(context.Lock(), context.Value("i", 0), context.Value("i", len(found) - 1))
    results = context.Queue()
    work = [(item.target, position) for item, position in found]
    workers = [
        context.Process(target=_worker, args=(work, options, claims, results), daemon=True)
        for _ in range(min(jobs, len(found)) - 1)
    ]
    for process in workers:
        process.start()
    done: dict[int, tuple[str, str, Report | None, float]] = {}
    running: dict[int, int] = {}  # index -> the process id of the worker verifying it
    try:
        for index, (item, _) in enumerate(found):
            started(item)
            if index not in done and index not in running and claims.take_front() == index:
                yield run_one(item, options, progress)
                continue
            while index not in done:  # a worker has it: wait for its result
                try:
                    kind, which, payload = results.get(timeout=0.5)
                except queue.Empty:
                    alive = {process.pid for process in workers if process.is_alive()}
                    for lost in [i for i, pid in running.items() if pid not in alive]:
                        done[lost] = _died(found[lost][0].derivation.name)
                        del running[lost]
                    if index not in done and index not in running and not alive:
                        # every worker is gone, none with this one: it is ours after all
                        mine = run_one(item, options, progress)
                        done[index] = (mine.verdict, mine.message, mine.report, mine.elapsed)
                    continue
                if kind == "started":
                    running[which] = payload
                else:
                    running.pop(which, None)
                    done[which] = _unpacked(payload)
            verdict, message, report, elapsed = done.pop(index)
            seed = report.seed if report is not None else options.seed
            command = reproduce_command(item.alone, options, seed)
            yield Outcome(item.derivation, verdict, message, report, elapsed, command)
    finally:  # done, or Ctrl-C: workers still starting (or still searching) end now
        for process in workers:
            if process.is_alive():
                process.terminate()
        for process in workers:
            process.join(timeout=5)
        results.close()
        results.cancel_join_thread()
