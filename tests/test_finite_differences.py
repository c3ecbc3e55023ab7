"""The finite-difference reference: accurate where the spec is smooth, honest at kinks."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from gradcheck.references.finite_differences import ScalarSpec


def _spec(forward, **inputs):
    return ScalarSpec(
        "spec", forward, {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}, None
    )


@given(st.floats(-3, 3), st.floats(0.1, 3))
def test_slope_of_a_smooth_function_is_accurate_and_within_its_own_error_bar(x0, scale):
    spec = _spec(lambda x: (torch.sin(x) * scale).sum(), x=[x0])
    slope = spec.slope("x", np.array([1.0]))
    exact = scale * np.cos(x0)
    assert abs(slope.central - exact) <= slope.allowed
    assert abs(slope.central - exact) <= 1e-8 * max(1.0, scale)
    assert not slope.kink


def test_a_relu_hinge_at_the_point_is_a_kink_with_its_two_slopes():
    spec = _spec(lambda x: torch.relu(x).sum() * 3.0, x=[0.0])
    slope = spec.slope("x", np.array([1.0]))
    assert slope.kink
    assert np.isclose(slope.right, 3.0) and np.isclose(slope.left, 0.0)


def test_a_steep_smooth_function_is_not_mistaken_for_a_kink():
    spec = _spec(lambda x: (x**4).sum() * 1e6, x=[2.0])
    slope = spec.slope("x", np.array([1.0]))
    assert not slope.kink
    assert abs(slope.central - 4e6 * 8) <= slope.allowed


def test_large_loss_from_the_seeds_does_not_defeat_the_error_estimate():
    # At the seeds' size the loss is ~3e7; a fixed eps=1e-6 loses ~5e-3 to cancellation.
    rng = np.random.default_rng(0)
    x, w1 = rng.standard_normal((64, 1000)), rng.standard_normal((1000, 100))
    w2, y = rng.standard_normal((100, 10)), rng.standard_normal((64, 10))

    def loss(x, y, w1, w2):
        return ((torch.relu(x @ w1) @ w2 - y) ** 2).sum()

    spec = _spec(loss, x=x, y=y, w1=w1, w2=w2)
    tensors = {
        k: torch.tensor(v, requires_grad=k == "w2") for k, v in dict(x=x, y=y, w1=w1, w2=w2).items()
    }
    (grad_w2,) = torch.autograd.grad(loss(**tensors), tensors["w2"])
    for _ in range(4):
        direction = rng.choice([-1.0, 1.0], size=w2.shape)
        slope = spec.slope("w2", direction)
        exact = float((grad_w2.numpy() * direction).sum())
        assert abs(slope.central - exact) <= slope.allowed
        assert slope.allowed <= 2e-6 * abs(exact)  # resolves a bug in the 6th digit
