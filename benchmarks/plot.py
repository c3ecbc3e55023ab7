"""Chart a ``--benchmark-json`` file: the two-layer step per implementation, against N.

One column per dtype. The top row is the time of a step (minimum over rounds, log scale);
the bottom row the same as a fraction of the GEMM peak of the library and dtype it runs in.
Sizes are the categories on the x axis: the seeds' widths at N = 64, 512 and 4096, then the
large net (N=4096, D_in=4096, H=1024, D_out=256) when it was run. A CPU and a CUDA run of one
implementation are two lines.

    python -m benchmarks.plot out.json [more.json ...] -o docs/benchmark.png
    python -m benchmarks.plot --run -o docs/benchmark.png    # a fresh run, then its chart

Several files are runs of the same benchmarks: each is drawn from the run where it was
fastest (see ``results.best_of``). ``--run`` first runs ``python -m pytest --benchmark-only``
(plus ``--pytest-args``) from the repository root and charts that run with the others;
``tox -e plot`` does it in an environment with the ``plot`` extra (matplotlib and the
benchmark tools).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.results import Result, fraction_of_peak, load_all, peaks

__all__ = ["fresh_run", "main", "plot"]

ROOT = Path(__file__).resolve().parent.parent

SIZE_ORDER = ("N64", "N512", "N4096", "large")
TICKS = {"N64": "N=64", "N512": "N=512", "N4096": "N=4096", "large": "large\n4096x4096x1024x256"}
STYLE = {  # one colour per implementation; CUDA lines dashed
    "numpy_hand": ("tab:blue", "o"),
    "numpy_fast": ("tab:cyan", "s"),
    "torch_hand": ("tab:orange", "o"),
    "torch_fast": ("tab:red", "s"),
    "torch_fast_graph": ("tab:pink", "D"),
    "torch_autograd": ("black", "^"),
    "torch_compile": ("tab:purple", "v"),
}


def _title(path: Path) -> str:
    machine = json.loads(path.read_text()).get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw") or machine.get("processor") or "unknown CPU"
    threads = machine.get("torch_threads")
    gpu = machine.get("cuda_device")
    parts = [cpu, f"{threads} threads" if threads else "", gpu or "no GPU"]
    return "two-layer ReLU net, one forward+backward step: " + ", ".join(p for p in parts if p)


def plot(results: Sequence[Result], output: Path, *, title: str = "") -> Path:
    """Draw the chart from ``results`` and save it as ``output`` (PNG)."""
    import matplotlib  # the `plot` extra: imported only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peak = peaks(results)
    net = [r for r in results if r.net == "two_layer" and r.size in SIZE_ORDER]
    if not net:
        raise SystemExit("no two-layer results in the file: run bench_two_layer.py first")
    dtypes = sorted({r.dtype for r in net})
    sizes = [s for s in SIZE_ORDER if any(r.size == s for r in net)]
    figure, axes = plt.subplots(
        2, len(dtypes), figsize=(6.5 * len(dtypes), 8.5), sharex=True, squeeze=False
    )
    for column, dtype in enumerate(dtypes):
        time_axis, peak_axis = axes[0][column], axes[1][column]
        order = list(STYLE)
        lines = sorted(
            {(r.impl, r.device) for r in net if r.dtype == dtype},
            key=lambda line: (order.index(line[0]) if line[0] in order else len(order), line),
        )
        for impl, device in lines:
            colour, marker = STYLE.get(impl, ("gray", "x"))
            found = {r.size: r for r in net if (r.impl, r.device, r.dtype) == (impl, device, dtype)}
            xs = [i for i, s in enumerate(sizes) if s in found]
            label = impl if device == "cpu" else f"{impl} ({device})"
            style = {"color": colour, "marker": marker, "label": label}
            style["linestyle"] = "--" if device == "cuda" else "-"
            time_axis.plot(xs, [found[sizes[i]].min_s * 1e3 for i in xs], **style)
            fractions = [fraction_of_peak(found[sizes[i]], peak) for i in xs]
            shown = [(x, f) for x, f in zip(xs, fractions, strict=True) if f is not None]
            if shown:
                peak_axis.plot(*zip(*shown, strict=True), **style)
        time_axis.set_yscale("log")
        time_axis.set_ylabel("time per step, ms (min over rounds)")
        time_axis.set_title(dtype)
        time_axis.grid(True, which="both", alpha=0.3)
        time_axis.legend(fontsize=8)
        peak_axis.set_ylabel("fraction of GEMM peak (same library, dtype)")
        peak_axis.set_ylim(0, 1.05)
        peak_axis.axhline(1.0, color="gray", linewidth=0.8)
        peak_axis.grid(True, alpha=0.3)
        peak_axis.set_xticks(range(len(sizes)), [TICKS[s] for s in sizes])
        notes = [
            f"{lib} {dev} peak {gf:.0f} GFLOP/s"
            for (lib, dev, dt), gf in sorted(peak.items())
            if dt == dtype
        ]
        peak_axis.set_title("; ".join(notes), fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output


def fresh_run(output: Path, pytest_args: Sequence[str] = ()) -> Path:
    """Run the benchmarks (``pytest --benchmark-only``) and keep their JSON in ``output``."""
    command = [
        sys.executable, "-m", "pytest", "--benchmark-only", f"--benchmark-json={output}",
        "-p", "no:cacheprovider", *pytest_args,
    ]  # fmt: skip
    print("running: " + " ".join(shlex.quote(part) for part in command), flush=True)
    status = subprocess.run(command, cwd=ROOT).returncode
    if status != 0 or not output.exists():
        raise SystemExit(f"the benchmark run failed (pytest exit status {status}); no chart")
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__)
    parser.add_argument(
        "json", type=Path, nargs="*", help="files written by --benchmark-json (best of them)"
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("benchmark.png"), help="PNG to write"
    )
    parser.add_argument(
        "--run", action="store_true", help="run the benchmarks first and chart that run too"
    )
    parser.add_argument(
        "--pytest-args",
        default="",
        help="more pytest arguments for --run, e.g. --pytest-args=\"-m 'not slow'\"",
    )
    args = parser.parse_args(argv)
    if not args.json and not args.run:
        parser.error("give --benchmark-json files to chart, or --run for a fresh run")
    with tempfile.TemporaryDirectory() as scratch:
        files = list(args.json)
        if args.run:
            fresh = fresh_run(Path(scratch) / "fresh.json", shlex.split(args.pytest_args))
            files.insert(0, fresh)
        runs = f" (best of {len(files)} runs)" if len(files) > 1 else ""
        written = plot(load_all(files), args.output, title=_title(files[0]) + runs)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
