"""The command's stdout is its own: what the user's code prints goes to stderr, so that
``--json`` stays one JSON object whatever a module or a backward prints (issue 18, item 16),
in this process (-j 1) and in worker processes (-j 2). Reproduce lines are shell words."""

from __future__ import annotations

import json
import shlex
import textwrap

import pytest

from gradcheck.runner import RunOptions, reproduce_command
from tests.worker_targets import WAITS_FOR_A_WORKER, gradcheck_verify

# A debug print at import, in the forward and in the backward, as students leave them; a
# print straight to file descriptor 1 too, as native code writes.
PRINTING = WAITS_FOR_A_WORKER + textwrap.dedent(
    """
    import os
    from gradcheck import Derivation

    print("imported in", os.getpid())

    def square(x):
        print("forward", tuple(x.shape))
        return (x ** 2).sum()

    def waits_for_a_worker(x):
        wait_for_a_worker()
        print("backward of first, in", os.getpid())
        return {"x": 2 * x}

    def wrong(x):
        print("backward of second, in", os.getpid())
        os.write(1, b"raw bytes to fd 1\\n")
        return {"x": x}

    first = Derivation(name="first", forward=square, backward=waits_for_a_worker,
                       shapes={"x": ("N",)}, wrt=["x"])
    second = Derivation(name="second", forward=square, backward=wrong,
                        shapes={"x": ("N",)}, wrt=["x"])
    """
)


@pytest.mark.parametrize("jobs", ["1", "2"], ids=["in the command's process", "in a worker"])
def test_json_stays_pure_when_the_users_code_prints(tmp_path, jobs):
    path = tmp_path / "printing.py"
    path.write_text(PRINTING)
    done = gradcheck_verify(
        str(path), "--json", "--max-examples", "5", "--seed", "1", "-j", jobs,
        wait_for_worker=jobs != "1",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    payload = json.loads(done.stdout)  # nothing but the JSON object on stdout
    assert [r["verdict"] for r in payload["results"]] == ["pass", "fail"]
    # The prints are not lost: they went to stderr, from every process that ran user code.
    assert "backward of first" in done.stderr and "backward of second" in done.stderr
    assert "forward (" in done.stderr and "raw bytes to fd 1" in done.stderr
    importers = {line.split()[-1] for line in done.stderr.splitlines() if "imported in" in line}
    assert len(importers) == int(jobs)  # with -j 2 a worker imported it and printed too


def test_the_table_too_is_kept_apart_from_the_users_prints(tmp_path):
    path = tmp_path / "printing.py"
    path.write_text(PRINTING)
    done = gradcheck_verify(str(path), "--max-examples", "5", "--seed", "1", "-j", "1",
                      wait_for_worker=False)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "backward of" not in done.stdout and "imported in" not in done.stdout
    assert "1 passed, 1 failed, 0 errors" in done.stdout
    assert "backward of second" in done.stderr


@pytest.mark.parametrize(
    "target",
    ["my course/two layer.py:bad", "net.py:LAYERS.my relu", "it's.py"],
    ids=["a folder and file with spaces", "a derivation name with a space", "a quote"],
)
def test_a_reproduce_line_splits_into_the_words_it_was_made_from(target):
    options = RunOptions(max_examples=20, seed=None, dtype="float32", deadline=60.0)
    line = reproduce_command(target, options, 7)
    assert shlex.split(line) == [
        "gradcheck", "verify", target, "--seed", "7", "--max-examples", "20", "--dtype", "float32",
    ]  # fmt: skip


def test_a_plain_target_is_not_quoted():
    options = RunOptions(max_examples=20, seed=None, dtype="float64", deadline=60.0)
    line = reproduce_command("dir/file.py:bad", options, 1)
    assert line == "gradcheck verify dir/file.py:bad --seed 1 --max-examples 20"
