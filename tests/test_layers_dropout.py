"""Dropout's expectation (issue 20, goal 3): the dropout kind holds the learner's forward to
inverted dropout's contract, E[out] = x, with the fraction kept and the scale agreeing with p
under one convention and a mask drawn per unit. Correct course versions under either meaning
of p pass; a forward that keeps 1 - p but scales by 1/p, or shares one mask per column across
the batch, fails with what was measured, although its backward agrees with its own mask."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from gradcheck import verify
from gradcheck.layers import dropout_backward, dropout_forward, standard_layer
from gradcheck.layers.conventions import DROPOUT_P
from gradcheck.layers.dropout_contract import (
    COLUMNS,
    FALSE_ALARM,
    KEEP_SLACK,
    ROWS,
    broken_contract,
    dropout_contract,
)
from tests.test_layer_adapter import cs231n_dropout_backward, cs231n_dropout_forward
from tests.test_layer_conventions import (
    dropout_backward_drop_probability,
    dropout_forward_drop_probability,
)

BUDGET = {"max_examples": 25, "seed": 0}


def keeps_one_minus_p_scales_by_one_over_p(x, dropout_param):
    """A real course file: keeps a unit with probability 1 - p, yet scales by 1 / p."""
    p = dropout_param["p"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = (np.random.rand(*x.shape) > p) / p
    return x * mask, (dropout_param, mask)


def one_mask_per_column(x, dropout_param):
    """A real course file: one mask per column (feature), shared by every sample."""
    p = dropout_param["p"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = (np.random.rand(x.shape[1]) < p) / p
    return x * mask, (dropout_param, mask)


def one_mask_per_row(x, dropout_param):
    """One mask per sample, shared by all its features."""
    p = dropout_param["p"]
    np.random.seed(dropout_param["seed"])
    mask = (np.random.rand(x.shape[0], 1) < p) / p
    return x * mask, (dropout_param, mask)


def each_mask_used_twice(x, dropout_param):
    """One mask for every two samples of the batch."""
    p = dropout_param["p"]
    np.random.seed(dropout_param["seed"])
    half = (np.random.rand((x.shape[0] + 1) // 2, x.shape[1]) < p) / p
    mask = np.repeat(half, 2, axis=0)[: x.shape[0]]
    return x * mask, (dropout_param, mask)


def backward_by_the_mask(dout, cache):
    _, mask = cache
    return dout * mask  # consistent with the forward's own mask, whatever it is


@pytest.fixture(autouse=True)
def _global_generator_left_alone():
    state = np.random.get_state()  # the course versions seed the global generator
    yield
    np.random.set_state(state)


@pytest.mark.parametrize(
    ("forward", "backward"),
    [
        (dropout_forward, dropout_backward),
        (cs231n_dropout_forward, cs231n_dropout_backward),
        (dropout_forward_drop_probability, dropout_backward_drop_probability),
    ],
    ids=[
        "gradcheck's own, p the keep probability",
        "the course's, p the keep probability",
        "an earlier year's, p the drop probability",
    ],
)
def test_a_correct_dropout_passes_under_either_meaning_of_p(forward, backward):
    report = verify(standard_layer("dropout", forward, backward), **BUDGET)
    assert report.verdict == "pass", str(report)


def test_keeping_one_minus_p_but_scaling_by_one_over_p_fails_with_the_measured_expectation():
    layer = standard_layer("dropout", keeps_one_minus_p_scales_by_one_over_p, backward_by_the_mask)
    report = verify(layer, **BUDGET)
    assert report.verdict == "fail", str(report)
    [problem] = [p for p in report.problems if p.kind == "forward_mismatch"]
    p = report.example.params["p"]
    assert p != 0.5  # where both meanings of p agree, the forward is right
    message = problem.message
    assert message.startswith(
        f"keeps_one_minus_p_scales_by_one_over_p breaks inverted dropout's expectation at p={p:g}"
    )
    assert "it keeps a unit with probability 1 - p but scales by 1/p" in message
    kept, scale, expected_out = _measured(message)
    assert kept == pytest.approx(1 - p, abs=0.02)
    assert scale == pytest.approx(1 / p)
    assert expected_out == pytest.approx((1 - p) / p, rel=0.05)  # 3x at p = 0.25
    assert "\n" not in message


def _measured(message: str) -> tuple[float, float, float]:
    """The keep fraction, the scale and E[out]/x a contract message reports."""
    found = re.search(
        r"keeps ([\d.]+)% of units .* scales them by ([\d.]+), so E\[out\] = ([\d.]+)x", message
    )
    assert found is not None, message
    return float(found[1]) / 100, float(found[2]), float(found[3])


def test_one_mask_per_column_shared_across_the_batch_fails_naming_the_shared_mask():
    layer = standard_layer("dropout", one_mask_per_column, backward_by_the_mask)
    report = verify(layer, **BUDGET)
    assert report.verdict == "fail", str(report)
    [problem] = [p for p in report.problems if p.kind == "forward_mismatch"]
    message = problem.message
    assert (
        "the mask is shared across the batch: every row keeps the same units (one mask per column)"
        in message
    )
    _, scale, _ = _measured(message)
    assert scale == pytest.approx(1 / report.example.params["p"])
    assert "np.random.rand(*x.shape) < q" in problem.message


# ---- the statistical test: its false-alarm rate and its power ------------------------------


def test_the_stated_false_alarm_rate_is_the_one_the_slacks_give_and_at_most_one_in_a_million():
    from gradcheck.layers.dropout_contract import AGREEMENT_SLACK

    units = ROWS * COLUMNS
    keep = 2 * math.exp(-2 * units * KEEP_SLACK**2)  # Hoeffding, both ways
    agreement = math.exp(-2 * (units // 2) * AGREEMENT_SLACK**2)  # one way, per axis
    assert keep + 2 * agreement == pytest.approx(FALSE_ALARM)
    assert FALSE_ALARM <= 1e-6


@pytest.mark.parametrize(
    "forward",
    [dropout_forward, cs231n_dropout_forward, dropout_forward_drop_probability],
    ids=["gradcheck's own", "the course's", "p the drop probability"],
)
def test_a_correct_dropout_keeps_the_contract_at_every_p_and_seed(forward):
    for p in DROPOUT_P:
        for seed in range(8):  # the seeds a search draws
            settings = {"p": p, "seed": seed, "mode": "train"}
            assert broken_contract(forward, settings) is None, (p, seed)


def test_the_mixed_convention_is_caught_at_every_p_and_seed_but_where_p_is_one_half():
    for p in DROPOUT_P:
        for seed in range(8):
            settings = {"p": p, "seed": seed, "mode": "train"}
            found = broken_contract(keeps_one_minus_p_scales_by_one_over_p, settings)
            assert (found is None) == (p == 0.5), (p, seed, found)


@pytest.mark.parametrize(
    ("forward", "named"),
    [
        (one_mask_per_column, "shared across the batch: every row keeps the same units"),
        (one_mask_per_row, "shared across the features: every column keeps the same units"),
        (each_mask_used_twice, "shared across the batch: paired rows keep or drop"),
    ],
    ids=["one mask per column", "one mask per row", "each mask used by two samples"],
)
def test_a_shared_mask_is_caught_at_every_p_and_seed_and_named(forward, named):
    for p in DROPOUT_P:
        for seed in range(8):
            found = broken_contract(forward, {"p": p, "seed": seed, "mode": "train"})
            assert found is not None and named in found, (p, seed, found)


# ---- the message, from the output alone -----------------------------------------------------


def _kept_with(q: float) -> np.ndarray:
    return np.random.default_rng(1).random((ROWS, COLUMNS)) < q


@pytest.mark.parametrize(
    ("out", "p", "fragment"),
    [
        (np.zeros((ROWS, COLUMNS)), 0.5, "it keeps no unit"),
        (_kept_with(0.5) * np.linspace(1, 3, COLUMNS), 0.5, "by different factors (1 to 3)"),
        (_kept_with(0.3) * 1.0, 0.3, "the scale is neither 1/p = 3.333 nor 1/(1 - p) = 1.429"),
        (np.ones((ROWS, COLUMNS)) / 0.7, 0.7, "keeps 100.0% of units (65536 of 65536)"),
        (_kept_with(0.3) / 0.7, 0.7, "keeps a unit with probability 1 - p but scales by 1/p"),
        (_kept_with(0.7) / 0.3, 0.7, "keeps a unit with probability p but scales by 1/(1 - p)"),
    ],
    ids=[
        "nothing kept",
        "a scale that varies",
        "a scale for neither meaning of p",
        "nothing dropped",
        "kept with 1 - p, scaled by 1/p",
        "kept with p, scaled by 1/(1 - p)",
    ],
)
def test_a_broken_contract_is_told_in_one_line_with_the_fix(out, p, fragment):
    message = dropout_contract(out, p, forward="my_dropout")
    assert message is not None and fragment in message
    assert message.startswith(f"my_dropout breaks inverted dropout's expectation at p={p:g}")
    assert "so that E[out] = x" in message or "np.random.rand(*x.shape) < q" in message
    assert "\n" not in message
