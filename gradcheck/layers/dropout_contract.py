"""The contract of inverted dropout, held against the learner's own forward.

Inverted dropout keeps each unit with probability q and scales the kept ones by 1/q, so that
E[out] = x in train mode. Courses pass p as the keep probability (q = p) or as the drop
probability (q = 1 - p); either convention passes, as long as the fraction kept and the
scale agree with p under the same one, and each unit is kept independently of the others.
The gradient check alone cannot see a broken contract: the backward reads its mask from the
forward's cache, so it agrees with whatever the forward did, and the spec takes the mask and
the scale from the forward's output (``conventions.DropoutSpec``).

So the forward is also called, once per (p, seed) a search meets, on ``ROWS x COLUMNS`` ones,
and three things are measured:

- the scale of the kept units: exact, as every input is 1 (it must be 1/p or 1/(1 - p),
  which fixes q);
- whether the masks of paired rows (samples of the batch) and of paired columns (features)
  agree on more units than independent masks would, q^2 + (1 - q)^2 of them: a mask drawn
  once per column and shared across the batch agrees on all;
- the fraction kept, which must be q.

False alarms. For a correct dropout each unit's kept-or-not is a Bernoulli(q) draw,
independent of the others, so Hoeffding's inequality bounds the chance that a test fails it:
P(|kept fraction - q| >= t) <= 2 exp(-2 n t^2) over n units, and P(agreement - a >= t) <=
exp(-2 m t^2) over m disjoint pairs. The slacks below give each of the three tests a quarter
or a half of ``FALSE_ALARM``, so that one check fails a correct dropout with probability at
most ``FALSE_ALARM`` = 1e-7, and a whole search, which meets at most 7 values of p and 8
seeds, at most 5.6e-6. With 65,536 units the slack on the kept fraction is 0.012 and on the
agreement 0.016: a forward that keeps 1 - p where it scales by 1/p is told apart from a
correct one wherever |1 - 2p| > 0.024, i.e. for every p the dropout layer draws but 0.5
(where the two conventions are the same), and a shared mask (agreement 1, against at most
0.625) always.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck.layers.adapter import ForwardMismatch

__all__ = [
    "COLUMNS",
    "FALSE_ALARM",
    "ROWS",
    "ExpectationChecked",
    "broken_contract",
    "dropout_contract",
]

ROWS, COLUMNS = 256, 256  # samples x features of the input the contract is measured on
FALSE_ALARM = 1e-7  # the chance that one check fails a correct dropout, at most

_UNITS = ROWS * COLUMNS
# Hoeffding slacks: the kept fraction is tested both ways with FALSE_ALARM / 2; the
# agreement of paired rows and of paired columns one way, each with FALSE_ALARM / 4.
KEEP_SLACK = math.sqrt(math.log(2 / (FALSE_ALARM / 2)) / (2 * _UNITS))
AGREEMENT_SLACK = math.sqrt(math.log(1 / (FALSE_ALARM / 4)) / (2 * (_UNITS // 2)))
# The scale is exact up to rounding: 1/q computed in float64 (or float32 by a learner).
SCALE_RTOL = 1e-6


def _agreement(kept: np.ndarray, axis: int) -> float:
    """The share of units on which disjoint pairs of rows (axis 0) or columns (axis 1) keep
    or drop alike."""
    first = kept[0::2] if axis == 0 else kept[:, 0::2]
    second = kept[1::2] if axis == 0 else kept[:, 1::2]
    return float(np.mean(first == second))


def _shared_mask(kept: np.ndarray, independent: float) -> str | None:
    """Where paired rows or paired columns keep or drop alike more often than independent
    masks would (``independent`` of units, give or take ``AGREEMENT_SLACK``), what is shared;
    a mask repeated whole along one axis is named first, as it also makes the other axis's
    pairs agree all or nothing."""
    found = []
    for axis, what, alone in ((0, "the batch", "column"), (1, "the features", "row")):
        agreement = _agreement(kept, axis)
        if agreement - independent <= AGREEMENT_SLACK:
            continue
        paired = "rows" if axis == 0 else "columns"
        if bool(np.all(kept == (kept[:1] if axis == 0 else kept[:, :1]))):
            return f"{what}: every {paired[:-1]} keeps the same units (one mask per {alone})"
        found.append((agreement, f"{what}: paired {paired} keep or drop alike {agreement:.1%}"))
    return max(found)[1] + " of units" if found else None


def _number(value: float) -> str:
    return f"{value:.4g}"


def dropout_contract(out: np.ndarray, p: float, *, forward: str = "the forward") -> str | None:
    """Why ``out``, the forward's output on ``ROWS x COLUMNS`` ones at ``p``, breaks inverted
    dropout's contract (one line), or None when it keeps it.

    >>> rng = np.random.default_rng(0)
    >>> kept = rng.random((ROWS, COLUMNS)) < 0.25
    >>> dropout_contract(kept / 0.25, 0.25) is None
    True
    >>> message = dropout_contract(kept / 0.75, 0.75)  # kept with 1 - p, scaled by 1/p
    >>> message[message.index("so E[out]") :].split(",")[0]
    'so E[out] = 0.3323x: it keeps a unit with probability 1 - p but scales by 1/p'
    """
    at = f"{forward} breaks inverted dropout's expectation at p={p:g}: on {ROWS} x {COLUMNS} ones"
    fix = (
        "keep each unit independently with probability q and scale the kept ones by 1/q, "
        "with q = p (p the keep probability) or q = 1 - p (p the drop probability), so that "
        "E[out] = x"
    )
    kept = out != 0
    count = int(kept.sum())
    if count == 0:
        return f"{at} it keeps no unit; {fix}"
    values = out[kept]
    low, high = float(values.min()), float(values.max())
    scale = float(np.median(values))
    if not math.isfinite(scale) or high - low > SCALE_RTOL * abs(scale):
        return (
            f"{at} it scales the kept units by different factors ({_number(low)} to "
            f"{_number(high)}), not by one 1/q; {fix}"
        )
    conventions = {"1/p": p, "1/(1 - p)": 1.0 - p}
    matched = [(name, q) for name, q in conventions.items() if abs(scale * q - 1.0) <= SCALE_RTOL]
    fraction = count / out.size
    expected_out = float(out.mean())
    measured = (
        f"it keeps {fraction:.1%} of units ({count} of {out.size}) and scales them by "
        f"{_number(scale)}, so E[out] = {_number(expected_out)}x"
    )
    if not matched:
        return (
            f"{at} {measured}; the scale is neither 1/p = {_number(1 / p)} nor 1/(1 - p) = "
            f"{_number(1 / (1 - p))}; {fix}"
        )
    scaled_by, q = matched[0]
    independent = q * q + (1.0 - q) * (1.0 - q)
    shared = _shared_mask(kept, independent)
    if shared is not None:
        return (
            f"{at} {measured}, but the mask is shared across {shared}, where independent "
            f"masks agree on {independent:.1%}; draw the mask with the shape of x, one draw "
            "per unit, e.g. np.random.rand(*x.shape) < q"
        )
    if abs(fraction - q) > KEEP_SLACK:
        if len(matched) == 1 and abs(fraction - (1.0 - q)) <= KEEP_SLACK:
            other = "1 - p" if scaled_by == "1/p" else "p"
            mixed = f"it keeps a unit with probability {other} but scales by {scaled_by}"
            return f"{at} {measured}: {mixed}, one convention of p for each; {fix}"
        return f"{at} {measured}, where a scale of {scaled_by} calls for keeping {q:.1%}; {fix}"
    return None


def broken_contract(
    forward: Callable[..., Any], settings: Mapping[str, Any], *, name: str = "the forward"
) -> str | None:
    """Call ``forward(ones, settings)`` and say how it breaks the contract, or None. A forward
    that fails on these ones (raises, returns another shape) is left to the gradient check,
    which calls it at the point it is judged at and reports what went wrong there."""
    p = settings.get("p")
    if not isinstance(p, int | float) or not 0.0 < p < 1.0:
        return None
    state = np.random.get_state()  # the learner may seed the global generator
    try:
        returned = forward(np.ones((ROWS, COLUMNS)), dict(settings))
        out = np.asarray(returned[0], dtype=np.float64)
    except Exception:  # reported by the gradient check, at its own point
        return None
    finally:
        np.random.set_state(state)
    if out.shape != (ROWS, COLUMNS):
        return None
    return dropout_contract(out, float(p), forward=name)


class ExpectationChecked:
    """A course dropout forward, ``out, cache = forward(x, dropout_param)``, that first holds
    the learner's forward to the contract at the call's p and seed (once for each), and raises
    ``ForwardMismatch`` where it is broken: the layer then fails with that reason."""

    def __init__(self, forward: Callable[..., Any]) -> None:
        functools.update_wrapper(self, forward)  # its name and signature, for declarations
        self.forward = forward
        self.found: dict[tuple[Any, ...], str | None] = {}

    def __call__(self, *arguments: Any) -> Any:
        settings = arguments[-1] if arguments else None
        if isinstance(settings, Mapping):
            key = (settings.get("p"), settings.get("seed"))
            if key not in self.found:
                name = getattr(self.forward, "__name__", "the forward")
                self.found[key] = broken_contract(self.forward, settings, name=name)
            if self.found[key] is not None:
                raise ForwardMismatch(str(self.found[key]), forward=self.forward)
        return self.forward(*arguments)
