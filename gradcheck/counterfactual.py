"""Name a learner's mistake by reproducing it: autograd on the spec, with the mistake made.

Each hypothesis is a changed backward for one kind of op in the spec, applied with a
``TorchFunctionMode`` while autograd differentiates it at the failing point:

- ReLU masks taken from the incoming gradient's sign instead of the ReLU's input (seed 001);
- ReLU masks left out;
- a weight used in a matmul's backward after it was updated, ``w - lr * grad_w`` instead of
  ``w`` (seed 004); linear in ``lr``, which is fitted;
- a square weight used transposed in a matmul's backward, ``grad @ w`` for ``grad @ w.T``
  (the shapes cannot tell).

A hypothesis is reported only when it reproduces the hand gradient of every parameter to
the comparison's tolerance while the true reference does not: a real computation, never a
guess from the shape of the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from gradcheck.derivation import Derivation
from gradcheck.diagnose import Finding
from gradcheck.references.autograd import autograd_gradients
from gradcheck.report import Example, GradientPair
from gradcheck.tolerances import Tolerance

__all__ = ["explain", "explain_findings"]

_RELU_FUNCS = {torch.relu, torch.nn.functional.relu, torch.Tensor.relu}
_CLAMP_FUNCS = {torch.clamp, torch.Tensor.clamp, torch.clamp_min, torch.Tensor.clamp_min}
_MATMUL_FUNCS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm,
                 torch.Tensor.mm}  # fmt: skip


def _is_relu(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    if func in _RELU_FUNCS:
        return True
    if func in _CLAMP_FUNCS:
        low = args[1] if len(args) > 1 else kwargs.get("min")
        high = args[2] if len(args) > 2 else kwargs.get("max")
        return high is None and isinstance(low, int | float) and low == 0
    return False


class _ReLU(torch.autograd.Function):
    """The ReLU's forward; subclasses make one mistake in its backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)


class _MaskFromGradient(_ReLU):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)  # grad_h[grad_h < 0] = 0


class _NoMask(_ReLU):
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _StaleMatmul(torch.autograd.Function):
    """``a @ b`` whose gradient for ``a`` is taken through ``b_used`` instead of ``b``."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, b_used: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b_used)
        return a @ b

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        a, b_used = ctx.saved_tensors
        return grad @ b_used.T, a.T @ grad, None


class _Mistake(TorchFunctionMode):
    """Makes one mistake in the backward of every op of one kind while active."""

    def __init__(
        self,
        relu: type[torch.autograd.Function] | None = None,
        stale_name: str | None = None,
        stale_used: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.relu = relu
        self.stale_name = stale_name
        self.stale_used = stale_used
        self.stale_weight: torch.Tensor | None = None

    def bind(self, tensors: Mapping[str, Any]) -> None:
        """The stale weight is the very tensor the spec receives: find it by identity."""
        if self.stale_name is not None:
            self.stale_weight = tensors[self.stale_name]

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if self.relu is not None and _is_relu(func, args, kwargs):
            return self.relu.apply(args[0])
        if self.stale_weight is not None and func in _MATMUL_FUNCS and len(args) == 2:
            a, b = args
            if b is self.stale_weight and a.dim() == 2 and b.dim() == 2:
                return _StaleMatmul.apply(a, b, self.stale_used)
        return func(*args, **kwargs)


@dataclass(frozen=True)
class _Failure:
    """The failure to explain: the derivation, the failing point, and at it the hand
    gradient beside the reference for every parameter, compared to ``tolerance``."""

    derivation: Derivation
    example: Example
    pairs: Mapping[str, GradientPair]
    tolerance: Tolerance

    def gradients_with(self, mode: _Mistake) -> dict[str, np.ndarray]:
        """Autograd's gradients of the spec at the point, with ``mode`` changing the
        backward."""
        derivation = self.derivation

        def forward(**kwargs: Any) -> Any:
            mode.bind(kwargs)
            with mode:
                return derivation.forward(**kwargs)

        given = self.example.grad_output
        result = autograd_gradients(
            derivation.name, forward, self.example.inputs, derivation.wrt, lambda _: given,
            self.example.params,
        )  # fmt: skip
        return result.gradients

    def matches(self, gradients: Mapping[str, np.ndarray]) -> bool:
        """The mistake reproduces the hand gradients, and it changes something here: a
        mistake that leaves the true gradient as it is at this point explains nothing."""

        def close(a: np.ndarray, b: np.ndarray) -> bool:
            return bool(np.all(np.abs(a - b) <= self.tolerance.allowed(b)))

        pairs = self.pairs
        reproduces = all(close(pair.hand, gradients[name]) for name, pair in pairs.items())
        changes = not all(close(gradients[name], pair.reference) for name, pair in pairs.items())
        return reproduces and changes

    def reproduced_by(self, mode: _Mistake) -> bool:
        return self.matches(self.gradients_with(mode))


def explain(
    derivation: Derivation,
    example: Example,
    pairs: Mapping[str, GradientPair],
    tolerance: Tolerance,
) -> list[str]:
    """The mistakes, among those known here, that reproduce the hand gradients exactly."""
    return [finding.text for finding in explain_findings(derivation, example, pairs, tolerance)]


def explain_findings(
    derivation: Derivation,
    example: Example,
    pairs: Mapping[str, GradientPair],
    tolerance: Tolerance,
) -> list[Finding]:
    """``explain``'s mistakes with the keys that confirmation compares across points."""
    if not pairs:
        return []
    failure = _Failure(derivation, example, pairs, tolerance)
    try:
        return [*_relu_masks(failure), *_transposed_weights(failure), *_stale_weights(failure)]
    except Exception:  # a spec these rewrites do not fit: say nothing rather than guess
        return []


def _relu_masks(failure: _Failure) -> list[Finding]:
    found = []
    if failure.reproduced_by(_Mistake(relu=_MaskFromGradient)):
        found.append(Finding(("mask_from_gradient",), (
            "the hand gradients equal autograd's with each ReLU mask taken from the sign of "
            "the incoming gradient instead of the ReLU's input: the mask comes from the wrong "
            "tensor (seed 001's grad_h[grad_h < 0] = 0 should be grad_h[h < 0] = 0)"
        ), claim=True))  # fmt: skip
    if failure.reproduced_by(_Mistake(relu=_NoMask)):
        found.append(Finding(("no_mask",), (
            "the hand gradients equal autograd's with the ReLU masks left out: the gradient "
            "flows through inactive units (a missing grad_h[h < 0] = 0)"
        ), claim=True))  # fmt: skip
    return found


def _transposed_weights(failure: _Failure) -> list[Finding]:
    found = []
    for weight in failure.derivation.shapes:
        value = failure.example.inputs[weight]
        if value.ndim != 2 or value.shape[0] != value.shape[1] or value.shape[0] < 2:
            continue
        if not np.issubdtype(value.dtype, np.floating):
            continue
        mistake = _Mistake(stale_name=weight, stale_used=torch.from_numpy(value.T.copy()))
        if failure.reproduced_by(mistake):
            found.append(Finding(("transposed_use", weight), (
                f"the hand gradients equal autograd's with {weight!r} used transposed where "
                f"the gradient flows back through ... @ {weight}: grad @ {weight} where it "
                f"should be grad @ {weight}.T; {weight!r} is square, so the shapes cannot "
                "tell"
            ), claim=True))  # fmt: skip
    return found


def _stale_weights(failure: _Failure) -> list[Finding]:
    found = []
    pairs, inputs = failure.pairs, failure.example.inputs
    for weight in failure.derivation.wrt:
        if weight not in pairs or np.ndim(inputs[weight]) != 2:
            continue
        grad_weight = pairs[weight].reference
        # grad(lr) = reference - lr * shift: one run at lr = 1 gives the shift.
        used = torch.from_numpy(inputs[weight] - grad_weight)
        shifted = failure.gradients_with(_Mistake(stale_name=weight, stale_used=used))
        shift = {name: pairs[name].reference - shifted[name] for name in pairs}
        error = {name: pairs[name].reference - pairs[name].hand for name in pairs}
        norm = sum(float(np.sum(s * s)) for s in shift.values())
        if norm == 0.0:
            continue
        rate = sum(float(np.sum(error[n] * shift[n])) for n in pairs) / norm
        if rate <= 0:
            continue
        predicted = {name: pairs[name].reference - rate * shift[name] for name in pairs}
        if failure.matches(predicted):
            affected = [n for n in pairs if np.any(shift[n] != 0)]
            # The fitted rate is a free parameter: only the same rate everywhere confirms it.
            key = ("stale", weight, f"{rate:.3g}")
            found.append(Finding(key, (
                f"the gradient of {', '.join(map(repr, affected))} equals autograd's taken "
                f"through {weight} - {rate:.3g} * grad_{weight}: {weight!r} was updated "
                "before it was used to back-propagate (stale weights, seed 004); compute "
                "every gradient before updating any parameter"
            ), claim=True))  # fmt: skip
    return found
