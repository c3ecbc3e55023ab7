"""The ``torch.autograd.Function`` under test: what it declares, and how each check runs it.

Every helper here takes the Function (or the spec) as a callable from ``{name: tensor}`` to
one output tensor, so that the same code differentiates the Function under test and, in
float64, the spec it is held to.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as forward_ad
from torch.autograd.function import _SingleLevelFunction

__all__ = [
    "Forward",
    "FunctionUnderTest",
    "double_backward",
    "jvp_by_double_backward",
    "jvp_by_forward_ad",
    "tensors_at",
    "vjp",
    "vmapped_vjp",
]

# A forward taking {name: tensor} (inputs only; params are bound in) to one output tensor.
Forward = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class FunctionUnderTest:
    """A Function class, the names its ``apply`` takes in order, and what it declares."""

    function: type[torch.autograd.Function]
    arguments: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.function.__name__

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

    def bound(self, params: Mapping[str, Any]) -> Forward:
        """``apply`` as a Forward, the hyperparameters passed where its signature puts them."""

        def run(values: Mapping[str, torch.Tensor]) -> torch.Tensor:
            merged = {**params, **values}
            output = self.function.apply(*(merged[name] for name in self.arguments))
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"{self.name}.apply returned {type(output).__name__}; gradcheck checks a "
                    "Function with one tensor output"
                )
            return output

        return run


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


def jvp_by_forward_ad(
    forward: Forward, values: Mapping[str, torch.Tensor], tangents: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """The output's tangent in forward-mode AD: what the Function's ``jvp`` gives."""
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
