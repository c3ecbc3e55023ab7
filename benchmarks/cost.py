"""What checking costs, against the work it cannot avoid.

The irreducible work of one example is what any checker of a hand backward must do there:
one forward of the spec, float64 autograd of it, and one call of the hand backward, at the
same point. ``irreducible_seconds`` times exactly that on the points a run visited, so that a
benchmark can put the checker's time over it within one run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np
import torch

from gradcheck import Derivation
from gradcheck import search as search_module
from gradcheck.evaluation import torch_threads_for
from gradcheck.report import Example

__all__ = [
    "LARGE_TANH",
    "irreducible_seconds",
    "large_tanh_point",
    "memory_in_subprocess",
    "visited_examples",
]


@contextmanager
def visited_examples() -> Iterator[list[Example]]:
    """Every point ``verify`` evaluates inside the block, in order."""
    seen: list[Example] = []
    evaluate = search_module.evaluate

    def spy(derivation: Derivation, point: Any, sizes: Any, options: Any, *rest: Any) -> Any:
        params = rest[1] if len(rest) > 1 else None
        seen.append(Example(dims=dict(sizes), inputs=dict(point), params=dict(params or {})))
        return evaluate(derivation, point, sizes, options, *rest)

    with mock.patch.object(search_module, "evaluate", spy):
        yield seen


def irreducible_seconds(derivation: Derivation, examples: Sequence[Example]) -> float:
    """Seconds for one spec forward, float64 autograd and one hand backward at each point,
    done as plainly as possible: the inputs as tensors sharing their memory, the backward
    called on the arrays themselves."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for example in examples:
        with torch_threads_for(example.inputs):
            tensors = {
                key: torch.from_numpy(value).requires_grad_(key in derivation.wrt)
                for key, value in example.inputs.items()
            }
            with torch.no_grad():
                derivation.forward(**tensors, **example.params)
            output = derivation.forward(**tensors, **example.params)
            seed = (
                None if output.dim() == 0 else torch.from_numpy(rng.standard_normal(output.shape))
            )
            torch.autograd.grad(output, [tensors[key] for key in derivation.wrt], seed)
            arguments: dict[str, Any] = dict(example.inputs)
            if seed is not None:
                arguments["grad_output"] = seed.numpy()
            if derivation.backend == "torch":
                arguments = {key: torch.from_numpy(np.asarray(v)) for key, v in arguments.items()}
            derivation.backward(**arguments, **example.params)
    return time.perf_counter() - started


# --- the large point: a tanh layer with a 3000x3000 weight (72 MB in float64) -------------

LARGE_TANH = {"N": 64, "D_in": 3000, "D_out": 3000}


def _tanh_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x @ w + b)


def _tanh_layer_backward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, grad_output: np.ndarray
) -> dict[str, np.ndarray]:
    s = np.tanh(x @ w + b)
    grad_z = grad_output * (1 - s * s)  # tanh'(z) = 1 - tanh(z)**2
    return {"x": grad_z @ w.T, "w": x.T @ grad_z, "b": grad_z.sum(axis=0)}


tanh_layer = Derivation(
    name="tanh_layer",
    forward=_tanh_layer,
    backward=_tanh_layer_backward,
    shapes={"x": ("N", "D_in"), "w": ("D_in", "D_out"), "b": ("D_out",)},
    wrt=["x", "w", "b"],
)


def large_tanh_point(
    seed: int = 0, sizes: tuple[int, int, int] | None = None
) -> dict[str, np.ndarray]:
    """randn inputs at ``LARGE_TANH``'s sizes (or ``sizes``: N, D_in, D_out)."""
    rng = np.random.default_rng(seed)
    n, d_in, d_out = sizes or (LARGE_TANH["N"], LARGE_TANH["D_in"], LARGE_TANH["D_out"])
    return {
        "x": rng.standard_normal((n, d_in)),
        "w": rng.standard_normal((d_in, d_out)) / np.sqrt(d_in),
        "b": rng.standard_normal(d_out),
    }


_MEMORY_CHILD = """
import json, resource, sys
import numpy as np
from benchmarks.cost import irreducible_seconds, large_tanh_point, tanh_layer
from gradcheck import check
from gradcheck.report import Example

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(l.split()[1]) * 1024 for l in lines if l.startswith(field + ":"))

# Warm up at a small point first: the libraries' own buffers (OpenBLAS's per thread,
# torch's allocator) are not memory the checker asks for.
small = large_tanh_point(sizes=(2, 3, 3))
check(tanh_layer, small)
irreducible_seconds(tanh_layer, [Example(dims={"N": 2, "D_in": 3, "D_out": 3}, inputs=small)])
point = large_tanh_point()
inputs = sum(v.nbytes for v in point.values())
sizes = {"N": point["x"].shape[0], "D_in": point["w"].shape[0], "D_out": point["w"].shape[1]}
job = sys.argv[1]
# Reset the peak (VmHWM) to the current size, so that the import and the warm-up, whose
# memory is freed by now, do not count.
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = status("VmRSS")
if job == "check":
    report = check(tanh_layer, point)
    assert report.ok, str(report)
else:
    irreducible_seconds(tanh_layer, [Example(dims=sizes, inputs=point)])
peak = status("VmHWM")
print(json.dumps({"inputs": inputs, "extra": max(0, peak - before)}))
"""


def memory_in_subprocess(job: str) -> dict[str, int]:
    """Peak memory over the inputs of ``check`` ('check') or of the irreducible work
    ('irreducible') at the large point, measured in a fresh process so that nothing else
    this process did raises the peak. The first run of torch and numpy in the child pays
    for their own buffers in both jobs alike."""
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, job],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
