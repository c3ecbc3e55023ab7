"""The first wrong line of a hand backward: trace it, and hold each value to the spec's.

On the failing example:

1. the hand backward runs under ``sys.settrace``; after every line of the user's own code
   (not numpy's, torch's or gradcheck's machinery) each local float array that is new or
   changed, in place included, is recorded;
2. the spec runs under a ``TorchFunctionMode`` that records every intermediate tensor, and
   autograd gives the gradient of the loss with respect to each (``dL/dh``), and to each
   input;
3. each recorded value is matched by shape and value to those: a forward value (``h``,
   ``h_relu``) or a gradient (``grad_y_pred = dL/dy_pred``);
4. a line is blamed when its new value matches nothing, every array the line reads matched
   something (the lines before it were right), and putting the spec's value there instead,
   with the rest of the backward run as written, makes every returned gradient right. That
   last test is what makes it a finding rather than a guess: when no line passes all three,
   the answer is None.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import linecache
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from gradcheck.backward import DTYPES, single_threaded_blas
from gradcheck.derivation import Derivation
from gradcheck.evaluation import evaluate, make_options
from gradcheck.references.autograd import as_tensor
from gradcheck.report import Example, GradientPair, Localization, Report
from gradcheck.tolerances import for_dtype

__all__ = ["localize"]

# Line events after which tracing gives up (a backward looping over a large example).
MAX_LINE_EVENTS = 50_000
# Substitutions tried before giving up: each reruns the backward.
MAX_TRIALS = 40
# Of those, for a local that copies a forward value another local holds (h_relu = h.copy()).
ALIAS_TRIALS = 4

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# gradcheck's own hand derivations are user code like any other; the rest is machinery.
_USER_CODE_IN_PACKAGE = tuple(
    os.path.join(_PACKAGE, *part)
    for part in (
        ("derivations",),
        ("layers", "dense.py"),
        ("layers", "convolution.py"),
        ("layers", "normalization.py"),
        ("layers", "losses.py"),
        ("training", "systems"),
    )
)
_LIBRARIES = tuple(
    {os.path.dirname(os.path.abspath(module.__file__ or "")) for module in (np, torch, os)}
)


def _is_user_code(filename: str) -> bool:
    if filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    if path.startswith(_USER_CODE_IN_PACKAGE):
        return True
    if path.startswith(_PACKAGE):
        return False
    return not path.startswith(_LIBRARIES) and "site-packages" not in path


# -- the spec: its intermediates and autograd's gradient of the loss for each ---------------


@dataclass
class Quantity:
    """A value of the spec: a forward value, or dL/d of one (``forward`` set)."""

    value: np.ndarray
    op: str  # the input's name, or the op that computed it
    operands: tuple[Quantity | str, ...] = ()
    operator: str | None = None  # "@" for a matmul: written between its two operands
    name: str | None = None  # the user's local it was first matched to
    forward: Quantity | None = None
    inside: bool = False  # computed inside a composite op (a layer norm's mean), no gradient

    def describe(self) -> str:
        if self.forward is not None:
            inner = self.forward.label()
            return f"dL/d{inner}" if inner.isidentifier() else f"dL/d({inner})"
        return self.label()

    def label(self, depth: int = 0) -> str:
        if self.name is not None:
            return self.name
        if not self.operands:
            return self.op
        if depth > 2:
            return "..."
        parts = [o if isinstance(o, str) else o.label(depth + 1) for o in self.operands]
        parts = [f"({p})" if " " in p and self.operator is not None else p for p in parts]
        if self.operator is not None and len(parts) == 2:
            return f"{parts[0]} {self.operator} {parts[1]}"
        return f"{self.op}({', '.join(parts[:1])})"


_OPERATORS = {"matmul": "@", "mm": "@", "add": "+", "sub": "-", "rsub": "-", "mul": "*",
              "div": "/", "truediv": "/", "pow": "**"}  # fmt: skip


class _Recorder(TorchFunctionMode):
    """Keeps every floating-point tensor the spec computes, with how it was computed."""

    def __init__(self, leaves: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.quantities: dict[int, tuple[torch.Tensor, Quantity]] = {}
        # Forward values inside a composite op (a layer norm's mean and variance): no
        # gradient of their own, but values a hand backward's lines can be held to.
        self.inside: list[Quantity] = []
        for name, tensor in leaves.items():
            quantity = Quantity(np.zeros(0), name, name=name)
            self.quantities[id(tensor)] = (tensor, quantity)

    def _operand(self, arg: Any) -> Quantity | str:
        if isinstance(arg, torch.Tensor):
            return self.quantities[id(arg)][1] if id(arg) in self.quantities else "..."
        return f"{arg:g}" if isinstance(arg, int | float) else "..."

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        if (
            isinstance(out, torch.Tensor)
            and out.is_floating_point()
            and out.requires_grad
            and id(out) not in self.quantities
        ):
            op = getattr(func, "__name__", "op").strip("_")
            operands = tuple(self._operand(a) for a in args[:2])
            quantity = Quantity(np.zeros(0), op, operands, _OPERATORS.get(op))
            with contextlib.suppress(RuntimeError):
                out.retain_grad()
                self.quantities[id(out)] = (out, quantity)
            if func is torch.nn.functional.layer_norm:
                self.inside.extend(_layer_norm_parts(args, kwargs or {}, operands[0]))
            elif func is torch.nn.functional.cross_entropy:
                self.inside.extend(_cross_entropy_parts(args, kwargs or {}, operands[0]))
        return out


def _layer_norm_parts(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], source: Quantity | str
) -> list[Quantity]:
    """The values a layer norm computes inside its one op, that a hand backward recomputes
    by name: the mean and variance over the normalised dims, the standard deviation with eps,
    and the normalised input (``mean``, ``var``, ``std``, ``xhat``)."""
    x = args[0]
    shape = args[1] if len(args) > 1 else kwargs["normalized_shape"]
    eps = args[4] if len(args) > 4 else kwargs.get("eps", 1e-5)
    dims = tuple(range(-len(tuple(shape)), 0))
    with torch.no_grad():
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, unbiased=False, keepdim=True)
        std = torch.sqrt(var + eps)
        parts = {"mean": mean, "var": var, "std": std, "normalized": (x - mean) / std}
    return _inside(parts, source)


def _inside(parts: Mapping[str, torch.Tensor], source: Quantity | str) -> list[Quantity]:
    return [
        Quantity(value.detach().numpy().copy(), op, (source,), inside=True)
        for op, value in parts.items()
    ]


def _cross_entropy_parts(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], source: Quantity | str
) -> list[Quantity]:
    """What a cross-entropy computes inside its one op, for (N, C) scores and class labels
    with no weights or smoothing: the softmax, its log, and softmax - one_hot(labels), the
    gradient of the summed loss (the mean's is that over N)."""
    scores = args[0]
    labels = args[1] if len(args) > 1 else kwargs.get("target")
    plain = all(
        kwargs.get(option) in (None, default)
        for option, default in (("weight", None), ("label_smoothing", 0.0))
    )
    if (
        len(args) > 2
        or not plain
        or not isinstance(labels, torch.Tensor)
        or scores.ndim != 2
        or labels.ndim != 1
        or labels.is_floating_point()
        or bool((labels < 0).any())
    ):
        return []
    with torch.no_grad():
        probabilities = torch.softmax(scores, dim=1)
        one_hot = torch.nn.functional.one_hot(labels, scores.shape[1]).to(scores.dtype)
        parts = {
            "softmax": probabilities,
            "log_softmax": torch.log_softmax(scores, dim=1),
            "softmax - one_hot": probabilities - one_hot,
        }
    return _inside(parts, source)


def _spec_quantities(derivation: Derivation, example: Example) -> list[Quantity]:
    """The inputs, every intermediate of the spec, and dL/d of each."""
    leaves = {}
    for name, value in example.inputs.items():
        tensor = as_tensor(np.asarray(value))
        if tensor.is_floating_point():
            tensor.requires_grad_(True)
            leaves[name] = tensor
        else:
            leaves[name] = tensor
    recorder = _Recorder({n: t for n, t in leaves.items() if t.requires_grad})
    with torch.enable_grad(), recorder:
        out = derivation.forward(**leaves, **copy.deepcopy(dict(example.params)))
    if example.grad_output is not None:
        loss = (out * as_tensor(np.asarray(example.grad_output))).sum()
    else:
        loss = out.sum()
    loss.backward()
    quantities: list[Quantity] = []
    for tensor, forward in recorder.quantities.values():
        forward.value = tensor.detach().numpy().copy()
        quantities.append(forward)
        if tensor.grad is not None:
            gradient = Quantity(tensor.grad.detach().numpy().copy(), "grad", forward=forward)
            quantities.append(gradient)
    quantities.extend(recorder.inside)
    if example.grad_output is not None:
        output = recorder.quantities.get(id(out))
        go = Quantity(np.asarray(example.grad_output, dtype=np.float64), "grad_output",
                      name="grad_output")  # fmt: skip
        go.forward = output[1] if output is not None else None
        quantities.append(go)
    return quantities


# -- the hand backward, traced ---------------------------------------------------------------


@dataclass
class Event:
    """A local array that got a new value on a line."""

    file: str
    line: int
    variable: str
    value: np.ndarray
    before: dict[str, np.ndarray]  # the arrays of the frame just before the line ran
    occurrence: int  # how many times this (file, line, variable) was recorded before
    counters: dict[str, int] = field(default_factory=dict)  # the frame's int locals
    # Boolean arrays the frame computed (mask = window == window.max()): values no spec value
    # can vouch for, so a line that reads one is not blamed (the mask's line may be wrong).
    masks: frozenset[str] = frozenset()


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return value
    if (
        isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and value.layout == torch.strided
    ):
        return value.detach().cpu().to(torch.float64).numpy()
    return None


def _is_mask(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype == np.bool_ and value.ndim > 0
    return isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.ndim > 0


def _snapshot(frame: FrameType) -> dict[str, np.ndarray]:
    arrays = {}
    for name, value in frame.f_locals.items():
        array = _as_array(value)
        if array is not None:
            arrays[name] = np.array(array, dtype=np.float64)
    return arrays


class _Tracer:
    """Records every new or changed local array of user code, line by line; can write the
    spec's value into one of them when it appears (``replace``)."""

    def __init__(self, replace: tuple[str, int, str, int, np.ndarray] | None = None) -> None:
        self.events: list[Event] = []
        self.counts: dict[tuple[str, int, str], int] = {}
        self.frames: dict[int, tuple[int, dict[str, np.ndarray]]] = {}
        self.lines = 0
        self.replace = replace
        self.replaced = False
        self.overflow = False
        # (file, first line, value) of each return of a function called from outside user
        # code: the backward itself, whose return expression may hold the mistake.
        self.returned: list[tuple[str, int, Any]] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call" or not _is_user_code(frame.f_code.co_filename):
            return None
        self.frames[id(frame)] = (frame.f_lineno, _snapshot(frame))
        return self._local

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event not in ("line", "return"):
            return self._local
        self.lines += 1
        if self.lines > MAX_LINE_EVENTS:
            self.overflow = True
            sys.settrace(None)
            return None
        line, before = self.frames.get(id(frame), (frame.f_lineno, {}))
        now = _snapshot(frame)
        filename = frame.f_code.co_filename
        line = _first_line(filename, line)  # a statement over several lines is one
        stored = _stored_names(filename, line)
        for name, value in now.items():
            old = before.get(name)
            unchanged = old is not None and old.shape == value.shape and np.array_equal(old, value)
            if unchanged and name not in stored:
                continue  # an assignment that leaves the value as it was still counts
            key = (filename, line, name)
            occurrence = self.counts.get(key, 0)
            self.counts[key] = occurrence + 1
            wanted = self.replace
            if (
                wanted is not None
                and wanted[:4] == (*key, occurrence)
                and _overwrite(frame.f_locals[name], wanted[4])
            ):
                self.replaced = True
                value = wanted[4]
                now[name] = np.array(value)
            counters = {
                k: v
                for k, v in frame.f_locals.items()
                if isinstance(v, int) and not isinstance(v, bool)
            }
            arguments = frame.f_code.co_varnames[: frame.f_code.co_argcount]
            masks = frozenset(
                k for k, v in frame.f_locals.items() if k not in arguments and _is_mask(v)
            )
            self.events.append(
                Event(filename, line, name, value, before, occurrence, counters, masks)
            )
        if event == "return":
            self.frames.pop(id(frame), None)
            caller = frame.f_back
            if caller is None or not _is_user_code(caller.f_code.co_filename):
                self.returned.append((filename, _first_line(filename, frame.f_lineno), arg))
        else:
            self.frames[id(frame)] = (frame.f_lineno, now)
        return self._local


@functools.lru_cache(maxsize=4096)
def _stored_names(filename: str, line: int) -> frozenset[str]:
    """The variables a line assigns to, in place included (``grad_h[m] = 0``)."""
    try:
        tree = ast.parse(_statement(filename, line))
    except SyntaxError:
        return frozenset()
    names = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            while isinstance(target, ast.Subscript | ast.Attribute):
                target = target.value
            if isinstance(target, ast.Name):
                names.add(target.id)
    return frozenset(names)


def _overwrite(target: Any, value: np.ndarray) -> bool:
    """Write ``value`` into the local's own array, so that the lines after it read it."""
    try:
        if isinstance(target, np.ndarray):
            target[...] = value
            return True
        if isinstance(target, torch.Tensor):
            with torch.no_grad():
                target.copy_(torch.tensor(np.asarray(value), dtype=target.dtype))
            return True
    except (ValueError, RuntimeError, TypeError):
        return False
    return False


@contextlib.contextmanager
def _tracing(tracer: _Tracer) -> Iterator[None]:
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous)


def _run(
    derivation: Derivation, example: Example, dtype: str, tracer: _Tracer
) -> dict[str, np.ndarray] | None:
    """The hand backward on copies of ``example``, traced; its gradients, or None."""
    np_dtype = DTYPES[dtype][0]
    integer = set(derivation.integers or {})
    arguments: dict[str, Any] = {}
    values = dict(example.inputs)
    if example.grad_output is not None:
        values["grad_output"] = example.grad_output
    for name, value in values.items():
        array = np.array(value, dtype=np.int64 if name in integer else np_dtype)
        arguments[name] = torch.from_numpy(array) if derivation.backend == "torch" else array
    try:
        with single_threaded_blas(derivation.backend), _tracing(tracer):
            returned = derivation.backward(**arguments, **copy.deepcopy(dict(example.params)))
    except Exception:  # a crash is reported as such elsewhere; nothing to trace here
        return None
    if not isinstance(returned, Mapping):
        return None
    gradients = {}
    for name in derivation.wrt:
        got: Any = returned.get(name)
        if isinstance(got, int | float | np.generic):
            got = np.asarray(got, dtype=np.float64)
        got_array = _as_array(got)
        if got_array is None:
            return None
        gradients[name] = np.array(got_array, dtype=np.float64)
    return gradients


# -- matching --------------------------------------------------------------------------------


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    if a.shape != b.shape:
        return False
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-30)
    return bool(np.all(np.abs(a - b) <= rtol * scale + 1e-300))


def _matches(
    value: np.ndarray,
    quantities: list[Quantity],
    rtol: float,
    implied: Quantity | None,
    variable: str,
) -> Quantity | None:
    """The spec value equal to ``value`` (its transpose counts: ``w2.T``). Where several
    are equal (zeros; the gradients on either side of a ``+ b``), the one the name implies,
    else one of the kind the name suggests, the most downstream gradient first."""
    if implied is not None and _close(value, implied.value, rtol):
        return implied
    gradient_name = _gradient_stem(variable) is not None
    ordered = [q for q in quantities if (q.forward is not None) == gradient_name]
    ordered = ordered[::-1] if gradient_name else ordered
    # A value another local already goes by comes last: h_relu equals h where h > 0.
    ordered.sort(key=lambda q: q.name is not None and q.name != variable and not gradient_name)
    if not gradient_name:  # a grad_ name holding a forward value holds the wrong thing
        ordered += [q for q in quantities if q.forward is not None]
    else:  # but a composite's inner gradient (softmax - one_hot) is held under one too
        ordered += [q for q in quantities if q.inside and q.op == "softmax - one_hot"]
    for quantity in ordered:
        if _close(value, quantity.value, rtol):
            return quantity
    if value.ndim == 2:
        for quantity in ordered:
            if quantity.value.ndim == 2 and _close(value.T, quantity.value, rtol):
                return quantity
    return None


def _read_names(code: str) -> set[str] | None:
    """The names a line reads (for an in-place update, its target too); None if unparsable."""
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        return None
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
             and isinstance(node.ctx, ast.Load)}  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        if isinstance(node, ast.Subscript | ast.Attribute) and isinstance(node.ctx, ast.Store):
            base = node.value
            while isinstance(base, ast.Subscript | ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
    return names


def _gradient_stem(variable: str) -> str | None:
    """``h`` for ``grad_h``, ``dh``, ``d_h``, ``h_grad``, ``dL_dh``."""
    for prefix in ("grad_", "dL_d", "d_", "d"):
        if variable.startswith(prefix) and len(variable) > len(prefix):
            return variable[len(prefix) :]
    if variable.endswith("_grad"):
        return variable[: -len("_grad")]
    return None


def _all_right(gradients: Mapping[str, np.ndarray] | None, report: Report) -> bool:
    if gradients is None:
        return False
    tolerance = for_dtype(report.dtype)
    for name, pair in report.gradients.items():
        if name not in gradients or gradients[name].shape != pair.reference.shape:
            return False
        if not np.all(
            np.abs(gradients[name] - pair.reference) <= tolerance.allowed(pair.reference)
        ):
            return False
    return True


def _where(wrong: np.ndarray, operands: Mapping[str, np.ndarray]) -> str:
    """', where h > 0 and grad_h < 0': the wrong elements, told by the signs of the arrays
    the line read (or by a range of one of them), when that describes them exactly."""
    if wrong.size < 2 or wrong.all():
        return ""  # every element wrong: no condition tells them apart
    conditions = []
    for name, value in operands.items():
        if value.shape != wrong.shape:
            continue
        conditions += [(f"{name} > 0", value > 0), (f"{name} < 0", value < 0)]
    for text, mask in conditions:
        if np.array_equal(mask, wrong):
            return f", where {text}"
    for i, (first, one) in enumerate(conditions):
        for second, other in conditions[i + 1 :]:
            if first.split()[0] != second.split()[0] and np.array_equal(one & other, wrong):
                return f", where {first} and {second}"
    for name, value in operands.items():
        if value.shape != wrong.shape or wrong.all():
            continue
        low, high = float(value[wrong].min()), float(value[wrong].max())
        if wrong.sum() < 2 or low == high:
            continue
        inside = (value >= low) & (value <= high)
        if np.array_equal(inside, wrong):
            return f", where {name} is between {low:.3g} and {high:.3g}"
    return ""


def _source(file: str, line: int) -> str:
    return linecache.getline(file, line).strip()


@functools.lru_cache(maxsize=64)
def _statement_spans(filename: str) -> tuple[tuple[int, int], ...]:
    """(first, last) line of each simple statement of a file that spans several lines."""
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError):
        return ()
    return tuple(
        (node.lineno, node.end_lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt)
        and not hasattr(node, "body")  # a loop's or a function's lines are not one statement
        and node.end_lineno is not None
        and node.end_lineno > node.lineno
    )


def _first_line(filename: str, line: int) -> int:
    """The first line of the statement ``line`` is part of: where a report points."""
    for first, last in _statement_spans(filename):
        if first <= line <= last:
            return first
    return line


def _statement(filename: str, line: int) -> str:
    """The whole statement that starts on ``line``, dedented, for parsing."""
    last = next((end for first, end in _statement_spans(filename) if first == line), line)
    lines = [linecache.getline(filename, n) for n in range(line, last + 1)]
    return textwrap.dedent("".join(lines)).strip()


def localize(derivation: Derivation, report: Report) -> Localization | None:
    """The first line of the hand backward whose value goes wrong, or None when that cannot
    be shown.

    The failing example is traced, and so are copies of it with every value moved by up to
    20% at random: the example's values are often simple (all 1.0), where many of the
    spec's values coincide, and the moved copies keep it failing while telling them apart.
    The line must come out the same at two of these points at least, and at every point
    where one is found; the names and numbers are those of the first moved copy that
    found it. Where only the example itself disagrees with moved copies that all agree, the
    copies decide: the example's simple values (x = 1, y = 0.5) make a wrong value equal to
    an unrelated right one by coincidence (``abs(-1) == x``), never the moved ones."""
    if report.verdict != "fail" or report.example is None or not report.gradients:
        return None
    if not any(p.kind == "mismatch" for p in report.problems):
        return None
    try:
        found = []
        here = _localize(derivation, report, report.example)
        for other in _moved_failing_points(derivation, report):
            there = _localize(derivation, other, other.example)  # type: ignore[arg-type]
            if there is not None:
                found.append(there)
        moved = {(f.file, f.line, f.variable) for f in found}
        if here is not None and (len(found) < 2 or len(moved) != 1):
            found.append(here)
        places = {(f.file, f.line, f.variable) for f in found}
        if len(found) < 2 or len(places) != 1:
            return None  # found once only, or at different lines: cannot tell
        first = found[0]
        if (
            here is not None
            and (here.file, here.line, here.variable) in places
            and (here.expected == first.expected)
        ):
            return replace(here, matched=first.matched, matched_lines=first.matched_lines)
        return replace(first, detail=first.detail + _ELSEWHERE)
    except Exception:  # a backward or spec this tracing does not fit: say nothing
        return None


_ELSEWHERE = " (at the failing example with its values moved at random by up to 20%)"
# Moved copies of the example traced besides it.
MOVED_POINTS = 3


def _moved_failing_points(derivation: Derivation, report: Report) -> Iterator[Report]:
    assert report.example is not None
    example = report.example
    rng = np.random.default_rng((report.seed or 0) + 101)
    for _ in range(MOVED_POINTS):
        point = {
            name: value if np.issubdtype(value.dtype, np.integer)
            else value * rng.uniform(0.8, 1.2, size=value.shape)
            for name, value in example.inputs.items()
        }  # fmt: skip
        options = replace(
            make_options(report.dtype, 16, 32, int(rng.integers(2**31))), verdict_only=True
        )
        other = evaluate(derivation, point, example.dims, options, example.grad_output,
                         example.params)  # fmt: skip
        if other.verdict == "fail" and any(p.kind == "mismatch" for p in other.problems):
            yield other


def _localize(
    derivation: Derivation, report: Report, example: Example, *, windows: bool = True
) -> Localization | None:
    found = _localize_at(derivation, report, example)
    if found is None and windows:
        found = _in_a_window(derivation, report, example)
    return found


# Positions of grad_output tried one at a time for a loop's first wrong window, at examples
# of at most this many input elements (each position reruns the spec and the backward).
MAX_WINDOWS = 64
MAX_WINDOW_ELEMENTS = 4096


def _in_a_window(derivation: Derivation, report: Report, example: Example) -> Localization | None:
    """A gradient accumulated in a loop (``dx[n] += w @ dout[n]``, one window of a pool at a
    time) matches nothing until its last iteration. With grad_output non-zero at one position
    only, one iteration adds to it, and the lines' values are those of that window alone:
    the first position whose gradients come out wrong is traced like a straight-line
    backward, and its window named."""
    if example.grad_output is None:
        return None
    if sum(np.size(v) for v in example.inputs.values()) > MAX_WINDOW_ELEMENTS:
        return None
    grad_output = np.asarray(example.grad_output, dtype=np.float64)
    if grad_output.size < 2:
        return None
    tolerance = for_dtype(report.dtype)
    for position in range(min(grad_output.size, MAX_WINDOWS)):
        one = np.zeros_like(grad_output)
        one.flat[position] = grad_output.flat[position] or 1.0
        at = replace(example, grad_output=one)
        quantities = _spec_quantities(derivation, at)
        references = {
            name: q.value
            for q in quantities
            if q.forward is not None
            and not q.forward.operands
            and (name := q.forward.name or "") in report.gradients
        }
        hand = _run(derivation, at, report.dtype, _Tracer())
        if hand is None or set(references) != set(report.gradients):
            return None
        pairs = {n: GradientPair(hand[n], references[n]) for n in references}
        if all(np.all(np.abs(p.hand - p.reference) <= tolerance.allowed(p.reference))
               for p in pairs.values()):  # fmt: skip
            continue
        found = _localize_at(derivation, replace(report, example=at, gradients=pairs), at)
        if found is None:
            return None
        index = np.unravel_index(position, grad_output.shape)
        where = f"grad_output{tuple(int(i) for i in index)}"
        return replace(found, detail=f"{found.detail} It first goes wrong for {where}.")
    return None


def _localize_at(derivation: Derivation, report: Report, example: Example) -> Localization | None:
    quantities = _spec_quantities(derivation, example)
    tracer = _Tracer()
    if _run(derivation, example, report.dtype, tracer) is None or tracer.overflow:
        return None
    rtol = 1e-4 if report.dtype == "float32" else 1e-7
    known: dict[tuple[str, str], Quantity | None] = {}  # (file, variable) -> what it matched
    matched: list[tuple[Event, Quantity]] = []
    trials = 0
    # The last event of each local: whether a value is updated after a line.
    last = {(e.file, e.variable): i for i, e in enumerate(tracer.events)}
    unchanged = [
        (previous := e.before.get(e.variable)) is not None
        and previous.shape == e.value.shape
        and np.array_equal(previous, e.value)
        for e in tracer.events
    ]
    # The lines that change their variable somewhere in the trace.
    changing = {
        (e.file, e.line, e.variable)
        for e, same in zip(tracer.events, unchanged, strict=True)
        if not same
    }
    for index, event in enumerate(tracer.events):
        implied = _implied(event.variable, quantities)
        quantity = _matches(event.value, quantities, rtol, implied, event.variable)
        # What the line read is judged by the values before it ran (grad_h in grad_h[m] = 0).
        reads_known = dict(known)
        if quantity is None and (event.file, event.variable) in reads_known and unchanged[index]:
            # Unchanged (dx[n] += 0 where grad_output is 0): as right as it was. A line that
            # changes nothing anywhere may be the mistake (a window's share dropped): it is
            # tried once, with the value its name implies.
            place = (event.file, event.line, event.variable)
            if place in changing or event.occurrence or implied is None:
                continue
            changing.add(place)
            code = _source(event.file, event.line)
            replay = _Tracer((*place, event.occurrence, implied.value))
            fixed = _run(derivation, example, report.dtype, replay)
            if replay.replaced and _all_right(fixed, report):
                return _found(event, implied, code, {}, matched, rtol, counted=False)
            continue
        if (
            quantity is None
            and not event.value.any()
            and ((event.file, event.variable) not in reads_known)
            and last[(event.file, event.variable)] > index
        ):
            known[(event.file, event.variable)] = _ZEROS  # dx = np.zeros_like(x), added to later
            continue
        known[(event.file, event.variable)] = quantity
        if quantity is not None:
            if quantity.name is None and quantity.forward is None and quantity.operands:
                quantity.name = event.variable  # the spec's value goes by the user's name now
            later = last[(event.file, event.variable)] > index
            # A forward value another local already goes by, never updated after: a copy
            # (x = cache), or a step of the forward left out (h_relu = h.copy()).
            alias = quantity.forward is None and quantity.name not in (None, event.variable)
            if implied is None or later or _close(event.value, implied.value, rtol):
                if not alias or later:
                    # A right value; under a name that says otherwise only on its way to
                    # becoming that (grad_h = grad_h_relu.copy(), then masked in place).
                    matched.append((event, quantity))
                    continue
            else:
                alias = False  # a right value, but not the one its name says, never updated
        else:
            alias = False
        code = _source(event.file, event.line)
        reads = _read_names(_statement(event.file, event.line))
        arrays_read = {n: event.before[n] for n in reads or () if n in event.before}
        if (
            reads is None
            or any(reads_known.get((event.file, n), _INPUT) is None for n in arrays_read)
            or reads & event.masks
        ):
            # Unreadable, or it reads a value not known to be right: the blame may lie
            # before it.
            if alias:
                matched.append((event, quantity))  # type: ignore[arg-type]
            continue
        if implied is None and _local_derivative(event.value, quantities, rtol):
            # A right value the spec does not hold as such (a slope, s * (1 - s)): putting
            # dL/dx there can fix a later line's mistake (dx = slope, dout left out). Under
            # a gradient's name (dx = slope) it is that mistake.
            known[(event.file, event.variable)] = _LOCAL
            continue
        candidates = _candidates(event, quantities, implied)
        if alias:  # the spec's steps after the value it copies (relu(h) after h) first
            candidates = [c for c in candidates if c is not quantity and c.forward is None]
            candidates.sort(key=lambda c: not any(o is quantity for o in c.operands))
            candidates = candidates[:ALIAS_TRIALS]
        for candidate in candidates:
            if trials >= MAX_TRIALS:
                return None
            trials += 1
            replay = _Tracer((event.file, event.line, event.variable, event.occurrence,
                              candidate.value))  # fmt: skip
            fixed = _run(derivation, example, report.dtype, replay)
            if replay.replaced and _all_right(fixed, report):
                # Besides what the line read, the forward values known by then (h, h_relu)
                # may tell the wrong elements apart.
                context = {
                    n: v
                    for n, v in event.before.items()
                    if (q := reads_known.get((event.file, n))) is not None and q.forward is None
                }
                return _found(event, candidate, code, {**arrays_read, **context}, matched, rtol)
        if alias:
            matched.append((event, quantity))  # type: ignore[arg-type]
    return _in_return(tracer, report, known, matched, rtol)


def _unknown(status: Quantity | None) -> bool:
    """Not known to be right: unmatched, or zeros nothing has added to yet."""
    return status is None or status is _ZEROS


def _returned_parts(statement: str, value: Any) -> list[tuple[ast.expr, Any]]:
    """Each returned gradient beside the expression that computed it: a dict's values by
    key, a tuple's by position, or the one value."""
    tree = ast.parse(statement)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.Return) or node.value is None:
        return []
    expression = node.value
    if isinstance(expression, ast.Dict) and isinstance(value, Mapping):
        return [
            (v, value[k.value])
            for k, v in zip(expression.keys, expression.values, strict=True)
            if isinstance(k, ast.Constant) and k.value in value
        ]
    if isinstance(expression, ast.Tuple) and isinstance(value, tuple):
        if len(expression.elts) == len(value):
            return list(zip(expression.elts, value, strict=True))
        return []
    return [(expression, value)]


def _in_return(
    tracer: _Tracer,
    report: Report,
    known: Mapping[tuple[str, str], Quantity | None],
    matched: list[tuple[Event, Quantity]],
    rtol: float,
) -> Localization | None:
    """The backward's ``return`` as the first wrong line: a returned gradient is wrong
    although every array its expression reads is right (``"w2": 2 * h_relu.T @ dy``), so the
    expression itself is the mistake. Which parameter a returned value is, is read from the
    hand gradients the check compared; every wrong one must be found so."""
    tolerance = for_dtype(report.dtype)
    wrong = {
        name
        for name, pair in report.gradients.items()
        if not np.all(np.abs(pair.hand - pair.reference) <= tolerance.allowed(pair.reference))
    }
    # The last return that gave a wrong hand gradient is the backward's (a course layer's
    # forward, run first for its cache, returns too).
    for file, line, value in reversed(tracer.returned):
        statement = _statement(file, line)
        blamed: list[tuple[str, ast.expr]] = []
        for expression, part in _returned_parts(statement, value):
            array = _as_array(part)
            if array is None:
                continue
            array = np.asarray(array, dtype=np.float64)
            names = [
                n
                for n in wrong
                if report.gradients[n].hand.shape == array.shape
                and np.array_equal(report.gradients[n].hand, array)
            ]
            if len(names) != 1:
                continue
            reads = {n.id for n in ast.walk(expression) if isinstance(n, ast.Name)}
            if any(_unknown(known.get((file, n), _INPUT)) for n in reads):
                return None  # it reads a value not known to be right: the blame may lie before
            blamed.append((names[0], expression))
        if blamed:
            break
    else:
        return None
    if {name for name, _ in blamed} != wrong:
        return None
    name, expression = blamed[0]
    pair = report.gradients[name]
    segment = " ".join((ast.get_source_segment(statement, expression) or "").split())
    scale = max(float(np.max(np.abs(pair.reference), initial=0.0)), 1e-30)
    differs = np.abs(pair.hand - pair.reference) > rtol * scale
    read = sorted({n.id for n in ast.walk(expression) if isinstance(n, ast.Name)}
                  & {e.variable for e, _ in matched})  # fmt: skip
    detail = (
        f"The returned gradient for {name!r}, {segment}, should equal dL/d{name} (autograd) "
        f"but differs at {int(differs.sum())} of {differs.size} elements"
        + (f"; what it reads is right ({', '.join(read)})." if read else ".")
    )
    before = [e.line for e, _ in matched if e.file == file]
    return Localization(
        file=file,
        line=line,
        variable=name,
        expected=f"dL/d{name} (autograd)",
        detail=detail,
        code=_source(file, line),
        matched=tuple(dict.fromkeys(e.variable for e, _ in matched if e.file == file
                                    and not e.variable.startswith("_"))),
        matched_lines=(min(before), max(before)) if before else None,
    )  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _loop_names(filename: str, line: int) -> tuple[str, ...]:
    """The names the ``for`` loops around a line count with, outermost first."""
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError):
        return ()
    names: list[str] = []
    for node in ast.walk(tree):  # breadth first: an outer loop before the loops inside it
        if isinstance(node, ast.For) and node.lineno < line <= (node.end_lineno or 0):
            names += [n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)]
    return tuple(names)


def _iteration(event: Event) -> str:
    """', in the iteration n=1, i=0' for a line inside loops; nothing elsewhere."""
    counted = [f"{n}={event.counters[n]}" for n in _loop_names(event.file, event.line)
               if n in event.counters]  # fmt: skip
    return f", in the iteration {', '.join(counted)}" if counted else ""


def _implied(variable: str, quantities: list[Quantity]) -> Quantity | None:
    """What a name says a value is: ``grad_h`` is dL/dh once a local ``h`` matched."""
    stem = _gradient_stem(variable)
    if stem is None:
        return None
    for quantity in quantities:
        if quantity.forward is not None and quantity.forward.name == stem:
            return quantity
    return None


_INPUT = Quantity(np.zeros(0), "input")  # an argument, never reassigned: as given
_LOCAL = Quantity(np.zeros(0), "local derivative")  # right, but no value of the spec's
# Zeros a local starts from (dx = np.zeros_like(x)) before a loop adds to it: no value of the
# spec's, and no mistake yet; a line that adds to them is judged by substitution.
_ZEROS = Quantity(np.zeros(0), "zeros")


def _local_derivative(value: np.ndarray, quantities: list[Quantity], rtol: float) -> bool:
    """Whether ``value`` is an elementwise local derivative of the spec, db/da with
    dL/da = dL/db * value: the slope of a leaky ReLU, s * (1 - s) of a sigmoid."""
    gradients = [q for q in quantities if q.forward is not None and q.value.shape == value.shape]
    for downstream in gradients:
        if not downstream.value.any():
            continue
        product = value * downstream.value
        for upstream in gradients:
            if (
                upstream is not downstream
                and upstream.value.any()
                and _close(product, upstream.value, rtol)
            ):
                return True
    return False


def _candidates(
    event: Event, quantities: list[Quantity], implied: Quantity | None
) -> list[Quantity]:
    """The spec values of the event's shape: the one its name implies first, then those of
    the kind its name suggests (a gradient for ``grad_h``, a forward value for ``h_relu``)."""
    same = [q for q in quantities if q.value.shape == event.value.shape and q is not implied]
    gradient_name = _gradient_stem(event.variable) is not None
    if gradient_name:
        same.reverse()
    same.sort(key=lambda q: (q.forward is not None) != gradient_name)
    return [implied, *same] if implied is not None else same


def _found(
    event: Event,
    expected: Quantity,
    code: str,
    arrays_read: Mapping[str, np.ndarray],
    matched: list[tuple[Event, Quantity]],
    rtol: float,
    *,
    counted: bool = True,
) -> Localization:
    """The finding at ``event``; ``counted`` False where the line changed nothing at any
    iteration, so that no iteration is the one it went wrong at."""
    kind = "autograd" if expected.forward is not None else "the spec's forward"
    described = f"{expected.describe()} ({kind})"
    scale = max(float(np.max(np.abs(expected.value), initial=0.0)), 1e-30)
    wrong = np.abs(event.value - expected.value) > rtol * scale
    operands = {n: v for n, v in arrays_read.items() if n != event.variable}
    if event.variable in arrays_read:
        operands[event.variable] = arrays_read[event.variable]
    detail = (
        f"{event.variable} should equal {described} but differs at {int(wrong.sum())} of "
        f"{wrong.size} elements{_where(wrong, operands)}{_iteration(event) if counted else ''}."
    )
    before = [(e, q) for e, q in matched if e.file == event.file]
    names: list[str] = []
    for earlier, quantity in before:
        label = earlier.variable
        if quantity.forward is not None:
            label = f"{earlier.variable} = {quantity.describe()}"
        if earlier.variable.startswith("_") or not earlier.value.any():
            continue  # a name meant to be unused, or zeros (an initialiser, not a match)
        if label not in names:
            names.append(label)
    lines = [e.line for e, _ in before]
    return Localization(
        file=event.file,
        line=event.line,
        variable=event.variable,
        expected=described,
        detail=detail,
        code=code,
        matched=tuple(names),
        matched_lines=(min(lines), max(lines)) if lines else None,
    )
