"""The ``torch.autograd.Function`` under test: what it declares, and how each check runs it.

Every helper here takes the Function (or the spec) as a callable from ``{name: tensor}`` to
one output tensor, so that the same code differentiates the Function under test and, in
float64, the spec it is held to.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as forward_ad
from torch.autograd.function import BackwardCFunction, _SingleLevelFunction

from gradcheck.backward import _where_raised

__all__ = [
    "Forward",
    "FunctionUnderTest",
    "UnderTest",
    "describe_raised",
    "differentiable",
    "double_backward",
    "in_forward",
    "joined",
    "jvp_by_double_backward",
    "jvp_by_forward_ad",
    "raised_in_forward",
    "saved_state",
    "split",
    "tensors_at",
    "vjp",
    "vjp_twice",
    "vjp_without",
    "vmapped_then_vjp",
    "vmapped_vjp",
]

# A forward taking {name: tensor} (inputs only; params are bound in) to one output tensor.
Forward = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


class UnderTest:
    """What the checks run: a callable taking the arguments by position (``arguments``
    names them in order), with a name, and the checks it has no capability for."""

    arguments: tuple[str, ...]

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def called_as(self) -> str:
        """How a message names the call: ``MyReLU.apply``, ``mylib::scale``."""
        return self.name

    def call(self, *arguments: Any) -> Any:
        raise NotImplementedError

    def missing(self) -> dict[str, str]:
        """check -> why it cannot run, for each check this one has no capability for."""
        raise NotImplementedError

    # Whether torch.func.vjp can differentiate it (a custom op's generated Function cannot),
    # so that the vmap check maps the VJP itself rather than the forward alone.
    functorch_vjp: bool = True

    def outputs(self, params: Mapping[str, Any]) -> Callable[[Mapping[str, torch.Tensor]], Any]:
        """The call as it returns: a tensor, or a tuple of them."""

        def run(values: Mapping[str, torch.Tensor]) -> Any:
            merged = {**params, **values}
            try:
                return self.call(*(merged[name] for name in self.arguments))
            except Exception as exc:
                in_forward(exc)
                raise

        return run

    def bound(self, params: Mapping[str, Any]) -> Forward:
        """The call as a Forward, the hyperparameters passed where its signature puts them;
        several outputs joined into one (see ``joined``)."""
        outputs = self.outputs(params)

        def run(values: Mapping[str, torch.Tensor]) -> torch.Tensor:
            output = outputs(values)
            try:
                return joined(output, self.called_as)
            except TypeError as exc:
                raise in_forward(exc) from None

        return run


@dataclass(frozen=True)
class FunctionUnderTest(UnderTest):
    """A Function class, the names its ``apply`` takes in order, and what it declares."""

    function: type[torch.autograd.Function]
    arguments: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.function.__name__

    @property
    def called_as(self) -> str:
        return f"{self.name}.apply"

    def call(self, *arguments: Any) -> Any:
        return self.function.apply(*arguments)

    def missing(self) -> dict[str, str]:
        name, reasons = self.name, {}
        if not self.has_jvp:
            reasons["jvp"] = f"{name} defines no jvp staticmethod"
        if self.once_differentiable:
            reasons["double_backward"] = f"{name}.backward is marked @once_differentiable"
        if not self.vmappable:
            reasons["vmap"] = (
                f"{name} declares neither generate_vmap_rule = True nor a vmap staticmethod"
            )
        return reasons

    @property
    def has_jvp(self) -> bool:
        return self.function.jvp is not _SingleLevelFunction.jvp

    @property
    def setup_context_style(self) -> bool:
        return self.function.setup_context is not _SingleLevelFunction.setup_context

    @property
    def once_differentiable(self) -> bool:
        # torch's decorator wraps the backward in a function defined inside it; wraps()
        # copies the name, but not the code's own qualified name.
        code = getattr(self.function.backward, "__code__", None)
        return getattr(code, "co_qualname", "").startswith("once_differentiable.")

    @property
    def vmappable(self) -> bool:
        declares_rule = bool(getattr(self.function, "generate_vmap_rule", False))
        return declares_rule or self.function.vmap is not torch.autograd.Function.vmap


def differentiable(output: Any) -> list[int]:
    """Which of the outputs are joined (floating tensors): an int64 index is not."""
    if isinstance(output, torch.Tensor):
        return [0]
    return [
        i for i, o in enumerate(output) if isinstance(o, torch.Tensor) and o.is_floating_point()
    ]


def joined(output: Any, who: str) -> torch.Tensor:
    """One tensor for every check: a tensor as it is; of a tuple (or list), the floating
    tensors flattened and concatenated in order, so that one grad_output seeds them all.
    Integer outputs (indices) have no gradient and are left out."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and all(
        isinstance(o, torch.Tensor) or o is None for o in output
    ):
        floating = [output[i].reshape(-1) for i in differentiable(output)]
        if floating:
            return torch.cat(floating)
    raise TypeError(
        f"{who} returned {_kind(output)}; gradcheck checks a tensor, or a tuple of tensors of "
        "which at least one is floating point"
    )


def _kind(output: Any) -> str:
    if isinstance(output, tuple | list):
        inner = ", ".join(
            str(o.dtype).removeprefix("torch.") if isinstance(o, torch.Tensor) else type(o).__name__
            for o in output
        )
        return f"a {type(output).__name__} of ({inner})"
    return type(output).__name__


def split(flat: torch.Tensor | None, output: Any) -> list[torch.Tensor | None]:
    """``flat`` (a grad_output of the joined outputs) cut back into one per output, in their
    shapes; None for an output left out of the join."""
    pieces: list[torch.Tensor | None] = [None] * len(output)
    if flat is None:
        return pieces
    offset = 0
    for i in differentiable(output):
        size = output[i].numel()
        pieces[i] = flat.reshape(-1)[offset : offset + size].reshape(output[i].shape)
        offset += size
    return pieces


# The attribute an exception raised in the Function's forward carries, so that a report
# says "its forward raised" where autograd would let it pass for a backward's.
PHASE = "gradcheck_phase"


def in_forward(exc: Exception) -> Exception:
    """``exc``, marked as raised by the Function's forward (its type and traceback kept)."""
    with contextlib.suppress(AttributeError):  # __slots__: reported as it is
        setattr(exc, PHASE, "forward")
    return exc


def raised_in_forward(exc: BaseException) -> bool:
    return getattr(exc, PHASE, None) == "forward"


def describe_raised(exc: BaseException) -> str:
    """'ValueError: boom (at model.py:12 in forward)': the deepest frame in the user's code."""
    return f"{type(exc).__name__}: {exc}{_where_raised(exc)}"


def forward_arguments(function: type[torch.autograd.Function]) -> list[str] | None:
    """The names ``forward`` takes after ``ctx`` (none for a setup_context-style Function),
    or None when it takes ``*args``."""
    parameters = list(inspect.signature(function.forward).parameters.values())
    if function.setup_context is _SingleLevelFunction.setup_context:
        parameters = parameters[1:]  # ctx
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return None
    return [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]


def tensors_at(
    point: Mapping[str, np.ndarray], dtype: torch.dtype, device: str | torch.device
) -> dict[str, torch.Tensor]:
    """Fresh tensors of the point: floating inputs in ``dtype``, integer inputs int64."""
    return {
        name: torch.tensor(
            value,
            dtype=torch.int64 if np.issubdtype(value.dtype, np.integer) else dtype,
            device=device,
        )
        for name, value in point.items()
    }


def _leaves(
    values: Mapping[str, torch.Tensor], wrt: Sequence[str]
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    # detach() keeps a view's strides: a transposed or expanded input stays one.
    leaves = [values[name].detach().requires_grad_(True) for name in wrt]
    return {**values, **dict(zip(wrt, leaves, strict=True))}, leaves


def vjp(
    forward: Forward,
    values: Mapping[str, torch.Tensor],
    wrt: Sequence[str],
    grad_output: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """The output, and the gradients of ``<output, grad_output>`` (None where unused)."""
    with torch.enable_grad():
        inputs, leaves = _leaves(values, wrt)
        output = forward(inputs)
        grads: Sequence[torch.Tensor | None] = [None] * len(wrt)
        if output.requires_grad:
            grads = torch.autograd.grad(output, leaves, grad_output, allow_unused=True)
    return output.detach(), dict(zip(wrt, grads, strict=True))


@dataclass(frozen=True)
class Twice:
    """Two backwards through one graph (``retain_graph=True``): the first's gradients, the
    second's (or what it raised), and what the ctx held for backward that the first edited."""

    first: dict[str, torch.Tensor | None]
    second: dict[str, torch.Tensor | None] | None
    raised: Exception | None
    edited: tuple[str, ...]


def vjp_twice(
    forward: Forward,
    values: Mapping[str, torch.Tensor],
    wrt: Sequence[str],
    grad_output: torch.Tensor | None,
) -> Twice | None:
    """One forward, then the same VJP twice through its graph, as a training loop that calls
    backward twice (or ``torch.autograd.grad`` then ``.backward()``) does. The first's
    gradients are copied before the second runs: a backward that hands back a tensor its ctx
    holds, and edits in place, would change them too. None when nothing requires grad."""
    with torch.enable_grad():
        inputs, leaves = _leaves(values, wrt)
        output = forward(inputs)
        if not output.requires_grad:
            return None
        held = saved_state(output, inputs)
        copies = {name: tensor.detach().clone() for name, tensor in held.items()}

        def once() -> dict[str, torch.Tensor | None]:
            grads = torch.autograd.grad(
                output, leaves, grad_output, retain_graph=True, allow_unused=True
            )
            return {
                n: None if g is None else g.detach().clone()
                for n, g in zip(wrt, grads, strict=True)
            }

        first = once()
        edited = tuple(name for name, tensor in held.items() if _changed(tensor, copies[name]))
        try:
            second, raised = once(), None
        except Exception as exc:  # the second pass is the finding, not a failure to check
            second, raised = None, exc
    return Twice(first, second, raised, edited)


def vjp_without(
    outputs: Callable[[Mapping[str, torch.Tensor]], Any],
    values: Mapping[str, torch.Tensor],
    wrt: Sequence[str],
    grad_output: torch.Tensor | None,
    unused: int,
) -> dict[str, torch.Tensor | None]:
    """The VJP through every output but ``unused``, as a loss that ignores that output
    takes it: autograd hands the backward None for it (zeros where materialize_grads is
    on, torch's default)."""
    with torch.enable_grad():
        inputs, leaves = _leaves(values, wrt)
        output = outputs(inputs)
        seeds = split(grad_output, output)
        used = [
            (o, seed)
            for i, (o, seed) in enumerate(zip(output, seeds, strict=True))
            if i != unused and seed is not None and o.requires_grad
        ]
        grads: Sequence[torch.Tensor | None] = [None] * len(wrt)
        if used:
            grads = torch.autograd.grad(
                [o for o, _ in used], leaves, [seed for _, seed in used], allow_unused=True
            )
    return {n: None if g is None else g.detach() for n, g in zip(wrt, grads, strict=True)}


def saved_state(
    output: torch.Tensor, inputs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The tensors the Function's ctx holds for backward, by the name its author knows them
    under: ``ctx.grad`` (an attribute, or an element of a list, tuple or dict in one), and
    ``saved_tensors[1]``, with the input or output it is, where it is one."""
    ctx = _function_node(output)
    found: dict[str, torch.Tensor] = {}
    for attribute, value in sorted(getattr(ctx, "__dict__", {}).items()):
        if isinstance(value, torch.Tensor):
            found[f"ctx.{attribute}"] = value
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    found[f"ctx.{attribute}[{i}]"] = item
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, torch.Tensor):
                    found[f"ctx.{attribute}[{key!r}]"] = item
    try:
        saved = tuple(getattr(ctx, "saved_tensors", ()))
    except RuntimeError:  # already freed, or not a custom Function's node
        saved = ()
    for i, tensor in enumerate(saved):
        if isinstance(tensor, torch.Tensor):
            found[f"saved_tensors[{i}]{_which(tensor, output, inputs)}"] = tensor
    return found


def _function_node(output: torch.Tensor) -> Any:
    """The Function's own node (its ctx): the output's, or, for several outputs joined, the
    first custom Function's node behind the join."""
    node, seen = output.grad_fn, 0
    queue = [node]
    while queue and seen < 64:
        node = queue.pop(0)
        seen += 1
        if isinstance(node, BackwardCFunction):
            return node
        queue.extend(n for n, _ in getattr(node, "next_functions", ()) if n is not None)
    return output.grad_fn


def _which(tensor: torch.Tensor, output: torch.Tensor, inputs: Mapping[str, torch.Tensor]) -> str:
    def same(other: torch.Tensor) -> bool:
        return (
            tensor.data_ptr() == other.data_ptr()
            and tensor.shape == other.shape
            and tensor.stride() == other.stride()
        )

    for name, value in inputs.items():
        if same(value):
            return f" (the input {name!r})"
    return " (the output)" if same(output) else ""


def _changed(tensor: torch.Tensor, copy: torch.Tensor) -> bool:
    if tensor.shape != copy.shape or tensor.dtype != copy.dtype:
        return True
    now, before = tensor.detach(), copy
    same = (now == before) | (torch.isnan(now) & torch.isnan(before))
    return not bool(same.all())


def double_backward(
    forward: Forward,
    values: Mapping[str, torch.Tensor],
    wrt: Sequence[str],
    grad_output: torch.Tensor | None,
    directions: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Differentiate the VJP once more: the gradients of ``sum_k <vjp_k, directions_k>``
    with respect to every input in ``wrt`` and to ``grad_output`` (when there is one)."""
    with torch.enable_grad():
        inputs, leaves = _leaves(values, wrt)
        seed = None if grad_output is None else grad_output.detach().requires_grad_(True)
        output = forward(inputs)
        targets = [*leaves, *([] if seed is None else [seed])]
        names = [*wrt, *([] if seed is None else ["grad_output"])]
        seconds: Sequence[torch.Tensor | None] = [None] * len(targets)
        if output.requires_grad:
            grads = torch.autograd.grad(output, leaves, seed, create_graph=True, allow_unused=True)
            terms = [
                (g * directions[n]).sum() for g, n in zip(grads, wrt, strict=True) if g is not None
            ]
            total = sum(terms[1:], terms[0]) if terms else None
            if total is not None and total.requires_grad:
                seconds = torch.autograd.grad(total, targets, allow_unused=True)
    return {
        name: (torch.zeros_like(target) if second is None else second).detach()
        for name, target, second in zip(names, targets, seconds, strict=True)
    }


@functools.cache
def _forward_ad_ready() -> None:
    """torch loads its forward-AD decompositions on first use, scripting each with
    ``torch.jit.script``, which warns that it is deprecated, 18 times: torch's noise, not
    the Function's, so it is loaded here with the warning silenced rather than reported."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module("torch._decomp.decompositions_for_jvp")


def jvp_by_forward_ad(
    forward: Forward, values: Mapping[str, torch.Tensor], tangents: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """The output's tangent in forward-mode AD: what the Function's ``jvp`` gives."""
    _forward_ad_ready()
    with forward_ad.dual_level():
        duals = {name: forward_ad.make_dual(values[name], t) for name, t in tangents.items()}
        output = forward({**values, **duals})
        tangent = forward_ad.unpack_dual(output).tangent
        primal = forward_ad.unpack_dual(output).primal
    return torch.zeros_like(primal) if tangent is None else tangent.detach()


def jvp_by_double_backward(
    forward: Forward, values: Mapping[str, torch.Tensor], tangents: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """J v of a spec by reverse mode twice (J v = d/du <J^T u, v>): it needs no forward-AD
    formula for any op of the spec, only that autograd can differentiate its own backward."""
    wrt = list(tangents)
    with torch.enable_grad():
        inputs, leaves = _leaves(values, wrt)
        output = forward(inputs)
        seed = torch.zeros_like(output, requires_grad=True)
        if not output.requires_grad:
            return torch.zeros_like(output).detach()
        grads = torch.autograd.grad(output, leaves, seed, create_graph=True, allow_unused=True)
        terms = [(g * tangents[n]).sum() for g, n in zip(grads, wrt, strict=True) if g is not None]
        if not terms or not any(t.requires_grad for t in terms):
            return torch.zeros_like(output).detach()
        (jv,) = torch.autograd.grad(sum(terms[1:], terms[0]), seed, allow_unused=True)
    return torch.zeros_like(output).detach() if jv is None else jv.detach()


def vmapped_vjp(
    forward: Forward,
    batched: Mapping[str, torch.Tensor],
    shared: Mapping[str, torch.Tensor],
    wrt: Sequence[str],
    grad_outputs: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``torch.func.vmap`` over dim 0 of ``batched`` and ``grad_outputs``: the outputs and
    the VJPs of every member at once (``shared`` inputs are the same for all members)."""
    names = list(batched)

    def member(*tensors: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        *inputs, cotangent = tensors
        values = {**shared, **dict(zip(names, inputs, strict=True))}

        def of_wrt(*primals: torch.Tensor) -> torch.Tensor:
            return forward({**values, **dict(zip(wrt, primals, strict=True))})

        found = torch.func.vjp(of_wrt, *(values[n] for n in wrt))
        output, pullback = found[0], found[1]
        return output, pullback(cotangent.reshape(output.shape))

    outputs, grads = torch.func.vmap(member)(*(batched[n] for n in names), grad_outputs)
    return outputs, dict(zip(wrt, grads, strict=True))


def vmapped_then_vjp(
    forward: Forward,
    batched: Mapping[str, torch.Tensor],
    shared: Mapping[str, torch.Tensor],
    wrt: Sequence[str],
    grad_outputs: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``torch.func.vmap`` over the forward alone, then ordinary autograd through the
    batched result: for a custom op, whose generated autograd.Function torch cannot run
    under ``torch.func.vjp``, yet whose vmap rule and backward still have to agree."""
    names = list(batched)
    with torch.enable_grad():
        leaves = {n: batched[n].detach().requires_grad_(n in wrt) for n in names}

        def member(*tensors: torch.Tensor) -> torch.Tensor:
            return forward({**shared, **dict(zip(names, tensors, strict=True))})

        outputs = torch.func.vmap(member)(*(leaves[n] for n in names))
        grads = torch.autograd.grad(
            outputs, [leaves[n] for n in wrt], grad_outputs.reshape(outputs.shape)
        )
    return outputs.detach(), {n: g.detach() for n, g in zip(wrt, grads, strict=True)}
