"""The sweep's random points cover what hypothesis's draws cover: both ends of every range,
equal dims, special and coarse points, the smallest point first; and a verify that passes
does not start hypothesis at all."""

from __future__ import annotations

import itertools
from collections import Counter
from unittest import mock

import numpy as np
import pytest

from gradcheck import Derivation, verify
from gradcheck.derivations import BUILTINS
from gradcheck.random_points import AT_HIGH, AT_LOW, random_examples
from gradcheck.strategies import SEEDED_SPECIAL_ONE_IN

DERIVATION = BUILTINS[0]  # two_layer_relu_numpy: four dims in 1..16
POINTS = 2000


def _points(derivation: Derivation = DERIVATION, seed: int = 0, count: int = POINTS) -> list:
    return list(itertools.islice(random_examples(derivation, seed), count))


def test_the_first_point_is_the_smallest():
    first = _points(count=1)[0]
    assert first.dims == {dim: low for dim, (low, _) in DERIVATION.dim_ranges.items()}
    assert first.special is None


def test_the_same_seed_draws_the_same_points_and_another_seed_others():
    one, again, other = _points(count=20), _points(count=20), _points(seed=1, count=20)
    for a, b in zip(one, again, strict=True):
        assert a.dims == b.dims and a.special == b.special
        assert all(np.array_equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
    assert [p.dims for p in one[1:]] != [p.dims for p in other[1:]]


def test_sizes_reach_both_ends_of_their_ranges_about_as_often_as_hypothesis_draws_them():
    points = _points()
    for dim, (low, high) in DERIVATION.dim_ranges.items():
        sizes = Counter(p.dims[dim] for p in points)
        assert set(sizes) <= set(range(low, high + 1))
        assert set(sizes) == set(range(low, high + 1)), f"{dim} misses sizes"
        # The end weights plus the uniform draw's own share of each end.
        assert abs(sizes[low] / POINTS - (AT_LOW + 1 / 16)) < 0.04
        assert abs(sizes[high] / POINTS - (AT_HIGH + 1 / 16)) < 0.04


def test_some_points_have_equal_dims_and_some_are_special_or_coarse():
    points = _points()
    equal = sum(len(set(p.dims.values())) < len(p.dims) for p in points)
    assert 0.35 < equal / POINTS < 0.6  # hypothesis: 46% (see random_points.REPEAT)
    special = sum(p.special is not None for p in points)
    assert abs(special / POINTS - 1 / SEEDED_SPECIAL_ONE_IN) < 0.03
    # A coarse point repeats values: far fewer distinct values than elements.
    coarse = sum(
        np.unique(p.inputs["w1"]).size <= 9 < p.inputs["w1"].size
        for p in points
        if p.special is None
    )
    assert coarse > 0.05 * POINTS


def test_points_stay_in_bounds_and_respect_where():
    derivation = Derivation(
        name="even_n",
        forward=DERIVATION.forward,
        backward=DERIVATION.backward,
        shapes=DERIVATION.shapes,
        wrt=DERIVATION.wrt,
        where=lambda sizes: sizes["N"] % 2 == 0,
    )
    points = [p for p in _points(derivation, count=300)[1:] if p is not None]
    assert len(points) > 250
    assert all(p.dims["N"] % 2 == 0 for p in points)
    for point in points:
        for name, value in point.inputs.items():
            low, high = derivation.input_bounds[name]
            assert np.all((low <= value) & (value <= high))


def test_a_passing_verify_never_starts_hypothesis_and_a_failing_one_shrinks_with_it():
    from gradcheck import search
    from tests import mutants

    with mock.patch.object(search, "find", side_effect=AssertionError("hypothesis ran")):
        assert verify(DERIVATION, max_examples=30, seed=0).ok
    with mock.patch.object(search, "find", wraps=search.find) as find:
        report = verify(mutants.flipped_sign_net, max_examples=30, seed=0)
    assert report.verdict == "fail" and find.called
    assert all(size == 1 for size in report.example.dims.values())


def test_a_failure_at_the_first_point_is_what_hypothesis_would_have_shrunk_it_to():
    """The shortcut (no hypothesis search when the simplest point fails) changes nothing but
    the count of examples: the same smallest example, values included."""
    from gradcheck import search
    from tests import mutants

    derivation = mutants.missing_relu_mask_net  # fails at the simplest point
    with mock.patch.object(search, "find", wraps=search.find) as find:
        short = verify(derivation, max_examples=50, seed=0)
    searched_in_pass_1 = [c for c in find.call_args_list if c.args[1].__name__ == "batch_fails"]
    assert not searched_in_pass_1
    with mock.patch.object(search, "starts_where_hypothesis_starts", return_value=False):
        full = verify(derivation, max_examples=50, seed=0)
    assert short.verdict == full.verdict == "fail"
    assert short.example.dims == full.example.dims
    for name, value in full.example.inputs.items():
        assert np.array_equal(short.example.inputs[name], value)
    assert short.examples < full.examples


def _tanh_layer(condition):
    """A tanh layer whose hand gradient for w is wrong only where ``condition`` holds."""
    import torch

    def backward(x, w, **params):
        s = np.tanh(x @ w)
        grad = 1 - s * s
        out = {"x": grad @ w.T, "w": x.T @ grad}
        if condition(x, w, params):
            out["w"] = out["w"] * 1.5
        return out

    return Derivation(
        name="rare_bug",
        forward=lambda x, w, **params: torch.tanh(x @ w).sum(),
        backward=backward,
        shapes={"x": ("N", "D"), "w": ("D", "H")},
        wrt=["x", "w"],
        params={"mode": ["a", "b", "c"]},
    )


RARE_BUGS = {
    # Measured over seeds 0-9 at 100 examples, hypothesis's pass alone (before the sweep) /
    # with the sweep: N at the top of its range 9/10 -> 10/10; D at the top 8/10 -> 10/10;
    # three equal dims 4/10 -> 9/10; some x exactly zero 0/10 -> 7/10; the last param choice
    # 10/10 -> 10/10.
    "N at the top of its range": lambda x, w, p: x.shape[0] == 16,
    "the last choice of a param": lambda x, w, p: p["mode"] == "c",
}


@pytest.mark.parametrize("condition", RARE_BUGS.values(), ids=RARE_BUGS.keys())
@pytest.mark.parametrize("seed", [0, 1])  # a failure at the top of the range shrinks slowly
def test_a_bug_only_at_the_ends_of_the_ranges_is_found(condition, seed):
    report = verify(_tanh_layer(condition), max_examples=100, seed=seed)
    assert report.verdict == "fail", str(report)


def test_draws_that_where_refuses_do_not_count_as_examples():
    derivation = Derivation(
        name="n_multiple_of_5",
        forward=lambda x: (x**2).sum(),
        backward=lambda x: {"x": 2 * x},
        shapes={"x": ("N",)},
        wrt=["x"],
        where=lambda sizes: sizes["N"] % 5 == 0,  # 3 sizes of 16
    )
    assert verify(derivation, max_examples=50, seed=0).examples == 50


def test_wide_ranges_are_drawn_mostly_near_where_hypothesis_shrinks():
    """A penalty in (0, 1) on a grid of a million steps: hypothesis drew 27% of its values
    within 1,000 steps of 0; a uniform draw gives 0.1%. An int range around 0 starts at 0."""
    from gradcheck.derivation import ParamChoices
    from gradcheck.random_points import _param

    rng = np.random.default_rng(0)
    penalty = ParamChoices(low=0.0, high=1.0, continuous=True)
    drawn = np.array([_param(penalty, rng) for _ in range(4000)])
    assert 0.2 < np.mean(drawn <= 1e-3) < 0.6
    assert np.mean(drawn > 0.5) > 0.1  # the rest of the range too
    shift = ParamChoices(low=-1000, high=1000)
    assert _param(shift, None) == 0  # the first point, as hypothesis's first draw


def _tanh_with_detach(detached, params=None):
    """A spec that autograd misreads (w detached where ``detached`` holds) and a hand
    backward that agrees with the misreading: only finite differences can tell."""
    import torch

    def forward(x, w, **given):
        weight = w.detach() if detached(given) else w
        return torch.tanh(x @ weight).sum()

    def backward(x, w, **given):
        grad = 1 - np.tanh(x @ w) ** 2
        return {"x": grad @ w.T, "w": np.zeros_like(w) if detached(given) else x.T @ grad}

    return Derivation(
        name="detached",
        forward=forward,
        backward=backward,
        shapes={"x": ("N", "D"), "w": ("D", "H")},
        wrt=["x", "w"],
        params=params,
    )


def test_a_spec_autograd_misreads_is_an_error_and_points_with_params_are_all_probed():
    """The sampled probes (1 in 3 after 10 confirmations) still show a spec that autograd
    misreads, at the first points; and a derivation with params is probed at every point,
    since a param value can switch the spec's code path (here: detach w only when k == 7)."""
    from gradcheck import search

    everywhere = verify(_tanh_with_detach(lambda given: True), max_examples=50, seed=0)
    assert everywhere.verdict == "error", str(everywhere)
    assert any(p.kind == "references_disagree" for p in everywhere.problems)

    def unprobed_points(derivation):
        with mock.patch.object(search, "evaluate", wraps=search.evaluate) as evaluate:
            report = verify(derivation, max_examples=60, seed=0)
        skipped = sum(c.args[3].agreeing_directions == 0 for c in evaluate.call_args_list)
        return report, skipped

    plain, skipped = unprobed_points(_tanh_with_detach(lambda given: False))
    # Without params, most points after 10 go unprobed; special points never are, and the
    # sweep's schedule makes 12 of the 60 special (6 kinds on each of 2 inputs).
    assert plain.ok and skipped > 15
    one_value = _tanh_with_detach(lambda given: given["k"] == 7, params={"k": (0, 20)})
    report, skipped = unprobed_points(one_value)
    assert skipped == 0
    assert report.verdict == "error", str(report)
