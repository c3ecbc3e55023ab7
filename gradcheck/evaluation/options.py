"""What one evaluation is asked to do: the dtype the backward receives, how many probes, the seed.

It decides how the caller's arguments are read and refused (one line naming the argument and
the fix); it never looks at a point or a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck.backward import DTYPES
from gradcheck.derivation import Derivation

__all__ = [
    "Options",
    "make_options",
    "require_derivation",
    "whole",
]


@dataclass(frozen=True)
class Options:
    dtype: str
    directions: int
    elementwise_limit: int
    seed: int
    # Random directions per input at a point where the hand gradient already agrees with
    # autograd element by element. There the finite differences have one job left, to
    # confirm that autograd differentiates what the spec computes, and a detach or an
    # in-place op shows along any random direction. None: as many as at any other point;
    # 0: none (the search, once finite differences have confirmed autograd at enough points).
    agreeing_directions: int | None = None
    # Only the verdict is wanted (the search asks "does it fail here?" thousands of times):
    # once a failure is established no probe can change it, so none is taken after it.
    verdict_only: bool = False


def _dtype_name(dtype: Any) -> str:
    for name, (np_dtype, torch_dtype) in DTYPES.items():
        if dtype in (name, np_dtype, torch_dtype) or (
            not isinstance(dtype, torch.dtype) and _same_numpy_dtype(dtype, np_dtype)
        ):
            return name
    raise ValueError(f"dtype={dtype!r} is not supported; use 'float64' (the default) or 'float32'.")


def _same_numpy_dtype(dtype: Any, np_dtype: type) -> bool:
    try:
        return bool(np.dtype(dtype) == np.dtype(np_dtype))
    except TypeError:
        return False


def whole(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum}.")
    return value


def make_options(dtype: Any, directions: Any, elementwise_limit: Any, seed: Any) -> Options:
    return Options(
        dtype=_dtype_name(dtype),
        directions=whole("directions", directions, minimum=0),
        elementwise_limit=whole("elementwise_limit", elementwise_limit, minimum=0),
        seed=whole("seed", seed, minimum=0),
    )


def require_derivation(derivation: Any) -> Derivation:
    if not isinstance(derivation, Derivation):
        raise TypeError(
            f"expected a gradcheck.Derivation, got {type(derivation).__name__}; "
            "declare one with Derivation(name=..., forward=..., backward=..., shapes=..., wrt=...)."
        )
    return derivation
