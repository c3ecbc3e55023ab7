"""Special points (exact zeros, an all-zero input, zero variance, ties) are drawn at a stated
rate; bugs that show only there are found, and correct derivations stay pass/inconclusive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcheck import Derivation, check, verify
from gradcheck.derivations import BUILTINS
from gradcheck.layers import STANDARD_LAYERS, max_pool_forward_naive, standard_layer
from gradcheck.special_values import KINDS, SPECIAL_RATE, Special, apply, made_special, specials
from gradcheck.strategies import dim_range, seeded_inputs

# Budgets of the must-fail searches. An all-zero input is drawn in 1 of about 64 examples
# (1 in 16 special, 3 in 12 of those all zero), so that search gets 300; ties and zero
# variance come from four kinds each and are met within 100. Each bug passes a
# 100-example search without special points (checked on the version before them).
BUDGET_ALL_ZERO = 300
BUDGET = 100


def _norm_spec(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((x**2).sum() + 1e-12)


def _norm_backward_nan_at_zero(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": x / np.sqrt((x**2).sum())}  # no eps: 0 / 0 when x is all zero


def _norm_backward(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": x / np.sqrt((x**2).sum() + 1e-12)}


def _norm(backward):
    return Derivation(
        name="norm", forward=_norm_spec, backward=backward, shapes={"x": ("N",)}, wrt=["x"],
        dims={"N": (1, 4)},
    )  # fmt: skip


def _standardize_spec(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-12)


def _standardize_backward(x, grad_output, *, eps):
    d = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    std = np.sqrt((centred**2).mean(axis=1, keepdims=True) + eps)
    xhat = centred / std
    dxhat = grad_output
    dx = (dxhat - dxhat.mean(axis=1, keepdims=True)) / std
    dx -= xhat * (dxhat * xhat).sum(axis=1, keepdims=True) / (d * std)
    return {"x": dx}


def _standardize(eps: float) -> Derivation:
    return Derivation(
        name="standardize",
        forward=_standardize_spec,
        backward=lambda x, grad_output: _standardize_backward(x, grad_output, eps=eps),
        shapes={"x": ("N", "D")},
        wrt=["x"],
        dims={"N": (1, 3), "D": (4, 8)},
    )


def _max_pool_backward_where(dout, cache):
    """A course max-pool backward that finds the winner with ``int(np.where(...))``."""
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    n_out, c_out, h_out, w_out = dout.shape
    for n in range(n_out):
        for c in range(c_out):
            for i in range(h_out):
                for j in range(w_out):
                    window = x[n, c, i * stride : i * stride + ph, j * stride : j * stride + pw]
                    flat = window.reshape(-1)
                    winner = int(np.where(flat == flat.max())[0].squeeze())  # 2 on a tie: raises
                    u, v = divmod(winner, pw)
                    dx[n, c, i * stride + u, j * stride + v] += dout[n, c, i, j]
    return dx


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the planted 0 / 0
def test_a_backward_that_is_nan_on_an_all_zero_input_fails():
    report = verify(_norm(_norm_backward_nan_at_zero), seed=0, max_examples=BUDGET_ALL_ZERO)
    assert report.verdict == "fail", str(report)
    assert any(p.kind == "non_finite" for p in report.problems), str(report)
    assert np.all(report.example.inputs["x"] == 0)
    assert "special point, drawn on purpose (x: " in str(report)


def test_the_same_norm_with_its_eps_passes():
    assert verify(_norm(_norm_backward), seed=0, max_examples=BUDGET).ok


def test_a_max_pool_backward_that_crashes_on_a_tied_window_fails():
    layer = standard_layer("max_pool", max_pool_forward_naive, _max_pool_backward_where)
    report = verify(layer, seed=0, max_examples=BUDGET)
    assert report.verdict == "fail", str(report)
    assert any(p.kind == "raised" for p in report.problems), str(report)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the planted 0 / 0
def test_a_division_by_a_zero_variance_without_eps_fails():
    report = verify(_standardize(eps=0.0), seed=0, max_examples=BUDGET)
    assert report.verdict == "fail", str(report)
    assert any(p.kind == "non_finite" for p in report.problems), str(report)
    x = report.example.inputs["x"]
    assert np.any(np.ptp(x, axis=1) == 0), "the failing example has a zero-variance row"


def test_the_same_standardization_with_its_eps_passes():
    assert verify(_standardize(eps=1e-12), seed=0, max_examples=BUDGET).ok


def _a_point_of_twos(derivation: Derivation) -> tuple[dict, dict]:
    """Every int param and dim at 2 where its range allows (windows and rows that can tie),
    the other params at their first choice, values from a fixed seed."""
    params = {
        name: min(max(2, choice.low), choice.high) if choice.low is not None else choice.choices[0]
        for name, choice in derivation.param_choices.items()
    }
    sizes: dict[str, int] = {}
    for dim in derivation.dim_ranges:
        low, high = dim_range(derivation, dim, {**params, **sizes})
        sizes[dim] = min(max(2, low), high)
    return seeded_inputs(derivation, sizes, 3, params), params


@pytest.mark.parametrize("derivation", [*BUILTINS, *STANDARD_LAYERS], ids=lambda d: d.name)
def test_a_correct_derivation_is_never_failed_or_errored_at_a_special_point(derivation):
    point, params = _a_point_of_twos(derivation)
    bounds = {k: derivation.input_bounds[k] for k in point if k not in (derivation.integers or {})}
    for name in bounds:
        for kind in KINDS:
            special = Special(kind=kind, input=name, seed=1)
            report = check(derivation, {**made_special(point, special, bounds), **params})
            assert report.verdict in ("pass", "inconclusive"), f"{special}\n{report}"


def test_special_points_are_drawn_at_the_stated_rate():
    drawn = []

    @settings(max_examples=1000, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(specials({"x": (-2.0, 2.0), "w": (-1.0, 1.0)}))
    def draw(special):
        drawn.append(special)

    draw()
    share = sum(s is not None for s in drawn) / len(drawn)
    assert SPECIAL_RATE / 2 <= share <= 2 * SPECIAL_RATE, share
    assert {s.kind for s in drawn if s is not None} == set(KINDS)


@given(st.sampled_from(sorted(KINDS)), st.integers(0, 100))
def test_a_special_point_stays_inside_the_bounds(kind, seed):
    value = np.random.default_rng(seed).uniform(0.5, 2.0, size=(3, 4))
    out = apply(Special(kind=kind, input="x", seed=seed), value, low=0.5, high=2.0)
    assert out.shape == value.shape
    assert np.all((out >= 0.5) & (out <= 2.0))  # no zeros where zero is out of bounds
    assert not np.shares_memory(out, value)
