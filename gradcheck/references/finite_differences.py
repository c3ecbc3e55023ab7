"""Finite differences of the spec forward, in float64: the second, independent reference.

Every estimate carries its own error bar. The step is set from the scale of the values
(``t = eps**(1/3) * scale``, the balance of truncation and rounding for a central
difference); the slope is taken at ``t`` and ``t/2`` and Richardson-extrapolated, and the
difference between the two is the estimate of what is left. The same five evaluations give
one-sided slopes, whose disagreement marks a kink (a ReLU input on its hinge) inside the step.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck.paths import took
from gradcheck.references.autograd import as_tensor, call_forward
from gradcheck.tolerances import FINITE_DIFFERENCES

__all__ = [
    "UNRESOLVED",
    "ScalarSpec",
    "Screen",
    "Slope",
    "phi",
]

EPS = float(np.finfo(np.float64).eps)
_NAN = float("nan")
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

    @property
    def resolved(self) -> bool:
        """Whether the estimate is a number at all: a step that leaves the spec's domain
        (log of a negative) or a direction with no finite step gives NaN, which is no
        evidence for or against anything."""
        return bool(np.isfinite(self.central) and np.isfinite(self.allowed) and self.step > 0)


UNRESOLVED = Slope(
    central=float("nan"), allowed=float("nan"), right=float("nan"), left=float("nan"),
    kink=False, step=0.0,
)  # fmt: skip


@dataclass(frozen=True)
class Screen:
    """A plain central difference along one direction, with an allowance for rounding only.

    It takes two evaluations where a ``Slope`` takes four. With no allowance for truncation
    it can confirm autograd only where the spec is smooth at the scale of the step; where it
    does not confirm, the full ``Slope`` decides, so it can save work but never change what
    is concluded."""

    central: float
    allowed: float
    step: float


def _nudged(value: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``value * (1 +- 4 eps)``, the sign at random per element, made in place in one new
    array: the obvious expression made four of the input's size."""
    raises = rng.integers(0, 2, size=tuple(value.shape), dtype=np.int8).view(np.bool_)
    nudged = np.array(value.numpy())  # a copy, 0-d included
    nudged *= 1 - 4 * EPS
    np.multiply(nudged, (1 + 4 * EPS) / (1 - 4 * EPS), out=nudged, where=raises)
    return torch.from_numpy(nudged)


def phi(output: torch.Tensor, grad_output: torch.Tensor | None) -> tuple[float, float]:
    """``<output, grad_output>`` (the output itself when it is a scalar), and the size of the
    terms it sums: rounding in it scales with them, not with their (maybe cancelling) total."""
    if grad_output is None:
        value = float(output)
        return value, abs(value)
    products = output * grad_output
    return float(products.sum()), float(products.abs().sum())


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
        *,
        output: np.ndarray | None = None,
        shared: Collection[str] = (),
        bounds: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """``output``, when given, is the forward's output at the point (autograd's): the
        evaluation at the point is then not repeated. The inputs named in ``shared`` are
        used without a copy: autograd has already run the spec with them as leaves that
        require grad, which it may not write into. ``bounds`` are the declared domains
        of inputs: no step leaves them (``log`` on (1e-8, 10) is NaN a step below 1e-8)."""
        self._name = name
        self._bounds = dict(bounds or {})
        self._points = inputs
        self._forward = forward
        self._params = dict(params or {})
        self._inputs = {
            k: as_tensor(v, requires_grad=k in shared).detach() for k, v in inputs.items()
        }
        self._grad_output = None if grad_output is None else as_tensor(grad_output)
        # The typical size of each input's values: its root-mean-square.
        self._rms = {
            k: float(np.sqrt(np.vdot(v, v) / v.size))  # vdot: no temporary of v's size
            for k, v in inputs.items()
            if np.size(v) and not np.issubdtype(v.dtype, np.integer)
        }
        self._value_scale = max(self._rms.values(), default=1.0) or 1.0
        self._scratch: dict[str, torch.Tensor] = {}
        if output is None:
            self._base_value, self._magnitude = self._evaluate_with_magnitude(None, None, 0.0)
        else:
            self._base_value, self._magnitude = self._phi(torch.from_numpy(output))
        self._measured_noise: float | None = None

    def _evaluate_with_magnitude(
        self, param: str | None, direction: torch.Tensor | None, t: float
    ) -> tuple[float, float]:
        tensors = dict(self._inputs)
        if param is not None and direction is not None:
            tensors[param] = self._moved(param, direction, t)
        with torch.no_grad():
            output = call_forward(self._name, self._forward, tensors, self._params)
            return self._phi(output.to(torch.float64))

    def _phi(self, output: torch.Tensor) -> tuple[float, float]:
        if self._grad_output is not None and output.shape != self._grad_output.shape:
            return _NAN, _NAN  # see _evaluate_at
        return phi(output, self._grad_output)

    def _moved(self, param: str, direction: torch.Tensor, t: float) -> torch.Tensor:
        """``input + t * direction`` written into one scratch tensor per input: at 3000x3000
        a fresh sum and product per evaluation were most of a probe's time and memory. The
        spec may not keep it: every evaluation overwrites it."""
        base = self._inputs[param]
        scratch = self._scratch.get(param)
        if scratch is None or scratch.shape != base.shape:
            scratch = self._scratch[param] = torch.empty_like(base)
        if direction.dtype == base.dtype or base.numel() <= _CHUNK:
            return torch.add(base, direction, alpha=t, out=scratch)
        # An int8 direction is cast to float64 on the way: a chunk at a time, or the cast
        # alone is a temporary of the input's size (72 MB at 3000x3000).
        flat_out, flat_base, flat_dir = scratch.view(-1), base.reshape(-1), direction.reshape(-1)
        for start in range(0, flat_out.numel(), _CHUNK):
            piece = slice(start, start + _CHUNK)
            torch.add(flat_base[piece], flat_dir[piece], alpha=t, out=flat_out[piece])
        return scratch

    def _evaluate(self, param: str, direction: torch.Tensor, t: float) -> float:
        """phi with ``param`` moved by ``t * direction``, without the size of its terms."""
        return self._evaluate_at({param: (direction, t)})

    def _evaluate_at(self, moves: Mapping[str, tuple[torch.Tensor, float]]) -> float:
        """phi with each named input moved by ``t * direction``."""
        tensors = dict(self._inputs)
        for param, (direction, t) in moves.items():
            tensors[param] = self._moved(param, direction, t)
        with torch.no_grad():
            output = call_forward(self._name, self._forward, tensors, self._params)
            output = output.to(torch.float64)
            if self._grad_output is None:
                return float(output) if output.numel() == 1 else _NAN
            if output.shape != self._grad_output.shape:
                # The output's shape moved with the step (x[x > 0] gains an element): the
                # spec is not differentiable across it, and this difference is no evidence.
                return _NAN
            return float(torch.dot(output.reshape(-1), self._grad_output.reshape(-1)))

    def screen_jointly(
        self, directions: Mapping[str, np.ndarray]
    ) -> tuple[Screen, dict[str, float]]:
        """One central difference with every named input moved at once, each by its own
        step along its own direction: two evaluations in all, however many inputs. The
        slope is per unit of that joint move, so autograd's is sum_p step_p <grad_p, d_p>
        (the steps are returned with it)."""
        tol = FINITE_DIFFERENCES
        steps = {p: self.step_for(p, d) for p, d in directions.items()}
        if not all(0 < t < float("inf") for t in steps.values()):
            # an input on a closed endpoint cannot move: nothing is confirmed jointly
            return Screen(central=float("nan"), allowed=float("nan"), step=1.0), steps
        tensors = {p: torch.from_numpy(np.asarray(d)) for p, d in directions.items()}
        f_plus, f_minus = (
            self._evaluate_at({p: (d, sign * steps[p]) for p, d in tensors.items()})
            for sign in (1.0, -1.0)
        )
        central = (f_plus - f_minus) / 2
        magnitude = max(self._magnitude, abs(f_plus), abs(f_minus))
        noise = self._measured_noise or 0.0  # as in ``screens``
        allowed = tol.roundoff_factor * EPS * magnitude + tol.safety * noise
        return Screen(central=central, allowed=allowed + tol.rtol * abs(central), step=1.0), steps

    def _rounding_noise(self) -> float:
        """How much phi moves when every input moves by a few eps of itself: the floor under
        any difference of two evaluations. eps * |phi| alone misses cancellation inside the
        forward (a residual out - y far smaller than out and y)."""
        nudged = dict(self._inputs)
        rng = np.random.default_rng(0)
        for key, value in self._inputs.items():
            if value.is_floating_point():
                nudged[key] = _nudged(value, rng)
        with torch.no_grad():
            output = call_forward(self._name, self._forward, nudged, self._params)
            moved = self._phi(output.to(torch.float64))[0]
        noise = abs(moved - self._base_value)
        return noise if np.isfinite(noise) else 0.0

    @property
    def _noise(self) -> float:
        """The rounding noise, measured at first use (one more forward): a screen that
        confirms autograd without it never needs it, since it only widens allowances."""
        if self._measured_noise is None:
            self._measured_noise = self._rounding_noise()
        return self._measured_noise

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
        largest = max(float(np.max(direction)), -float(np.min(direction)))
        usual, room = STEP_FACTOR * scale / max(largest, 1e-300), self.room(param, direction)
        if room < usual:
            took("bounded step")
        return min(usual, room)

    def room(self, param: str, direction: np.ndarray) -> float:
        """The longest step along +-``direction`` that stays inside ``param``'s declared
        bounds (inf where none are declared). A point on a closed endpoint has none."""
        if param not in self._bounds:
            return float("inf")
        low, high = self._bounds[param]
        value = np.atleast_1d(np.asarray(self._points[param], dtype=np.float64))
        magnitude = np.atleast_1d(np.abs(np.asarray(direction, dtype=np.float64)))
        moved = magnitude > 0
        if not moved.any():
            return float("inf")
        margin = np.minimum(high - value, value - low)[moved]
        return max(0.0, float(np.min(margin / magnitude[moved])))

    def slope(self, param: str, direction: np.ndarray, widen: float = 1.0) -> Slope:
        """Derivative of phi when ``param`` moves along ``direction`` (any length), with the
        step ``widen`` times the usual one."""
        tol = FINITE_DIFFERENCES
        t = min(self.step_for(param, direction) * widen, self.room(param, direction))
        if not 0 < t < float("inf"):
            return UNRESOLVED  # on a closed endpoint, or no finite step along a NaN/inf
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

    def screen(self, param: str, direction: np.ndarray) -> Screen:
        """The central difference of phi along ``direction`` at the usual step, with the
        same rounding allowance as ``slope`` and no truncation term (see ``Screen``)."""
        return self.screens(param, [direction])[0]

    def screens(self, param: str, directions: Sequence[np.ndarray]) -> list[Screen]:
        """``screen`` along each of ``directions``. Their evaluations go to the spec as one
        batch (``torch.func.vmap``) where that is cheaper than one call each: the part of
        the forward that does not depend on ``param`` is then computed once for all."""
        tol = FINITE_DIFFERENCES
        steps = [self.step_for(param, d) for d in directions]
        if not all(0 < t < float("inf") for t in steps):
            # no step fits (a closed endpoint): screens confirm nothing, slopes decide
            nothing = Screen(central=float("nan"), allowed=float("nan"), step=0.0)
            return [nothing for _ in directions]
        moves = [
            (torch.from_numpy(np.asarray(d)), t)
            for d, t in zip(directions, steps, strict=True)
            for t in (t, -t)
        ]
        values = self._batched(param, moves) if self._batches(param, len(moves)) else None
        if values is None:
            values = [self._evaluate(param, d, t) for d, t in moves]
        found = []
        for i, t in enumerate(steps):
            f_plus, f_minus = values[2 * i], values[2 * i + 1]
            central = (f_plus - f_minus) / (2 * t)
            magnitude = max(self._magnitude, abs(f_plus), abs(f_minus))
            # Without the noise unless it is already known: a screen that confirms autograd
            # within the narrower allowance would within the wider one too.
            noise = self._measured_noise or 0.0
            roundoff = (tol.roundoff_factor * EPS * magnitude + tol.safety * noise) / t
            allowed = roundoff + tol.rtol * abs(central)
            found.append(Screen(central=central, allowed=allowed, step=t))
        return found

    def screen_batch(self, param: str) -> int:
        """How many directions of ``param`` to hand ``screens`` at once: enough to fill one
        batch, or 1 where batches do not pay."""
        fits = BATCH_MAX_ELEMENTS // (2 * max(1, self._inputs[param].numel()))
        return fits if 2 * fits >= BATCH_MIN and _vmappable(self._forward) is not False else 1

    def _batches(self, param: str, count: int) -> bool:
        """Batch when there are enough evaluations to repay vmap's fixed cost (~0.1 ms) and
        the batch stays small (a batched copy of a large input costs more than it saves)."""
        size = count * self._inputs[param].numel()
        return (
            count >= BATCH_MIN
            and size <= BATCH_MAX_ELEMENTS
            and _vmappable(self._forward) is not False
        )

    def _batched(self, param: str, moves: list[tuple[torch.Tensor, float]]) -> list[float] | None:
        """phi at every move in one vmapped call, or None where the spec cannot be vmapped
        (data-dependent control flow, .item(), numpy inside) or gives other values batched.
        The first batch of each spec is checked against one call each."""
        base = self._inputs[param]
        batch = torch.stack([base + t * d for d, t in moves])

        def phi(moved: torch.Tensor) -> torch.Tensor:
            output = call_forward(
                self._name, self._forward, {**self._inputs, param: moved}, self._params
            ).to(torch.float64)
            return output if self._grad_output is None else (output * self._grad_output).sum()

        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # vmap's own notes on slow fallbacks
                values = [float(v) for v in torch.func.vmap(phi)(batch)]
        except Exception:  # any spec vmap cannot batch: evaluate one at a time instead
            _remember(self._forward, False)
            return None
        took("vmap batch")
        if _vmappable(self._forward) is None:
            # The first two moves once more, one call each: enough to see a spec that
            # batches differently (all of them cost a third of a check at 3000x3000).
            singly = [self._evaluate(param, d, t) for d, t in moves[:2]]
            bound = 2 * (
                FINITE_DIFFERENCES.roundoff_factor * EPS * self._magnitude
                + FINITE_DIFFERENCES.safety * (self._measured_noise or 0.0)
            )
            agrees = all(abs(a - b) <= bound for a, b in zip(values, singly, strict=False))
            _remember(self._forward, agrees)
            if not agrees:
                return singly + [self._evaluate(param, d, t) for d, t in moves[2:]]
        return values


_CHUNK = 1 << 20  # elements per piece of a large perturbation

# Batched evaluation pays from this many evaluations on, up to this many batched elements.
BATCH_MIN = 8
BATCH_MAX_ELEMENTS = 1 << 18

# spec forward -> whether vmap evaluates it as one call each would; decided at its first batch.
_VMAPPABLE: dict[Callable[..., Any], bool] = {}


def _vmappable(forward: Callable[..., Any]) -> bool | None:
    try:
        return _VMAPPABLE.get(forward)
    except TypeError:  # an unhashable callable: never batched
        return False


def _remember(forward: Callable[..., Any], vmappable: bool) -> None:
    with contextlib.suppress(TypeError):
        _VMAPPABLE[forward] = vmappable
