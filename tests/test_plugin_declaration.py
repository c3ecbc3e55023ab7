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
