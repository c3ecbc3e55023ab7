"""Torch autograd on the spec forward, in float64: the first reference."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck.derivation import DerivationError
from gradcheck.guard import describe_exit, is_user_exit, user_call

__all__ = [
    "AutogradResult",
    "as_tensor",
    "autograd_gradients",
    "call_forward",
    "gradients_in_dtype",
]


@dataclass(frozen=True)
class AutogradResult:
    output: np.ndarray
    gradients: dict[str, np.ndarray]
    grad_output: np.ndarray | None  # what the output was pulled back through; None for a scalar


def as_tensor(value: np.ndarray, *, requires_grad: bool = False) -> torch.Tensor:
    """float64 for real inputs, int64 kept for integer inputs (labels are never differentiated).

    A copy, except for an input that requires grad: autograd refuses an in-place op on such
    a leaf, so the spec cannot write into it, and at 3000x3000 the copy was 72 MB."""
    # numpy hands back a numpy scalar, not a 0-d array, from arithmetic on a 0-d input
    # (x * 2.0): torch.from_numpy takes arrays only.
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.integer):
        return torch.from_numpy(np.array(value, dtype=np.int64))
    if requires_grad and value.dtype == np.float64:
        if value.flags.writeable:
            return torch.from_numpy(value).requires_grad_(True)
        with warnings.catch_warnings():
            # A read-only point (see checking.validated_point) is fine here: autograd
            # itself keeps the spec from writing into a leaf that requires grad.
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            return torch.from_numpy(value).requires_grad_(True)
    return torch.tensor(value, dtype=torch.float64, requires_grad=requires_grad)


def call_forward(
    name: str,
    forward: Callable[..., Any],
    tensors: Mapping[str, torch.Tensor],
    params: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Call the spec and insist on a floating torch tensor back, naming the fix if not."""
    try:
        # A fresh copy of the params every call: a spec that writes into a dict param
        # (a running statistic, a counter) must not reach the caller's declaration.
        with user_call("forward"):
            output = forward(**tensors, **(copy.deepcopy(dict(params)) if params else {}))
    except BaseException as exc:  # the spec is user code: any failure is a declaration problem
        if not isinstance(exc, Exception):
            if not is_user_exit(exc):
                raise  # Ctrl-C, or past the deadline: the run stops or the search does
            raise DerivationError(
                f"Derivation {name!r}: {describe_exit('forward', exc)}; a forward must "
                "return its output, never end the process."
            ) from None
        raise DerivationError(
            f"Derivation {name!r}: forward raised {type(exc).__name__}: {exc}. The forward is "
            "called with float64 torch tensors as keyword arguments, one per name in shapes."
        ) from exc
    if not isinstance(output, torch.Tensor):
        raise DerivationError(
            f"Derivation {name!r}: forward returned {type(output).__name__}, not a "
            "torch.Tensor; write the spec with torch ops and return the tensor (e.g. the loss)."
        )
    if not output.is_floating_point():
        raise DerivationError(
            f"Derivation {name!r}: forward returned a {output.dtype} tensor; it must be "
            "floating point to be differentiated."
        )
    if output.dtype != torch.float64:
        # Rounding a spec to float32 would make the reference, not the derivation, wrong.
        raise DerivationError(
            f"Derivation {name!r}: forward returned a {output.dtype} tensor; the spec is "
            "the float64 reference, so compute it in float64 (drop any .float() or "
            ".to(torch.float32) inside it)."
        )
    return output


def autograd_gradients(
    name: str,
    forward: Callable[..., Any],
    inputs: Mapping[str, np.ndarray],
    wrt: Sequence[str],
    grad_output_for: Callable[[tuple[int, ...]], np.ndarray | None],
    params: Mapping[str, Any] | None = None,
    *,
    before_backward: Callable[[np.ndarray | None, torch.Tensor], None] | None = None,
) -> AutogradResult:
    """Gradients of the forward's output by autograd; a non-scalar output is pulled back
    through ``grad_output_for(output shape)``. ``before_backward(grad_output, output)``, if given,
    runs between the forward and autograd's backward pass: the hand backward runs there, so
    that its arguments and result are gone before autograd's gradients exist (at a
    3000x3000 point both at once set the peak memory)."""
    with torch.enable_grad():
        tensors = {key: as_tensor(value, requires_grad=key in wrt) for key, value in inputs.items()}
        output = call_forward(name, forward, tensors, params)
        grad_output = grad_output_for(tuple(output.shape))
        if before_backward is not None:
            before_backward(grad_output, output.detach())
        grads: list[torch.Tensor | None]
        if not output.requires_grad:
            grads = [None] * len(wrt)
        else:
            grads = list(
                torch.autograd.grad(
                    _pulled_back(output.to(torch.float64), grad_output),
                    [tensors[key] for key in wrt],
                    allow_unused=True,
                )
            )
    gradients = {
        key: np.zeros_like(inputs[key]) if grad is None else _contiguous(grad.detach().numpy())
        for key, grad in zip(wrt, grads, strict=True)
    }
    return AutogradResult(
        output=output.detach().numpy().copy(),
        gradients=gradients,
        grad_output=grad_output,
    )


def _pulled_back(output: torch.Tensor, grad_output: np.ndarray | None) -> torch.Tensor:
    """The scalar whose gradient is the vector-Jacobian product with ``grad_output``:
    ``sum(output * grad_output)``. Its backward hands ``1 * grad_output`` (exactly
    ``grad_output``) to the output, so the gradients are those of passing ``grad_outputs``
    to autograd, bit for bit; but a tensor passed as ``grad_outputs`` makes torch import
    its symbolic-shapes module (and sympy) on first use: 0.9 s in every process."""
    if grad_output is None:
        return output
    return (output * as_tensor(grad_output)).sum()


def _contiguous(array: np.ndarray) -> np.ndarray:
    """The array itself, or a copy where it is a view: an expanded gradient (of a sum) is a
    stride-0 view. (``np.ascontiguousarray`` would also turn a 0-d array into shape (1,).)"""
    return array if array.flags.c_contiguous else array.copy()


def gradients_in_dtype(
    forward: Callable[..., Any],
    inputs: Mapping[str, np.ndarray],
    wrt: Sequence[str],
    grad_output: np.ndarray | None,
    params: Mapping[str, Any] | None,
    dtype: torch.dtype,
) -> dict[str, np.ndarray] | None:
    """Autograd's gradients with the spec run on ``dtype`` inputs (float32), as float64
    arrays; None where the spec cannot run so (it insists on float64, or raises). How far
    they fall from the float64 ones is what rounding in ``dtype`` alone costs at this
    point: terms of size 1 that cancel to a gradient of 1e-8 (a confident cross-entropy)
    leave errors of eps32 * 1, far above eps32 * 1e-8."""
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tensors = {
                key: torch.tensor(value, dtype=dtype, requires_grad=key in wrt)
                if not np.issubdtype(value.dtype, np.integer)
                else torch.from_numpy(np.array(value, dtype=np.int64))
                for key, value in inputs.items()
            }
            with user_call("forward"):
                output = forward(**tensors, **(copy.deepcopy(dict(params)) if params else {}))
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return None
            seed = None if grad_output is None else torch.tensor(grad_output, dtype=output.dtype)
            loss = output.sum() if seed is None else (output * seed).sum()
            grads = torch.autograd.grad(loss, [tensors[key] for key in wrt], allow_unused=True)
    except Exception:  # a spec written for float64 only: no measure of the dtype's rounding
        return None
    return {
        key: np.zeros(np.shape(inputs[key]))
        if grad is None
        else grad.detach().to(torch.float64).numpy()
        for key, grad in zip(wrt, grads, strict=True)
    }
