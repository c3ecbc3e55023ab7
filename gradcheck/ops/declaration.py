"""``op_derivation``: one declaration of a ``torch.library.custom_op`` (with
``register_autograd``) and its spec, checked like a Function, and its registration too."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck.derivation import Derivation, DerivationError, DimRange, IntegerRange
from gradcheck.functions.checks import CHECKS, OPTIONAL_CHECKS
from gradcheck.functions.declaration import declared
from gradcheck.functions.function import UnderTest
from gradcheck.ops.registration import REGISTRATION_SHAPES, RegistrationChecks

__all__ = ["OP_CHECKS", "OpUnderTest", "op_derivation"]

# The Function checks, and opcheck's registration checks.
OP_CHECKS = (*CHECKS, "registration")


@dataclass(frozen=True)
class OpUnderTest(UnderTest):
    """A custom op (its OpOverload), and the names of its schema's arguments in order."""

    op: Any
    arguments: tuple[str, ...]
    functorch_vjp: bool = False  # torch.func.vjp refuses a custom op's generated Function

    @property
    def name(self) -> str:
        return str(self.op.name())

    def call(self, *arguments: Any) -> Any:
        return self.op(*arguments)

    def missing(self) -> dict[str, str]:
        reasons = {
            "jvp": (
                f"{self.name} has no forward-mode AD formula (register_autograd registers "
                "the backward only)"
            )
        }
        if not torch._C._dispatch_has_kernel_for_dispatch_key(self.name, "FuncTorchBatched"):
            reasons["vmap"] = (
                f"{self.name} registers no vmap rule (torch.library.register_vmap); torch "
                "loops over the batch, which is right by construction"
            )
        return reasons


def op_derivation(
    op: Any,
    *,
    spec: Callable[..., Any],
    shapes: Mapping[str, tuple[str | int, ...]],
    wrt: Sequence[str],
    name: str | None = None,
    dims: Mapping[str, DimRange] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    params: Mapping[str, Any] | None = None,
    integers: Mapping[str, IntegerRange] | None = None,
    dtype: str | None = None,
    checks: Sequence[str] = OP_CHECKS,
    nondet_tol: float = 0.0,
    registration_shapes: int = REGISTRATION_SHAPES,
) -> Derivation:
    """A Derivation that checks ``op`` (a ``torch.library.custom_op``, or its
    ``torch.ops.<namespace>.<name>``) against ``spec`` (the same function in plain torch
    ops) at every example, with every check of ``function_derivation`` the op has the
    capability for (backward through ``register_autograd``, double backward, strided inputs
    and grad_output, vmap where a rule is registered, determinism, reentrancy, undefined
    gradients of several outputs, CUDA), and opcheck's registration checks (schema, autograd
    registration, fake tensor, AOT dispatch with dynamic shapes) at the first
    ``registration_shapes`` distinct shapes. The op receives the inputs of ``shapes`` and
    the ``params`` by the names of its schema.

    Example::

        @torch.library.custom_op("mylib::scale", mutates_args=())
        def scale(x: torch.Tensor, s: float) -> torch.Tensor: ...

        scaled = op_derivation(
            scale, spec=lambda x, s: x * s, shapes={"x": ("N",)}, wrt=["x"],
            params={"s": [0.5, 2.0]},
        )
        verify(scaled).ok
    """
    overload = _overload(op, name)
    label = name or str(overload.name())
    if (
        isinstance(registration_shapes, bool)
        or not isinstance(registration_shapes, int)
        or registration_shapes < 0
    ):
        raise DerivationError(
            f"op_derivation({label!r}): registration_shapes={registration_shapes!r} must be "
            f"an int >= 0 (default {REGISTRATION_SHAPES}; 0 runs none of opcheck's checks)."
        )
    arguments = _arguments(label, overload, shapes, params)
    under_test = OpUnderTest(overload, arguments)
    derivation = declared(
        under_test, declarer="op_derivation", label=label, spec=spec, shapes=shapes, wrt=wrt,
        dims=dims, bounds=bounds, params=params, integers=integers, dtype=dtype,
        checks=checks, nondet_tol=nondet_tol, known=(*OP_CHECKS, *OPTIONAL_CHECKS),
    )  # fmt: skip
    registration = RegistrationChecks(
        derivation.extra_checks,  # type: ignore[arg-type]
        overload,
        arguments=arguments,
        wrt=derivation.wrt,
        enabled="registration" in checks and registration_shapes > 0,
        limit=registration_shapes,
    )
    return dataclasses.replace(derivation, extra_checks=registration)


def _overload(op: Any, name: str | None) -> Any:
    """The OpOverload of a custom op, an OpOverloadPacket (its default) or an OpOverload."""
    overload = getattr(op, "_opoverload", op)  # a CustomOpDef
    if isinstance(overload, torch._ops.OpOverloadPacket):
        overload = overload.default
    if not isinstance(overload, torch._ops.OpOverload):
        label = name or getattr(op, "__name__", repr(op))
        raise DerivationError(
            f"op_derivation({label!r}): the first argument must be a custom op (what "
            "torch.library.custom_op returns, or torch.ops.<namespace>.<name>), got "
            f"{op!r}; for a torch.autograd.Function use function_derivation."
        )
    return overload


def _arguments(
    label: str, overload: Any, shapes: Mapping[str, Any], params: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """The names of the op's schema arguments, in order; every one declared in shapes or
    params, and nothing declared that the op does not take."""
    taken = [argument.name for argument in overload._schema.arguments]
    declared_names = [*(shapes if isinstance(shapes, Mapping) else {}), *(params or {})]
    unknown = [n for n in taken if n not in declared_names]
    unused = [n for n in declared_names if n not in taken]
    if unknown or unused:
        raise DerivationError(
            f"op_derivation({label!r}): {overload.name()} takes ({', '.join(taken)}) by its "
            "schema, and is called with the inputs of shapes and the params by those names"
            + (f"; not declared in shapes or params: {', '.join(unknown)}" if unknown else "")
            + (f"; declared but not taken by the op: {', '.join(unused)}" if unused else "")
            + "."
        )
    return tuple(taken)
