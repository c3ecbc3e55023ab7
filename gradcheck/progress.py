"""A progress bar for ``verify`` inside Jupyter: one bar per derivation, updated in place.

The terminal has its progress line (``cli._Progress``, on stderr, only on a terminal). A
notebook has no terminal, so ``verify`` shows a bar in the cell's output instead, through
IPython's own display machinery (``display_id`` updates): no widget library, nothing to
install, and the finished bar stays in the saved notebook as a one-line record of the run.
Outside a Jupyter kernel (a script, pytest, the command line) nothing is shown and IPython is
never imported.
"""

from __future__ import annotations

import sys
import time
from html import escape
from typing import Any

__all__ = ["NotebookProgress", "notebook_progress"]

# The bar is redrawn at most this often: each redraw is a message to the browser.
REFRESH_S = 0.25


def _kernel_shell() -> Any:
    """IPython's shell when running inside a Jupyter kernel, else None (without importing
    IPython: a process that never imported it is not in a notebook)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


class NotebookProgress:
    """The bar of one ``verify`` call: examples tried against the budget, then the verdict."""

    def __init__(self, name: str, budget: int, display: Any) -> None:
        self.name = name
        self.budget = budget
        self.examples = 0
        self.started = time.perf_counter()
        self.shown_at = 0.0
        self.handle = display(self._bundle("searching"), raw=True, display_id=True)

    def _bundle(self, state: str) -> dict[str, str]:
        value = min(self.examples, self.budget) if state == "searching" else self.budget
        elapsed = time.perf_counter() - self.started
        text = f"{self.name}: {self.examples} examples, {state} ({elapsed:.1f} s)"
        if self.examples > self.budget and state == "searching":
            text = f"{self.name}: {self.examples} examples, shrinking a failure ({elapsed:.1f} s)"
        html = (
            '<div class="gradcheck-progress" style="font-family:DejaVu Sans,Helvetica,Arial,'
            'sans-serif;font-size:12px">'
            f'<progress value="{value}" max="{self.budget}" style="width:220px;'
            f'vertical-align:middle"></progress> {escape(text)}</div>'
        )
        return {"text/plain": text, "text/html": html}

    def update(self, examples: int) -> None:
        self.examples = examples
        now = time.perf_counter()
        if now - self.shown_at >= REFRESH_S:
            self.shown_at = now
            self.handle.update(self._bundle("searching"), raw=True)

    def close(self, verdict: str) -> None:
        self.handle.update(self._bundle(verdict.upper()), raw=True)


def notebook_progress(name: str, budget: int) -> NotebookProgress | None:
    """A bar for a ``verify`` of ``name`` when running in a Jupyter kernel, else None."""
    if _kernel_shell() is None:
        return None
    from IPython.display import display

    return NotebookProgress(name, budget, display)
