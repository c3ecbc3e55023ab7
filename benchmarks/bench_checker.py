"""The checker's own cost: ``check`` at the seeds' size beside torch's gradcheck, and
``verify``'s examples per second on small shapes.

``check`` compares the hand gradient element-wise with float64 autograd and probes the spec
with 16 Richardson-extrapolated finite differences; ``torch.autograd.gradcheck`` in fast mode
compares one random projection of the Jacobian with one finite difference per input. Two
torch gradchecks are timed: of autograd's own backward of the spec, and of the hand numpy
backward wrapped in a ``torch.autograd.Function`` (the job ``check`` does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from threadpoolctl import ThreadpoolController

from benchmarks import steps
from benchmarks.conftest import Bench
from gradcheck import check
from gradcheck.derivations import BUILTINS, two_layer

CANONICAL = steps.SEEDS_SIZE


def _info(impl: str, **extra: Any) -> dict[str, Any]:
    return {
        "net": "checker",
        "impl": impl,
        "device": "cpu",
        "dtype": "float64",
        "size": CANONICAL.label,
        **CANONICAL.as_info(),
        **extra,
    }


def test_check_cost(bench: Bench) -> None:
    point = steps.two_layer_point(CANONICAL, "float64")
    bench.benchmark.group = "checker cpu float64 N64"
    report = bench(
        lambda: check(two_layer.two_layer_relu_numpy, point),
        info=_info("gradcheck_check", derivation="two_layer_relu_numpy"),
        library="mixed",
        flops=None,
    )
    assert report.ok, str(report)
    bench.benchmark.extra_info["probes"] = report.probes


_BLAS = ThreadpoolController()


class _HandLoss(torch.autograd.Function):
    """The spec's loss with the hand numpy backward as its backward, for torch's gradcheck."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor):  # type: ignore[override]
        ctx.save_for_backward(x, y, w1, w2)
        return two_layer.loss(x, y, w1, w2)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):  # type: ignore[override]
        x, y, w1, w2 = (t.detach().numpy() for t in ctx.saved_tensors)
        # On one BLAS thread, as the harness runs a numpy backward: OpenBLAS workers left
        # spinning slow every torch call gradcheck makes after it (measured at the seeds'
        # size: 32 ms a gradcheck with both threads, 8 ms with one).
        with _BLAS.limit(limits=1, user_api="blas"):
            grads = two_layer.backward_numpy(x, y, w1, w2)
        return (
            None,
            None,
            grad_output * torch.from_numpy(grads["w1"]),
            grad_output * torch.from_numpy(grads["w2"]),
        )


@pytest.mark.parametrize("backward", ["autograd", "hand"], ids=["of autograd", "of the hand"])
def test_torch_gradcheck_cost(bench: Bench, backward: str) -> None:
    point = {k: torch.from_numpy(v) for k, v in steps.two_layer_point(CANONICAL, "float64").items()}
    x, y = point["x"], point["y"]
    weights = (point["w1"].requires_grad_(True), point["w2"].requires_grad_(True))
    if backward == "autograd":

        def function(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
            return two_layer.loss(x, y, w1, w2)
    else:

        def function(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
            return _HandLoss.apply(x, y, w1, w2)

    bench.benchmark.group = "checker cpu float64 N64"
    passed = bench(
        lambda: torch.autograd.gradcheck(function, weights, fast_mode=True, raise_exception=False),
        info=_info(f"torch_gradcheck_fast_{backward}"),
        library="torch",
        flops=None,
    )
    assert passed


@pytest.mark.parametrize("derivation", BUILTINS, ids=lambda d: d.name)
def test_verify_rate(bench: Bench, derivation: Any) -> None:
    bench.benchmark.group = "verify examples per second"
    report = bench.verify(
        derivation,
        examples=20 if bench.timed else 2,
        impl="gradcheck_verify",
        library="mixed",
        derivation=derivation.name,
    )
    if bench.timed:
        best = bench.benchmark.stats.stats.min
        bench.benchmark.extra_info["examples_per_s"] = float(np.float64(report.examples) / best)
