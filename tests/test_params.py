"""Hyperparameters and integer inputs: searched with the dims, shrunk, never differentiated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck import Derivation, DerivationError, check, verify


def _strided_sum_forward(x, w, stride):
    return (x[::stride] * w).sum()


def _strided_sum_backward(x, w, stride):
    grad_w = x[::stride].sum(axis=0)
    return {"w": grad_w, "x": _scatter(x, w, stride)}


def _scatter(x, w, stride):
    grad_x = np.zeros_like(x)
    grad_x[::stride] = w
    return grad_x


def _wrong_for_stride_three(x, w, stride):
    result = _strided_sum_backward(x, w, stride)
    if stride == 3:
        result["w"] = result["w"] * 2
    return result


def _strided(backward):
    return Derivation(
        name=backward.__name__,
        forward=_strided_sum_forward,
        backward=backward,
        shapes={"x": ("N", "D"), "w": ("D",)},
        wrt=["x", "w"],
        params={"stride": (1, 3)},
    )


def test_params_reach_forward_and_backward_and_a_correct_derivation_passes():
    assert verify(_strided(_strided_sum_backward)).verdict == "pass"


def test_a_bug_in_one_setting_is_found_and_its_params_printed():
    report = verify(_strided(_wrong_for_stride_three))
    assert report.verdict == "fail"
    assert report.example is not None and report.example.params == {"stride": 3}
    assert "params: stride=3" in str(report)


def test_check_takes_params_among_the_inputs():
    derivation = _strided(_strided_sum_backward)
    point = {"x": np.ones((4, 2)), "w": np.array([1.0, -1.0]), "stride": 2}
    assert check(derivation, point).verdict == "pass"
    with pytest.raises(DerivationError, match="missing stride"):
        check(derivation, {"x": np.ones((4, 2)), "w": np.ones(2)})


def _pool_forward(x, pool):
    n = x.shape[0] // pool * pool
    return x[:n].reshape(-1, pool).max(axis=1).values


def _pool_backward(x, pool, grad_output):
    n = x.shape[0] // pool * pool
    windows = x[:n].reshape(-1, pool)
    grad = np.zeros_like(x)
    rows = np.arange(windows.shape[0])
    grad[rows * pool + windows.argmax(axis=1)] = grad_output
    return {"x": grad}


def test_a_dim_declared_from_a_param_never_draws_an_empty_output():
    derivation = Derivation(
        name="max_pool_1d",
        forward=_pool_forward,
        backward=_pool_backward,
        shapes={"x": ("N",)},
        wrt=["x"],
        params={"pool": (1, 4)},
        # at least one whole window: declared, not rejected example by example
        dims={"N": lambda s: (s["pool"], 16)},
    )
    assert verify(derivation).verdict == "pass"


def _cross_entropy_forward(z, labels):
    return torch.nn.functional.cross_entropy(z, labels, reduction="sum")


def _cross_entropy_backward(z, labels):
    shifted = z - z.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    p[np.arange(z.shape[0]), labels] -= 1.0
    return {"z": p}


def _labels_off_by_one(z, labels):
    return _cross_entropy_backward(z, (labels + 1) % z.shape[1])


def _cross_entropy(backward):
    return Derivation(
        name=backward.__name__,
        forward=_cross_entropy_forward,
        backward=backward,
        shapes={"z": ("N", "C"), "labels": ("N",)},
        wrt=["z"],
        dims={"C": (2, 8)},
        integers={"labels": lambda s: (0, s["C"] - 1)},
    )


def test_integer_labels_are_drawn_in_range_and_a_correct_loss_passes():
    assert verify(_cross_entropy(_cross_entropy_backward)).verdict == "pass"


def test_a_label_bug_fails():
    assert verify(_cross_entropy(_labels_off_by_one)).verdict == "fail"


def test_integer_inputs_reach_the_backward_as_integers():
    seen = {}

    def backward(z, labels):
        seen["dtype"] = labels.dtype
        return _cross_entropy_backward(z, labels)

    point = {"z": np.array([[1.0, 2.0, 0.5]]), "labels": np.array([2])}
    assert check(_cross_entropy(backward), point).verdict == "pass"
    assert np.issubdtype(seen["dtype"], np.integer)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"params": {"x": (1, 2)}}, "has the name of an input"),
        ({"params": {"stride": (3, 1)}}, "params['stride'] = (3, 1)"),
        ({"params": {"stride": []}}, "non-empty list of choices"),
        ({"integers": {"labels": (0, 1)}, "wrt": ["labels"]}, "never differentiated"),
        ({"integers": {"q": (0, 1)}}, "integers names 'q'"),
        ({"integers": {"labels": (2, 1)}}, "integers['labels'] = (2, 1)"),
    ],
    ids=[
        "param named like an input",
        "reversed param range",
        "empty choices",
        "integer input in wrt",
        "unknown integer input",
        "reversed integer range",
    ],
)
def test_bad_params_and_integer_declarations_raise(changes, fragment):
    base = {
        "name": "d",
        "forward": _cross_entropy_forward,
        "backward": _cross_entropy_backward,
        "shapes": {"x": ("N", "C"), "labels": ("N",)},
        "wrt": ["x"],
    }
    with pytest.raises(DerivationError) as raised:
        Derivation(**{**base, **changes})
    assert fragment in str(raised.value)


def _flatten_forward(x, w):
    return (x.reshape(-1) * w).sum()


def _flatten_backward_doubled(x, w):
    return {"x": 2 * w.reshape(x.shape), "w": x.reshape(-1)}


def test_a_dim_computed_from_others_follows_them_down_when_shrinking():
    derivation = Derivation(
        name="flatten",
        forward=_flatten_forward,
        backward=_flatten_backward_doubled,
        shapes={"x": ("A", "B"), "w": ("D",)},
        wrt=["x", "w"],
        dims={"A": (1, 4), "B": (1, 4), "D": lambda s: (s["A"] * s["B"],) * 2},
    )
    report = verify(derivation)
    assert report.example is not None
    assert report.example.dims == {"A": 1, "B": 1, "D": 1}


def test_a_spec_writing_into_a_param_never_reaches_the_callers_object():
    config = {"mode": "train"}

    def forward(x, cfg):
        cfg["calls"] = cfg.get("calls", 0) + 1
        return (x**2).sum()

    derivation = Derivation(
        name="writes_param",
        forward=forward,
        backward=lambda x, cfg: {"x": 2 * x},
        shapes={"x": ("N",)},
        wrt=["x"],
        params={"cfg": [config]},
    )
    assert verify(derivation, max_examples=10).verdict == "pass"
    assert config == {"mode": "train"}
