"""Compare a hand gradient with a reference: which elements differ, and by how much."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Mismatch", "compare"]


@dataclass(frozen=True)
class Mismatch:
    """How a hand gradient differs from one reference, in torch.testing's terms."""

    parameter: str
    reference: str
    mismatched: int
    total: int
    max_abs: float
    max_abs_index: tuple[int, ...]
    max_abs_allowed: float
    max_rel: float
    max_rel_index: tuple[int, ...]
    max_rel_allowed: float
    unit: str = "elements"
    # Where the reference is 0 at max_rel_index no relative difference is allowed (the
    # relative allowance there is inf and says nothing): the absolute allowance there, else None.
    zero_reference_allowed: float | None = None

    @property
    def share(self) -> float:
        return self.mismatched / self.total if self.total else 0.0


def compare(
    actual: np.ndarray,
    expected: np.ndarray,
    allowed: np.ndarray,
    *,
    parameter: str,
    reference: str,
    unit: str = "elements",
) -> Mismatch | None:
    """``None`` when every ``|actual - expected| <= allowed``, else what differs and where."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), expected.shape)
    difference = np.subtract(actual, expected, out=np.empty(expected.shape))
    np.abs(difference, out=difference)  # in place: one temporary at 3000x3000, not two
    # A NaN in the hand gradient is a mismatch, never a pass by comparison rules.
    bad = ~(difference <= allowed)
    if not bad.any():
        return None
    difference = np.where(np.isnan(difference), np.inf, difference)
    magnitude = np.abs(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(
            magnitude > 0, difference / magnitude, np.where(difference > 0, np.inf, 0.0)
        )
        relative_allowed = np.where(magnitude > 0, allowed / magnitude, np.inf)
    abs_at = np.unravel_index(int(np.argmax(np.where(bad, difference, -1.0))), expected.shape)
    rel_at = np.unravel_index(int(np.argmax(np.where(bad, relative, -1.0))), expected.shape)
    return Mismatch(
        parameter=parameter,
        reference=reference,
        mismatched=int(bad.sum()),
        total=int(bad.size),
        max_abs=float(difference[abs_at]),
        max_abs_index=tuple(int(i) for i in abs_at),
        max_abs_allowed=float(allowed[abs_at]),
        max_rel=float(relative[rel_at]),
        max_rel_index=tuple(int(i) for i in rel_at),
        max_rel_allowed=float(relative_allowed[rel_at]),
        unit=unit,
        zero_reference_allowed=float(allowed[rel_at]) if magnitude[rel_at] == 0 else None,
    )
