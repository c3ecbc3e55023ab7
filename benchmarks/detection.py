"""How often ``verify`` finds a bug that shows only at rare points: the top of a dim's range,
equal dims, zeros or ties in an input, a param's last choice.

Each case is a tanh layer whose hand gradient for ``w`` is wrong (times 1.5) only where its
condition holds; the count is how many of ``SEEDS`` searches of 100 examples fail it.
``python -m benchmarks.detection`` prints one JSON object; run it against another checkout
(``PYTHONPATH=that/checkout python -m benchmarks.detection``, from that checkout's folder) to
compare two versions of the search.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gradcheck import Derivation, verify

SEEDS = range(10)
EXAMPLES = 100

Condition = Callable[[np.ndarray, np.ndarray, dict[str, Any]], bool]


def rare_bug(name: str, condition: Condition, params: dict[str, Any] | None = None) -> Derivation:
    def backward(x: np.ndarray, w: np.ndarray, **given: Any) -> dict[str, np.ndarray]:
        s = np.tanh(x @ w)
        grad = 1 - s * s  # tanh'(z) = 1 - tanh(z)**2
        out = {"x": grad @ w.T, "w": x.T @ grad}
        if condition(x, w, given):
            out["w"] = out["w"] * 1.5
        return out

    return Derivation(
        name=name,
        forward=lambda x, w, **given: torch.tanh(x @ w).sum(),
        backward=backward,
        shapes={"x": ("N", "D"), "w": ("D", "H")},
        wrt=["x", "w"],
        params=params,
    )


CASES = [
    rare_bug("n_at_top", lambda x, w, p: x.shape[0] == 16),
    rare_bug("n_and_h_at_bottom", lambda x, w, p: x.shape[0] == 1 and w.shape[1] == 1),
    rare_bug("square_w", lambda x, w, p: w.shape[0] == w.shape[1] > 1),
    rare_bug("all_dims_equal", lambda x, w, p: x.shape[0] == w.shape[0] == w.shape[1] > 1),
    rare_bug("d_at_top", lambda x, w, p: w.shape[0] == 16),
    rare_bug("n_above_14", lambda x, w, p: x.shape[0] > 14),
    rare_bug("ties_in_x", lambda x, w, p: x.size > 1 and np.unique(x).size <= 2),
    rare_bug("zero_in_x", lambda x, w, p: bool(np.any(x == 0))),
    rare_bug("equal_rows_of_x", lambda x, w, p: x.shape[0] > 1 and bool(np.all(x == x[:1]))),
    rare_bug("int_param_at_top", lambda x, w, p: p["alpha"] == 9, {"alpha": (0, 9)}),
    rare_bug("last_choice", lambda x, w, p: p["mode"] == "c", {"mode": ["a", "b", "c"]}),
]


def detection() -> dict[str, int]:
    """Case name -> how many of the seeds' searches failed it."""
    return {
        case.name: sum(
            verify(case, max_examples=EXAMPLES, seed=seed).verdict == "fail" for seed in SEEDS
        )
        for case in CASES
    }


if __name__ == "__main__":
    print(json.dumps(detection()))
