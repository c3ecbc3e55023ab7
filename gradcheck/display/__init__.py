"""Reports as pictures: HTML with inline-SVG heatmaps, for notebooks and ``--html`` pages.

Pure builders below the reports, which call them from ``_repr_html_``: nothing is drawn
until a report is displayed or a page is written, so a check never draws.
"""

from __future__ import annotations

from gradcheck.display.report_html import figure_html, report_html

__all__ = ["figure_html", "report_html"]
