"""Draw one heatmap panel of a ``Grid`` as inline SVG text: self-contained, crisp at any zoom.

The palette is Paul Tol's diverging blue-white-red ("BuRd"), built to stay readable for
red-green colour blindness: negative values blue, zero white, positive red, and the
darkness alone orders them. Values are binned into ``2 * LEVELS + 1`` colours so that each
colour is one ``<path>`` (a 40 x 40 grid stays a few kilobytes). Mismatched elements are
outlined in black, which depends on no colour at all; the worst element gets a second,
dashed frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from html import escape

import numpy as np

from gradcheck.display.grid import Grid

__all__ = ["PALETTE", "colour", "heatmap_svg", "number"]

# Paul Tol, "Colour schemes and templates" (2021), diverging scheme BuRd, blue to red.
PALETTE = (
    "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
    "#fddbc7", "#f4a582", "#d6604d", "#b2182b",
)  # fmt: skip
NON_FINITE = "#6b6b6b"  # NaN or inf: dark grey, outside the palette
LEVELS = 8  # colours on each side of white
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def colour(position: float) -> str:
    """The palette at ``position`` in [-1, 1] (-1 darkest blue, 0 white, 1 darkest red)."""
    where = (min(max(position, -1.0), 1.0) + 1) / 2 * (len(PALETTE) - 1)
    low = min(int(where), len(PALETTE) - 2)
    t = where - low
    a, b = _rgb(PALETTE[low]), _rgb(PALETTE[low + 1])
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return f"#{r:02x}{g:02x}{bl:02x}"


def number(value: float) -> str:
    """A value as a label: 4 significant digits, no trailing noise."""
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value + 0.0:.4g}"  # + 0.0: no "-0"


def _levels(values: np.ndarray, scale: float) -> np.ndarray:
    """Each value's colour bin in -LEVELS..LEVELS; non-finite values get LEVELS + 1."""
    with np.errstate(invalid="ignore", divide="ignore"):
        binned = np.rint(np.clip(values / scale, -1.0, 1.0) * LEVELS)
    return np.where(np.isfinite(values), binned, LEVELS + 1).astype(int)


def _squares(
    cells: Iterable[tuple[int, int]], origin: tuple[float, float], pitch: int, inset: float = 0.0
) -> str:
    """Path data for a square in each (row, col) cell, each move relative to the last square
    (half the bytes of absolute coordinates)."""
    side = pitch - 2 * inset
    x0, y0 = origin[0] + inset, origin[1] + inset
    parts, last = [], (0.0, 0.0)
    for index, (r, c) in enumerate(cells):
        x, y = x0 + c * pitch, y0 + r * pitch
        move = f"M{x:g} {y:g}" if index == 0 else f"m{x - last[0]:g} {y - last[1]:g}"
        parts.append(f"{move}h{side:g}v{side:g}h-{side:g}z")
        last = (x, y)
    return "".join(parts)


def _ticks(count: int) -> list[int]:
    """Up to six cells to label along an axis: the first, the last, evenly between."""
    if count <= 6:
        return list(range(count))
    step = math.ceil((count - 1) / 5)
    cells = list(range(0, count - 1, step))
    return [*cells, count - 1] if count - 1 - cells[-1] >= step / 2 else [*cells[:-1], count - 1]


def heatmap_svg(
    values: np.ndarray,
    grid: Grid,
    *,
    scale: float,
    title: str,
    tooltips: dict[tuple[int, int], str] | None = None,
    role: str = "",
) -> str:
    """One panel of ``grid``: the title, column and row indices, the cells of ``values``
    (one of the grid's planes), the outlines of its mismatched cells and the frame of its
    worst, a colour scale from ``-scale`` to ``scale`` under it. ``tooltips`` maps cells to
    hover text."""
    outlined, worst = grid.mismatched, grid.worst
    row_labels, col_labels = grid.row_starts, grid.col_starts
    rows, cols = values.shape
    cell = max(6, min(28, 300 // max(rows, cols)))
    left, top = 40, 32
    grid_w, grid_h = cols * cell, rows * cell
    bar_w = max(grid_w, 160)
    width, height = left + bar_w + 12, top + grid_h + 46
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gradcheck-heatmap" '
        f'data-role="{escape(role)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="13" {FONT} font-size="11" font-weight="bold">{escape(title)}</text>',
    ]
    # Column indices above the grid, row indices to its left.
    for c in _ticks(cols):
        x = left + c * cell + cell / 2
        parts.append(
            f'<text x="{x:g}" y="{top - 5}" {FONT} font-size="9" text-anchor="middle" '
            f'fill="#444">{col_labels[c]}</text>'
        )
    for r in _ticks(rows):
        y = top + r * cell + cell / 2 + 3
        parts.append(
            f'<text x="{left - 4}" y="{y:g}" {FONT} font-size="9" text-anchor="end" '
            f'fill="#444">{row_labels[r]}</text>'
        )
    # The cells: one path per colour.
    levels = _levels(values, scale)
    parts.append('<g class="cells" shape-rendering="crispEdges">')
    for level in np.unique(levels):
        fill = NON_FINITE if level > LEVELS else colour(level / LEVELS)
        cells = [(int(r), int(c)) for r, c in np.argwhere(levels == level)]
        path = _squares(cells, (left, top), cell)
        parts.append(f'<path fill="{fill}" d="{path}"/>')
    parts.append(
        f'<rect x="{left}" y="{top}" width="{grid_w}" height="{grid_h}" fill="none" '
        'stroke="#999" stroke-width="1"/></g>'
    )
    # Outlines: one path, each square inside its cell so that neighbours stay apart; the
    # cells it outlines are listed in data-cells as "row,col" pairs.
    stroke = 2 if cell >= 14 else 1.5 if cell >= 9 else 1
    outlined_cells = [(int(r), int(c)) for r, c in np.argwhere(outlined)]
    squares = _squares(outlined_cells, (left, top), cell, inset=stroke / 2)
    listed = " ".join(f"{r},{c}" for r, c in outlined_cells)
    parts.append('<g class="outlines" fill="none" stroke="#000">')
    if outlined_cells:
        parts.append(
            f'<path class="mismatch" data-cells="{listed}" stroke-width="{stroke:g}" '
            f'd="{squares}"/>'
        )
    # Hover text on an invisible square per cell that has some.
    for (r, c), hover in (tooltips or {}).items():
        parts.append(
            f'<rect x="{left + c * cell}" y="{top + r * cell}" width="{cell}" '
            f'height="{cell}" fill="#fff" fill-opacity="0" stroke="none">'
            f"<title>{escape(hover)}</title></rect>"
        )
    r, c = worst
    parts.append(
        f'<rect class="worst" data-cell="{r},{c}" x="{left + c * cell - 2.5:g}" '
        f'y="{top + r * cell - 2.5:g}" width="{cell + 5}" height="{cell + 5}" '
        'stroke-width="1.5" stroke-dasharray="3 2"/></g>'
    )
    # The scale: every colour bin, labelled at both ends and at zero.
    bar_top = top + grid_h + 12
    step = bar_w / (2 * LEVELS + 1)
    parts.append('<g class="scale" shape-rendering="crispEdges">')
    for i, level in enumerate(range(-LEVELS, LEVELS + 1)):
        parts.append(
            f'<rect x="{left + i * step:.2f}" y="{bar_top}" width="{step + 0.5:.2f}" '
            f'height="10" fill="{colour(level / LEVELS)}"/>'
        )
    parts.append(
        f'<rect x="{left}" y="{bar_top}" width="{bar_w}" height="10" fill="none" stroke="#999"/>'
    )
    label_y = bar_top + 22
    parts.append(
        f'<text x="{left}" y="{label_y}" {FONT} font-size="10">{number(-scale)}</text>'
        f'<text x="{left + bar_w / 2:g}" y="{label_y}" {FONT} font-size="10" '
        f'text-anchor="middle">0</text>'
        f'<text x="{left + bar_w}" y="{label_y}" {FONT} font-size="10" '
        f'text-anchor="end">{number(scale)}</text></g>'
    )
    parts.append("</svg>")
    return "".join(parts)
