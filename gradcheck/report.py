"""What a check found: the verdict, the problems behind it, the point it was found at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from gradcheck import display
from gradcheck.compare import Mismatch
from gradcheck.messages import format_report

if TYPE_CHECKING:
    from gradcheck.special_values import Special

__all__ = [
    "Example",
    "GradientPair",
    "Localization",
    "Picture",
    "Problem",
    "Report",
    "Verdict",
]

Verdict = Literal["pass", "fail", "error", "inconclusive"]

# Problem kinds, most specific first; messages and diagnoses key on these.
PROBLEM_KINDS = (
    "internal",  # gradcheck's own code raised: a bug of the checker, nothing concluded
    "timeout",  # a forward or backward call ran past its deadline
    "nondeterministic",  # the backward answered differently for the same inputs
    "forward_mismatch",  # a course-style forward computed another output than the spec
    "raised",  # the backward raised (or exited)
    "returned",  # the backward returned something other than a mapping
    "missing",  # a name in wrt has no gradient
    "type",  # a gradient is not an array, tensor or number
    "dtype",  # a gradient is not floating point
    "shape",  # a gradient's shape differs from its input's
    "non_finite",  # a gradient holds NaN or inf
    "mutated",  # the backward wrote into an input or grad_output
    "mismatch",  # values differ from the references
    "precision",  # right in float64, wrong in the requested dtype
    "references_disagree",  # autograd and finite differences disagree: the spec or point
    "spec_non_finite",  # the spec forward is NaN/inf at the point: nothing to check against
    "kink",  # the point is non-differentiable: inconclusive
    "unresolved",  # hand and autograd differ below what finite differences resolve
)


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    parameter: str | None = None
    mismatch: Mismatch | None = None


@dataclass(frozen=True)
class Example:
    """A concrete point: sizes of the symbolic dims, the inputs (float64, or int64 for
    integer inputs), the grad_output, the hyperparameters, and, for a special point drawn on
    purpose (an all-zero input, ties), what made it special."""

    dims: Mapping[str, int]
    inputs: Mapping[str, np.ndarray]
    grad_output: np.ndarray | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    special: Special | None = None


@dataclass(frozen=True)
class GradientPair:
    """The hand gradient (float64 view) beside torch autograd's, for diagnosis."""

    hand: np.ndarray
    reference: np.ndarray
    # The per-element tolerance the comparison used, so that a picture outlines exactly
    # the elements it counted as mismatched; None where it was not kept.
    allowed: np.ndarray | None = None


@dataclass(frozen=True)
class Picture:
    """The same failure at a larger failing point than the shrunk example: a 1x1 or 1x2
    example shows one coloured square, where the pattern that tells what is wrong (whole
    columns, the diagonal, one row) needs a few rows and columns."""

    example: Example
    gradients: Mapping[str, GradientPair]


@dataclass(frozen=True)
class Localization:
    """The first line of the hand backward whose value goes wrong (``localize.py``).

    ``file``, ``line``, ``variable``, ``expected`` and ``detail`` are the JSON contract;
    ``code`` is the line's source, ``matched`` the values before it that matched the spec
    (``"grad_y_pred = dL/dy_pred"``) and ``matched_lines`` the lines they were set on."""

    file: str
    line: int
    variable: str
    expected: str
    detail: str
    code: str = ""
    matched: tuple[str, ...] = ()
    matched_lines: tuple[int, int] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "variable": self.variable,
            "expected": self.expected,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Report:
    """The outcome of ``check`` (one point) or ``verify`` (a search); ``str()`` explains it."""

    derivation: str
    verdict: Verdict
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    example: Example | None = None
    dtype: str = "float64"
    seed: int | None = None
    examples: int = 1
    inconclusive: int = 0
    elapsed: float = 0.0
    probes: int = 0
    gradients: Mapping[str, GradientPair] = field(default_factory=dict)
    diagnoses: tuple[str, ...] = ()
    reproduce: str | None = None
    localization: Localization | None = None  # on a failure, where it first goes wrong
    larger: Picture | None = None  # on a failure at a small example, one at a larger point
    # What each GradientPair holds: a hand gradient beside autograd's. A TrainingReport's
    # pairs are a step's updates beside the reference optimizer's; pictures label them so.
    compared: ClassVar[Literal["gradient", "update"]] = "gradient"

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong (a kink point is inconclusive, not wrong)."""
        return self.verdict in ("pass", "inconclusive")

    def __str__(self) -> str:
        return format_report(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text display: the report, not the dataclass fields."""
        printer.text(str(self))

    def _repr_html_(self) -> str:
        """Jupyter's display (IPython's ``_repr_html_`` protocol): drawn only when shown,
        never during a check. The builder sits below the report and knows it only by the
        attributes it reads, as ``messages`` does for ``str()``, so rendering never imports
        the report back."""
        return display.report_html(self)
