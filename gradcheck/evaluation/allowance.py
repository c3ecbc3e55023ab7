"""How far a hand gradient may lie from autograd's: the table's tolerance, widened by what the
point itself cannot resolve.

Three floors widen the absolute part: the typical size of a gradient of this function (scale),
the rounding noise of the point (noise, measured only where the narrower allowance is
exceeded), and in float32 the rounding of torch's own float32 gradient (dtype). It decides the
allowance; it never decides whether a difference is a bug.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck.backward import DTYPES
from gradcheck.derivation import Derivation
from gradcheck.evaluation.directions import chunks, dot, mixed_signs
from gradcheck.evaluation.options import Options
from gradcheck.references.autograd import (
    AutogradResult,
    as_tensor,
    autograd_gradients,
    gradients_in_dtype,
)
from gradcheck.references.finite_differences import phi
from gradcheck.tolerances import Tolerance, for_dtype

__all__ = [
    "DTYPE_SAFETY",
    "UNRESOLVABLE_SHARE",
    "Allowance",
    "dtype_rounding",
    "noise_floors",
    "scale_floors",
]


@dataclass
class Allowance:
    """What the hand gradient may differ from ``reference`` by, element-wise:
    ``atol + rtol * |reference|`` (the table's, with the point's floor), kept as its two
    numbers rather than an array of the gradient's size."""

    atol: float
    rtol: float
    reference: np.ndarray

    def along(self, direction: np.ndarray) -> float:
        """The allowance of a difference projected on ``direction``: sum |d| * allowed."""
        if direction.dtype == np.int8:  # a large +-1 probe: |d| is 1 everywhere
            return self.atol * direction.size + self.rtol * self._absolute_sum
        total = sum(float(np.abs(d).sum()) for (d,) in chunks(direction))
        return self.atol * total + self.rtol * dot(direction, self.reference, absolute=True)

    @functools.cached_property
    def _absolute_sum(self) -> float:
        return sum(float(np.abs(r).sum()) for (r,) in chunks(self.reference))

    def holds(self, hand_grad: np.ndarray) -> bool:
        """|hand - reference| <= allowed everywhere (NaN never does), as ``compare`` judges."""
        return all(
            bool(np.all(np.abs(h - r) <= self.atol + self.rtol * np.abs(r)))
            for h, r in chunks(hand_grad, self.reference)
        )

    def array(self) -> np.ndarray:
        allowed = np.abs(self.reference)
        allowed *= self.rtol
        allowed += self.atol
        return allowed


def scale_floors(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    tolerance: Tolerance,
    autograd: AutogradResult,
) -> dict[str, float]:
    """The first part of each absolute allowance: the typical size of a gradient of this
    function, |f| / |x|, times the table's ``atol_scale`` (a fixed 1e-12 hid every bug in a
    loss of size 1e-13). |f| is the size of the terms phi sums (``phi``)."""
    grad_output = autograd.grad_output
    seed = None if grad_output is None else as_tensor(grad_output)
    _, magnitude = phi(torch.from_numpy(autograd.output), seed)
    rms = {
        key: float(np.sqrt(np.vdot(value, value) / value.size))
        for key, value in point.items()
        if value.size and not np.issubdtype(value.dtype, np.integer)
    }
    floors = {}
    for name in derivation.wrt:
        typical = rms.get(name, 0.0)
        gradient_scale = magnitude / typical if typical > 0 else 0.0
        if magnitude == 0.0:
            # A loss exactly zero (a one-class softmax: log 1) has no size to scale by: its
            # terms cancelled exactly, and a correct hand gradient that cancels them in
            # another order leaves a few eps of those terms (2e-16), not of the zero result.
            # The terms of d/d name are products of the other inputs (x.T @ (p - 1) for w)
            # and the output's seed, so that is their scale. A wrong gradient is of that size.
            seed_scale = (
                1.0
                if grad_output is None or grad_output.size == 0
                else float(np.sqrt(np.vdot(grad_output, grad_output) / grad_output.size))
            )
            others = [value for key, value in rms.items() if key != name]
            gradient_scale = max(others, default=1.0) * seed_scale
        floors[name] = tolerance.atol_scale * gradient_scale
    return floors


def noise_floors(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    autograd: AutogradResult,
    params: Mapping[str, Any],
    options: Options,
    rng: np.random.Generator,
) -> dict[str, float]:
    """The second part: the rounding noise of the point itself. Autograd's gradient moves
    when every input is nudged by a few eps of its own size, and an ill-conditioned
    derivation (a mean subtracted from values ~1e8) cannot do better than that. Capped, so
    it excuses rounding, never a bug."""
    tolerance = for_dtype(options.dtype)
    eps = float(np.finfo(np.float32 if options.dtype == "float32" else np.float64).eps)
    nudged = {
        key: value
        if np.issubdtype(value.dtype, np.integer)
        else value * (1 + 4 * eps * mixed_signs(rng, value.shape))
        for key, value in point.items()
    }
    moved = autograd_gradients(
        derivation.name, derivation.forward, nudged, derivation.wrt,
        lambda _: autograd.grad_output, params,
    )  # fmt: skip
    floors = {}
    terms = max(
        (
            float(np.sqrt(np.vdot(value, value) / value.size))
            for value in point.values()
            if value.size and not np.issubdtype(value.dtype, np.integer)
        ),
        default=0.0,
    )
    for name in derivation.wrt:
        reference = autograd.gradients[name]
        largest = float(np.max(np.abs(reference))) if reference.size else 0.0
        noise = 8 * float(np.max(np.abs(moved.gradients[name] - reference), initial=0.0))
        noise = noise if np.isfinite(noise) else 0.0
        if largest <= noise:
            # The reference is no larger than its own rounding (equal values ~1e8 with
            # their mean subtracted: 0 or 1.5e-8 depending on the order of the sums), so it
            # gives no size to cap by: the terms that cancelled to it are the inputs' size.
            largest = terms
        floors[name] = min(noise, tolerance.conditioning_cap * largest)
    return floors


# The rounding of torch's own gradient in the check's dtype, times this, is allowed to a
# hand gradient in that dtype: a correct one sums the same cancelling terms in another
# order. Where that allowance reaches this share of the gradient itself, nothing is left
# to judge at the point.
DTYPE_SAFETY = 8.0
UNRESOLVABLE_SHARE = 0.1


def dtype_rounding(
    derivation: Derivation,
    point: Mapping[str, np.ndarray],
    autograd: AutogradResult,
    params: Mapping[str, Any],
    options: Options,
) -> dict[str, float]:
    """The third part, in float32 only: how far torch autograd's own float32 gradient lies
    from its float64 one at this point (see ``gradients_in_dtype``). The table's rtol
    scales with each element, and an element far smaller than the terms that cancel to
    it (a softmax probability of 1 - 1e-8 minus its label) has a float32 error of the
    terms' size."""
    if options.dtype == "float64":
        return {}
    narrow = gradients_in_dtype(
        derivation.forward, point, derivation.wrt, autograd.grad_output, params,
        DTYPES[options.dtype][1],
    )  # fmt: skip
    if narrow is None:
        return {}
    return {
        name: DTYPE_SAFETY
        * float(np.max(np.abs(narrow[name] - autograd.gradients[name]), initial=0.0))
        for name in derivation.wrt
        if narrow[name].shape == autograd.gradients[name].shape and np.isfinite(narrow[name]).all()
    }
