"""A malformed declaration fails where it is written, naming the argument and the fix."""

from __future__ import annotations

import pytest

from gradcheck import Derivation, DerivationError


def _forward(x, w):
    return (x @ w).sum()


def _backward(x, w):
    return {"w": x.sum(axis=0)[:, None]}


GOOD = {
    "name": "good",
    "forward": _forward,
    "backward": _backward,
    "shapes": {"x": ("N", "D"), "w": ("D", 1)},
    "wrt": ["w"],
}


def _declare(**changes):
    return Derivation(**{**GOOD, **changes})


def test_a_good_declaration_fills_in_default_ranges():
    derivation = _declare()
    assert derivation.dim_ranges == {"N": (1, 16), "D": (1, 16)}
    assert derivation.input_bounds == {"x": (-2.0, 2.0), "w": (-2.0, 2.0)}
    assert derivation.wrt == ("w",)


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"wrt": ["v"]}, ["wrt names 'v'", "no entry in shapes", "inputs: x, w"]),
        ({"wrt": "w"}, ["wrt must be a sequence", "wrt=['w']"]),
        ({"wrt": []}, ["wrt is empty"]),
        ({"wrt": ["w", "w"]}, ["names an input twice"]),
        ({"backend": "nupmy"}, ["backend='nupmy'", "did you mean 'numpy'"]),
        ({"dims": {"M": (1, 4)}}, ["dims names 'M'", "no shape uses", "N, D"]),
        ({"dims": {"N": (0, 4)}}, ["dims['N'] = (0, 4)", "1 <= low <= high"]),
        ({"dims": {"N": (5, 4)}}, ["dims['N']"]),
        ({"bounds": {"z": (0, 1)}}, ["bounds names 'z'"]),
        ({"bounds": {"x": (1.0, 1.0)}}, ["bounds['x']", "low < high"]),
        ({"bounds": {"x": (0.0, float("inf"))}}, ["finite"]),
        ({"shapes": {"x": ("N", 0), "w": ("D", 1)}}, ["dim 0", "int >= 1"]),
        ({"shapes": {"x": ("N", "bad dim"), "w": ("D", 1)}}, ["symbolic name"]),
        ({"shapes": {"x": "N"}}, ["must be a tuple"]),
        ({"shapes": {}}, ["non-empty mapping"]),
        ({"forward": None}, ["forward must be callable"]),
        ({"backward": 3}, ["backward must be callable"]),
        ({"name": ""}, ["non-empty string"]),
    ],
    ids=[
        "unknown wrt name",
        "wrt given as a bare string",
        "empty wrt",
        "duplicate wrt",
        "misspelled backend",
        "dims naming an unused dim",
        "dims starting at zero",
        "dims reversed",
        "bounds naming an unknown input",
        "empty bounds",
        "infinite bounds",
        "zero-size fixed dim",
        "dim that is not an identifier",
        "shape that is not a tuple",
        "no shapes",
        "forward not callable",
        "backward not callable",
        "empty name",
    ],
)
def test_bad_declaration_raises_naming_the_problem(changes, fragments):
    with pytest.raises(DerivationError) as raised:
        _declare(**changes)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_declaration_keeps_its_own_copy_of_the_shapes():
    shapes = {"x": ["N", "D"], "w": ("D", 1)}
    derivation = _declare(shapes=shapes)
    shapes["x"].append("E")
    assert derivation.shapes["x"] == ("N", "D")
