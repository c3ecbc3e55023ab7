"""Special points, drawn on purpose at a stated rate: where hand code divides by zero or
trips over a tie.

The ordinary strategies keep values off a band around zero and spread them apart, because
most kinks sit at zero and ties are kinks too. That also hides whole classes of real bugs: a
backward that returns NaN when an input is all zero, one that crashes on a tied max-pool
window (``int()`` of a two-element ``np.where``), a division by a zero variance without an
eps. So a few percent of the examples ``verify`` tries (``SPECIAL_RATE``) take one input
and make it special in one of the ways listed in ``KINDS``. Such a point often sits on a
kink: the checker then says inconclusive, as at any kink, and a spec that is not defined
there is not held against the derivation (see ``gradcheck.search``). Only a backward that
raises, returns NaN or is wrong where the spec is smooth fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

__all__ = [
    "KINDS",
    "SPECIAL_RATE",
    "Special",
    "apply",
    "describe",
    "special_note",
    "special_schedule",
    "specials",
]

# What a special point does to one input, and the bug it is there to catch.
KINDS: dict[str, str] = {
    "zero_elements": "some of its elements exactly zero",  # 1/x, log|x|, a ReLU mask
    "all_zero": "all zero",  # a norm or a max of an all-zero input
    "constant": "every element equal",  # zero variance over any axis
    "equal_rows": "every row (along the first axis) equal",  # zero batch variance
    "constant_rows": "every row constant along its last axis",  # zero layer variance
    "ties": "only two distinct values, so neighbours tie",  # a tied pooling window
}
_NEEDS_ZERO = ("zero_elements", "all_zero")  # only where zero lies inside the bounds
# How often each kind is picked, out of 12: the three kinds that catch the most bugs (a
# division by zero, a zero mask, a tie) three times as often as each zero-variance variant.
KIND_WEIGHTS = {
    "zero_elements": 3,
    "all_zero": 3,
    "ties": 3,
    "constant": 1,
    "equal_rows": 1,
    "constant_rows": 1,
}

# The share of examples drawn special: 1 in SPECIAL_ONE_IN (6.25%). A few percent, so that a
# search of 100 examples meets about six special points, while the other 94% keep the values
# that find ordinary bugs. Measured in tests/test_special_values.py and the README.
SPECIAL_ONE_IN = 16
SPECIAL_RATE = 1 / SPECIAL_ONE_IN


@dataclass(frozen=True)
class Special:
    """One input made special: which kind, which input, and the seed that picked the
    elements (so that a random point of other sizes can be made special the same way)."""

    kind: str
    input: str
    seed: int

    def __str__(self) -> str:
        return f"{self.input}: {KINDS[self.kind]}"


def kinds_for(low: float, high: float) -> list[str]:
    """The kinds that keep values in [low, high], each repeated by its weight."""
    return [
        kind
        for kind in KINDS
        if kind not in _NEEDS_ZERO or low < 0.0 < high
        for _ in range(KIND_WEIGHTS[kind])
    ]


def apply(special: Special, value: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """A copy of ``value`` (one input, float64) made special; the values stay in
    ``[low, high]`` (zeros only when zero lies strictly inside)."""
    rng = np.random.default_rng(special.seed)
    kind = special.kind if special.kind in kinds_for(low, high) else "constant"
    out = np.array(value, dtype=np.float64)
    if out.size == 0:
        return out
    flat = out.reshape(-1)
    if kind == "zero_elements":
        zero = rng.random(flat.size) < 0.5
        zero[rng.integers(flat.size)] = True  # at least one
        flat[zero] = 0.0
    elif kind == "all_zero":
        flat[:] = 0.0
    elif kind == "constant":
        flat[:] = flat[rng.integers(flat.size)]
    elif kind == "equal_rows":
        out[...] = out[:1] if out.ndim else out
    elif kind == "constant_rows":
        out[...] = out[..., :1] if out.ndim else out
    elif kind == "ties":
        first, second = flat[rng.integers(flat.size)], flat[rng.integers(flat.size)]
        flat[:] = np.where(rng.random(flat.size) < 0.5, first, second)
    return out


def describe(special: Special | None) -> str | None:
    """A note for a report whose example is a special point; None for an ordinary one."""
    if special is None:
        return None
    return f"this example is a special point, drawn on purpose ({special})"


def special_schedule(bounds: Mapping[str, tuple[float, float]]) -> list[tuple[str, str]]:
    """Every (input, kind) pair that the bounds allow, each once, kinds interleaved across
    inputs: the sweep of ``verify`` meets each on a point of its own, whatever chance does."""
    per_input = {name: list(dict.fromkeys(kinds_for(*bounds[name]))) for name in sorted(bounds)}
    longest = max((len(kinds) for kinds in per_input.values()), default=0)
    return [
        (name, kinds[i])
        for i in range(longest)
        for name, kinds in per_input.items()
        if i < len(kinds)
    ]


def special_note(tried: Mapping[str, set[str]]) -> str:
    """'special points tried: x (all zero, ties), w (some zeros)'."""
    parts = [
        f"{name} ({', '.join(_SHORT[kind] for kind in KINDS if kind in kinds)})"
        for name, kinds in sorted(tried.items())
    ]
    return "special points tried: " + "; ".join(parts)


_SHORT = {
    "zero_elements": "some zeros",
    "all_zero": "all zero",
    "constant": "constant",
    "equal_rows": "equal rows",
    "constant_rows": "constant rows",
    "ties": "ties",
}


def _is_special(number: int, one_in: int = SPECIAL_ONE_IN) -> bool:
    # 0, where hypothesis starts and shrinks to, is never special, whatever the rate.
    return number != 0 and bool(np.random.default_rng(number).integers(one_in) == one_in - 1)


@st.composite
def specials(
    draw: st.DrawFn, bounds: Mapping[str, tuple[float, float]], *, one_in: int = SPECIAL_ONE_IN
) -> Special | None:
    """None for most examples; a ``Special`` for one of ``bounds``' inputs, 1 in ``one_in``.

    Shrinks towards None: a failure that does not need a special point is reported at an
    ordinary one."""
    # hypothesis draws small ranges far from uniformly (its boundaries and duplicates come
    # often: a plain integers(0, 19) == 19 came out 2.75%, not 5%), so the decision is a
    # hash of a drawn 32-bit number: uniform, and 0 (where shrinking goes) is not special.
    if not bounds or not _is_special(draw(st.integers(0, 2**32 - 1)), one_in):
        return None
    name = draw(st.sampled_from(sorted(bounds)))
    kind = draw(st.sampled_from(kinds_for(*bounds[name])))
    return Special(kind=kind, input=name, seed=draw(st.integers(0, 2**16)))


def made_special(
    point: Mapping[str, np.ndarray],
    special: Special | None,
    bounds: Mapping[str, tuple[float, float]],
) -> dict[str, np.ndarray]:
    """``point`` with ``special`` applied to its input (unchanged when None)."""
    out = dict(point)
    if special is not None and special.input in out:
        low, high = bounds[special.input]
        out[special.input] = apply(special, out[special.input], low=low, high=high)
    return out
