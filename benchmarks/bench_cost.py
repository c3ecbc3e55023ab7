"""What checking costs, as a multiple of the work it cannot avoid, each ratio within one run.

- ``verify`` on small derivations (every dim over its declared range, 100 examples): its time
  over the irreducible work at the very points it visited (``benchmarks/cost.py``), for the
  correct built-ins and the correct cases of the test suite's mutant file.
- ``check`` at a large point (a tanh layer with a 3000x3000 weight): its time over the
  irreducible work there, and its extra peak memory over the inputs' size, measured in a
  fresh process.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.conftest import Bench
from benchmarks.cost import (
    LARGE_TANH,
    irreducible_seconds,
    large_tanh_point,
    memory_in_subprocess,
    tanh_layer,
    visited_examples,
)
from gradcheck import Derivation, check, verify
from gradcheck.derivations import BUILTINS
from gradcheck.report import Example
from tests import mutants

CORRECT = (*BUILTINS, mutants.correct_mask_less, mutants.correct_mask_less_equal)
EXAMPLES = 100
REPEATS = 5  # the irreducible work is timed this often, after a warm-up; the minimum is kept


def _info(impl: str, derivation: str, size: str) -> dict[str, Any]:
    return {
        "net": "cost",
        "impl": impl,
        "device": "cpu",
        "dtype": "float64",
        "size": size,
        "N": None,
        "D_in": None,
        "H": None,
        "D_out": None,
        "derivation": derivation,
    }


@pytest.mark.parametrize("derivation", CORRECT, ids=lambda d: d.name)
def test_verify_cost_over_irreducible_work(bench: Bench, derivation: Derivation) -> None:
    examples = EXAMPLES if bench.timed else 3
    with visited_examples() as seen:
        report = verify(derivation, max_examples=examples, seed=0)
    assert report.ok, str(report)
    bench.benchmark.group = "cost: verify over irreducible work"
    bench(
        lambda: verify(derivation, max_examples=examples, seed=0),
        info=_info("gradcheck_verify", derivation.name, "dims as declared"),
        library="mixed",
        flops=None,
        rounds=3,
    )
    irreducible_seconds(derivation, seen)  # warm-up: torch's first calls of each op are slow
    irreducible = min(irreducible_seconds(derivation, seen) for _ in range(REPEATS))
    bench.benchmark.extra_info.update(examples=len(seen), irreducible_s=irreducible)
    if bench.timed:
        bench.benchmark.extra_info["cost_ratio"] = bench.benchmark.stats.stats.min / irreducible


@pytest.mark.slow
def test_large_check_cost_over_irreducible_work(bench: Bench) -> None:
    point = large_tanh_point()
    sizes = {"N": LARGE_TANH["N"], "D_in": LARGE_TANH["D_in"], "D_out": LARGE_TANH["D_out"]}
    bench.benchmark.group = "cost: check at a large point"
    report = bench(
        lambda: check(tanh_layer, point),
        info=_info("gradcheck_check", tanh_layer.name, "w 3000x3000"),
        library="mixed",
        flops=None,
        rounds=3,
    )
    assert report.ok, str(report)
    example = Example(dims=sizes, inputs=point)
    irreducible = min(irreducible_seconds(tanh_layer, [example]) for _ in range(REPEATS))
    check_memory = memory_in_subprocess("check")
    irreducible_memory = memory_in_subprocess("irreducible")
    bench.benchmark.extra_info.update(
        irreducible_s=irreducible,
        cost_ratio=bench.benchmark.stats.stats.min / irreducible,
        probes=report.probes,
        inputs_bytes=check_memory["inputs"],
        extra_peak_bytes=check_memory["extra"],
        memory_ratio=check_memory["extra"] / check_memory["inputs"],
        irreducible_memory_ratio=irreducible_memory["extra"] / irreducible_memory["inputs"],
    )
