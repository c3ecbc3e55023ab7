"""The gradcheck command: exit codes, JSON for machines, a table for people."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradcheck.cli import main

DERIVATIONS = textwrap.dedent(
    """
    import torch
    from gradcheck import Derivation

    def square(x):
        return (x ** 2).sum()

    good = Derivation(name="good_square", forward=square,
                      backward=lambda x: {"x": 2 * x}, shapes={"x": ("N",)}, wrt=["x"])
    bad = Derivation(name="bad_square", forward=square,
                     backward=lambda x: {"x": x}, shapes={"x": ("N",)}, wrt=["x"])
    """
)

GOOD_ONLY = DERIVATIONS.split("bad = ")[0]


@pytest.fixture
def targets(tmp_path: Path) -> dict[str, Path]:
    mixed = tmp_path / "mixed_derivations.py"
    mixed.write_text(DERIVATIONS)
    good = tmp_path / "good_derivations.py"
    good.write_text(GOOD_ONLY)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    return {"mixed": mixed, "good": good, "empty": empty, "broken": broken}


def _run(*argv: str) -> tuple[int, str]:
    # In this process (-j 1): a monkeypatched verify must be the one that runs.
    out = io.StringIO()
    in_process = [*argv, "-j", "1"] if argv[0] == "verify" else list(argv)
    return main(in_process, out=out), out.getvalue()


def test_all_passing_exits_0_with_a_table(targets):
    code, out = _run("verify", str(targets["good"]), "--max-examples", "10", "--seed", "1")
    assert code == 0
    assert "derivation" in out and "good_square" in out and "PASS" in out
    assert "1 passed, 0 failed, 0 errors" in out


def test_any_failure_exits_1_and_prints_its_report(targets):
    code, out = _run("verify", str(targets["mixed"]), "--max-examples", "20", "--seed", "1")
    assert code == 1
    assert "bad_square FAILED" in out
    # names the failing derivation alone, so that the line reruns one, not the whole file
    assert f"reproduce: gradcheck verify {targets['mixed']}:bad --seed 1 --max-examples 20" in out


def test_json_has_one_result_per_derivation(targets):
    code, out = _run(
        "verify", str(targets["mixed"]), "--json", "--max-examples", "10", "--seed", "3"
    )
    assert code == 1
    payload = json.loads(out)
    results = {r["name"]: r for r in payload["results"]}
    assert set(results) == {"good_square", "bad_square"}
    assert results["good_square"]["verdict"] == "pass"
    assert results["bad_square"]["verdict"] == "fail"
    assert "Mismatched elements" in results["bad_square"]["message"]
    assert results["bad_square"]["seed"] == 3


def test_module_and_attribute_targets(targets, monkeypatch):
    monkeypatch.syspath_prepend(str(targets["mixed"].parent))
    code, out = _run("verify", "mixed_derivations:good", "--max-examples", "5", "--json")
    assert code == 0
    assert [r["name"] for r in json.loads(out)["results"]] == ["good_square"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["verify", "missing_file.py"], "no such file: 'missing_file.py'"),
        (["verify", "EMPTY"], "no Derivation found"),
        (["verify", "BROKEN"], "cannot import"),
        (["verify", "no_such_module_xyz"], "cannot import module 'no_such_module_xyz'"),
        (["verify", "GOOD_MODULE:nothing"], "has no attribute 'nothing'"),
    ],
    ids=["missing file", "no derivation", "import error", "unknown module", "unknown attribute"],
)
def test_usage_problems_exit_2_with_one_line(argv, fragment, targets, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(targets["good"].parent))
    replacements = {
        "EMPTY": str(targets["empty"]),
        "BROKEN": str(targets["broken"]),
        "GOOD_MODULE:nothing": "good_derivations:nothing",
    }
    argv = [replacements.get(a, a) for a in argv]
    assert main(argv, out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert len(err.strip().splitlines()) == 1


def test_bad_option_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["verify", "--max-examples", "zero"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--max-examples" in err and len(err.strip().splitlines()) == 1


def test_list_names_every_builtin():
    code, out = _run("list")
    assert code == 0
    for name in (
        "two_layer_relu_numpy",
        "two_layer_relu_torch",
        "scalar_chain",
        "linear_stack",
        "linear_layer_vjp",
        "my_relu_function",
    ):
        assert name in out


def test_python_dash_m_runs_the_same_command(targets):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcheck",
            "verify",
            str(targets["good"]),
            "--max-examples",
            "5",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["verdict"] == "pass"


def test_colour_only_when_asked_or_on_a_terminal(targets):
    _, plain = _run("verify", str(targets["good"]), "--max-examples", "3")
    assert "\033[" not in plain
    _, coloured = _run("verify", str(targets["good"]), "--max-examples", "3", "--color", "always")
    assert "\033[32mPASS" in coloured


def test_progress_goes_to_a_terminal_only(targets, capsys):
    _run("verify", str(targets["good"]), "--max-examples", "3")
    assert "examples" not in capsys.readouterr().err  # stderr is not a terminal here


def test_table_columns_stay_aligned_with_colour():
    from gradcheck.cli import Outcome, format_table
    from gradcheck.derivations import BUILTINS

    outcomes = [
        Outcome(d, v, "", None, 1.0) for d, v in zip(BUILTINS[:2], ["pass", "fail"], strict=True)
    ]
    plain = format_table(outcomes).splitlines()
    coloured = format_table(outcomes, colour=True).splitlines()
    strip = [
        line.replace("\033[32m", "").replace("\033[31m", "").replace("\033[0m", "")
        for line in coloured
    ]
    assert strip == plain


def test_one_derivation_that_crashes_the_checker_is_an_error_not_a_lost_run(tmp_path, monkeypatch):
    import gradcheck.search

    path = tmp_path / "two.py"
    path.write_text(DERIVATIONS.split("not_a_spec")[0])
    real_verify = gradcheck.search.verify

    def verify(derivation, **options):
        if derivation.name == "bad_square":
            raise RuntimeError("surprise")
        return real_verify(derivation, **options)

    monkeypatch.setattr(gradcheck.search, "verify", verify)
    code, out = _run("verify", str(path), "--json", "--max-examples", "5")
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert code == 1
    assert results["good_square"]["verdict"] == "pass"
    assert results["bad_square"]["verdict"] == "error"
    assert "RuntimeError: surprise" in results["bad_square"]["message"]
