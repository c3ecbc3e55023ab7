"""Reports as pictures: HTML with inline-SVG heatmaps, for notebooks and ``--html`` pages.

Imported only when a report is displayed or a page is written: a check never draws.
"""

from __future__ import annotations

from gradcheck.display.report_html import figure_html, report_html

__all__ = ["figure_html", "report_html"]
