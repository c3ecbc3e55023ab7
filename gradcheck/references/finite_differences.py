"""Finite differences of the spec forward, in float64: the second, independent reference.

Every estimate carries its own error bar. The step is set from the scale of the values
(``t = eps**(1/3) * scale``, the balance of truncation and rounding for a central
difference); the slope is taken at ``t`` and ``t/2`` and Richardson-extrapolated, and the
difference between the two is the estimate of what is left. The same five evaluations give
one-sided slopes, whose disagreement marks a kink (a ReLU input on its hinge) inside the step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck.references.autograd import as_tensor, call_forward
from gradcheck.tolerances import FINITE_DIFFERENCES

__all__ = ["ScalarSpec", "Slope"]

EPS = float(np.finfo(np.float64).eps)
STEP_FACTOR = EPS ** (1 / 3)


@dataclass(frozen=True)
class Slope:
    """The derivative of the spec along one direction, with its error bar."""

    central: float
    allowed: float
    right: float
    left: float
    kink: bool
    step: float


class ScalarSpec:
    """``phi = <forward(inputs), grad_output>`` (or the forward itself when it is a scalar),
    evaluated without autograd at the point with one input moved along a direction."""

    def __init__(
        self,
        name: str,
        forward: Callable[..., Any],
        inputs: Mapping[str, np.ndarray],
        grad_output: np.ndarray | None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self._name = name
        self._forward = forward
        self._params = dict(params or {})
        self._inputs = {k: as_tensor(v) for k, v in inputs.items()}
        self._grad_output = None if grad_output is None else torch.from_numpy(grad_output)
        # The typical size of each input's values: its root-mean-square.
        self._rms = {
            k: float(np.sqrt(np.mean(np.square(v))))
            for k, v in inputs.items()
            if np.size(v) and not np.issubdtype(v.dtype, np.integer)
        }
        self._value_scale = max(self._rms.values(), default=1.0) or 1.0
        self._base_value, self._magnitude = self._evaluate_with_magnitude(None, None, 0.0)
        self._noise = self._rounding_noise()

    def _evaluate_with_magnitude(
        self, param: str | None, direction: torch.Tensor | None, t: float
    ) -> tuple[float, float]:
        tensors = dict(self._inputs)
        if param is not None and direction is not None:
            tensors[param] = self._inputs[param] + t * direction
        with torch.no_grad():
            output = call_forward(self._name, self._forward, tensors, self._params).to(
                torch.float64
            )
        if self._grad_output is None:
            value = float(output)
            return value, abs(value)
        products = output * self._grad_output
        # Rounding in <output, g> scales with the terms summed, not with their (maybe
        # cancelling) total.
        return float(products.sum()), float(products.abs().sum())

    def _evaluate(self, param: str, direction: torch.Tensor, t: float) -> float:
        return self._evaluate_with_magnitude(param, direction, t)[0]

    def _rounding_noise(self) -> float:
        """How much phi moves when every input moves by a few eps of itself: the floor under
        any difference of two evaluations. eps * |phi| alone misses cancellation inside the
        forward (a residual out - y far smaller than out and y)."""
        nudged = dict(self._inputs)
        rng = np.random.default_rng(0)
        for key, value in self._inputs.items():
            if value.is_floating_point():
                signs = torch.from_numpy(
                    np.asarray(
                        2.0 * rng.integers(0, 2, size=tuple(value.shape), dtype=np.int8) - 1.0
                    )
                )
                nudged[key] = value * (1 + 4 * EPS * signs)
        with torch.no_grad():
            output = call_forward(self._name, self._forward, nudged, self._params)
        if self._grad_output is None:
            moved = float(output)
        else:
            moved = float((output * self._grad_output).sum())
        noise = abs(moved - self._base_value)
        return noise if np.isfinite(noise) else 0.0

    @property
    def magnitude(self) -> float:
        """|phi| at the point, or the sum of |output * grad_output| for a VJP."""
        return self._magnitude

    def step_for(self, param: str, direction: np.ndarray) -> float:
        """Step length along ``direction``: the element moved most moves by eps**(1/3) times
        the typical size of the input being moved (its root-mean-square; the largest over
        all inputs if it is all zeros), so the step scales with the data, not a fixed eps,
        and an input of 1e-3 beside one of 1e4 is not stepped past its own size."""
        own = self._rms.get(param, 0.0)
        scale = own if own > 0 else self._value_scale
        return STEP_FACTOR * scale / max(float(np.max(np.abs(direction))), 1e-300)

    def slope(self, param: str, direction: np.ndarray, widen: float = 1.0) -> Slope:
        """Derivative of phi when ``param`` moves along ``direction`` (any length), with the
        step ``widen`` times the usual one."""
        tol = FINITE_DIFFERENCES
        t = self.step_for(param, direction) * widen
        d = torch.from_numpy(np.asarray(direction, dtype=np.float64))
        f0 = self._base_value
        f_plus, f_minus = self._evaluate(param, d, t), self._evaluate(param, d, -t)
        h_plus, h_minus = self._evaluate(param, d, t / 2), self._evaluate(param, d, -t / 2)
        coarse = (f_plus - f_minus) / (2 * t)
        fine = (h_plus - h_minus) / t
        central = fine + (fine - coarse) / 3  # Richardson: cancels the t**2 error term
        magnitude = max(self._magnitude, abs(f_plus), abs(f_minus))
        roundoff = (tol.roundoff_factor * EPS * magnitude + tol.safety * self._noise) / t
        allowed = tol.safety * abs(fine - coarse) + roundoff + tol.rtol * abs(central)
        # One-sided slopes, each extrapolated from t and t/2 to cancel their O(t) term.
        right_coarse, right_fine = (f_plus - f0) / t, (h_plus - f0) / (t / 2)
        left_coarse, left_fine = (f0 - f_minus) / t, (f0 - h_minus) / (t / 2)
        right = 2 * right_fine - right_coarse
        left = 2 * left_fine - left_coarse
        # Smooth: right - left is O(t**2) while the one-sided terms move by O(t). A hinge at
        # the point keeps a gap that does not shrink with the step.
        moving = abs(right_fine - right_coarse) + abs(left_fine - left_coarse)
        gap = abs(right - left)
        kink = gap > tol.safety * (moving + roundoff) + tol.rtol * abs(central) or (
            abs(fine - coarse) > 0.25 * max(abs(central), abs(right), abs(left), 1e-300)
            and gap > roundoff
        )
        return Slope(central=central, allowed=allowed, right=right, left=left, kink=kink, step=t)
