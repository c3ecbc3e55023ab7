"""What the command shows on a terminal: the results table, streamed a row at a time, the
progress line, colour."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TextIO

from gradcheck.derivation import Derivation
from gradcheck.runner import Outcome

__all__ = ["COLOURS", "Progress", "Table", "format_table", "use_colour"]

COLOURS = {"PASS": "\033[32m", "FAIL": "\033[31m", "ERROR": "\033[33m"}
HEADER = ("derivation", "parameters", "examples", "verdict", "time")


def use_colour(choice: str, out: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return out.isatty()


class Table:
    """Column widths fixed from the derivations before any runs, so that each row can be
    printed (and flushed) the moment its derivation finishes."""

    def __init__(self, derivations: Sequence[Derivation], *, colour: bool = False) -> None:
        self.colour = colour
        names = [d.name for d in derivations]
        parameters = [", ".join(d.wrt) for d in derivations]
        self.widths = [
            max([len(HEADER[0]), *map(len, names)]),
            max([len(HEADER[1]), *map(len, parameters)]),
            len(HEADER[2]) + 1,
            len("ERROR") + 2,
            len(HEADER[4]) + 4,
        ]

    def _line(self, row: Sequence[str]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(row, self.widths, strict=True)]
        if self.colour and row[3] in COLOURS:  # pad first, so colour codes do not skew columns
            cells[3] = COLOURS[row[3]] + cells[3] + "\033[0m"
        return "  ".join(cells).rstrip()

    def header(self) -> str:
        return self._line(HEADER) + "\n" + "  ".join("-" * width for width in self.widths)

    def row(self, outcome: Outcome) -> str:
        examples = str(outcome.report.examples) if outcome.report else "-"
        return self._line(
            (
                outcome.derivation.name,
                ", ".join(outcome.derivation.wrt),
                examples,
                outcome.verdict.upper(),
                f"{outcome.elapsed:.2f}s",
            )
        )


def format_table(outcomes: Sequence[Outcome], *, colour: bool = False) -> str:
    """A plain table: derivation, parameters, examples tried, verdict, time."""
    table = Table([o.derivation for o in outcomes], colour=colour)
    return "\n".join([table.header(), *(table.row(o) for o in outcomes)])


class Progress:
    """One line on a terminal's stderr, rewritten as examples are tried; silent elsewhere."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.total = total
        self.index = 0
        self.name = ""

    def start(self, name: str) -> None:
        self.index += 1
        self.name = name
        self.update(0)

    def update(self, examples: int) -> None:
        if self.enabled:
            line = f"[{self.index}/{self.total}] {self.name}: {examples} examples"
            self.stream.write("\r\033[K" + line)
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
