"""What a step or model check found: a ``Report`` that also says where the training parted.

``TrainingReport`` extends the core ``Report`` (so ``str()`` prints the same torch.testing-style
lines) with the first step and parameter where a hand-written step left the reference, and
the loss curves of the two trajectories with their agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from gradcheck.report import Report

__all__ = ["LossCurves", "TrainingMismatch", "TrainingReport"]


class TrainingMismatch(AssertionError):
    """A hand-written training step or model does not do what its spec and optimizer say."""


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    if not actual.size:
        return 0.0
    scale = np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(actual - expected) / scale))


@dataclass(frozen=True)
class LossCurves:
    """The spec loss before each step: along the hand's trajectory, and along a reference
    trajectory that autograd and the optimizer ran on their own from the same start."""

    hand: np.ndarray
    reference: np.ndarray
    # The greatest relative difference between the two trajectories' parameters, any step.
    parameter_agreement: float

    @property
    def agreement(self) -> float:
        """The greatest relative difference between the two loss curves, any step."""
        return _relative(self.hand, self.reference)

    def summary(self) -> str:
        steps = len(self.hand)
        if not steps:
            return "no step was taken"
        went = (
            f"over 1 step (loss {self.hand[0]:.6g} before it)"
            if steps == 1
            else f"over {steps} steps the loss went {self.hand[0]:.6g} -> {self.hand[-1]:.6g}"
        )
        return (
            f"{went}; "
            f"the loss curves agree to {self.agreement:.2g} relative (greatest difference), "
            f"the parameters to {self.parameter_agreement:.2g}"
        )


@dataclass(frozen=True)
class TrainingReport(Report):
    """A ``Report`` for a training step (``step``, ``parameter``: where it first parted from
    the reference, ``None`` when it never did) or a model (``step`` is ``None``)."""

    step: int | None = None
    parameter: str | None = None
    steps: int = 0
    curves: LossCurves | None = None
    # Its pairs are a step's updates beside the reference optimizer's, not gradients.
    compared: ClassVar[Literal["gradient", "update"]] = "update"
