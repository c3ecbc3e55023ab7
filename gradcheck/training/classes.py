"""A numpy training class, checked as a training step in one line.

Seed 004's ``SimpleReLUNN`` keeps its data and weights as attributes; ``forward()`` computes
the prediction and ``back_propagation()`` updates the weights in place. ``method_step`` turns
such a class into a ``TrainingStep`` held to plain SGD: each step makes an object without
running its ``__init__`` (which draws random weights, prints, or uses removed numpy names),
sets the drawn weights, the batch and the learning rate as attributes, calls the methods in
order and reads the weights back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck.derivation import DerivationError
from gradcheck.training.declaration import TrainingStep
from gradcheck.training.optimizers import sgd

__all__ = ["method_step"]


@dataclass(eq=False, repr=False)  # compared and shown as the object it is
class _MethodStep:
    """One training step of ``cls``: attributes in, ``calls`` run, weights out."""

    cls: type
    calls: tuple[str, ...]
    params: tuple[str, ...]
    lr: float
    lr_name: str

    def __post_init__(self) -> None:
        self.__name__ = f"{self.cls.__name__}.{'+'.join(self.calls)}"

    def __call__(self, **arrays: np.ndarray) -> dict[str, Any]:
        # the class's own __new__, without its __init__ (which draws weights, prints, ...)
        model = self.cls.__new__(self.cls)  # type: ignore[call-overload]
        for name, value in arrays.items():
            setattr(model, name, value)
        setattr(model, self.lr_name, self.lr)
        for call in self.calls:
            getattr(model, call)()
        return {name: getattr(model, name) for name in self.params}


def method_step(
    cls: type,
    *,
    calls: Sequence[str],
    loss: Callable[..., torch.Tensor],
    params: Mapping[str, tuple[str | int, ...]],
    batch: Mapping[str, tuple[str | int, ...]],
    lr: float,
    lr_attribute: str = "lr",
    name: str | None = None,
    dims: Mapping[str, tuple[int, int]] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> TrainingStep:
    """A ``TrainingStep`` for a class whose methods update its weights in place, held to
    ``sgd(lr=lr)`` on autograd gradients of ``loss`` (the spec, in torch).

    ``params`` and ``batch`` name the attributes that hold the weights and the data (the
    names ``loss`` takes), with their shapes; ``calls`` the methods one step runs, in order;
    ``lr_attribute`` where the class reads its learning rate.

    Example (seed 004)::

        step = method_step(SimpleReLUNN, calls=("forward", "back_propagation"), loss=loss,
                           params={"w1": ("D", "H"), "w2": ("H", "O")},
                           batch={"x": ("N", "D"), "y": ("N", "O")}, lr=1e-3)
        verify_step(step).ok
    """
    where = f"method_step({getattr(cls, '__name__', cls)!r})"
    if not isinstance(cls, type):
        raise DerivationError(f"{where}: cls={cls!r} must be the class itself.")
    if isinstance(calls, str) or not calls:
        raise DerivationError(
            f"{where}: calls={calls!r} must be a sequence of method names, in the order one "
            "step runs them, e.g. calls=('forward', 'back_propagation')."
        )
    missing = [call for call in calls if not callable(getattr(cls, call, None))]
    if missing:
        raise DerivationError(
            f"{where}: {cls.__name__} has no method {', '.join(map(repr, missing))}; calls "
            f"names the methods one step runs."
        )
    if not isinstance(lr, int | float) or isinstance(lr, bool) or not lr > 0:
        raise DerivationError(f"{where}: lr={lr!r} must be the positive learning rate.")
    return TrainingStep(
        name=cls.__name__ if name is None else name,
        step=_MethodStep(cls, tuple(calls), tuple(params), float(lr), lr_attribute),
        loss=loss,
        params=params,
        batch=batch,
        optimizer=sgd(lr=float(lr)),
        dims=dims,
        bounds=bounds,
    )
