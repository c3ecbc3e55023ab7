"""The seeds' scalar chain and three-layer linear stack, hand vs autograd, at their sizes.

The seeds train both on batches of 5 from a data set of 50 (the chain) or 100 (the stack)
samples; both sizes are timed. At these sizes a step is a few microseconds of arithmetic
and everything else is per-call overhead, which is what these numbers show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks import steps
from benchmarks.conftest import Bench

NETS: dict[str, tuple[Callable[[str, int], steps.Step], tuple[int, ...]]] = {
    "scalar_chain": (steps.scalar_chain_step, (5, 50)),
    "linear_stack": (steps.linear_stack_step, (5, 100)),
}


def _cases() -> list[Any]:
    return [
        pytest.param(net, impl, n, id=f"{net}-{impl}-N{n}")
        for net, (_, sizes) in NETS.items()
        for n in sizes
        for impl in ("numpy_hand", "torch_autograd")
    ]


@pytest.mark.parametrize(("net", "impl", "n"), _cases())
def test_small_net_step(bench: Bench, net: str, impl: str, n: int) -> None:
    make, _ = NETS[net]
    step = make(impl, n)
    bench.benchmark.group = f"{net} cpu float64 N{n}"
    info = {
        "net": net,
        "impl": impl,
        "device": "cpu",
        "dtype": "float64",
        "size": f"N{n}",
        "N": n,
        "D_in": None,
        "H": None,
        "D_out": None,
    }
    grads = bench(step.run, info=info, library=step.library, flops=step.flops)
    expected = make("numpy_hand", n).run()
    for name, value in expected.items():
        got = grads[name].numpy() if isinstance(grads[name], torch.Tensor) else grads[name]
        np.testing.assert_allclose(got, value, rtol=1e-9, err_msg=f"{net} {impl}: {name}")
