"""One point, judged: the stages of ``evaluate`` in the order data flows through them.

options -> point -> (references) -> allowance -> directions, steps, evidence -> verdict,
run in that order by ``evaluate``. The explanations (``gradcheck.confirm``, ``localize``,
``explain_failure``) and the search sit above this package and call ``evaluate`` at extra
points; nothing here imports them.
"""

from gradcheck.evaluation.options import Options, make_options, require_derivation, whole
from gradcheck.evaluation.pipeline import evaluate, torch_threads_for
from gradcheck.evaluation.point import validated_point

__all__ = [
    "Options",
    "evaluate",
    "make_options",
    "require_derivation",
    "torch_threads_for",
    "validated_point",
    "whole",
]
