"""Time a step, or run it once: the ``bench`` fixture, and what every benchmark records.

Benchmarks are timed only when asked for, by ``--benchmark-only`` (or ``--benchmark-enable``).
Otherwise, as in the project's plain ``pytest`` run, each one runs once, untimed, as a smoke
test whose gradients are still checked, and the cases that take seconds (the large size,
``torch.compile``) are skipped with the reason.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from benchmarks.results import add_peak_fractions
from benchmarks.steps import Step, Unavailable
from gradcheck import Derivation, Report, verify

T = TypeVar("T")

# After its last call, OpenBLAS keeps its worker threads spinning for ~0.1-0.2 s, and on 2
# cores they starve whatever runs next: measured, a torch step right after numpy steps took
# 1.2-1.9 ms against 0.63 ms after a 0.2 s pause. So a timed benchmark whose library differs
# from the previous one's waits this long first. Neither library's thread count is limited:
# each runs as a user's program would, on every core.
SETTLE_S = 0.3

# Minor page faults are counted over this much extra running after the timing (at least one
# step): the cost a step pays for memory that is fresh to the process.
FAULT_WINDOW_S = 0.1

# The keys tools read by name; ``bench`` adds library, flops and gflops itself. None where a
# key does not apply (the sizes of a GEMM or of the scalar chain).
INFO_KEYS = ("impl", "device", "dtype", "N", "D_in", "H", "D_out")


def _timing_requested(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_only") or config.getoption("benchmark_enable"))


class Bench:
    """Runs one benchmark: times ``step`` (or runs it once) and records its extra_info."""

    _last_library: str | None = None  # of the previous timed benchmark in this process

    def __init__(self, benchmark: Any, *, timed: bool) -> None:
        self.benchmark = benchmark
        self.timed = timed

    def build(self, make: Callable[[], Step]) -> Step:
        """``make()``, with a case that cannot run here turned into a skip with its reason."""
        try:
            return make()
        except Unavailable as exc:
            pytest.skip(str(exc))

    def __call__(
        self,
        run: Callable[[], T],
        *,
        info: Mapping[str, Any],
        library: str,
        flops: int | None,
        rounds: int | None = None,
    ) -> T:
        """Time ``run`` and record ``info`` with ``flops`` and the achieved ``gflops``.

        ``rounds`` fixes the number of timed calls (after one warm-up) for steps long enough
        that pytest-benchmark's calibration would itself take many seconds.
        """
        benchmark = self.benchmark
        missing = [key for key in INFO_KEYS if key not in info]
        if missing:
            raise ValueError(
                f"bench(info=...) lacks {', '.join(missing)}; give None where a key does not apply."
            )
        benchmark.extra_info.update(info)
        benchmark.extra_info.update(library=library, flops=flops, gflops=None, time_stat="min")
        if not self.timed:
            return benchmark(run)  # the fixture is disabled: one call, no timing
        if Bench._last_library not in (None, library):
            time.sleep(SETTLE_S)
        Bench._last_library = library
        machine_before = _machine_cpu()
        if rounds is None:
            result = benchmark(run)
        else:
            result = benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
        benchmark.extra_info["other_cpu_share"] = _other_cpu_share(machine_before)
        best = benchmark.stats.stats.min
        if flops:
            benchmark.extra_info["gflops"] = flops / best / 1e9
        benchmark.extra_info["minor_faults_per_step"] = _faults_per_call(run, best)
        return result

    def verify(
        self, derivation: Derivation, /, *, examples: int, impl: str, library: str, **extra: Any
    ) -> Report:
        """Time ``verify(derivation)`` over ``examples`` examples on small shapes (each dim
        over its declared range, 1..16 unless the derivation says), three rounds; the report
        must pass, and its example count is recorded."""
        info = {
            "net": "checker",
            "impl": impl,
            "device": "cpu",
            "dtype": "float64",
            "size": "dims 1..16",
            "N": None,
            "D_in": None,
            "H": None,
            "D_out": None,
            **extra,
        }
        report = self(
            lambda: verify(derivation, max_examples=examples, seed=0),
            info=info,
            library=library,
            flops=None,
            rounds=3,
        )
        assert report.ok, str(report)
        self.benchmark.extra_info["examples"] = report.examples
        return report


def _machine_cpu() -> tuple[float, float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, and this process's own."""
    try:
        with open("/proc/stat") as stat:
            fields = [float(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None  # not Linux: the share is not measured
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    own = os.times()
    return (sum(fields) - idle) / ticks, sum(fields) / ticks, own.user + own.system


def _other_cpu_share(before: tuple[float, float, float] | None) -> float | None:
    """The share of the machine's CPU time other processes used while a benchmark ran: near
    0 on a quiet machine. On a shared one it says which numbers to distrust."""
    after = _machine_cpu()
    if before is None or after is None or after[1] <= before[1]:
        return None
    busy, total, own = (a - b for a, b in zip(after, before, strict=True))
    return round(max(0.0, busy - own) / total, 3)


def _faults_per_call(run: Callable[[], Any], seconds_per_call: float) -> float:
    calls = max(1, int(FAULT_WINDOW_S / max(seconds_per_call, 1e-9)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        run()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


@pytest.fixture
def bench(benchmark: Any, request: pytest.FixtureRequest) -> Bench:
    timed = _timing_requested(request.config) and benchmark.enabled
    if not timed:
        if request.node.get_closest_marker("slow"):
            benchmark.skipped = True  # or pytest-benchmark warns that it went unused
            pytest.skip("the large size runs only when timed: pytest --benchmark-only")
        benchmark.disabled = True  # pytest-benchmark then calls the function once
    return Bench(benchmark, timed=timed)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under --benchmark-only, deselect the test suite rather than list every test skipped."""
    if not config.getoption("benchmark_only"):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        (keep if "benchmark" in getattr(item, "fixturenames", ()) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """What the numbers depend on beyond the CPU: library versions, BLAS, threads, GPU."""
    machine_info["libraries"] = {
        "numpy": np.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    machine_info["blas"] = [
        {key: pool.get(key) for key in ("internal_api", "version", "num_threads", "architecture")}
        for pool in threadpool_info()
    ]
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    machine_info["torch_blas"] = "mkl" if torch.backends.mkl.is_available() else "other"
    if torch.cuda.is_available():
        machine_info["cuda_device"] = torch.cuda.get_device_name()


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list, output_json: dict
) -> None:
    """Give every result its fraction of the GEMM peak of the same library and dtype."""
    add_peak_fractions(output_json.get("benchmarks", []))
