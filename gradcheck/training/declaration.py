"""What a hand-written training step claims: the ``TrainingStep`` declaration, validated.

It sits below both the trajectory that runs a step (``trajectory``) and the public checks
(``steps``); it runs nothing and never imports either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from gradcheck.derivation import BACKENDS, Derivation, DerivationError
from gradcheck.training._internal import as_derivation, whole
from gradcheck.training.optimizers import OptimizerSpec

__all__ = ["STATE_KEYWORD", "TrainingStep"]

# Keyword the hand step receives its state under, when the declaration has a state factory.
STATE_KEYWORD = "state"


@dataclass(frozen=True, eq=False, kw_only=True)
class TrainingStep:
    """A hand-written training step and what it claims to do.

    ``step`` is called once per step with the current parameters and the batch as keyword
    arguments (numpy arrays for ``backend="numpy"``, float64 torch tensors for "torch"),
    fresh copies every call, and returns ``{parameter: new value}``. It may update its
    arguments in place and return them. The parameters it receives are the ones it returned
    the step before. ``state``, if given, is a zero-argument factory called once per
    trajectory; its result is passed to every call as ``state=`` (a hand-written Adam's
    moments, a module and optimizer the step keeps, persistent leaf tensors).

    ``loss`` is the spec, written with torch ops: called with float64 tensors for every
    parameter and batch input, it returns the scalar loss. ``optimizer`` is the torch
    optimizer the step claims to be (``sgd(lr=...)``, ``adam(lr=...)``). ``batch_size``
    feeds the batch through ``torch.utils.data.DataLoader(batch_size=..., shuffle=False)``,
    one minibatch per step, epoch after epoch; ``None`` gives every step the whole batch.
    ``params`` and ``batch`` map names to shapes with symbolic dims; ``dims`` and ``bounds``
    narrow what hypothesis draws, as for a ``Derivation``.

    Example::

        def hand_sgd(w, x, y):
            grad_w = 2 * x.T @ (x @ w - y)  # d/dw of sum((x @ w - y)**2)
            return {"w": w - 0.01 * grad_w}

        TrainingStep(
            name="least_squares_sgd",
            step=hand_sgd,
            loss=lambda w, x, y: ((x @ w - y) ** 2).sum(),
            params={"w": ("D", 1)},
            batch={"x": ("N", "D"), "y": ("N", 1)},
            optimizer=sgd(lr=0.01),
        )
    """

    name: str
    step: Callable[..., Mapping[str, Any]]
    loss: Callable[..., torch.Tensor]
    params: Mapping[str, tuple[str | int, ...]]
    batch: Mapping[str, tuple[str | int, ...]]
    optimizer: OptimizerSpec
    backend: str = "numpy"
    state: Callable[[], Any] | None = None
    batch_size: int | None = None
    dims: Mapping[str, tuple[int, int]] | None = None
    bounds: Mapping[str, tuple[float, float]] | None = None
    # Filled in by __post_init__: the shapes, dims and bounds as a validated Derivation.
    derivation: Derivation = field(init=False, repr=False)

    def __post_init__(self) -> None:
        owner = f"TrainingStep {self.name!r}"
        for argument in ("params", "batch"):
            value = getattr(self, argument)
            if not isinstance(value, Mapping):
                raise DerivationError(
                    f"{owner}: {argument} must be a mapping from name to shape, e.g. "
                    f"{{'w1': ('D_in', 'H')}}; got {type(value).__name__}."
                )
        if not self.params:
            raise DerivationError(f"{owner}: params is empty; name the parameters it trains.")
        both = [name for name in self.params if name in self.batch]
        if both:
            raise DerivationError(
                f"{owner}: {', '.join(map(repr, both))} is in both params and batch; a name "
                "is either a trained parameter or data."
            )
        if STATE_KEYWORD in self.params or STATE_KEYWORD in self.batch:
            raise DerivationError(
                f"{owner}: {STATE_KEYWORD!r} is reserved (the step receives its state under "
                "it); rename that input."
            )
        if self.backend not in BACKENDS:
            raise DerivationError(
                f"{owner}: backend={self.backend!r} is not one of "
                f"{', '.join(map(repr, BACKENDS))}: what the step receives."
            )
        derivation = as_derivation(
            "TrainingStep", name=self.name, forward=self.loss, hand=self.step,
            shapes={**self.params, **self.batch}, wrt=tuple(self.params),
            backend=self.backend, dims=self.dims, bounds=self.bounds,
        )  # fmt: skip
        if not isinstance(self.optimizer, OptimizerSpec):
            raise TypeError(
                f"{owner}: optimizer={self.optimizer!r} must be an OptimizerSpec; write "
                "optimizer=sgd(lr=...) or optimizer=adam(lr=...) from gradcheck.training."
            )
        self.optimizer.check_names(list(self.params), owner)
        if self.state is not None and not callable(self.state):
            raise DerivationError(
                f"{owner}: state={self.state!r} must be a zero-argument callable that makes "
                "a fresh state (e.g. state=dict), or None."
            )
        self._validate_batch_size(owner)
        object.__setattr__(self, "derivation", derivation)

    def _validate_batch_size(self, owner: str) -> None:
        if self.batch_size is None:
            return
        whole(f"{owner}: batch_size", self.batch_size, minimum=1)
        if not self.batch:
            raise DerivationError(f"{owner}: batch_size={self.batch_size} but batch is empty.")
        leading = {name: shape[0] if len(shape) else None for name, shape in self.batch.items()}
        if None in leading.values() or len(set(leading.values())) != 1:
            raise DerivationError(
                f"{owner}: batch_size={self.batch_size} splits every batch input along its "
                f"first dim, so they must share one, e.g. ('N', ...); got {dict(self.batch)!r}."
            )

    def __repr__(self) -> str:
        return (
            f"TrainingStep(name={self.name!r}, backend={self.backend!r}, "
            f"params={list(self.params)!r}, optimizer={self.optimizer})"
        )
