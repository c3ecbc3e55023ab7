"""The search's own rules: what it reports when no point is conclusive, and which values of a
param it tries as simpler than the one a failure was found at."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck import Derivation, verify
from gradcheck.derivation import ParamChoices
from gradcheck.search import SIMPLER_PARAM_VALUES, _simpler_values


def test_a_search_where_no_point_is_conclusive_is_an_error_that_says_so():
    # sqrt at 0: autograd's gradient is NaN at every point, so every point is a doubt
    derivation = Derivation(
        name="root_of_zero",
        forward=lambda x: torch.sqrt(x * 0.0).sum(),
        backward=lambda x: {"x": np.zeros_like(x)},
        shapes={"x": ("N",)},
        wrt=["x"],
    )
    report = verify(derivation, max_examples=5, seed=0)
    assert report.verdict == "error"
    assert not report.ok
    assert report.examples == 5
    assert report.inconclusive == 5
    assert "none of 5 examples was conclusive" in str(report)
    assert "Narrow the bounds away from the kinks" in str(report)


@pytest.mark.parametrize(
    "choice, current, simpler",
    [
        (ParamChoices(choices=("a", "b", "c")), "c", ["a", "b"]),
        (ParamChoices(choices=("a", "b", "c")), "a", []),
        (ParamChoices(choices=("a", "b")), "z", []),
        (ParamChoices(low=1, high=40), 4, [1, 2, 3]),
        (ParamChoices(low=0, high=40), 30, list(range(SIMPLER_PARAM_VALUES))),
        (ParamChoices(low=1, high=4), True, []),
        (ParamChoices(low=0.0, high=1.0, continuous=True), 0.5, []),
    ],
    ids=[
        "the choices before the current one, in order",
        "nothing before the first choice",
        "nothing when the value is not among the choices",
        "the ints below the current one",
        "at most SIMPLER_PARAM_VALUES ints, the lowest",
        "no ints below a bool",
        "nothing for a float range",
    ],
)
def test_simpler_param_values_are_the_earlier_ones_simplest_first(choice, current, simpler):
    assert _simpler_values(choice, current) == simpler


def test_array_choices_without_plain_equality_are_matched_by_identity():
    first, second, third = np.zeros(2), np.ones(2), np.full(2, 2.0)
    choice = ParamChoices(choices=(first, second, third))
    found = _simpler_values(choice, third)
    assert len(found) == 2 and found[0] is first and found[1] is second
    # an equal array that is not one of the choices: == gives no single truth value
    assert _simpler_values(choice, np.full(2, 2.0)) == []
