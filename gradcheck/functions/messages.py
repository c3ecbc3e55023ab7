"""Pure builders of what the Function checks say: numbers in, text out, tested by fragments."""

from __future__ import annotations

__all__ = [
    "CUDA_HINT",
    "DOUBLE_BACKWARD_HINT",
    "JVP_HINT",
    "VMAP_HINT",
    "layout_hint",
    "layout_result",
    "nondeterministic",
    "not_reentrant",
    "not_reentrant_raised",
    "not_run",
    "output_shape",
    "raised",
    "second_derivative",
    "spec_raised",
    "tangent_shape",
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
VMAP_HINT = (
    "The vmap rule (generate_vmap_rule = True, or the vmap staticmethod) does not treat the "
    "members of the batch independently: a reduction over the batch dim, or the batch dim "
    "moved to the wrong place."
)
CUDA_HINT = "The CUDA kernel computes something other than the CPU path."


def not_run(check: str, why: str) -> str:
    return f"{check}: not run: {why}"


def raised(doing: str, error: str) -> str:
    """``doing`` leads: "Given grad_output transposed (strides (1, 2))"."""
    return f"{doing}, the Function raised {error}"


def spec_raised(check: str, error: str) -> str:
    return (
        f"{check}: autograd could not differentiate the spec as this check needs ({error}); "
        "the Function is not judged by it."
    )


def output_shape(got: tuple[int, ...], expected: tuple[int, ...]) -> str:
    return f"the Function's output has shape {tuple(got)}, the spec's {tuple(expected)}."


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
