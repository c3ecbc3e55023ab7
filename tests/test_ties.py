"""Issue 20, goal 2: a backward wrong only at tied maxima is told so, in one diagnosis that
holds at more tied points and beside the same backward right where nothing is tied."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch.nn.functional as F

from gradcheck import Derivation, verify
from gradcheck.diagnose import gradient_findings

TIE = "is wrong only at tied elements of 'x'"


def _windows(x):
    """(n, c, rows, columns) of each 2x2 window of a stride-2 max pool, as course loops do."""
    n_, c_, h, w = x.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(h // 2):
                for j in range(w // 2):
                    yield n, c, i, j, (n, c, slice(2 * i, 2 * i + 2), slice(2 * j, 2 * j + 2))


def _to_every_tied_maximum(x, grad_output, scale=1.0):
    dx = np.zeros_like(x)
    for n, c, i, j, at in _windows(x):
        window = x[at]
        mask = window == window.max()
        dx[at] += mask * grad_output[n, c, i, j] * scale
    return {"x": dx}


def _to_one_maximum(x, grad_output):
    dx = np.zeros_like(x)
    for n, c, i, j, at in _windows(x):
        a, b = np.unravel_index(np.argmax(x[at]), (2, 2))
        dx[at][a, b] += grad_output[n, c, i, j]
    return {"x": dx}


def _max_pool(backward) -> Derivation:
    return Derivation(
        name="max_pool",
        forward=lambda x: F.max_pool2d(x, 2, 2),
        backward=backward,
        shapes={"x": ("N", "C", "H", "W")},
        wrt=["x"],
        dims={"H": (2, 8), "W": (2, 8)},
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_a_max_pool_sending_the_gradient_to_every_tied_maximum_is_told_so(seed):
    report = verify(_max_pool(_to_every_tied_maximum), seed=seed, max_examples=100)
    assert report.verdict == "fail"
    tie = [d for d in report.diagnoses if TIE in d]
    assert len(tie) == 1, report
    # k is the size of the tied group at the shrunk example: 2, or 4 for a constant window
    assert re.search(
        r"the backward sends the gradient to every tied element \((2|4) here\)", tie[0]
    )
    assert "a subgradient sends it to one of them (as autograd does) or splits it" in tie[0]
    assert "points without ties" in tie[0] and "more with ties" in tie[0]
    # One diagnosis says it: no "right for 37 of 40 elements only" or mask pattern beside it.
    assert report.diagnoses == tuple(tie), report


def test_a_max_pool_giving_a_tie_to_one_maximum_passes_and_gets_no_diagnosis():
    report = verify(_max_pool(_to_one_maximum), seed=0, max_examples=100)
    assert report.verdict == "pass", report
    assert not report.diagnoses


def test_a_backward_also_wrong_without_ties_is_not_blamed_on_ties():
    def everywhere(x, grad_output):
        return _to_every_tied_maximum(x, grad_output, scale=1.5)

    report = verify(_max_pool(everywhere), seed=0, max_examples=100)
    assert report.verdict == "fail"
    assert not [d for d in report.diagnoses if "tied" in d], report


def _findings(hand, reference, x):
    allowed = np.full(hand.shape, 1e-9)
    return gradient_findings("x", hand, reference, allowed, inputs={"x": x}, dims={})


def test_a_window_with_two_tied_maxima_each_given_the_gradient_is_a_tie_claim():
    x = np.array([[1.0, 1.0, 0.5, 2.0]])
    reference = np.array([[0.7, 0.0, 0.0, -0.3]])  # windows (1, 1) and (0.5, 2)
    hand = np.array([[0.7, 0.7, 0.0, -0.3]])
    (tie,) = [f for f in _findings(hand, reference, x) if f.key[0] == "tie"]
    assert tie.claim and not tie.said  # said only once confirm has seen more points
    assert "every tied element (2 here), passing on 2 times what it receives" in tie.text


@pytest.mark.parametrize(
    "hand",
    [
        np.array([[0.7, 0.7, 0.3, -0.3]]),  # also wrong at an element that is not tied
        np.array([[0.7, 0.35, 0.0, -0.3]]),  # wrong at a tie, but not k times
    ],
    ids=["wrong at an untied element too", "a tie passing on 1.5 times"],
)
def test_a_gradient_wrong_otherwise_is_no_tie_claim(hand):
    x = np.array([[1.0, 1.0, 0.5, 2.0]])
    reference = np.array([[0.7, 0.0, 0.0, -0.3]])
    assert not [f for f in _findings(hand, reference, x) if f.key[0] == "tie"]


def _median_to_every_tied_element(x, grad_output):
    median = np.sort(x, axis=-1)[:, (x.shape[1] - 1) // 2][:, None]  # torch's lower median
    return {"x": (x == median) * grad_output[:, None]}


def test_a_median_sending_the_gradient_to_every_equal_element_is_told_so():
    median = Derivation(
        name="median",
        forward=lambda x: x.median(-1).values,
        backward=_median_to_every_tied_element,
        shapes={"x": ("N", "D")},
        wrt=["x"],
    )
    report = verify(median, seed=1, max_examples=100)
    assert report.verdict == "fail"
    assert [d for d in report.diagnoses if TIE in d and "every tied element" in d], report
