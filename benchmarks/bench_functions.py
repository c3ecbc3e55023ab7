"""What the Function checks cost beside the backward-only check: ``verify`` of the same
``torch.autograd.Function`` with ``checks=("backward",)`` and with every check it declares
(jvp, double backward, strided inputs and grad_output, vmap, determinism).

The ratio of the two minima, per Function, is the extra checks' cost; the issue's budget is
about 3x. ``python -m pytest benchmarks/bench_functions.py --benchmark-only``.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import Bench
from gradcheck.derivations.relu_function import MyReLU
from gradcheck.functions import CHECKS, function_derivation
from tests import function_mutants as mutants

FUNCTIONS = {
    "MyReLU": (MyReLU, torch.relu, {"x": ("N", "D")}),
    "Tanh (jvp, double backward)": (mutants.Tanh, torch.tanh, mutants.TANH_SHAPES),
    "Center (setup_context, jvp, vmap)": (
        mutants.CenterSetupContext,
        mutants.center_spec,
        mutants.CENTER_SHAPES,
    ),
}


@pytest.mark.parametrize("checks", ["backward only", "every check"])
@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_function_checks_cost(bench: Bench, function: str, checks: str) -> None:
    function_class, spec, shapes = FUNCTIONS[function]
    chosen = ("backward",) if checks == "backward only" else CHECKS
    derivation = function_derivation(
        function_class, spec=spec, shapes=shapes, wrt=["x"], checks=chosen
    )
    bench.benchmark.group = f"function checks: {function}"
    bench.verify(
        derivation,
        examples=50 if bench.timed else 2,
        impl=f"verify {checks}",
        library="torch",
        function=function,
    )
