"""Issue 18's edges: each test here failed (crashed, false alarm or miss) before its fix.

Correct code must pass (or be inconclusive at kinks), wrong code must fail, and nothing of
gradcheck's own may escape as an exception.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from gradcheck import Derivation, check, verify

SEEDS = (0, 1)


def _verdict(derivation: Derivation, seed: int, max_examples: int = 60) -> str:
    report = verify(derivation, seed=seed, max_examples=max_examples)
    assert not any(p.kind == "internal" for p in report.problems), report
    return report.verdict


# -- gradcheck's own errors ------------------------------------------------------------------


def _chain(wrong: bool) -> Derivation:
    """The seeds' scalar chain a2 * (a1 * x + b1) + b2 with 0-d parameters."""

    def backward(x, a1, b1, a2, b2):
        return {
            "a1": a2 * x.sum() * (2.0 if wrong else 1.0),  # a numpy scalar, not an array
            "b1": a2 * x.size,
            "a2": (a1 * x + b1).sum(),
            "b2": np.float64(x.size),
        }

    return Derivation(
        name="scalar_chain",
        forward=lambda x, a1, b1, a2, b2: (a2 * (a1 * x + b1) + b2).sum(),
        backward=backward,
        shapes={"x": ("N",), "a1": (), "b1": (), "a2": (), "b2": ()},
        wrt=["a1", "b1", "a2", "b2"],
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_a_wrong_backward_of_zero_d_inputs_fails_rather_than_crashing(seed):
    assert _verdict(_chain(wrong=True), seed) == "fail"
    assert _verdict(_chain(wrong=False), seed) == "pass"


def test_a_sparse_torch_gradient_is_judged_by_its_values():
    def backward(x):
        return {"x": (2 * x).to_sparse()}

    sparse = Derivation(
        name="sparse",
        forward=lambda x: (x**2).sum(),
        backward=backward,
        shapes={"x": ("N",)},
        wrt=["x"],
        backend="torch",
    )
    assert _verdict(sparse, 0) == "pass"
    wrong = Derivation(
        name="sparse_wrong",
        forward=lambda x: (x**2).sum(),
        backward=lambda x: {"x": (3 * x).to_sparse()},
        shapes={"x": ("N",)},
        wrt=["x"],
        backend="torch",
    )
    assert _verdict(wrong, 0) == "fail"


def test_a_where_that_refuses_almost_everything_still_reports_the_failure():
    def backward(x, y):
        return {"x": np.ones_like(x)}  # wrong: the gradient is y's row sums

    narrow = Derivation(
        name="narrow",
        forward=lambda x, y: (x @ y).sum(),
        backward=backward,
        shapes={"x": ("N", "D"), "y": ("D", "N")},
        wrt=["x"],
        where=lambda s: s["N"] == 13 and s["D"] == 7,
    )
    assert _verdict(narrow, 0, max_examples=100) == "fail"


def test_an_internal_error_is_said_to_be_gradchecks_own(monkeypatch):
    import gradcheck.checking as checking

    def broken(*args, **kwargs):
        raise TypeError("a bug planted in the checker")

    monkeypatch.setattr(checking, "_scale_floors", broken)
    square = Derivation(
        name="square",
        forward=lambda x: (x**2).sum(),
        backward=lambda x: {"x": 2 * x},
        shapes={"x": ("N",)},
        wrt=["x"],
    )
    report = verify(square, seed=0, max_examples=5)
    assert report.verdict == "error"
    (problem,) = report.problems
    assert problem.kind == "internal"
    assert "internal error of gradcheck, not of your code" in problem.message
    assert "at gradcheck/checking.py:" in problem.message  # the deepest frame of ours
    assert "verify(square, seed=0, max_examples=5)" in problem.message


# -- non-determinism ---------------------------------------------------------------------------


def _square(backward) -> Derivation:
    return Derivation(
        name="square",
        forward=lambda x: (x**2).sum(),
        backward=backward,
        shapes={"x": ("N",)},
        wrt=["x"],
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_a_backward_wrong_on_every_other_call_fails_naming_the_nondeterminism(seed):
    calls = itertools.count()

    def alternating(x):
        return {"x": 2 * x * (1.5 if next(calls) % 2 else 1.0)}

    report = verify(_square(alternating), seed=seed, max_examples=50)
    assert report.verdict == "fail"
    assert any(p.kind == "nondeterministic" for p in report.problems)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_backward_wrong_at_random_fails_rather_than_crashing_hypothesis(seed):
    draw = random.Random(seed)

    def sometimes(x):
        return {"x": 2 * x * (1.5 if draw.random() < 0.3 else 1.0)}

    report = verify(_square(sometimes), seed=seed, max_examples=50)
    assert report.verdict == "fail"
    message = " ".join(p.message for p in report.problems)
    assert "nondeterministic" in {p.kind for p in report.problems} or "wrong" in message


# -- correct code is never failed ---------------------------------------------------------------


def _amax_to_one(x):
    gradient = np.zeros_like(x)
    np.put_along_axis(gradient, np.argmax(x, axis=-1)[..., None], 1.0, -1)
    return {"x": gradient}


SUBGRADIENTS = {
    "abs with +1 at 0": Derivation(
        name="l1",
        forward=lambda x: x.abs().sum(),
        backward=lambda x: {"x": np.where(x >= 0, 1.0, -1.0)},
        shapes={"x": ("N",)},
        wrt=["x"],
    ),
    "amax given to one tied maximum": Derivation(
        name="amax",
        forward=lambda x: x.amax(-1).sum(),
        backward=_amax_to_one,
        shapes={"x": ("N", "D")},
        wrt=["x"],
    ),
    "maximum sending a tie to x": Derivation(
        name="maximum",
        forward=lambda x, y: torch.maximum(x, y).sum(),
        backward=lambda x, y: {"x": (x >= y) * 1.0, "y": (y > x) * 1.0},
        shapes={"x": ("N",), "y": ("N",)},
        wrt=["x", "y"],
    ),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", SUBGRADIENTS)
def test_a_valid_subgradient_at_a_kink_or_tie_passes(name, seed):
    assert _verdict(SUBGRADIENTS[name], seed, max_examples=100) == "pass"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_max_routed_to_every_tied_element_still_fails(seed):
    def every_tied(x):
        return {"x": (x == x.max(-1, keepdims=True)) * 1.0}

    wrong = Derivation(
        name="amax_all",
        forward=lambda x: x.amax(-1).sum(),
        backward=every_tied,
        shapes={"x": ("N", "D")},
        wrt=["x"],
    )
    assert _verdict(wrong, seed, max_examples=100) == "fail"


def test_a_tie_given_to_one_element_passes_check_at_the_tie_itself():
    point = {"x": np.array([[1.0, 1.0, 0.0], [2.0, -1.0, 2.0]])}
    report = check(SUBGRADIENTS["amax given to one tied maximum"], point)
    assert report.verdict in ("pass", "inconclusive"), report


def _autograd_backward(forward):
    def backward(x):
        tensor = torch.from_numpy(x).requires_grad_()
        forward(tensor).backward()
        return {"x": tensor.grad.numpy()}

    return backward


def _std(x):
    return x.std(-1).sum()


def _sqrt(x):
    return torch.sqrt(x).sum()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_nan_exactly_where_autograd_is_nan_is_not_judged(seed):
    std = Derivation(
        name="std",
        forward=_std,
        backward=_autograd_backward(_std),
        shapes={"x": ("N", "D")},
        wrt=["x"],
        dims={"D": (2, 5)},
    )
    assert _verdict(std, seed, max_examples=100) == "pass"
    at_zero = Derivation(
        name="sqrt",
        forward=_sqrt,
        backward=_autograd_backward(_sqrt),
        shapes={"x": ("N",)},
        wrt=["x"],
        bounds={"x": (0.0, 4.0)},
    )
    assert _verdict(at_zero, seed, max_examples=100) == "pass"


def test_a_nan_where_autograd_is_finite_still_fails():
    def nan_at_zero_rows(x):
        gradient = x / np.linalg.norm(x)
        return {"x": gradient}  # NaN when the whole x is zero, where the spec has eps

    norm = Derivation(
        name="norm",
        forward=lambda x: torch.sqrt((x**2).sum() + 1e-12),
        backward=nan_at_zero_rows,
        shapes={"x": ("N",)},
        wrt=["x"],
    )
    assert check(norm, {"x": np.zeros(3)}).verdict == "fail"
