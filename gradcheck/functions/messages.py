"""Pure builders of what the Function checks say: numbers in, text out, tested by fragments."""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "CUDA_HINT",
    "DOUBLE_BACKWARD_HINT",
    "FIRST_ORDER_HINT",
    "JVP_HINT",
    "NON_FINITE_JVP_HINT",
    "NON_FINITE_SECOND_HINT",
    "SECOND_ORDER_HINT",
    "UNDEFINED_HINT",
    "VMAP_HINT",
    "forward_raised",
    "layout_hint",
    "layout_result",
    "nondeterministic",
    "not_differentiable",
    "not_reentrant",
    "not_reentrant_raised",
    "not_run",
    "output_count",
    "output_kinds",
    "output_shape",
    "output_structure",
    "raised",
    "second_derivative",
    "spec_failed",
    "spec_raised",
    "tangent_shape",
    "undefined_doing",
    "undefined_result",
    "vmap_result",
    "vmap_shape",
]

JVP_HINT = (
    "The jvp staticmethod must return J(x) v for the tangents it receives (what "
    "torch.func.jvp and forward-mode AD use); check it term by term against the backward."
)
DOUBLE_BACKWARD_HINT = (
    "Its backward is not differentiable as written: a saved tensor detached, a computation "
    "under no_grad or in numpy, or a term left out. Write the backward with differentiable "
    "torch ops on what it saved, or mark it @once_differentiable if it is not meant to be "
    "differentiated twice."
)
# Where the backward's own values are already wrong, the derivative of them is too.
FIRST_ORDER_HINT = (
    "Its backward's own values already differ from the spec's gradient at this point (see "
    "the backward check); the derivative of a wrong backward is wrong too: fix the backward "
    "first."
)
# Where its values pass, and its derivative is not zero: a term whose derivative is off.
SECOND_ORDER_HINT = (
    "Its backward passes at first order, but its derivative is not the spec's: a term "
    "computed from a detached tensor, under no_grad or in numpy, or a term whose value is "
    "close to the right one and its derivative is not (a constant such as eps that differs "
    "from the forward's). Write the backward with the forward's own constants and "
    "differentiable torch ops, or mark it @once_differentiable."
)
NON_FINITE_SECOND_HINT = (
    "Its backward has an infinite derivative here: it takes the sqrt (or log, or a power "
    "below 1) of a saved value that is 0, or divides by one, and inf * 0 gives NaN. Write it "
    "so that its derivative stays finite (torch.where around the sqrt, or save the root from "
    "forward), or mark it @once_differentiable."
)
NON_FINITE_JVP_HINT = (
    "The jvp staticmethod gives NaN or inf where the spec's tangent is finite: a division by "
    "a saved value that is 0, or inf * 0."
)
VMAP_HINT = (
    "The vmap rule (generate_vmap_rule = True, or the vmap staticmethod) does not treat the "
    "members of the batch independently: a reduction over the batch dim, or the batch dim "
    "moved to the wrong place."
)
CUDA_HINT = "The CUDA kernel computes something other than the CPU path."


COMPILE_HINT = (
    "code that compiles differently from how it runs eagerly: Python-side state, numpy or "
    ".item() inside the forward or backward, or a register_fake that disagrees with the "
    "kernel"
)


def does_not_compile(called_as: str, error: type, first_line: str) -> str:
    return (
        f"{called_as} does not run under torch.compile(fullgraph=True): "
        f"{error.__name__}: {first_line}. A graph break (numpy, .item(), data-dependent "
        "Python control flow) or an op torch cannot trace is the usual cause."
    )


def not_run(check: str, why: str) -> str:
    return f"{check}: not run: {why}"


def raised(doing: str, error: str, phase: str | None) -> str:
    """``doing`` leads: "Given grad_output transposed (strides (1, 2))"; ``phase`` is
    'forward', 'backward', or None where apply ran a jvp or vmap rule as well."""
    who = "the Function" if phase is None else f"the Function's {phase}"
    return f"{doing}, {who} raised {error}"


def forward_raised(error: str) -> str:
    """The backward check's words for a Function whose forward raised at the point."""
    return f"the Function's forward raised {error}"


def spec_failed(check: str, error: str) -> str:
    """The spec raised where a check's finite differences moved the point."""
    return (
        f"{check}: the spec could not be evaluated where finite differences moved the point "
        f"({error}); the Function is not judged by it here."
    )


def spec_raised(check: str, error: str) -> str:
    return (
        f"{check}: autograd could not differentiate the spec as this check needs ({error}); "
        "the Function is not judged by it."
    )


def output_shape(got: tuple[int, ...], expected: tuple[int, ...], label: str = "output") -> str:
    return f"the Function's {label} has shape {tuple(got)}, the spec's {tuple(expected)}."


def _structure(output: Any) -> str:
    def one(tensor: Any) -> str:
        if not isinstance(tensor, torch.Tensor):
            return type(tensor).__name__
        dtype = "" if tensor.is_floating_point() else f" {str(tensor.dtype).removeprefix('torch.')}"
        return f"{tuple(tensor.shape)}{dtype}"

    if isinstance(output, torch.Tensor):
        return f"one tensor of shape {one(output)}"
    if isinstance(output, tuple | list):
        return f"{len(output)} outputs of shapes {', '.join(one(o) for o in output)}"
    return type(output).__name__


def output_structure(got: Any, expected: Any) -> str:
    """The Function and the spec return differently shaped results (several outputs, or
    one): say both, so that the difference reads at a glance."""
    return (
        f"the Function returns {_structure(got)}; the spec {_structure(expected)}. The spec "
        "must return what the Function does, in the same order and shapes"
    )


def output_count(got: int, expected: int) -> str:
    def outputs(n: int) -> str:
        return "one tensor" if n == 1 else f"{n} outputs"

    return (
        f"the Function returns {outputs(got)}, the spec {outputs(expected)}; the spec must "
        "return what the Function does, in the same order."
    )


def output_kinds(index: int, got: str, expected: str) -> str:
    return (
        f"output {index} of the Function is {got}, the spec's is {expected}: one is "
        "differentiable and the other is not; return the same kind in both."
    )


def not_differentiable(index: int, dtype: str) -> str:
    return f"output {index} ({dtype}) is not differentiable: left out of every check"


UNDEFINED_HINT = (
    "A loss that does not use an output gives the backward None for it (zeros where "
    "materialize_grads is on): the backward must treat it as zeros, and return the gradient "
    "through the outputs that are used (test each grad_output for None before using it)."
)


def undefined_doing(index: int) -> str:
    return (
        f"With output {index} unused (autograd hands its backward None there, or zeros "
        "where materialize_grads is on)"
    )


def undefined_result(name: str, index: int) -> str:
    return f"the gradient for {name!r} with output {index} unused"


def tangent_shape(got: tuple[int, ...], expected: tuple[int, ...]) -> str:
    return (
        f"the Function's forward-mode tangent has shape {tuple(got)}, but the output has "
        f"shape {tuple(expected)}."
    )


def nondeterministic(name: str, worst: float, index: tuple[int, ...], tolerance: float) -> str:
    return (
        f"two backward runs on the same inputs and grad_output give gradients for {name!r} "
        f"that differ by up to {worst:.3g} (at index {index}); nondet_tol={tolerance:g} "
        "allows no more. A backward that depends on the run (atomic adds in any order, an "
        "unseeded random choice) makes training irreproducible; if this is the accepted "
        "rounding of a nondeterministic reduction, raise nondet_tol above it."
    )


def layout_result(gradient: str, tensor: str, layout: str, strides: str) -> str:
    quantity = "the output" if gradient == "output" else f"the gradient for {gradient!r}"
    given = f"every input {layout}" if tensor == "every input" else f"{tensor} {layout}{strides}"
    return f"Given {given}, {quantity}"


def layout_hint(tensor: str, also: list[str]) -> str:
    subject = "its inputs" if tensor == "every input" else repr(tensor)
    others = ", ".join("the output" if n == "output" else repr(n) for n in also)
    return (
        (f"({others} differ{'s' if len(also) == 1 else ''} too.) " if also else "")
        + f"A result must not depend on memory layout: the Function reads {subject} as if it "
        "were contiguous (as_strided, data_ptr, .view of raw storage), or a kernel ignores "
        "its strides. Call .contiguous() on it first."
    )


def second_derivative(target: str) -> tuple[str, str]:
    """What the double backward compares for ``target``, and its reference."""
    if target == "grad_output":
        return (
            "the derivative of the Function's VJP with respect to grad_output",
            "the spec's Jacobian-vector product (autograd of autograd, float64)",
        )
    return (
        f"the derivative of the Function's VJP with respect to {target!r}",
        "the spec's Hessian-vector product (autograd of autograd, float64)",
    )


def vmap_result(name: str, batch: int) -> str:
    quantity = "the output" if name == "output" else f"the gradient for {name!r}"
    return f"{quantity} under torch.func.vmap over a batch of {batch}"


def vmap_shape(name: str, got: tuple[int, ...], expected: tuple[int, ...]) -> str:
    return (
        f"under torch.func.vmap the {name} has shape {tuple(got)}; applied to each member in "
        f"a loop, {tuple(expected)}."
    )


def _edited(edited: list[str]) -> str:
    if not edited:
        return (
            "Its backward changes what it reads on the next call: a tensor its ctx holds "
            "(saved, or set as an attribute in forward) edited in place, or a counter."
        )
    names = ", ".join(edited)
    return (
        f"Its backward edited {names} in place during the first, so every later backward "
        "through this graph reads the edited value."
    )


REENTRANT_FIX = (
    "Work on a copy (grad = ctx.grad * grad_output, not grad *= grad_output; .clone() "
    "before an in-place op): training calls backward through one graph more than once "
    "(retain_graph=True, torch.autograd.grad then .backward(), gradient penalties)."
)


def not_reentrant(name: str, edited: list[str]) -> tuple[str, str]:
    """What the reentrant check compares for ``name``, and why it differs."""
    return (
        f"the gradient for {name!r} from a second backward through the same graph "
        "(retain_graph=True)",
        f"{_edited(edited)} {REENTRANT_FIX}",
    )


def not_reentrant_raised(error: str, edited: list[str]) -> str:
    return (
        "a second backward through the same graph (retain_graph=True) raised where the "
        f"first returned ({error.rstrip('.')}). {_edited(edited)} {REENTRANT_FIX}"
    )
