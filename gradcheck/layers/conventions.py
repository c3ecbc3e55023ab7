"""Standard layers whose course conventions differ from year to year, accepted either way.

- **Dropout.** Later years pass the probability of *keeping* a unit as ``p``, earlier ones
  the probability of *dropping* it, and the mask comes from whatever random draw the learner
  wrote. The spec therefore takes the mask from the learner's own forward output (a unit is
  kept where ``out != 0``; inputs are drawn away from zero) and scales the kept units by
  ``1 / p`` or ``1 / (1 - p)``, whichever the learner's output matches. The backward is then
  judged against that mask and scale. As the mask and scale come from the learner, the
  forward is also held to inverted dropout's contract, E[out] = x: the fraction kept and the
  scale agree with p under one convention, and units are dropped independently
  (``dropout_contract``).
- **Linear classifiers.** ``loss, dW = f(W, X, y, reg)`` with the L2 penalty written as
  ``reg * sum(W * W)`` or as ``0.5 * reg * sum(W * W)``. The spec uses the penalty whose
  loss value the learner's returned loss matches, and the report says which.

In both, the learner's function is consulted only for a convention (a mask, a factor), never
for a gradient: the gradient reference is still torch autograd of the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gradcheck.derivation import Derivation
from gradcheck.layers import classifiers, dense, specs
from gradcheck.layers.adapter import course_layer, course_loss
from gradcheck.layers.dropout_contract import ExpectationChecked

__all__ = ["CONVENTION_LAYERS", "ClassifierSpec", "DropoutSpec"]

Function = Callable[..., Any]

# Probabilities valid in both meanings of p (neither 0 nor 1), from the course's notebooks:
# 0.25, 0.4, 0.7 (keep) and 0.3, 0.6, 0.75 (drop), with 0.5 where both meanings agree.
DROPOUT_P = [0.5, 0.25, 0.75, 0.4, 0.6, 0.3, 0.7]


class DropoutSpec:
    """Inverted dropout with the learner's own mask and either meaning of p."""

    def __init__(self, forward: Function) -> None:
        self.forward = forward
        self.__name__ = "dropout"

    def _learner_out(self, x: np.ndarray, p: float, seed: int) -> np.ndarray | None:
        try:
            returned = self.forward(x.copy(), {"p": p, "seed": seed, "mode": "train"})
            out = np.asarray(returned[0], dtype=np.float64)
        except Exception:  # the adapter calls the forward again and reports what went wrong
            return None
        return out if out.shape == x.shape else None

    def __call__(self, x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
        values = x.detach().numpy()
        out = self._learner_out(values, p, seed)
        # without a usable out, the course's recipe; the adapter then reports the forward
        keep = specs.dropout_keep(tuple(x.shape), p, seed) if out is None else out != 0
        scale = 1.0 / p
        if out is not None and keep.any() and p != 0.5:
            ratio = np.median(out[keep] / values[keep])
            if abs(ratio - 1.0 / (1.0 - p)) < abs(ratio - 1.0 / p):
                scale = 1.0 / (1.0 - p)  # p is the probability of dropping a unit
        return torch.where(torch.from_numpy(keep), x * scale, torch.zeros_like(x))


def _declare_dropout(forward: Function, backward: Function, name: str) -> Derivation:
    return course_layer(
        # the learner's forward, first held to E[out] = x (the spec takes its mask as is)
        ExpectationChecked(forward),
        backward,
        name=name,
        spec=DropoutSpec(forward),
        shapes={"x": ("N", "D")},
        # p in either meaning; the seed fixes the learner's mask
        params={"p": DROPOUT_P, "seed": (0, 7)},
        param_dict="dropout_param",
        fixed={"mode": "train"},
        dims={"N": (1, 4), "D": (1, 6)},
    )


# The two ways courses write the L2 penalty of a linear classifier: factor times reg * sum(W*W).
PENALTIES = {1.0: "reg * sum(W * W)", 0.5: "0.5 * reg * sum(W * W)"}


class PenaltyConvention:
    """Which L2 convention a learner's loss uses, decided once and then kept, so that every
    point (and every finite-difference probe) is judged against the same spec.

    It is decided from the learner's loss at the point in hand with ``reg`` raised to
    ``REG_PROBE``: there the two candidates differ by ``REG_PROBE / 2 * sum(W*W)``, far above
    rounding however small the drawn reg and weights are (a decision at the drawn reg could
    not tell them apart where ``sum(W*W)`` is tiny, yet their gradients would differ)."""

    REG_PROBE = 1000.0
    # The candidates must differ by more than this share of the loss to be told apart.
    CLEAR = 1e-9

    def __init__(self) -> None:
        self.factor: float | None = None

    def decide(self, learner: float | None, data: float, penalty: float) -> float:
        """``learner``, ``data`` and ``penalty`` are taken at reg = REG_PROBE."""
        if self.factor is not None:
            return self.factor
        if learner is None or abs(0.5 * penalty) <= self.CLEAR * (1.0 + abs(data + penalty)):
            return 1.0
        half, whole = data + 0.5 * penalty, data + penalty
        self.factor = 0.5 if abs(learner - half) < abs(learner - whole) else 1.0
        return self.factor

    def notes(self, over: str = "") -> tuple[str, ...]:
        if self.factor is None:
            return ()
        return (
            f"L2 penalty judged as {PENALTIES[self.factor]}{over}: the convention the "
            "returned loss matches (courses write reg * sum(W * W) or 0.5 * reg * sum(W * W))",
        )


class ClassifierSpec:
    """``data_loss(X @ W, y) + factor * reg * sum(W * W)``, with the factor (1 or 1/2) that
    the learner's returned loss matches."""

    def __init__(self, data_loss: Function, learner: Function, kind: str) -> None:
        self.data_loss = data_loss
        self.learner = learner
        self.__name__ = kind
        self.convention = PenaltyConvention()

    def _learner_loss(self, W: Any, X: Any, y: Any, reg: float) -> float | None:
        arrays = [t.detach().numpy().copy() for t in (W, X, y)]
        try:
            return float(self.learner(*arrays, reg)[0])
        except Exception:  # the adapter calls it again and reports what went wrong
            return None

    def __call__(
        self, W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float
    ) -> torch.Tensor:
        data = self.data_loss(X @ W, y)
        if self.convention.factor is None:
            probe = self.convention.REG_PROBE
            data_value = float(data.detach())
            self.convention.decide(
                self._learner_loss(W, X, y, probe),
                data_value,
                probe * float((W * W).sum().detach()),
            )
        factor = 1.0 if self.convention.factor is None else self.convention.factor
        return data + factor * reg * (W * W).sum()

    def notes(self) -> tuple[str, ...]:
        return self.convention.notes()


def _classifier(data_loss: Function, kind: str) -> Callable[[Function, None, str], Derivation]:
    def declare(loss: Function, backward: None, name: str) -> Derivation:
        return course_loss(
            loss,
            name=name,
            spec=ClassifierSpec(data_loss, loss, kind),
            shapes={"W": ("D", "C"), "X": ("N", "D"), "y": ("N",)},
            grads=("W",),
            integers={"y": lambda s: (0, s["C"] - 1)},
            # reg from none to strong; the course's gradient checks use 0 to 50
            params={"reg": (0.0, 50.0)},
            positional_params=("reg",),
            dims={"N": (1, 5), "D": (1, 5), "C": (1, 5)},
        )

    return declare


CONVENTION_LAYERS: dict[str, tuple[Callable[..., Derivation], Function, Function | None]] = {
    "dropout": (_declare_dropout, dense.dropout_forward, dense.dropout_backward),
    "softmax_classifier": (
        _classifier(specs.softmax_loss, "softmax_classifier"),
        classifiers.softmax_loss_vectorized,
        None,
    ),
    "svm_classifier": (
        _classifier(specs.svm_loss, "svm_classifier"),
        classifiers.svm_loss_vectorized,
        None,
    ),
}
"""kind: (declare, reference forward or loss, reference backward or None for a loss)."""
