"""The page ``gradcheck verify --html FILE`` writes: one self-contained HTML file.

A row per derivation (name, parameters, examples, verdict, time), then each report that did
not pass, in full, with its pictures and the command that reproduces it. No script, no
external stylesheet, font or image: it opens offline, from a mail attachment or a CI
artifact, as it was written.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Protocol

from gradcheck.display.report_html import BADGE, HEADLINES, MONO, ReportPicture, report_html

__all__ = ["HtmlTargetError", "Row", "check_html_target", "page_html", "write_page"]


class Row(Protocol):
    """What the page needs of one derivation's outcome (``cli.Outcome`` has it)."""

    @property
    def verdict(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def report(self) -> ReportPicture | None: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def derivation(self) -> object: ...


class HtmlTargetError(ValueError):
    """The --html path cannot be written; the message names it and the fix."""


def check_html_target(path: str) -> Path:
    """Fail before a long verification, not after it, when ``path`` cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise HtmlTargetError(f"--html {path!r} is a directory; give a file name, e.g. report.html")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise HtmlTargetError(
            f"--html {path!r}: the directory {str(parent)!r} does not exist; create it first"
        )
    return target


def _anchor(index: int) -> str:
    return f"derivation-{index}"


def page_html(rows: Sequence[Row], *, command: str = "gradcheck verify") -> str:
    """The whole page as text."""
    failed = sum(row.verdict == "fail" for row in rows)
    errors = sum(row.verdict == "error" for row in rows)
    passed = len(rows) - failed - errors
    summary = f"{passed} passed, {failed} failed, {errors} errors"
    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = []
    for index, row in enumerate(rows):
        name = str(getattr(row.derivation, "name", "?"))
        wrt = ", ".join(getattr(row.derivation, "wrt", ()))
        examples = str(row.report.examples) if row.report is not None else "-"
        label = escape(name)
        if row.verdict != "pass":
            label = f'<a href="#{_anchor(index)}">{label}</a>'
        lines.append(
            f'<tr data-verdict="{escape(row.verdict)}"><td>{label}</td><td>{escape(wrt)}</td>'
            f'<td style="text-align:right">{examples}</td>'
            f'<td><span style="color:#fff;background:{BADGE.get(row.verdict, "#555")};'
            f'padding:0 6px;border-radius:3px;font-weight:bold">'
            f"{HEADLINES.get(row.verdict, row.verdict.upper())}</span></td>"
            f'<td style="text-align:right">{row.elapsed:.2f} s</td></tr>'
        )
    details = []
    for index, row in enumerate(rows):
        if row.verdict == "pass":
            continue
        if row.report is not None:
            body = report_html(row.report)
        else:  # a declaration error: no report, only the reason
            body = f'<div style="{MONO}">{escape(row.message)}</div>'
        name = escape(str(getattr(row.derivation, "name", "?")))
        details.append(f'<section id="{_anchor(index)}"><h2>{name}</h2>{body}</section>')
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gradcheck: {escape(summary)}</title>"
        "<style>"
        "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:16px 24px;color:#111}"
        "table{border-collapse:collapse;margin:8px 0 16px 0}"
        "th,td{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}"
        "th{background:#f0f0f0}h1{font-size:20px}h2{font-size:16px;margin:18px 0 4px 0}"
        "a{color:#2166ac}"
        "</style></head><body>"
        f"<h1>gradcheck: {escape(summary)}</h1>"
        f'<p><code style="{MONO};display:inline-block">{escape(command)}</code> &middot; '
        f"written {written}</p>"
        '<table class="gradcheck-results"><thead><tr><th>derivation</th><th>parameters</th>'
        "<th>examples</th><th>verdict</th><th>time</th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table>"
        f"{''.join(details)}"
        "</body></html>\n"
    )


def write_page(path: Path, rows: Sequence[Row], *, command: str = "gradcheck verify") -> Path:
    """Write the page to ``path`` (UTF-8) and return it."""
    path.write_text(page_html(rows, command=command), encoding="utf-8")
    return path
