"""The command when the code under test misbehaves: exit statuses 1, 2 and 130, streamed
rows, a real Ctrl-C sent to a subprocess, deadlines, parallel runs, reproduce lines, notes
(issues 9 and 10). In this process (-j 1) where no signal or worker process is involved."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HEADER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import torch
    from gradcheck import Derivation

    def square(x):
        return (x ** 2).sum()

    def make(name, backward):
        return Derivation(name=name, forward=square, backward=backward,
                          shapes={"x": ("N",)}, wrt=["x"])

    def exits(x):
        sys.exit(3)

    def loops_forever(x):
        while True:
            pass
    """
)


def _write(tmp_path: Path, body: str, name: str = "targets.py") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}


def _verify(*argv: str) -> tuple[int, str]:
    from gradcheck.cli import main

    out = io.StringIO()
    return main(["verify", *argv, "-j", "1"], out=out), out.getvalue()


def _gradcheck(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", "verify", *argv],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )


def test_a_backward_that_exits_is_a_failure_and_the_other_results_stay(tmp_path):
    path = _write(
        tmp_path,
        """
        good = make("good", lambda x: {"x": 2 * x})
        quits = make("quits", exits)
        """,
    )
    code, out = _verify(str(path), "--max-examples", "5", "--seed", "0", "--json")
    assert code == 1
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert results["good"]["verdict"] == "pass"
    assert results["quits"]["verdict"] == "fail"
    assert "backward called sys.exit(3)" in results["quits"]["message"]
    # every result carries the command that reruns it alone
    assert results["quits"]["reproduce"] == (
        f"gradcheck verify {path}:quits --seed 0 --max-examples 5"
    )
    assert results["good"]["reproduce"] == f"gradcheck verify {path}:good --seed 0 --max-examples 5"


def test_sys_exit_at_import_is_a_usage_error_with_one_line(tmp_path, capsys):
    path = tmp_path / "exits_at_import.py"
    path.write_text("import sys\nsys.exit(5)\n")
    code, _ = _verify(str(path))
    assert code == 2
    err = capsys.readouterr().err
    assert "called sys.exit(5) while being imported" in err
    assert len(err.strip().splitlines()) == 1


def test_a_backward_that_never_returns_times_out_and_the_run_goes_on(tmp_path):
    path = _write(
        tmp_path,
        """
        hangs = make("hangs", loops_forever)
        good = make("good", lambda x: {"x": 2 * x})
        """,
    )
    argv = ("--deadline", "0.5", "--max-examples", "3", "--seed", "0", "--json")
    code, out = _verify(str(path), *argv)
    assert code == 1
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert [p["kind"] for p in results["hangs"]["problems"]] == ["timeout"]
    assert "past the deadline of 0.5 s" in results["hangs"]["message"]
    assert "--deadline 0.5" in results["hangs"]["reproduce"]
    assert results["good"]["verdict"] == "pass"


def test_two_derivations_with_one_name_exit_2_naming_both_variables(tmp_path, capsys):
    path = _write(
        tmp_path,
        """
        first = make("twin", lambda x: {"x": 2 * x})
        second = make("twin", lambda x: {"x": 2 * x})
        """,
    )
    code, _ = _verify(str(path))
    assert code == 2
    err = capsys.readouterr().err
    assert "two Derivations are named 'twin': first" in err and "second" in err


def test_extra_keys_keep_their_note_in_the_table_and_the_json(tmp_path):
    path = _write(tmp_path, 'extra = make("extra", lambda x: {"x": 2 * x, "bias": x})\n')
    code, table = _verify(str(path), "--max-examples", "3")
    assert code == 0
    assert "also returned 'bias', not in wrt" in table
    _, data = _verify(str(path), "--max-examples", "3", "--json")
    assert "also returned 'bias', not in wrt" in json.loads(data)["results"][0]["message"]


def test_a_slow_example_warns_with_the_estimate_and_how_to_bound_it(tmp_path, capsys):
    path = _write(
        tmp_path,
        """
        def slow(x):
            time.sleep(1.1)
            return {"x": 2 * x}

        slow_one = make("slow_one", slow)
        """,
    )
    code, _ = _verify(str(path), "--max-examples", "2")
    assert code == 0
    err = capsys.readouterr().err
    assert "slow_one: one example took" in err
    assert "--max-examples" in err and "smaller dims" in err


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_after_first_row(path: Path, *jobs: str) -> tuple[int, str, str]:
    """Start a run whose second derivation never ends, wait for the first row (streamed
    on a pipe), then press Ctrl-C."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcheck", "verify", str(path), "--max-examples", "3",
         "--seed", "0", "--deadline", "0", *jobs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # Ctrl-C as a terminal delivers it: a test run started in the background (`cmd &`
        # in a script, some CI runners, farm-bench) ignores SIGINT, and a child inherits
        # that, so the run never saw the Ctrl-C and the test waited 60 s and failed.
        preexec_fn=_default_sigint,
    )  # fmt: skip
    assert process.stdout is not None
    # Read on a thread: without streaming the row never comes, and a bare readline would
    # wait for ever on a run that never ends, instead of failing.
    arrived: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [arrived.put(line) for line in process.stdout], daemon=True
    )
    reader.start()
    lines = []
    try:
        while not (lines and lines[-1].startswith("good ")):
            lines.append(arrived.get(timeout=120))
        assert process.poll() is None, "the run ended before it was interrupted"
        time.sleep(2.0)  # into the endless backward, well past the search's start-up
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    reader.join(timeout=10)
    while not arrived.empty():
        lines.append(arrived.get())
    assert process.stderr is not None
    return process.returncode, "".join(lines), process.stderr.read()


@pytest.mark.parametrize("jobs", [["-j", "1"], ["-j", "2"]], ids=["in process", "two workers"])
def test_ctrl_c_prints_the_results_so_far_and_exits_130(tmp_path, jobs):
    path = _write(
        tmp_path,
        """
        good = make("good", lambda x: {"x": 2 * x})
        hangs = make("hangs", loops_forever)
        """,
    )
    code, out, err = _interrupt_after_first_row(path, *jobs)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err and "Traceback" not in out
    assert "1 passed, 0 failed, 0 errors" in out
    assert "hangs " not in out  # no row for what did not finish


def test_parallel_runs_give_the_same_results_in_the_same_order(tmp_path):
    path = _write(
        tmp_path,
        """
        import os
        from pathlib import Path

        # Each process that imports this file leaves its pid; with -j 2 the first backward
        # (in the command's own process) waits until a worker has imported it, and so has
        # taken the last derivation: the worker path is exercised whatever the machine's load.
        MARKS = Path(__file__).parent / "imported_by"
        MARKS.mkdir(exist_ok=True)
        (MARKS / str(os.getpid())).touch()

        def waits_for_a_worker(x):
            if sys.argv[-2:] == ["-j", "2"]:
                for _ in range(600):
                    if len(list(MARKS.iterdir())) >= 2:
                        break
                    time.sleep(0.1)
            return {"x": 2 * x}

        a_good = make("a_good", waits_for_a_worker)
        b_wrong = make("b_wrong", lambda x: {"x": x})
        c_exits = make("c_exits", exits)
        """,
    )
    argv = (str(path), "--max-examples", "5", "--seed", "2", "--json")
    # -j 1 in this process (one torch start-up less), -j 2 as a user runs it
    code, alone = _verify(*argv)
    (tmp_path / "imported_by").mkdir(exist_ok=True)
    for mark in (tmp_path / "imported_by").iterdir():
        mark.unlink()
    spread = _gradcheck(*argv, "-j", "2")
    assert code == spread.returncode == 1, spread.stderr
    assert len(list((tmp_path / "imported_by").iterdir())) == 2  # the command and a worker

    def comparable(stdout):
        results = json.loads(stdout)["results"]
        for result in results:
            del result["elapsed_s"]
            result["message"] = "\n".join(
                line for line in result["message"].splitlines() if " s" not in line[-6:]
            )
        return results

    assert [r["name"] for r in json.loads(spread.stdout)["results"]] == [
        "a_good",
        "b_wrong",
        "c_exits",
    ]
    assert comparable(spread.stdout) == comparable(alone)
