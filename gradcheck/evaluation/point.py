"""The point a derivation is evaluated at: the caller's inputs read and validated, and the
grad_output that seeds a forward with dims.

It decides what a valid point is and which grad_output is drawn for it (afresh at every point,
at varied scales); it never calls the forward or the backward.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from gradcheck.derivation import Derivation, DerivationError

__all__ = [
    "GRAD_OUTPUT_SCALES",
    "grad_output_maker",
    "point_seed",
    "validated_point",
]


def validated_point(
    derivation: Derivation, inputs: Any, *, caller: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, int], dict[str, Any]]:
    """Copies of ``inputs`` (float64, int64 for integer inputs) checked against the declared
    shapes; the dim sizes they imply; the hyperparameters among them. Errors begin with
    ``caller`` (default ``check('name')``)."""
    where = caller or f"check({derivation.name!r})"
    if not isinstance(inputs, Mapping):
        raise DerivationError(
            f"{where}: inputs must be a mapping {{input name: array}}, got {type(inputs).__name__}."
        )
    expected = [*derivation.shapes, *derivation.param_choices]
    missing = [key for key in expected if key not in inputs]
    extra = [key for key in inputs if key not in expected]
    if missing or extra:
        raise DerivationError(
            f"{where}: inputs must hold exactly {', '.join(expected)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; not declared in shapes or params: {', '.join(map(str, extra))}" if extra else "")
            + "."
        )
    params = {key: copy.deepcopy(inputs[key]) for key in derivation.param_choices}
    point: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    seen_at: dict[str, str] = {}
    for key, declared in derivation.shapes.items():
        array = _as_array(where, key, inputs[key], integer=key in (derivation.integers or {}))
        if array.ndim != len(declared):
            raise DerivationError(
                f"{where}: inputs[{key!r}] has shape {array.shape}, but shapes "
                f"declares {declared} ({len(declared)} dims)."
            )
        for axis, (dim, size) in enumerate(zip(declared, array.shape, strict=True)):
            if isinstance(dim, int) and size != dim:
                raise DerivationError(
                    f"{where}: inputs[{key!r}] has size {size} on axis {axis}; "
                    f"shapes fixes it at {dim}."
                )
            if isinstance(dim, str):
                if dim in sizes and sizes[dim] != size:
                    raise DerivationError(
                        f"{where}: dim {dim!r} is {sizes[dim]} in inputs"
                        f"[{seen_at[dim]!r}] but {size} in inputs[{key!r}]."
                    )
                sizes.setdefault(dim, size)
                seen_at.setdefault(dim, key)
        point[key] = array
    return point, sizes, params


def _as_array(where: str, key: str, value: Any, *, integer: bool) -> np.ndarray:
    label = key if key == "grad_output" else f"inputs[{key!r}]"
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        # numpy has no bfloat16: widen any floating tensor first (exact for bf16/f16/f32)
        value = (value.to(torch.float64) if value.is_floating_point() else value).numpy()
    exact = np.int64 if integer else np.float64
    if isinstance(value, np.ndarray) and value.dtype == exact and value.size:
        # Already what the checker works on: read through a view that cannot be written
        # (nothing here writes into a point, and the backward gets copies), instead of a
        # copy that at 3000x3000 was 72 MB.
        view = value.view()
        view.flags.writeable = False
        if not integer and not np.isfinite(view).all():
            raise DerivationError(
                f"{where}: {label} holds NaN or inf; gradients are checked at finite points."
            )
        return view
    try:
        raw = np.asarray(value)
        if np.iscomplexobj(raw):
            raise DerivationError(
                f"{where}: {label} is complex; gradients are checked for real inputs."
            )
        # One copy, whatever came in: the caller's stays untouched.
        array = raw.astype(np.int64 if integer else np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DerivationError):
            raise
        raise DerivationError(f"{where}: {label} is not numeric ({exc}).") from exc
    if array.size == 0:
        raise DerivationError(
            f"{where}: {label} has shape {array.shape}, with no elements; a gradient is "
            "checked at a point with at least one element in every input."
        )
    if integer and not np.array_equal(array, raw.astype(np.float64)):
        raise DerivationError(f"{where}: {label} is an integer input but holds non-integers.")
    if not integer and not np.isfinite(array).all():
        raise DerivationError(
            f"{where}: {label} holds NaN or inf; gradients are checked at finite points."
        )
    return array


# Scales of a drawn grad_output, one chosen per point: a backward that clips grad_output
# (to [-2, 2], say) or drops its sign passes at unit-scale seeds of one or two elements.
GRAD_OUTPUT_SCALES = (1.0, 1.0, 1.0, 100.0, 0.01)


def point_seed(seed: int, point: Mapping[str, np.ndarray]) -> int:
    """A seed of the point's own: grad_output is drawn afresh at every point of a search
    (one drawn from the search seed alone was the same vector at every point of a shape),
    and again the same whenever the same point is evaluated. Up to 4096 elements of each
    input are hashed: enough to tell drawn points apart, cheap at 3000x3000."""
    digest = zlib.crc32(seed.to_bytes(8, "little"))
    for key in sorted(point):
        value = np.ascontiguousarray(point[key]).reshape(-1)
        digest = zlib.crc32(key.encode(), digest)
        digest = zlib.crc32(value[:4096].tobytes(), digest)
        digest = zlib.crc32(np.asarray(value.shape).tobytes(), digest)
    return digest


def grad_output_maker(name: str, given: Any, seed: int) -> Any:
    def make(shape: tuple[int, ...]) -> np.ndarray | None:
        if not shape:
            if given is not None:
                raise DerivationError(
                    f"check({name!r}): the forward returns a scalar; grad_output is only for "
                    "a forward that returns a tensor with dims. Drop it."
                )
            return None
        if given is None:
            rng = np.random.default_rng(seed)
            return (
                rng.standard_normal(shape)
                * GRAD_OUTPUT_SCALES[int(rng.integers(len(GRAD_OUTPUT_SCALES)))]
            )
        array = _as_array(f"check({name!r})", "grad_output", given, integer=False)
        if array.shape != shape:
            raise DerivationError(
                f"check({name!r}): grad_output has shape {array.shape}, but the forward "
                f"returns shape {shape}."
            )
        return array

    return make
