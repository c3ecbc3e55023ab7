"""The pytest plugin, end to end with pytester: derivations in a test file become items."""

from __future__ import annotations

import subprocess
import sys

import pytest

# pytester runs pytest in this process and unloads what each run imported; torch cannot be
# imported twice in one process, so it (and the engine) is loaded here, once, for all runs.
import gradcheck.search
import gradcheck.testing  # noqa: F401

pytest_plugins = ["pytester"]

DERIVATIONS = """
import torch
from gradcheck import Derivation

def square(x):
    return (x ** 2).sum()

right = Derivation(name="right_square", forward=square,
                   backward=lambda x: {"x": 2 * x}, shapes={"x": ("N",)}, wrt=["x"])
wrong = Derivation(name="wrong_square", forward=square,
                   backward=lambda x: {"x": x}, shapes={"x": ("N",)}, wrt=["x"])
not_a_spec = Derivation(name="not_a_spec", forward=lambda x: [x],
                        backward=lambda x: {"x": x}, shapes={"x": ("N",)}, wrt=["x"])

def test_ordinary():
    assert True
"""


@pytest.fixture
def derivation_file(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_derivations=DERIVATIONS)
    return pytester


def test_each_derivation_is_an_item_with_its_verdict(derivation_file):
    result = derivation_file.runpytest("-p", "no:cacheprovider", "--gradcheck-max-examples", "10")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*wrong_square FAILED (float64)*",
            "*Diagnosis: 'x' is off by a constant factor: hand = 1/2 x reference*",
            "*Mismatched elements*",
        ]
    )
    result.stdout.fnmatch_lines(["*not_a_spec*forward returned list*"])


def test_items_are_named_after_the_derivation(derivation_file):
    result = derivation_file.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        ["*test_derivations.py::right_square", "*test_derivations.py::wrong_square"]
    )


def test_verdicts_are_the_same_across_xdist_workers(derivation_file):
    result = derivation_file.runpytest("-n", "2", "--gradcheck-max-examples", "10")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*wrong_square FAILED*", "*Diagnosis: 'x' is off by*"])


@pytest.mark.parametrize(
    ("option", "fragment"),
    [(["--gradcheck-max-examples", "0"], "give at least 1"), (["--gradcheck-seed", "-1"], ">= 0")],
    ids=["zero examples", "negative seed"],
)
def test_bad_plugin_options_are_usage_errors(derivation_file, option, fragment):
    result = derivation_file.runpytest(*option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{fragment}*"])


def test_collection_can_be_turned_off(derivation_file):
    result = derivation_file.runpytest("--gradcheck-no-collect")
    result.assert_outcomes(passed=1)


def test_the_seed_option_reproduces_the_report(derivation_file):
    first = derivation_file.runpytest("--gradcheck-seed", "5", "-k", "wrong_square")
    second = derivation_file.runpytest("--gradcheck-seed", "5", "-k", "wrong_square")
    pick = [line for line in first.outlines if "dims:" in line]
    assert pick and pick == [line for line in second.outlines if "dims:" in line]
    first.stdout.fnmatch_lines(
        ["*reproduce: pytest test_derivations.py::wrong_square --gradcheck-seed 5*"]
    )


def test_assert_helper_raises_an_assertion_error_with_the_report(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_helper="""
        import numpy as np
        from gradcheck import Derivation, assert_gradients_close

        def make():
            return Derivation(name="half", forward=lambda x: (x ** 2).sum(),
                              backward=lambda x: {"x": x}, shapes={"x": ("N",)}, wrt=["x"])

        def test_point():
            assert_gradients_close(make(), {"x": np.array([1.0, 2.0])})
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*GradcheckFailure: gradcheck: half FAILED*"])
    # the helper's own frame is hidden from the traceback
    assert "report = check(derivation" not in result.stdout.str()


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, gradcheck.plugin, gradcheck; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- the harness around the verdicts (issue 10) -------------------------------------------

HARNESS = """
import torch
from gradcheck import Derivation

def square(x):
    return (x ** 2).sum()

def make(name, backward, forward=square):
    return Derivation(name=name, forward=forward, backward=backward,
                      shapes={"x": ("N",)}, wrt=["x"])
"""


def test_a_spec_error_is_one_message_not_pages_of_internals(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_spec=HARNESS + "floaty = make('floaty', lambda x: {'x': 2 * x}, lambda x: 1.5)\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*forward returned float, not a torch.Tensor*"])
    assert len(result.outlines) <= 40, "\n".join(result.outlines)
    assert "pluggy/" not in result.stdout.str()  # no frames of its internals


def test_two_derivations_with_one_name_are_a_collection_error(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_twins=HARNESS
        + "first = make('twin', lambda x: {'x': 2 * x})\n"
        + "second = make('twin', lambda x: {'x': 2 * x})\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only")
    result.stdout.fnmatch_lines(["*two Derivations are named 'twin': first and second*"])
    assert result.ret != 0


def test_lists_and_dicts_are_collected_and_imports_are_not(pytester: pytest.Pytester):
    pytester.makepyfile(
        layers_here=HARNESS + "shared = make('shared', lambda x: {'x': 2 * x})\n",
        test_lists=HARNESS
        + "from layers_here import shared\n"
        + "LAYERS = [make('in_list', lambda x: {'x': 2 * x})]\n"
        + "BY_NAME = {'k': make('in_dict', lambda x: {'x': 2 * x})}\n"
        + "_MUTANTS = [make('private', lambda x: {'x': x})]\n",
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_lists.py::in_list", "*test_lists.py::in_dict"])
    text = result.stdout.str()
    assert "shared" not in text and "private" not in text


def test_the_reproduce_line_carries_dtype_and_max_examples(pytester: pytest.Pytester):
    pytester.makepyfile(test_wrong=HARNESS + "wrong = make('wrong', lambda x: {'x': x})\n")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--gradcheck-seed", "1",
        "--gradcheck-dtype", "float32", "--gradcheck-max-examples", "7",
    )  # fmt: skip
    result.stdout.fnmatch_lines(
        [
            "*reproduce: pytest test_wrong.py::wrong --gradcheck-seed 1 "
            "--gradcheck-max-examples 7 --gradcheck-dtype float32*"
        ]
    )


def test_a_backward_past_the_deadline_fails_with_a_timeout(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_hangs=HARNESS
        + "def forever(x):\n    while True:\n        pass\n\n"
        + "hangs = make('hangs', forever)\n"
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--gradcheck-deadline", "0.3", "--gradcheck-max-examples", "3"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timeout: the backward took*past the deadline of 0.3 s*"])


def test_a_slow_search_says_what_it_will_cost(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_slow=HARNESS
        + "import time\n\n"
        + "def slow(x):\n    time.sleep(1.1)\n    return {'x': 2 * x}\n\n"
        + "slow_one = make('slow_one', slow)\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-max-examples", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*slow_one: one example took*--gradcheck-max-examples*smaller dims*"]
    )
