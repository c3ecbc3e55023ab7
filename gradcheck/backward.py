"""Run a hand backward safely: fresh copies in, every way it can go wrong named, never a crash."""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import threading
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from gradcheck.derivation import Derivation, DerivationError
from gradcheck.guard import describe_exit, is_user_exit, user_call
from gradcheck.report import Problem

__all__ = [
    "BackwardResult",
    "half_precision_problem",
    "run_backward",
    "shape_hint",
    "single_threaded_blas",
]

DTYPES = {"float64": (np.float64, torch.float64), "float32": (np.float32, torch.float32)}


@dataclass(frozen=True)
class BackwardResult:
    gradients: dict[str, np.ndarray]  # float64 copies of what came back, for the names that did
    problems: tuple[Problem, ...]
    unchecked: tuple[str, ...] = ()  # names returned that are not in wrt
    # name -> 'float16' or 'bfloat16' for a gradient returned in half precision: if it
    # fails, the dtype is named as the likely cause (an exact one, 2 * x at 0.5, passes)
    half_precision: dict[str, str] = field(default_factory=dict)


_BLAS = ThreadpoolController()


_LIMITED = threading.local()


@contextlib.contextmanager
def single_threaded_blas(backend: str = "numpy") -> Iterator[None]:
    """OpenBLAS threads busy-wait after a call and then starve the torch calls that follow
    (measured: a check at the seeds' size took 120 ms instead of 42 ms on 2 cores). A check
    judges correctness, not speed, so the numpy backward runs on one BLAS thread. Inside an
    enclosing limit (``verify`` holds one over its whole search) nothing is done again:
    setting and restoring the limit cost 0.1-0.6 ms, more than a small example's work."""
    if backend != "numpy" or getattr(_LIMITED, "active", False):
        yield
        return
    with _BLAS.limit(limits=1, user_api="blas"):
        _LIMITED.active = True
        try:
            yield
        finally:
            _LIMITED.active = False


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.layout != torch.strided:
            # A sparse gradient (an embedding's) is a gradient all the same: judge its values.
            value = value.to_dense()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.to(torch.float32)  # exact; numpy has no bfloat16
        return value.numpy()
    return np.asarray(value)


def half_precision_problem(name: str, half: str, dtype: str) -> Problem:
    return Problem(
        "dtype",
        f"gradient for {name!r} comes back as {half}, in a {dtype} check: a dtype problem "
        "rather than a wrong derivation. It keeps about 3 significant digits; compute it in "
        f"{dtype} (drop a .half(), .bfloat16() or np.float16 on the way).",
        parameter=name,
    )


def _half_precision(value: Any) -> str | None:
    """'float16' or 'bfloat16' for a gradient in one of them, else None."""
    dtype = getattr(value, "dtype", None)
    if dtype in (torch.float16, torch.bfloat16):
        return str(dtype).removeprefix("torch.")
    if isinstance(value, np.ndarray | np.generic) and value.dtype == np.float16:
        return "float16"
    return None


# (backward, argument names) already bound once: the binding cannot fail on a later call
# with the same names, and inspecting the signature cost more than a small backward.
_BOUND: set[tuple[Any, tuple[str, ...]]] = set()


def _check_signature(derivation: Derivation, arguments: Mapping[str, Any]) -> None:
    """A backward that cannot take the arguments is a declaration problem, not a verdict."""
    key = (derivation.backward, tuple(arguments))
    try:
        if key in _BOUND:
            return
    except TypeError:  # an unhashable callable: inspect every time
        key = None  # type: ignore[assignment]
    try:
        signature = inspect.signature(derivation.backward)
    except (TypeError, ValueError):  # builtins and some C callables have none: just call
        return
    try:
        signature.bind(**arguments)
        if key is not None:
            _BOUND.add(key)
    except TypeError as exc:
        vjp = "grad_output" in arguments
        raise DerivationError(
            f"Derivation {derivation.name!r}: backward cannot be called with "
            f"{', '.join(arguments)} ({exc}). "
            + (
                "The forward returns a tensor with dims, so the backward also receives "
                "grad_output: accept it, or return a 0-d loss from the forward."
                if vjp
                else "It receives every input of shapes (and every param) by name."
            )
        ) from None


def _library_folders() -> tuple[str, ...]:
    """Folders whose frames are not the user's: the standard library, installed packages,
    and gradcheck's own engine (its built-in derivations stay the user's kind of code)."""
    import sysconfig

    folders = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    folders.add(str(Path(np.__file__).resolve().parent.parent))
    folders.add(str(Path(torch.__file__).resolve().parent.parent))
    return tuple(str(Path(folder).resolve()) + os.sep for folder in folders)


_ENGINE = str(Path(__file__).resolve().parent) + os.sep
_BUILTINS = _ENGINE + "derivations" + os.sep


def _is_users(filename: str, libraries: tuple[str, ...]) -> bool:
    path = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    if path.startswith(_ENGINE):
        return path.startswith(_BUILTINS)
    return not path.startswith(libraries)


def _where_raised(exc: BaseException) -> str:
    """The deepest frame in the user's own code: a crash inside numpy is located at the
    user's line that called numpy, not at numpy/_core/fromnumeric.py."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    libraries = _library_folders()
    users = [frame for frame in frames if _is_users(frame.filename, libraries)]
    last = (users or frames)[-1]
    return f" (at {last.filename}:{last.lineno} in {last.name})"


def _unchanged(after: np.ndarray, before: np.ndarray) -> bool:
    """Equal element by element (NaN equal to NaN), a million elements at a time:
    ``np.array_equal(..., equal_nan=True)`` copies both arrays whole (144 MB at 3000x3000)."""
    if after.size <= 1 << 20:
        return bool(np.array_equal(after, before, equal_nan=True))
    a, b = np.ravel(after), np.ravel(before)
    step = 1 << 20
    return all(
        np.array_equal(a[i : i + step], b[i : i + step], equal_nan=True)
        for i in range(0, a.size, step)
    )


def _where_defined(function: Any) -> str:
    code = getattr(function, "__code__", None)
    if code is None:
        return ""
    return f" (at {code.co_filename}:{code.co_firstlineno} in {code.co_name})"


def _raised_problem(exc: BaseException) -> Problem:
    """What went wrong when the backward did not return: its own exception, an exit, or a
    course-style forward that disagrees with the spec (the backward never ran)."""
    if not isinstance(exc, Exception):
        return Problem("raised", describe_exit("backward", exc) + _where_raised(exc))
    forward = getattr(exc, "forward", None)
    if isinstance(exc, AssertionError) and type(exc).__name__ == "ForwardMismatch":
        return Problem("forward_mismatch", _forward_mismatch(exc, forward))
    # A Function's forward runs inside its "backward" call here; it tags its own errors.
    phase = getattr(exc, "gradcheck_phase", "backward")
    return Problem("raised", f"{phase} raised {type(exc).__name__}: {exc}{_where_raised(exc)}")


def _forward_mismatch(exc: BaseException, forward: Any) -> str:
    """The course forward's out against the spec's, at its worst element."""
    message = f"{exc}{_where_defined(forward)}; the backward was not judged."
    expected = getattr(exc, "expected", None)
    actual = getattr(exc, "actual", None)
    if (
        isinstance(expected, np.ndarray)
        and isinstance(actual, np.ndarray)
        and expected.shape == actual.shape
        and expected.size
    ):
        difference = np.abs(actual.astype(np.float64) - expected)
        index = np.unravel_index(int(np.argmax(difference)), expected.shape)
        at = str(tuple(int(i) for i in index)) if expected.ndim else ""
        message += (
            f" At out{at}: expected {float(expected[index]):.6g} (spec forward), "
            f"got {float(actual[index]):.6g}."
        )
    return message


def shape_hint(got: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """Why a gradient of shape ``got`` may have come back for an input of shape ``expected``."""
    if got == expected[::-1] and len(got) > 1:
        return "; it is transposed"
    if (
        got
        and np.prod(got) == np.prod(expected)
        and [d for d in got if d != 1] == [d for d in expected if d != 1]
    ):
        if len(got) > len(expected):
            return "; it has extra size-1 dims (keepdims=True, or a missing .reshape/[0])"
        if len(got) < len(expected):
            return "; size-1 dims were dropped (.squeeze() collapses a batch or width of 1)"
    return ""


def run_backward(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    grad_output: np.ndarray | None,
    dtype: str,
    params: Mapping[str, Any] | None = None,
) -> BackwardResult:
    """Call ``derivation.backward`` on copies of ``point`` cast to ``dtype``; check what it did."""
    np_dtype = DTYPES[dtype][0]
    integer_inputs = set(derivation.integers or {})
    arguments: dict[str, Any] = {}
    for name, value in point.items():
        # Always a copy: the caller's stays untouched. Integer inputs (labels) keep int64.
        array = np.array(value, dtype=np.int64 if name in integer_inputs else np_dtype)
        arguments[name] = torch.from_numpy(array) if derivation.backend == "torch" else array
    if grad_output is not None:
        go = np.array(grad_output, dtype=np_dtype)
        arguments["grad_output"] = torch.from_numpy(go) if derivation.backend == "torch" else go
    # What each argument must still hold afterwards: the point itself, cast as handed over
    # (no copy in float64, where a copy of a 3000x3000 input was 72 MB).
    originals = {**point, "grad_output": grad_output}
    pristine = {
        name: np.asarray(originals[name]).astype(_as_numpy(value).dtype, copy=False)
        for name, value in arguments.items()
    }
    _check_signature(derivation, {**arguments, **dict(params or {})})

    try:
        with single_threaded_blas(derivation.backend), user_call("backward"):
            returned = derivation.backward(**arguments, **copy.deepcopy(dict(params or {})))
    except BaseException as exc:  # the hand derivation is user code: any failure is a verdict
        if not isinstance(exc, Exception) and not is_user_exit(exc):
            raise  # Ctrl-C, or past the deadline: the run stops or the search does
        return BackwardResult({}, (_raised_problem(exc),))

    problems: list[Problem] = []
    for name, value in arguments.items():
        after = _as_numpy(value)
        if after.shape != pristine[name].shape or not _unchanged(after, pristine[name]):
            same_shape = after.shape == pristine[name].shape
            changed = int(np.sum(after != pristine[name])) if same_shape else after.size
            problems.append(
                Problem(
                    "mutated",
                    f"backward modified its argument {name!r} in place ({changed} of "
                    f"{pristine[name].size} elements changed); work on a copy "
                    "(e.g. grad = grad_output.copy() / .clone()) before writing into it.",
                    parameter=name,
                )
            )
    if not isinstance(returned, Mapping):
        problems.append(
            Problem(
                "returned",
                f"backward returned {type(returned).__name__}; it must return a mapping "
                f"{{name: gradient}} with an entry for each of {', '.join(derivation.wrt)}.",
            )
        )
        return BackwardResult({}, tuple(problems))

    gradients: dict[str, np.ndarray] = {}
    narrow: dict[str, str] = {}
    for name in derivation.wrt:
        if name not in returned:
            problems.append(
                Problem(
                    "missing",
                    f"backward returned no gradient for {name!r} (it returned: "
                    f"{', '.join(map(str, returned)) or 'nothing'}).",
                    parameter=name,
                )
            )
            continue
        value = returned[name]
        if not isinstance(value, torch.Tensor | np.ndarray | np.generic | float | int):
            problems.append(
                Problem(
                    "type",
                    f"gradient for {name!r} is a {type(value).__name__}; return a numpy "
                    "array, a torch tensor, or a float for a scalar input.",
                    parameter=name,
                )
            )
            continue
        array = _as_numpy(value)
        expected = tuple(point[name].shape)
        half = _half_precision(value)
        if half is not None:
            narrow[name] = half
        if not np.issubdtype(array.dtype, np.floating):
            problems.append(
                Problem(
                    "dtype",
                    f"gradient for {name!r} has dtype {array.dtype}; a gradient must be "
                    "floating point (an integer result usually means an integer literal "
                    "or a mask was returned instead of a product with it).",
                    parameter=name,
                )
            )
            continue
        if tuple(array.shape) != expected:
            problems.append(
                Problem(
                    "shape",
                    f"gradient for {name!r} has shape {tuple(array.shape)}, but {name!r} has "
                    f"shape {expected}{shape_hint(tuple(array.shape), expected)}. The gradient "
                    "of an input has exactly that input's shape, even where broadcasting "
                    "would hide the difference.",
                    parameter=name,
                )
            )
            continue
        finite = np.isfinite(array)
        if not finite.all():
            nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
            problems.append(
                Problem(
                    "non_finite",
                    f"gradient for {name!r} holds {nan} NaN and {inf} inf of {array.size} "
                    "elements at a point where the spec's gradient is finite.",
                    parameter=name,
                )
            )
            continue
        gradients[name] = np.array(array, dtype=np.float64)
    unchecked = tuple(str(name) for name in returned if name not in derivation.wrt)
    return BackwardResult(gradients, tuple(problems), unchecked, narrow)
