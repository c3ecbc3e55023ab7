"""What a heatmap of one wrong gradient shows: a 2-D grid of cells, each one element.

A gradient of any rank becomes at most ``max_rows`` x ``max_cols`` cells:

- rank 0 and 1 are one row;
- rank 3 and more show the 2-D slice over the last two axes that holds the greatest
  difference (for a convolution's (N, C, H, W) gradient, one image: an H x W plane);
- a slice larger than the grid is cut into blocks, and each block's cell shows one element
  of the block, the same in the hand, reference and difference panels: its worst (a
  mismatched element before any other, then the greatest difference), so the worst element
  of the whole gradient is always on screen and an outlined cell always holds a mismatch.

Pure numpy; no drawing here (``svg.py`` draws a grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "gradient_grid", "mismatched_elements"]

MAX_ROWS = 40
MAX_COLS = 40


@dataclass(frozen=True)
class Grid:
    """The cells of one gradient's heatmaps; every array is (rows, cols)."""

    hand: np.ndarray
    reference: np.ndarray
    difference: np.ndarray  # hand - reference
    mismatched: np.ndarray  # bool: the cell's element differs by more than allowed
    # The full index (into the gradient) of the element each cell shows: (rows, cols, ndim).
    indices: np.ndarray
    worst: tuple[int, int]  # the cell of the greatest mismatch (or difference)
    block: tuple[int, int]  # elements per cell, along rows and columns
    shape: tuple[int, ...]  # the gradient's shape
    lead: tuple[int, ...]  # the index of the slice shown, for rank 3 and more; else ()
    mismatched_total: int  # mismatched elements in the whole gradient
    mismatched_shown: int  # of those, in the slice shown

    @property
    def downsampled(self) -> bool:
        return self.block != (1, 1)

    @property
    def row_starts(self) -> list[int]:
        """The element index each row of cells starts at (a vector's one row: 0)."""
        step = self.block[0] if len(self.shape) >= 2 else 0
        return [r * step for r in range(self.hand.shape[0])]

    @property
    def col_starts(self) -> list[int]:
        """The element index each column of cells starts at."""
        return [c * self.block[1] for c in range(self.hand.shape[1])]

    def index_text(self, row: int, col: int) -> str:
        index = tuple(int(i) for i in self.indices[row, col])
        return "(" + ", ".join(map(str, index)) + ("," if len(index) == 1 else "") + ")"


def mismatched_elements(hand: np.ndarray, reference: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The elements ``compare`` counts as mismatched: ``not |hand - reference| <= allowed``
    (a NaN is a mismatch)."""
    hand = np.asarray(hand, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), reference.shape)
    with np.errstate(invalid="ignore"):
        return np.asarray(~(np.abs(hand - reference) <= allowed))


def _severity(difference: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """One number per element that orders mismatches before matches, then by |difference|
    (NaN and inf the worst), so that an argmax picks what a cell should show."""
    size = np.abs(difference)
    finite = np.isfinite(size)
    largest = float(size[finite].max()) if finite.any() else 0.0
    scaled = np.where(finite, size / (2 * largest) if largest > 0 else 0.0, 1.0)
    return scaled + 2.0 * bad


def gradient_grid(
    hand: np.ndarray,
    reference: np.ndarray,
    allowed: np.ndarray,
    *,
    max_rows: int = MAX_ROWS,
    max_cols: int = MAX_COLS,
) -> Grid:
    """The grid of one gradient against its reference; ``allowed`` is the per-element
    tolerance the comparison used (an array of the gradient's shape, or a scalar)."""
    hand = np.asarray(hand, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if hand.shape != reference.shape:
        raise ValueError(
            f"hand gradient of shape {hand.shape} and reference of shape {reference.shape} "
            "cannot be drawn side by side; only same-shaped gradients have heatmaps"
        )
    shape = hand.shape
    bad = mismatched_elements(hand, reference, allowed)
    with np.errstate(invalid="ignore"):
        difference = hand - reference
    severity = _severity(difference, bad)

    lead: tuple[int, ...] = ()
    if hand.ndim >= 3:
        worst_flat = int(np.argmax(severity))
        lead = tuple(int(i) for i in np.unravel_index(worst_flat, shape)[:-2])
    planes = [_as_plane(array, lead) for array in (hand, reference, difference, bad, severity)]
    rows, cols = planes[0].shape
    block = (math.ceil(rows / max_rows), math.ceil(cols / max_cols))
    chosen = _block_choice(planes[4], block)  # (cell_rows, cell_cols) flat index in the plane
    picked = [plane.reshape(-1)[chosen] for plane in planes]
    if shape:
        # A flat index into the plane, back to a full index into the gradient.
        in_plane = np.unravel_index(chosen, planes[0].shape)
        if hand.ndim == 1:
            in_plane = in_plane[1:]
        full = [np.full(chosen.shape, i) for i in lead] + list(in_plane)
        indices = np.stack(full, axis=-1)
    else:
        indices = np.zeros((1, 1, 0), dtype=np.int64)
    worst_cell = np.unravel_index(int(np.argmax(picked[4])), picked[4].shape)
    return Grid(
        hand=picked[0],
        reference=picked[1],
        difference=picked[2],
        mismatched=picked[3].astype(bool),
        indices=indices.astype(np.int64),
        worst=(int(worst_cell[0]), int(worst_cell[1])),
        block=block,
        shape=tuple(shape),
        lead=lead,
        mismatched_total=int(bad.sum()),
        mismatched_shown=int(planes[3].sum()),
    )


def _as_plane(array: np.ndarray, lead: tuple[int, ...]) -> np.ndarray:
    """Rank 0 and 1 as one row, rank 2 as it is, higher ranks at the slice ``lead``."""
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(1, -1)
    return array[lead] if lead else array


def _block_choice(severity: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """For each block of the plane, the flat index (into the plane) of its worst element."""
    rows, cols = severity.shape
    block_rows, block_cols = block
    cell_rows, cell_cols = math.ceil(rows / block_rows), math.ceil(cols / block_cols)
    padded = np.full((cell_rows * block_rows, cell_cols * block_cols), -1.0)
    padded[:rows, :cols] = severity
    blocks = padded.reshape(cell_rows, block_rows, cell_cols, block_cols).transpose(0, 2, 1, 3)
    within = blocks.reshape(cell_rows, cell_cols, block_rows * block_cols).argmax(axis=-1)
    row = np.arange(cell_rows)[:, None] * block_rows + within // block_cols
    col = np.arange(cell_cols)[None, :] * block_cols + within % block_cols
    return np.asarray(row * cols + col)
