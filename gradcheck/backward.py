"""Run a hand backward safely: fresh copies in, every way it can go wrong named, never a crash."""

from __future__ import annotations

import contextlib
import copy
import inspect
import threading
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from gradcheck.derivation import Derivation, DerivationError
from gradcheck.report import Problem

__all__ = ["BackwardResult", "run_backward", "shape_hint", "single_threaded_blas"]

DTYPES = {"float64": (np.float64, torch.float64), "float32": (np.float32, torch.float32)}


@dataclass(frozen=True)
class BackwardResult:
    gradients: dict[str, np.ndarray]  # float64 copies of what came back, for the names that did
    problems: tuple[Problem, ...]
    unchecked: tuple[str, ...] = ()  # names returned that are not in wrt


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
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.to(torch.float32)  # exact; numpy has no bfloat16
        return value.numpy()
    return np.asarray(value)


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


def _where_raised(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
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
        with single_threaded_blas(derivation.backend):
            returned = derivation.backward(**arguments, **copy.deepcopy(dict(params or {})))
    except Exception as exc:  # the hand derivation is user code: any failure is a verdict
        message = f"backward raised {type(exc).__name__}: {exc}{_where_raised(exc)}"
        return BackwardResult({}, (Problem("raised", message),))

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
    return BackwardResult(gradients, tuple(problems), unchecked)
