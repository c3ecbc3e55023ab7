"""One forward+backward step of the seeds' two-layer ReLU net, per implementation.

Cases run size by size, dtype by dtype, numpy before torch, so that the benchmarks switch
library (and wait for the other one's threads to settle) as rarely as possible.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks import steps
from benchmarks.conftest import Bench
from benchmarks.steps import LARGE, NET_SIZES, NetSize
from gradcheck.compare import compare
from gradcheck.derivations import two_layer
from gradcheck.messages import format_mismatch
from gradcheck.tolerances import for_dtype

IMPLS = (
    "numpy_hand",  # two_layer.backward_numpy: the chain rule, one fresh array a term
    "numpy_fast",  # two_layer_fast.backward_numpy_fast: workspaces, out=, in-place masking
    "torch_hand",  # two_layer.backward_torch
    "torch_fast",  # two_layer_fast.backward_torch_fast
    "torch_fast_graph",  # the fast torch step captured in a CUDA graph (CUDA, small sizes)
    "torch_autograd",  # loss.backward()
    "torch_compile",  # torch.compile(torch.func.grad(loss))
)
NO_CUDA = "CUDA is not available (torch.cuda.is_available() is False)"


@dataclass(frozen=True)
class Case:
    impl: str
    device: str
    dtype: str
    size: NetSize

    @property
    def id(self) -> str:
        return f"{self.impl}-{self.device}-{self.dtype}-{self.size.label}"


def _applies(impl: str, device: str, size: NetSize) -> bool:
    if impl.startswith("numpy"):
        return device == "cpu"
    if impl == "torch_fast_graph":
        return device == "cuda" and size in steps.CUDA_GRAPH_SIZES
    return True


def _cases() -> list[Any]:
    params = []
    for size in NET_SIZES:
        for device in ("cpu", "cuda"):
            for dtype in steps.DTYPES:
                for impl in IMPLS:
                    if not _applies(impl, device, size):
                        continue
                    marks = []
                    if size == LARGE:
                        marks.append(pytest.mark.slow)
                    if device == "cuda":
                        marks.append(
                            pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
                        )
                    case = Case(impl, device, dtype, size)
                    params.append(pytest.param(case, id=case.id, marks=marks))
    return params


@dataclass(frozen=True)
class Reference:
    """The plain numpy derivation in float64 at the point a case ran at, and the columns of
    grad w1 that rounding to the case's dtype may legitimately change."""

    gradients: dict[str, np.ndarray]
    # A ReLU input h[n, j] within rounding distance of 0 may come out of the case's own
    # x @ w1 with either sign; the mask then differs and so does the whole column j of
    # grad w1 (row n's contribution), correctly. Those columns are not compared.
    kinked_columns: np.ndarray


@functools.lru_cache(maxsize=4)
def _reference(size: NetSize, dtype: str) -> Reference:
    point = {k: v.astype(np.float64) for k, v in steps.two_layer_point(size, dtype).items()}
    h = point["x"] @ point["w1"]
    # The error of a length-D_in dot product summed in another order is about
    # sqrt(D_in) * u * sqrt(sum of its squared terms); 16 times that is a wide margin.
    unit_roundoff = float(np.finfo(steps.DTYPES[dtype][0]).eps) / 2
    band = 16 * np.sqrt(size.D_in) * unit_roundoff * np.sqrt(point["x"] ** 2 @ point["w1"] ** 2)
    kinked = np.any(np.abs(h) <= band, axis=0)
    return Reference(two_layer.backward_numpy(**point), kinked)


def _assert_close_to_reference(grads: Mapping[str, Any], size: NetSize, dtype: str) -> None:
    """Each implementation's gradients, to the harness's tolerance for the dtype."""
    reference = _reference(size, dtype)
    for name, expected in reference.gradients.items():
        got = grads[name]
        if isinstance(got, torch.Tensor):
            got = got.detach().cpu().numpy()
        allowed = for_dtype(dtype).allowed(expected)
        if name == "w1":
            kept = ~reference.kinked_columns
            assert kept.mean() > 0.5, "too few columns of grad w1 are away from the kinks"
            got, expected, allowed = got[:, kept], expected[:, kept], allowed[:, kept]
        mismatch = compare(got, expected, allowed, parameter=name, reference="float64 numpy")
        assert mismatch is None, "\n".join(format_mismatch(mismatch))


@pytest.mark.parametrize("case", _cases())
def test_two_layer_step(bench: Bench, case: Case) -> None:
    if case.impl == "torch_compile" and not bench.timed:
        pytest.skip("torch.compile takes seconds a shape: it runs only when timed")
    step = bench.build(lambda: steps.two_layer_step(case.impl, case.device, case.size, case.dtype))
    bench.benchmark.group = f"two_layer {case.device} {case.dtype} {case.size.label}"
    info = {
        "net": "two_layer",
        "impl": case.impl,
        "device": case.device,
        "dtype": case.dtype,
        "size": case.size.label,
        **case.size.as_info(),
        "compile_s": step.compile_s,
    }
    # A large step takes up to a second: five timed rounds after a warm-up.
    rounds = 5 if case.size == LARGE else None
    grads = bench(step.run, info=info, library=step.library, flops=step.flops, rounds=rounds)
    _assert_close_to_reference(grads, case.size, case.dtype)
