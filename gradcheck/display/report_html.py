"""A Report as an HTML fragment: what ``Report._repr_html_`` shows in a notebook and what
``gradcheck verify --html`` puts on its page.

A pass is one line. Anything else shows the verdict, the diagnoses, each problem with its
numbers, the pictures (for every parameter that failed against autograd: hand, reference
and difference side by side, mismatched elements outlined), the smallest failing example
and the command that reproduces it. Styles are inline attributes, not a stylesheet, so a
fragment looks the same wherever it is pasted and nothing outside it is restyled.

Like the text builders in ``messages``, these are pure builders below the report: they know
a report only by the attributes they read (``ReportPicture`` below), never by importing
``report.py`` or ``training/``, so the report can call them for IPython without a circle.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Protocol

import numpy as np

from gradcheck.display.grid import Grid, gradient_grid
from gradcheck.display.svg import heatmap_svg, number
from gradcheck.messages import ReportParts, format_example, format_mismatch
from gradcheck.tolerances import for_dtype

__all__ = ["TOOLTIP_LIMIT", "PairParts", "ReportPicture", "figure_html", "report_html"]

# Hover text for at most this many outlined cells a figure: each costs ~100 bytes.
TOOLTIP_LIMIT = 100

HEADLINES = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "inconclusive": "INCONCLUSIVE"}
# Badge colours from the heatmaps' palette ends (blue, red) and a neutral grey: the word
# carries the verdict, the colour only repeats it.
BADGE = {"pass": "#2166ac", "fail": "#b2182b", "error": "#7a4b00", "inconclusive": "#555555"}
BOX = (
    "font-family:DejaVu Sans,Helvetica,Arial,sans-serif;font-size:13px;line-height:1.45;"
    "color:#111;background:#fff;border:1px solid #ccc;border-radius:4px;padding:8px 12px;"
    "margin:6px 0;max-width:100%;overflow-x:auto"
)
MONO = (
    "font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;font-size:12px;white-space:pre;"
    "background:#f6f6f6;padding:6px 8px;margin:4px 0;border-radius:3px;overflow-x:auto"
)


# What the two sides of each pair are, by what a report compares (``Report.compared``): a
# gradient beside autograd's, or a training step's update beside the reference optimizer's.
LABELS = {
    "gradient": ("hand gradient", "autograd (float64)", "hand − autograd"),
    "update": ("hand update", "reference update", "hand − reference"),
}


class PairParts(Protocol):
    """What a picture needs of one parameter (``report.GradientPair`` has it)."""

    @property
    def hand(self) -> np.ndarray: ...
    @property
    def reference(self) -> np.ndarray: ...
    @property
    def allowed(self) -> np.ndarray | None: ...


class ReportPicture(ReportParts, Protocol):
    """What the HTML needs of a report beyond its text (``report.Report`` has it)."""

    @property
    def compared(self) -> str: ...
    @property
    def gradients(self) -> Mapping[str, PairParts]: ...


def _badge(verdict: str) -> str:
    return (
        f'<span class="gradcheck-verdict" data-verdict="{escape(verdict)}" '
        f'style="display:inline-block;padding:0 7px;border-radius:3px;color:#fff;'
        f'font-weight:bold;background:{BADGE.get(verdict, "#555")}">'
        f"{HEADLINES.get(verdict, verdict.upper())}</span>"
    )


def _tally(report: ReportPicture, *, count: bool = True) -> str:
    parts = [f"{report.examples} example{'s' if report.examples != 1 else ''}"] if count else []
    if report.probes:
        parts.append(f"{report.probes} finite-difference probes")
    if report.seed is not None:
        parts.append(f"seed {report.seed}")
    parts.append(f"{report.elapsed:.3g} s")
    return ", ".join(parts)


def _allowed(report: ReportPicture, pair: PairParts) -> np.ndarray:
    if pair.allowed is not None:
        return np.asarray(pair.allowed, dtype=np.float64)
    return for_dtype(report.dtype).allowed(np.asarray(pair.reference, dtype=np.float64))


def _shape_text(shape: tuple[int, ...]) -> str:
    return " × ".join(map(str, shape)) if shape else "scalar"


def _caption(name: str, grid: Grid, labels: tuple[str, str, str]) -> str:
    total = int(np.prod(grid.shape)) if grid.shape else 1
    r, c = grid.worst
    lines = [
        f"<b>{escape(name)}</b> ({_shape_text(grid.shape)}): "
        f"<b>{grid.mismatched_total}</b> of {total} elements differ by more than allowed "
        "(outlined in black)."
    ]
    if grid.lead:
        where = "[" + ", ".join(map(str, grid.lead)) + ", :, :]"
        lines.append(
            f"Shown: the slice {escape(name)}{where}, which holds the greatest difference "
            f"({grid.mismatched_shown} of the mismatched elements lie in it)."
        )
    if grid.downsampled:
        lines.append(
            f"Each cell stands for a block of {grid.block[0]} × {grid.block[1]} elements and "
            "shows its worst one; an outlined cell holds at least one mismatch."
        )
    kind = "greatest mismatch" if grid.mismatched[r, c] else "greatest difference"
    lines.append(
        f"Dashed frame: the {kind}, at {escape(name)}{grid.index_text(r, c)}: "
        f"{labels[0]} {number(float(grid.hand[r, c]))}, {labels[1]} "
        f"{number(float(grid.reference[r, c]))}."
    )
    return "<br>".join(lines)


def figure_html(
    name: str,
    hand: np.ndarray,
    reference: np.ndarray,
    allowed: np.ndarray,
    *,
    labels: tuple[str, str, str] = LABELS["gradient"],
) -> str:
    """The three heatmaps of one parameter side by side, with a caption."""
    grid = gradient_grid(hand, reference, allowed)
    shown = np.concatenate([grid.hand.ravel(), grid.reference.ravel()])
    finite = shown[np.isfinite(shown)]
    value_scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    finite_difference = grid.difference[np.isfinite(grid.difference)]
    difference_scale = float(np.max(np.abs(finite_difference))) if finite_difference.size else 1.0
    tooltips: dict[tuple[int, int], str] = {}
    for r, c in np.argwhere(grid.mismatched)[:TOOLTIP_LIMIT]:
        tooltips[(int(r), int(c))] = (
            f"{name}{grid.index_text(r, c)}: {labels[0]} {number(float(grid.hand[r, c]))}, "
            f"{labels[1]} {number(float(grid.reference[r, c]))}, difference "
            f"{number(float(grid.difference[r, c]))}"
        )
    # Hand and reference share one scale, so that equal colours are equal values.
    panels = [
        heatmap_svg(grid.hand, grid, scale=value_scale, title=labels[0], role="hand"),
        heatmap_svg(grid.reference, grid, scale=value_scale, title=labels[1], role="reference"),
        heatmap_svg(
            grid.difference,
            grid,
            scale=difference_scale,
            title=labels[2],
            role="difference",
            tooltips=tooltips,
        ),
    ]
    cells = "".join(f'<div style="flex:0 0 auto">{panel}</div>' for panel in panels)
    return (
        f'<div class="gradcheck-figure" data-parameter="{escape(name)}" '
        'style="margin:8px 0 12px 0">'
        f'<div style="margin-bottom:4px">{_caption(name, grid, labels)}</div>'
        f'<div style="display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start">{cells}'
        "</div></div>"
    )


def _pictured(report: ReportPicture) -> list[tuple[str, PairParts]]:
    """Parameters that failed against a reference and have both gradients, in report order."""
    gradients = report.gradients
    found: dict[str, PairParts] = {}
    for problem in report.problems:
        name = problem.parameter
        if problem.kind != "mismatch" or name is None or name in found or name not in gradients:
            continue
        pair = gradients[name]
        if np.shape(pair.hand) == np.shape(pair.reference):
            found[name] = pair
    return list(found.items())


def _problems_html(report: ReportPicture) -> str:
    items = []
    for problem in report.problems:
        where = f"[{escape(problem.parameter)}] " if problem.parameter else ""
        numbers = ""
        if problem.mismatch is not None:
            numbers = (
                f'<div style="{MONO}">'
                + escape("\n".join(format_mismatch(problem.mismatch)))
                + "</div>"
            )
        items.append(
            f"<li><b>{where}{escape(problem.kind)}</b>: {escape(problem.message)}{numbers}</li>"
        )
    return f'<ul style="margin:4px 0;padding-left:20px">{"".join(items)}</ul>' if items else ""


def _example_html(report: ReportPicture) -> str:
    example = report.example
    if example is None:
        return ""
    searched = report.reproduce is not None
    title = (
        "Example"
        if report.verdict != "fail"
        else ("Smallest failing example" if searched else "Failing example")
    )
    shapes = ", ".join(f"{k}{tuple(np.shape(v))}" for k, v in example.inputs.items())
    text = "\n".join(format_example(example, indent=""))
    return (
        f'<div class="gradcheck-example"><b>{title}</b> ({escape(shapes)}):'
        f'<div style="{MONO}">{escape(text)}</div></div>'
    )


def _larger_html(report: ReportPicture, labels: tuple[str, str, str]) -> str:
    """The same failure at a larger failing point, where the shrunk example is too small to
    show a pattern (read if present: only a search's report has one)."""
    larger = getattr(report, "larger", None)
    if larger is None:
        return ""
    dims = ", ".join(f"{dim}={size}" for dim, size in larger.example.dims.items())
    figures = [
        figure_html(name, pair.hand, pair.reference, pair.allowed, labels=labels)
        for name, pair in larger.gradients.items()
        if pair.allowed is not None and np.shape(pair.hand) == np.shape(pair.reference)
    ]
    if not figures:
        return ""
    return (
        '<div class="gradcheck-larger"><b>The same failure at a larger failing point</b> '
        f"({escape(dims)}), where its pattern shows:{''.join(figures)}</div>"
    )


def _training_html(report: ReportPicture) -> str:
    # Only a TrainingReport has these; it is not imported, so they are read if present.
    step = getattr(report, "step", None)
    parameter = getattr(report, "parameter", None)
    steps = getattr(report, "steps", 0)
    if step is None:
        return ""
    where = f" on {escape(repr(parameter))}" if parameter else ""
    of = f" of {steps}" if steps else ""
    return f"<div>Parted from the reference at <b>step {step}{of}</b>{where}.</div>"


def report_html(report: ReportPicture) -> str:
    """The report as one ``<div>``: a pass in one line, anything else in full."""
    name = escape(report.derivation)
    if report.verdict == "pass":
        summary = "; ".join([*report.notes, _tally(report, count=not report.notes)])
        return (
            f'<div class="gradcheck-report" data-verdict="pass" style="{BOX}">'
            f"{_badge('pass')} <b>{name}</b> ({escape(report.dtype)}): {escape(summary)}</div>"
        )
    labels = LABELS[report.compared]
    parts = [
        f'<div class="gradcheck-report" data-verdict="{escape(report.verdict)}" style="{BOX}">',
        f'<div style="font-size:14px">{_badge(report.verdict)} <b>{name}</b> '
        f"({escape(report.dtype)}) &mdash; {escape(_tally(report))}</div>",
        _training_html(report),
    ]
    if report.diagnoses:
        items = "".join(f"<li>{escape(d)}</li>" for d in report.diagnoses)
        parts.append(
            '<div class="gradcheck-diagnoses" style="border-left:4px solid #b2182b;'
            'padding:2px 8px;margin:6px 0;background:#fdf3ef"><b>Diagnosis</b>'
            f'<ul style="margin:2px 0;padding-left:20px">{items}</ul></div>'
        )
    parts.append(_problems_html(report))
    for parameter, pair in _pictured(report):
        parts.append(
            figure_html(parameter, pair.hand, pair.reference, _allowed(report, pair), labels=labels)
        )
    parts.append(_larger_html(report, labels))
    parts.append(_example_html(report))
    if report.notes:
        notes = "".join(f"<li>{escape(note)}</li>" for note in report.notes)
        parts.append(f'<ul style="margin:4px 0;padding-left:20px;color:#444">{notes}</ul>')
    if report.reproduce:
        parts.append(
            f'<div>Reproduce: <code class="gradcheck-reproduce" style="{MONO};display:inline-'
            f'block">{escape(report.reproduce)}</code></div>'
        )
    parts.append("</div>")
    return "".join(part for part in parts if part)
