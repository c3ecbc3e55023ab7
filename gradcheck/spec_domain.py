"""A spec forward that is NaN or inf at a point: where, on which input values, and the fix.

A spec that is not defined everywhere inside its bounds (``torch.log`` with bounds (-1, 2))
cannot be a reference there: no gradient, hand-derived or not, is checked at such a point.
The check says so once, as the problem kind ``spec_non_finite``, naming the input values the
non-finite outputs depend on, and points to ``bounds``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck.derivation import Derivation
from gradcheck.references.autograd import as_tensor, call_forward
from gradcheck.report import Problem

__all__ = ["Culprit", "culprits", "non_finite_spec_message", "non_finite_spec_problem"]

# Input values named in the message, at most: the example is printed in full beside it.
SHOWN = 6


@dataclass(frozen=True)
class Culprit:
    """An input the non-finite outputs depend on: the indices and values of its elements
    that feed them (all of them when the output is a single number)."""

    name: str
    indices: tuple[tuple[int, ...], ...]
    values: tuple[float, ...]
    size: int


def culprits(
    name: str,
    forward: Callable[..., Any],
    point: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
) -> list[Culprit]:
    """The float inputs whose elements feed a non-finite output, found by autograd: an
    element feeds it when the gradient of those outputs with respect to it is non-zero or
    itself non-finite. Empty when autograd cannot tell (a non-differentiable spec)."""
    floating = [k for k, v in point.items() if not np.issubdtype(v.dtype, np.integer)]
    try:
        with torch.enable_grad():
            tensors = {k: as_tensor(v, requires_grad=k in floating) for k, v in point.items()}
            output = call_forward(name, forward, tensors, params)
            bad = ~torch.isfinite(output.detach())
            if not bool(bad.any()) or not output.requires_grad:
                return []
            grads = torch.autograd.grad(
                output[bad].sum(), [tensors[k] for k in floating], allow_unused=True
            )
    except Exception:  # the locating is a courtesy: a spec autograd cannot run says nothing
        return []
    found = []
    for key, grad in zip(floating, grads, strict=True):
        if grad is None:
            continue
        feeds = grad.detach().numpy()
        mask = ~np.isfinite(feeds) | (feeds != 0)
        if not mask.any():
            continue
        indices = tuple(tuple(int(i) for i in index) for index in np.argwhere(mask))
        values = tuple(float(point[key][index]) for index in indices)
        found.append(Culprit(key, indices, values, int(point[key].size)))
    return found


def _where(culprit: Culprit) -> str:
    if len(culprit.indices) == culprit.size:
        shown = ", ".join(f"{v:.6g}" for v in culprit.values[:SHOWN])
        more = ", ..." if culprit.size > SHOWN else ""
        return f"{culprit.name} = [{shown}{more}]"
    parts = [
        f"{culprit.name}[{', '.join(map(str, index))}] = {value:.6g}"
        for index, value in zip(culprit.indices[:SHOWN], culprit.values[:SHOWN], strict=True)
    ]
    more = f" (and {len(culprit.indices) - SHOWN} more)" if len(culprit.indices) > SHOWN else ""
    return ", ".join(parts) + more


def non_finite_spec_message(
    output: np.ndarray,
    found: list[Culprit],
    bounds: Mapping[str, tuple[float, float]],
) -> str:
    """One message for a spec forward that returned NaN or inf at the point."""
    bad = ~np.isfinite(output)
    what = " and ".join(
        word for word, hit in (("NaN", np.isnan(output).any()), ("inf", np.isinf(output).any()))
        if hit
    )  # fmt: skip
    if output.ndim == 0:
        where = ""
    else:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" in {int(bad.sum())} of {output.size} output elements (first at {first})"
    inputs = "; it depends there on " + "; ".join(_where(c) for c in found) if found else ""
    named = [c.name for c in found if c.name in bounds] or list(bounds)
    now = ", ".join(f"{k!r}: {bounds[k]}" for k in named)
    return (
        f"the spec forward returned {what} at this point{where}{inputs}. The spec is not "
        "defined there, so no gradient is checked at it. Keep the inputs where the spec is "
        f"finite: narrow `bounds` (now {{{now}}})."
    )


def non_finite_spec_problem(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    output: np.ndarray,
    params: Mapping[str, Any],
) -> Problem:
    """The one problem of a point where the spec forward is not finite."""
    found = culprits(derivation.name, derivation.forward, point, params)
    bounds = {
        k: derivation.input_bounds[k]
        for k in derivation.shapes
        if k not in (derivation.integers or {})
    }
    return Problem("spec_non_finite", non_finite_spec_message(output, found, bounds))
