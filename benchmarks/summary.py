"""Print a ``--benchmark-json`` file as Markdown tables: the numbers benchmarks/README.md quotes.

For each two-layer case: the minimum and median time, GFLOP/s, the fraction of the GEMM peak
of the same library and dtype, and the speed-up over torch autograd at the same size; then the
peaks, the small nets, and the checker's own cost. Given several files (runs of the same
benchmarks), each benchmark is taken from the run where it was fastest (``results.best_of``).

    python -m benchmarks.summary out.json [more.json ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from benchmarks.results import Result, fraction_of_peak, load_all, peaks, speedups

__all__ = ["main", "tables"]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def _optional(value: float | None, pattern: str, *, scale: float = 1.0) -> str:
    return "" if value is None else pattern.format(value * scale)


def tables(results: Sequence[Result]) -> str:
    """The Markdown text; pure, so that it can be checked against a made-up file."""
    peak = peaks(results)
    ratio = speedups(results)
    lines: list[str] = []

    def table(title: str, header: Sequence[str], rows: list[list[str]]) -> None:
        lines.extend([title, ""])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines.extend("| " + " | ".join(row) + " |" for row in rows)
        lines.append("")

    def noise(result: Result) -> str:
        share = result.extra.get("other_cpu_share")
        return "" if share is None else f"{share:.0%}"

    steps = [r for r in results if r.net == "two_layer"]
    if steps:
        table(
            "Two-layer net, one forward+backward step",
            ["size", "dtype", "device", "impl", "min ms", "median ms", "GFLOP/s", "of peak",
             "autograd / impl", "compile s", "others' CPU"],
            [
                [r.size or "", r.dtype, r.device, r.impl, _ms(r.min_s), _ms(r.median_s),
                 _optional(r.gflops, "{:.1f}"),
                 _optional(fraction_of_peak(r, peak), "{:.0%}"),
                 _optional(ratio.get(r.name), "{:.2f}x"),
                 _optional(r.extra.get("compile_s"), "{:.1f}"),
                 noise(r)]
                for r in steps
            ],
        )  # fmt: skip
    gemms = [r for r in results if r.net == "gemm"]
    if gemms:
        table(
            "GEMM peak",
            ["impl", "device", "dtype", "size", "min ms", "GFLOP/s", "others' CPU"],
            [[r.impl, r.device, r.dtype, r.size or "", _ms(r.min_s),
              _optional(r.gflops, "{:.1f}"), noise(r)] for r in gemms],
        )  # fmt: skip
    small = [r for r in results if r.net in ("scalar_chain", "linear_stack")]
    if small:
        table(
            "The seeds' small nets (float64, CPU)",
            ["net", "size", "impl", "min us", "median us", "autograd / impl"],
            [[r.net, r.size or "", r.impl, f"{r.min_s * 1e6:.1f}", f"{r.median_s * 1e6:.1f}",
              _optional(ratio.get(r.name), "{:.2f}x")] for r in small],
        )  # fmt: skip
    checker = [r for r in results if r.net == "checker"]
    if checker:
        check_cost = next((r.min_s for r in checker if r.impl == "gradcheck_check"), None)
        table(
            "The checker's own cost (CPU, float64)",
            ["impl", "what", "min ms", "median ms", "check / this", "examples/s"],
            [[r.impl, str(r.extra.get("derivation") or r.size or ""), _ms(r.min_s),
              _ms(r.median_s),
              "" if check_cost is None or r.extra.get("derivation") else
              f"{check_cost / r.min_s:.2f}x",
              _optional(r.extra.get("examples_per_s"), "{:.0f}")] for r in checker],
        )  # fmt: skip
    cost = [r for r in results if r.net == "cost"]
    if cost:
        table(
            "What checking costs over the work it cannot avoid (CPU, float64)",
            ["impl", "derivation", "size", "min ms", "irreducible ms", "ratio",
             "extra memory / inputs"],
            [[r.impl, str(r.extra.get("derivation") or ""), r.size or "", _ms(r.min_s),
              _optional(r.extra.get("irreducible_s"), "{:.3f}", scale=1e3),
              _optional(r.extra.get("cost_ratio"), "{:.1f}x"),
              _optional(r.extra.get("memory_ratio"), "{:.1f}x")] for r in cost],
        )  # fmt: skip
        small = [r.extra["cost_ratio"] for r in cost if r.impl == "gradcheck_verify"
                 and r.extra.get("cost_ratio") is not None]  # fmt: skip
        if small:
            lines.append(f"Mean verify ratio over {len(small)} derivations: "
                         f"{sum(small) / len(small):.1f}x")  # fmt: skip
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.summary", description=__doc__)
    parser.add_argument(
        "json", type=Path, nargs="+", help="files written by --benchmark-json (best of them)"
    )
    args = parser.parse_args(argv)
    print(tables(load_all(args.json)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
