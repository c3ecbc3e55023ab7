"""The speed-built two-layer backwards: verified like every derivation, equal to the plain one,
and safe with their workspaces (any shape, any order, any thread; inputs never written)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gradcheck import check, verify
from gradcheck.derivations import BUILTINS, two_layer, two_layer_fast
from gradcheck.report import Example
from gradcheck.strategies import examples
from gradcheck.tolerances import for_dtype

# Underscored: a module-level list of Derivations is otherwise collected by the plugin.
_FAST = [two_layer_fast.two_layer_relu_numpy_fast, two_layer_fast.two_layer_relu_torch_fast]
FAST_IDS = ["numpy fast", "torch fast"]
DTYPES = {"float64": (np.float64, torch.float64), "float32": (np.float32, torch.float32)}


def _point(n=4, d_in=5, h=3, d_out=2, *, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    shapes = {"x": (n, d_in), "y": (n, d_out), "w1": (d_in, h), "w2": (h, d_out)}
    return {k: rng.standard_normal(s).astype(DTYPES[dtype][0]) for k, s in shapes.items()}


def _fast(backend, point):
    """Run the fast backward of ``backend`` on ``point``; copies of the gradients, as numpy."""
    if backend == "numpy":
        grads = two_layer_fast.backward_numpy_fast(**point)
        return {k: v.copy() for k, v in grads.items()}
    tensors = {k: torch.from_numpy(v.copy()) for k, v in point.items()}
    return {k: v.numpy().copy() for k, v in two_layer_fast.backward_torch_fast(**tensors).items()}


def _assert_matches_plain(grads, point, dtype):
    expected = two_layer.backward_numpy(**{k: v.astype(np.float64) for k, v in point.items()})
    for name, reference in expected.items():
        allowed = for_dtype(dtype).allowed(reference)
        difference = np.abs(grads[name].astype(np.float64) - reference)
        assert np.all(difference <= allowed), (name, float(difference.max()))


def test_fast_variants_are_builtins():
    assert set(_FAST) <= set(BUILTINS)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("derivation", _FAST, ids=FAST_IDS)
def test_fast_variant_passes_verify(derivation, dtype):
    report = verify(derivation, dtype=dtype, seed=0)
    assert report.verdict == "pass", str(report)
    assert report.examples >= 10


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("derivation", _FAST, ids=FAST_IDS)
def test_fast_variant_passes_check_at_the_seeds_size(derivation, dtype):
    point = _point(64, 1000, 100, 10, seed=1)
    assert check(derivation, point, dtype=dtype).verdict == "pass"


@given(examples(two_layer.two_layer_relu_numpy), st.sampled_from(["float64", "float32"]))
def test_fast_gradients_equal_the_plain_derivations(example: Example, dtype: str):
    point = {k: v.astype(DTYPES[dtype][0]) for k, v in example.inputs.items()}
    for backend in ("numpy", "torch"):
        _assert_matches_plain(_fast(backend, point), point, dtype)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_calls_at_other_shapes_and_dtypes_leave_earlier_results_intact(backend):
    points = [
        _point(4, 5, 3, 2, seed=0),
        _point(7, 2, 6, 1, seed=1),
        _point(4, 5, 3, 2, seed=2, dtype="float32"),
        _point(1, 1, 1, 1, seed=3),
    ]
    held: list[Any]
    if backend == "numpy":
        held = [two_layer_fast.backward_numpy_fast(**p) for p in points]  # not copied
    else:
        held = [
            two_layer_fast.backward_torch_fast(**{k: torch.from_numpy(v) for k, v in p.items()})
            for p in points
        ]
    for point, grads in zip(points, held, strict=True):
        dtype = "float32" if point["x"].dtype == np.float32 else "float64"
        as_numpy = {k: np.asarray(v) for k, v in grads.items()}
        _assert_matches_plain(as_numpy, point, dtype)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_second_call_at_one_shape_is_right_after_a_first(backend):
    first, second = _point(seed=0), _point(seed=1)
    _fast(backend, first)
    _assert_matches_plain(_fast(backend, second), second, "float64")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_inputs_are_never_written(backend):
    point = _point(6, 4, 5, 3)
    pristine = {k: v.copy() for k, v in point.items()}
    if backend == "numpy":
        two_layer_fast.backward_numpy_fast(**point)
    else:
        two_layer_fast.backward_torch_fast(**{k: torch.from_numpy(v) for k, v in point.items()})
    for name, value in point.items():
        np.testing.assert_array_equal(value, pristine[name])


def test_numpy_fast_refuses_a_returned_gradient_as_input():
    point = _point(3, 3, 3, 3)
    grads = two_layer_fast.backward_numpy_fast(**point)
    with pytest.raises(ValueError, match="w1 is \\(a view of\\) a gradient returned"):
        two_layer_fast.backward_numpy_fast(point["x"], point["y"], grads["w1"][:, :], point["w2"])


def test_torch_fast_refuses_a_returned_gradient_as_input():
    point = {k: torch.from_numpy(v) for k, v in _point(3, 3, 3, 3).items()}
    grads = two_layer_fast.backward_torch_fast(**point)
    with pytest.raises(ValueError, match="w2 is \\(a view of\\) a gradient returned"):
        two_layer_fast.backward_torch_fast(point["x"], point["y"], point["w1"], grads["w2"].t())


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"w1": np.zeros((6, 3))}, "w1 has shape (6, 3), but x is (4, 5) and w2 is (3, 2)"),
        ({"y": np.zeros(4)}, "y has shape (4,); it must be 2-d (N, D_out)"),
        ({"w2": np.zeros((3, 2), np.float32)}, "w2 has dtype float32 but x has float64"),
        ({"x": np.zeros((4, 5), np.int64)}, "x has dtype int64; use float32 or float64"),
        ({"x": [[0.0] * 5] * 4}, "x is a list; pass numpy arrays"),
    ],
    ids=[
        "a w1 of the wrong shape is named",
        "a 1-d y is named",
        "a w2 of another dtype is named",
        "an integer x is named",
        "a list is named",
    ],
)
def test_numpy_fast_names_the_argument_that_is_wrong(change, fragment):
    point = {**_point(4, 5, 3, 2), **change}
    with pytest.raises((TypeError, ValueError)) as raised:
        two_layer_fast.backward_numpy_fast(**point)
    assert fragment in str(raised.value)


def test_torch_fast_names_a_tensor_of_another_dtype():
    point = {k: torch.from_numpy(v) for k, v in _point().items()}
    point["y"] = point["y"].float()
    with pytest.raises(TypeError, match=r"y is torch\.float32 on cpu but x is torch\.float64"):
        two_layer_fast.backward_torch_fast(**point)


def test_torch_fast_takes_parameters_that_require_grad():
    point = _point()
    tensors = {k: torch.from_numpy(v.copy()) for k, v in point.items()}
    tensors["w1"] = torch.nn.Parameter(tensors["w1"])
    grads = two_layer_fast.backward_torch_fast(**tensors)
    assert not grads["w1"].requires_grad
    _assert_matches_plain({k: v.numpy() for k, v in grads.items()}, point, "float64")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_threads_at_one_shape_do_not_share_a_workspace(backend):
    points = [_point(16, 16, 16, 4, seed=seed) for seed in range(4)]
    failures: list[str] = []

    def work(point):
        for _ in range(50):
            try:
                _assert_matches_plain(_fast(backend, point), point, "float64")
            except AssertionError as exc:
                failures.append(str(exc))
                return

    threads = [threading.Thread(target=work, args=(p,)) for p in points]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
