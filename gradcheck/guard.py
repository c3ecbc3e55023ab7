"""User code under guard: a time limit on each call of a forward or a backward, exits turned
into failures, and the warnings it raises collected instead of flooding stderr.

``verify`` and ``check`` open ``limits(deadline=...)`` once; the places that call user code
wrap each call in ``user_call("forward")`` or ``user_call("backward")``. The time limit is a
``SIGALRM`` timer where one exists (the main thread of a POSIX process): it interrupts even a
pure-Python infinite loop. Elsewhere (another thread, Windows) the call is timed and a call
that returns past its deadline still fails, though one that never returns cannot be stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from gradcheck.derivation import DerivationError
from gradcheck.report import Problem, Report

__all__ = [
    "DEFAULT_DEADLINE",
    "CallTimeout",
    "Limits",
    "describe_exit",
    "guarded_search",
    "internal_error",
    "is_user_exit",
    "limits",
    "user_call",
    "validated_deadline",
    "warning_notes",
]

# One call of a forward or a backward, in seconds. A derivation at the default dims takes
# milliseconds per call; a minute means a loop that does not end (or dims far too large).
DEFAULT_DEADLINE = 60.0


class CallTimeout(BaseException):
    """A forward or backward ran past its deadline. A BaseException, like KeyboardInterrupt,
    so that neither the user's ``except Exception`` nor hypothesis's failure handling (which
    would shrink by calling it again) swallows it on its way out of the search."""

    def __init__(self, what: str, elapsed: float, deadline: float) -> None:
        super().__init__(f"{what} took {elapsed:.3g} s, past the deadline of {deadline:g} s")
        self.what = what
        self.elapsed = elapsed
        self.deadline = deadline

    def message(self) -> str:
        return (
            f"the {self.what} took {self.elapsed:.3g} s in one call, past the deadline of "
            f"{self.deadline:g} s per call; it does not end, or is far too slow at these dims "
            "(raise the limit with deadline=/--deadline, or narrow the dims)."
        )


def is_user_exit(exc: BaseException) -> bool:
    """A BaseException from user code that fails the derivation rather than ending the run:
    everything but Ctrl-C (KeyboardInterrupt) and our own timeout."""
    return not isinstance(exc, Exception | KeyboardInterrupt | CallTimeout)


def describe_exit(what: str, exc: BaseException) -> str:
    """'backward called sys.exit(3)' for SystemExit, 'backward raised GeneratorExit' else."""
    if isinstance(exc, SystemExit):
        return f"{what} called sys.exit({exc.code!r})"
    detail = f": {exc}" if str(exc) else ""
    return f"{what} raised {type(exc).__name__}{detail}"


def validated_deadline(deadline: Any) -> float | None:
    """A positive number of seconds, or None for no limit; a clear error otherwise."""
    if deadline is None:
        return None
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not math.isfinite(deadline)
        or deadline <= 0
    ):
        raise ValueError(
            f"deadline={deadline!r} must be a positive number of seconds per call of a "
            f"forward or backward (default {DEFAULT_DEADLINE:g}), or None for no limit."
        )
    return float(deadline)


@dataclass
class Limits:
    """What one ``verify``/``check`` allows its user calls, and the warnings raised in it
    (filled when it ends)."""

    deadline: float | None
    warnings: list[warnings.WarningMessage] = field(default_factory=list)
    alarm: bool = False  # a SIGALRM handler is installed for this run
    # The user call running now, if any: a nested one (a spec inside a backward) is timed
    # by the outer one.
    what: str | None = None
    started: float = 0.0


_current: Limits | None = None


def _can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _on_alarm(signum: int, frame: Any) -> None:
    current = _current
    if current is not None and current.what is not None and current.deadline is not None:
        raise CallTimeout(current.what, time.perf_counter() - current.started, current.deadline)


@contextlib.contextmanager
def limits(*, deadline: float | None) -> Iterator[Limits]:
    """The limits of one ``verify`` or ``check``; nested ones keep the outer ones.

    The SIGALRM handler is installed here, once, not at each call: ``signal.signal`` costs
    tens of microseconds and a search makes thousands of calls. Each call only arms and
    disarms the timer. A timer someone else had set (pytest-timeout) is restored after."""
    global _current
    if _current is not None:
        yield _current
        return
    _current = Limits(deadline)
    previous_handler: Any = None
    previous_timer = (0.0, 0.0)
    started = time.perf_counter()
    if deadline is not None and _can_alarm():
        previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
        previous_timer = signal.setitimer(signal.ITIMER_REAL, 0)
        _current.alarm = True
    try:
        # Once for the whole search, not per call (catch_warnings costs microseconds that a
        # thousand forward calls would feel); "always", so that a count per warning is kept.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield _current
            _current.warnings.extend(caught)
    finally:
        if _current.alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
            if previous_timer[0] > 0:  # what was left of it, at least a moment
                left = max(previous_timer[0] - (time.perf_counter() - started), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, previous_timer[1])
        _current = None


@contextlib.contextmanager
def user_call(what: str) -> Iterator[None]:
    """Run one call of user code (``what`` is 'forward' or 'backward') under the limits."""
    current = _current
    if current is None or current.what is not None:
        yield
        return
    deadline = current.deadline
    current.what, current.started = what, time.perf_counter()
    try:
        if current.alarm:
            assert deadline is not None
            signal.setitimer(signal.ITIMER_REAL, deadline)
        try:
            yield
        finally:
            if current.alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - current.started
        # Without a timer (or when user code swallowed the alarm) a late return still fails.
        if deadline is not None and elapsed > deadline:
            raise CallTimeout(what, elapsed, deadline)
    finally:
        current.what = None


def warning_notes(caught: list[warnings.WarningMessage]) -> tuple[str, ...]:
    """Each distinct warning once, with where it was raised and how often."""
    counts: dict[tuple[str, str, str], int] = {}
    for item in caught:
        if _raised_by_gradcheck(item.filename):
            continue  # the checker's own arithmetic (0/0 on an empty output) is not the user's
        where = f"{item.filename}:{item.lineno}"
        key = (item.category.__name__, str(item.message), where)
        counts[key] = counts.get(key, 0) + 1
    return tuple(
        f"warning: {category}: {message} (at {where})" + (f", {count} times" if count > 1 else "")
        for (category, message, where), count in counts.items()
    )


def guarded_search(
    name: str,
    options: Any,
    deadline: float | None,
    run: Callable[[], Report],
    *,
    reproduce: str | None = None,
) -> Report:
    """``run()`` (a check or a search) under ``deadline``: a call past it ends the run with
    a ``timeout`` failure; the warnings raised along the way become notes of the report."""
    with limits(deadline=deadline) as current:
        try:
            report = run()
        except DerivationError:
            raise  # the declaration, named by gradcheck on purpose: the caller shows it
        except Exception as exc:
            # User code is called only through guarded wrappers that turn its failures into
            # problems or declaration errors, so whatever else escapes is gradcheck's own.
            report = Report(
                derivation=name,
                verdict="error",
                problems=(internal_error(exc, reproduce),),
                dtype=options.dtype,
                seed=options.seed,
                reproduce=reproduce,
            )
        except CallTimeout as exc:
            report = Report(
                derivation=name,
                verdict="fail",
                problems=(Problem("timeout", exc.message()),),
                example=getattr(exc, "example", None),
                dtype=options.dtype,
                seed=options.seed,
                elapsed=exc.elapsed,
                reproduce=reproduce,
            )
    return replace(report, notes=report.notes + warning_notes(current.warnings))


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# gradcheck's own code that is user code in kind: the built-in derivations and course layers.
_USERS_KIND = tuple(_PACKAGE + folder + os.sep for folder in ("derivations", "layers", "training"))


def _raised_by_gradcheck(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE) and not path.startswith(_USERS_KIND)


def internal_error(exc: BaseException, reproduce: str | None = None) -> Problem:
    """An exception raised by gradcheck's own code, said as such: it is a bug of the checker,
    not of the derivation, and the deepest frame of gradcheck's is where to look."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in frames if os.path.abspath(frame.filename).startswith(_PACKAGE)]
    where = ""
    if ours:
        frame = ours[-1]
        relative = os.path.relpath(frame.filename, os.path.dirname(_PACKAGE.rstrip(os.sep)))
        where = f" at {relative}:{frame.lineno} in {frame.name}"
    detail = " ".join(str(exc).split())[:300]
    return Problem(
        "internal",
        f"internal error of gradcheck, not of your code: {type(exc).__name__}: {detail}{where}. "
        "Nothing was concluded about the derivation; please report it"
        + (f" with: {reproduce}" if reproduce else "")
        + ".",
    )
