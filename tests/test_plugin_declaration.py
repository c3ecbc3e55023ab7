"""A declaration error in one test file fails that file in one line; the others still run."""

from __future__ import annotations

pytest_plugins = ["pytester"]

GOOD = """
from gradcheck import Derivation
square = Derivation(name="square", forward=lambda x: (x**2).sum(),
                    backward=lambda x: {"x": 2 * x}, shapes={"x": ("N",)}, wrt=["x"])
def test_plain():
    assert True
"""

BROKEN = """
from gradcheck import Derivation
broken = Derivation(name="broken", forward=lambda x: (x**2).sum(),
                    backward=lambda x: {"x": 2 * x}, shapes={"x": ("N",)}, wrt=["y"])
"""


def test_a_declaration_error_fails_its_file_in_one_line_and_the_others_run(pytester):
    pytester.makepyfile(test_good=GOOD, test_broken=BROKEN)
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-max-examples", "5")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["declaration error: Derivation 'broken': wrt names 'y', which has no entry in shapes*"]
    )
    assert "Interrupted" not in result.stdout.str()
    assert "gradcheck/derivation.py" not in result.stdout.str()  # none of our frames


def test_other_import_errors_are_left_to_pytest(pytester):
    pytester.makepyfile(test_typo="import gradcheck\nraise RuntimeError('not ours')\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*RuntimeError: not ours*"])


INTERNAL = """
import gradcheck.evaluation.pipeline as stages
from gradcheck import Derivation

def broken(*args, **kwargs):
    raise TypeError("a bug planted in the checker")

stages.scale_floors = broken
square = Derivation(name="square", forward=lambda x: (x**2).sum(),
                    backward=lambda x: {"x": 2 * x}, shapes={"x": ("N",)}, wrt=["x"])
"""


def test_an_internal_error_of_gradcheck_is_one_line_naming_it_as_ours(pytester):
    pytester.makepyfile(test_internal=INTERNAL)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--gradcheck-seed", "0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["internal error of gradcheck, not of your code: TypeError: a bug planted*Rerun: pytest*"]
    )
    assert "Traceback" not in result.stdout.str()
