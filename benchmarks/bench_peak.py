"""The machine's limit: a large square GEMM in each library and dtype.

Its GFLOP/s is the peak every other result is divided by (``fraction_of_peak`` in the JSON).
2048 is large enough on a CPU for packing and threading overheads to vanish (a larger one
gains nothing measurable here and takes seconds in float64); 8192 on a GPU.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from benchmarks import steps
from benchmarks.conftest import Bench

GEMM_SIZE = {"cpu": 2048, "cuda": 8192}
NO_CUDA = "CUDA is not available (torch.cuda.is_available() is False)"


def _cases() -> list[Any]:
    params = []
    for library, device in (("numpy", "cpu"), ("torch", "cpu"), ("torch", "cuda")):
        marks = []
        if device == "cuda":
            marks.append(pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA))
        for dtype in steps.DTYPES:
            params.append(
                pytest.param(library, device, dtype, id=f"{library}-{device}-{dtype}", marks=marks)
            )
    return params


@pytest.mark.parametrize(("library", "device", "dtype"), _cases())
def test_gemm_peak(bench: Bench, library: str, device: str, dtype: str) -> None:
    n = GEMM_SIZE[device]
    step = bench.build(lambda: steps.gemm_step(library, device, n, dtype))
    bench.benchmark.group = f"gemm {device} {dtype}"
    info = {
        "net": "gemm",
        "impl": f"{library}_gemm",
        "device": device,
        "dtype": dtype,
        "size": f"{n}^3",
        "N": n,
        "D_in": None,
        "H": None,
        "D_out": None,
    }
    bench(step.run, info=info, library=step.library, flops=step.flops)
