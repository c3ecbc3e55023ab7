"""The tools that read a --benchmark-json file: peaks, fractions, ratios, the table, the chart.

Plain tests (no benchmark fixture): a plain ``pytest`` runs them, ``--benchmark-only`` leaves
them out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import results, steps, summary


def _entry(name: str, min_s: float, **info: Any) -> dict[str, Any]:
    return {
        "name": name,
        "stats": {"min": min_s, "median": min_s * 1.1, "rounds": 10},
        "extra_info": {"device": "cpu", "dtype": "float32", **info},
    }


def _document() -> dict[str, Any]:
    step_flops = steps.two_layer_flops(steps.SEEDS_SIZE)
    return {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}, "torch_threads": 2},
        "benchmarks": [
            _entry("gemm", 0.1, net="gemm", impl="numpy_gemm", library="numpy", flops=10**10),
            _entry("fast", step_flops / 50e9, net="two_layer", impl="numpy_fast",
                   library="numpy", size="N64", flops=step_flops),
            _entry("autograd", step_flops / 20e9, net="two_layer", impl="torch_autograd",
                   library="torch", size="N64", flops=step_flops),
            _entry("check", 0.05, net="checker", impl="gradcheck_check", library="mixed",
                   flops=None),
            _entry("torch gradcheck", 0.01, net="checker", impl="torch_gradcheck_fast_hand",
                   library="torch", flops=None),
        ],
    }  # fmt: skip


@pytest.fixture
def document_path(tmp_path: Path) -> Path:
    path = tmp_path / "out.json"
    path.write_text(json.dumps(_document()))
    return path


def test_two_layer_flops_count_five_matmuls_at_the_seeds_size():
    assert steps.two_layer_flops(steps.SEEDS_SIZE) == 2 * (2 * 64 * 1000 * 100 + 3 * 64 * 100 * 10)


def test_the_peak_is_the_gemm_of_the_same_library_and_dtype(document_path: Path):
    found = results.load(document_path)
    peak = results.peaks(found)
    assert peak == {("numpy", "cpu", "float32"): pytest.approx(100.0)}
    fast = next(r for r in found if r.impl == "numpy_fast")
    autograd = next(r for r in found if r.impl == "torch_autograd")
    assert results.fraction_of_peak(fast, peak) == pytest.approx(0.5)
    assert results.fraction_of_peak(autograd, peak) is None  # no torch GEMM in the file


def test_speedups_are_autograd_time_over_each_time(document_path: Path):
    ratios = results.speedups(results.load(document_path))
    assert ratios["fast"] == pytest.approx(2.5)
    assert ratios["autograd"] == pytest.approx(1.0)
    assert "check" not in ratios


def test_peak_fractions_are_written_into_the_json_entries():
    entries = _document()["benchmarks"]
    results.add_peak_fractions(entries)
    fast = next(e for e in entries if e["name"] == "fast")["extra_info"]
    assert fast["peak_gflops"] == pytest.approx(100.0)
    assert fast["fraction_of_peak"] == pytest.approx(0.5)
    assert (
        next(e for e in entries if e["name"] == "check")["extra_info"]["fraction_of_peak"] is None
    )


def test_best_of_runs_keeps_each_benchmark_from_its_fastest_run(tmp_path: Path):
    quiet, busy = _document(), _document()
    busy["benchmarks"][1]["stats"]["min"] *= 3  # "fast" lost to contention in one run...
    quiet["benchmarks"][2]["stats"]["min"] *= 3  # ...and "autograd" in the other
    paths = [tmp_path / "quiet.json", tmp_path / "busy.json"]
    for path, document in zip(paths, (quiet, busy), strict=True):
        path.write_text(json.dumps(document))
    best = {r.name: r.min_s for r in results.load_all(paths)}
    assert best["fast"] == quiet["benchmarks"][1]["stats"]["min"]
    assert best["autograd"] == busy["benchmarks"][2]["stats"]["min"]


def test_summary_tables_give_ratios_fractions_and_the_checker_cost(document_path: Path):
    text = summary.tables(results.load(document_path))
    assert "| N64 | float32 | cpu | numpy_fast |" in text
    assert "| 50% | 2.50x |" in text
    assert "| numpy_gemm | cpu | float32 |  | 100.000 | 100.0 |" in text
    assert "| torch_gradcheck_fast_hand |" in text and "| 5.00x |" in text


def test_plot_writes_a_png(document_path: Path, tmp_path: Path):
    pytest.importorskip("matplotlib")
    from benchmarks import plot

    output = tmp_path / "chart.png"
    assert plot.main([str(document_path), "-o", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_run_charts_a_fresh_benchmark_run(
    document_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("matplotlib")
    import subprocess

    from benchmarks import plot

    ran: list[list[str]] = []

    def fake_pytest(command: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
        ran.append(command)
        written = next(part for part in command if part.startswith("--benchmark-json="))
        Path(written.split("=", 1)[1]).write_text(document_path.read_text())
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(plot.subprocess, "run", fake_pytest)
    output = tmp_path / "chart.png"
    assert plot.main(["--run", "--pytest-args", "-m 'not slow'", "-o", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (command,) = ran
    assert command[1:4] == ["-m", "pytest", "--benchmark-only"] and command[-2:] == [
        "-m",
        "not slow",
    ]


def test_plot_without_files_or_run_says_what_to_give(capsys: pytest.CaptureFixture[str]):
    from benchmarks import plot

    with pytest.raises(SystemExit) as exit_info:
        plot.main([])
    assert exit_info.value.code == 2
    assert "--run" in capsys.readouterr().err
