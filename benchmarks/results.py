"""Read a ``--benchmark-json`` file back: each result with its fraction of peak and its ratios.

The peak of a (library, device, dtype) is the best GFLOP/s of the large GEMM benchmarked in
that library and dtype (``impl`` ending in ``_gemm``). Times are the minimum over rounds:
noise on a shared machine only ever adds time, so the minimum is the most repeatable
estimate of what the code costs; the median is kept beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Result",
    "add_peak_fractions",
    "best_of",
    "fraction_of_peak",
    "load",
    "load_all",
    "peaks",
    "speedups",
]

PeakKey = tuple[str, str, str]  # (library, device, dtype)


@dataclass(frozen=True)
class Result:
    """One benchmark of the JSON file, with the fields the tools use."""

    name: str
    net: str
    impl: str
    library: str | None
    device: str
    dtype: str
    size: str | None  # the size's label, e.g. "N64" or "large"
    flops: int | None
    min_s: float
    median_s: float
    rounds: int
    gflops: float | None
    extra: Mapping[str, Any]

    @property
    def peak_key(self) -> PeakKey | None:
        return None if self.library is None else (self.library, self.device, self.dtype)


def _result(entry: Mapping[str, Any]) -> Result:
    info = entry.get("extra_info", {})
    stats = entry["stats"]
    flops = info.get("flops")
    return Result(
        name=entry["name"],
        net=info.get("net", ""),
        impl=info.get("impl", entry["name"]),
        library=info.get("library"),
        device=info.get("device", "cpu"),
        dtype=info.get("dtype", ""),
        size=info.get("size"),
        flops=flops,
        min_s=stats["min"],
        median_s=stats["median"],
        rounds=stats["rounds"],
        gflops=flops / stats["min"] / 1e9 if flops else None,
        extra=info,
    )


def load(path: str | Path) -> list[Result]:
    """Every benchmark in a pytest-benchmark JSON file, in file order."""
    document = json.loads(Path(path).read_text())
    return [_result(entry) for entry in document.get("benchmarks", [])]


def best_of(runs: Iterable[Iterable[Result]]) -> list[Result]:
    """One result per benchmark name: the run where it was fastest.

    On a machine shared with other work, each run loses different benchmarks to contention;
    the minimum over runs is the best estimate of each one's own cost. (Ratios and fractions
    of peak are then taken between minimums that may come from different runs.)
    """
    best: dict[str, Result] = {}
    for run in runs:
        for result in run:
            if result.name not in best or result.min_s < best[result.name].min_s:
                best[result.name] = result
    return list(best.values())


def load_all(paths: Iterable[str | Path]) -> list[Result]:
    """``load`` one file, or the best of several runs of the same benchmarks."""
    runs = [load(path) for path in paths]
    return runs[0] if len(runs) == 1 else best_of(runs)


def peaks(results: Iterable[Result]) -> dict[PeakKey, float]:
    """The best GEMM GFLOP/s for each (library, device, dtype) benchmarked."""
    best: dict[PeakKey, float] = {}
    for result in results:
        key = result.peak_key
        if result.impl.endswith("_gemm") and key is not None and result.gflops:
            best[key] = max(best.get(key, 0.0), result.gflops)
    return best


def fraction_of_peak(result: Result, peak: Mapping[PeakKey, float]) -> float | None:
    """GFLOP/s as a share of the GEMM peak of the same library, device and dtype."""
    key = result.peak_key
    if not result.gflops or key is None or key not in peak:
        return None
    return result.gflops / peak[key]


def add_peak_fractions(entries: list[dict[str, Any]]) -> None:
    """Write ``peak_gflops`` and ``fraction_of_peak`` into each JSON entry's extra_info.

    Used by the ``pytest_benchmark_update_json`` hook, so that a tool reading the file finds
    the fraction by name; None where no GEMM of the same library and dtype was run.
    """
    found = [_result(entry) for entry in entries]
    peak = peaks(found)
    for entry, result in zip(entries, found, strict=True):
        info = entry.setdefault("extra_info", {})
        key = result.peak_key
        info["peak_gflops"] = peak.get(key) if key is not None else None
        info["fraction_of_peak"] = fraction_of_peak(result, peak)


def speedups(results: Iterable[Result], *, baseline: str = "torch_autograd") -> dict[str, float]:
    """For each result's name: the baseline's time over its time, in the same net, size,
    dtype and device (so 2.0 reads "twice as fast as autograd")."""
    found = list(results)
    base = {(r.net, r.size, r.dtype, r.device): r.min_s for r in found if r.impl == baseline}
    ratios: dict[str, float] = {}
    for result in found:
        key = (result.net, result.size, result.dtype, result.device)
        if key in base and result.min_s > 0:
            ratios[result.name] = base[key] / result.min_s
    return ratios
