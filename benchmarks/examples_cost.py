"""What a full gradcheck costs per example in examples/, beside what torch's own tools cost
at one hand-picked sample: ``torch.autograd.gradcheck`` + ``gradgradcheck`` (skipped for a
``@once_differentiable`` backward) + ``torch.library.opcheck`` (ops only), in one run.

    python -m benchmarks.examples_cost [NAME ...]

One line per example and variant (the correct one and its planted bug): gradcheck's verdict
and seconds for ``verify(max_examples=50, seed=0)``, torch's seconds and what each of its
tools said. A timing, not a test: the test of each example is tests/test_ops_examples.py.
"""

from __future__ import annotations

import importlib
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from gradcheck import verify

EXAMPLES = (
    "rms_norm_op", "bias_gelu_op", "swiglu_op", "sparsemax", "softmax_lse",
    "pairwise_distance", "fused_cross_entropy", "mish", "layer_norm", "bilinear",
)  # fmt: skip


def sample(name: str) -> tuple[Any, ...]:
    """The one sample torch's tools are run at, as an author would pick it by hand."""
    generator = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        values = torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1
        return values.requires_grad_()

    samples: dict[str, Callable[[], tuple[Any, ...]]] = {
        "rms_norm_op": lambda: (r(4, 5), r(5), 1e-6),
        "bias_gelu_op": lambda: (r(4, 5), r(5)),
        "swiglu_op": lambda: (r(4, 5), r(4, 5)),
        "sparsemax": lambda: (r(4, 5),),
        "softmax_lse": lambda: (r(4, 5),),
        "pairwise_distance": lambda: (
            (r(4, 3) - 1.5).detach().requires_grad_(),
            (r(5, 3) + 1.5).detach().requires_grad_(),
        ),
        "fused_cross_entropy": lambda: (r(4, 5), torch.tensor([0, 2, 4, 1])),
        "mish": lambda: (r(4, 5),),
        "layer_norm": lambda: (r(4, 5), r(5)),
        "bilinear": lambda: (r(4, 3), r(3, 5), r(4, 5)),
    }
    return samples[name]()


def torch_tools(derivation: Any, args: tuple[Any, ...]) -> tuple[float, list[str]]:
    under_test = derivation.extra_checks
    under_test = getattr(under_test, "inner", under_test).function
    tools = {
        "gradcheck": lambda: torch.autograd.gradcheck(under_test.call, args),
        "gradgradcheck": lambda: (
            None
            if getattr(under_test, "once_differentiable", False)
            else torch.autograd.gradgradcheck(under_test.call, args)
        ),
        "opcheck": lambda: (
            torch.library.opcheck(under_test.op, args) if hasattr(under_test, "op") else None
        ),
    }
    said = []
    started = time.perf_counter()
    for label, run in tools.items():
        try:
            run()
            said.append(f"{label} ok")
        except Exception as exc:  # a tool's failure is its verdict here
            first = (str(exc).splitlines() or [""])[0][:50]
            said.append(f"{label} FAIL ({type(exc).__name__}: {first})")
    return time.perf_counter() - started, said


def main(names: list[str]) -> None:
    warnings.simplefilter("ignore")
    for name in names or EXAMPLES:
        module = importlib.import_module(f"examples.{name}")
        for variant in ("correct", "planted"):
            derivation = getattr(module, variant)
            started = time.perf_counter()
            report = verify(derivation, max_examples=50, seed=0)
            ours = time.perf_counter() - started
            theirs, said = torch_tools(derivation, sample(name))
            print(
                f"{name:20s} {variant:8s} gradcheck {report.verdict:5s} {ours:6.2f} s | "
                f"torch at one sample {theirs:6.2f} s: {'; '.join(said)}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
