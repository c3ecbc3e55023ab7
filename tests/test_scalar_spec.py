"""The finite-difference reference's less travelled paths: large int8 probes, bounds, batches
that disagree, specs that cannot be batched, and grad_output of the wrong shape.

Each test states what the path must give: the same slope as the plain path, the analytic
slope, or no value (NaN) where there is no honest one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck.evaluation.allowance import Allowance, dtype_rounding
from gradcheck.evaluation.directions import CHUNK, probe_directions
from gradcheck.evaluation.options import make_options
from gradcheck.references import finite_differences as fd
from gradcheck.references.autograd import autograd_gradients, gradients_in_dtype
from gradcheck.references.finite_differences import ScalarSpec


def squares(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum()


def test_a_large_int8_probe_gives_the_slope_of_the_same_float_probe():
    # past CHUNK elements an int8 direction is cast a chunk at a time on its way into x
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, CHUNK + 5)
    (signs,) = probe_directions(x.shape, 1, 0, rng)[0]
    assert signs.dtype == np.int8
    spec = ScalarSpec("squares", squares, {"x": x}, None)
    along_int8 = spec.slope("x", signs)
    along_float = spec.slope("x", signs.astype(np.float64))
    exact = float(np.dot(2 * x, signs))
    assert along_int8.central == pytest.approx(along_float.central, rel=1e-12)
    assert abs(along_int8.central - exact) <= along_int8.allowed
    assert not along_int8.kink


def test_a_large_int8_screen_gives_the_central_difference_of_the_same_float_probe():
    # screens keep an int8 direction as it is (slope casts it first): past CHUNK elements
    # it is cast a chunk at a time as it is added to x
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.5, CHUNK + 5)
    (signs,) = probe_directions(x.shape, 1, 0, rng)[0]
    spec = ScalarSpec("squares", squares, {"x": x}, None)
    as_int8 = spec.screen("x", signs)
    as_float = spec.screen("x", signs.astype(np.float64))
    assert as_int8.central == as_float.central
    # the central difference of a quadratic is exact up to rounding
    assert abs(as_int8.central - float(np.dot(2 * x, signs))) <= as_int8.allowed


def test_large_probes_are_int8_signs_with_both_signs_present():
    (direction,) = probe_directions((CHUNK,), 1, 0, np.random.default_rng(1))[0]
    assert direction.dtype == np.int8
    assert set(np.unique(direction)) == {-1, 1}


def test_the_allowance_along_an_int8_probe_is_that_along_the_same_float_probe():
    rng = np.random.default_rng(2)
    reference = rng.standard_normal(CHUNK + 3)
    (signs,) = probe_directions(reference.shape, 1, 0, rng)[0]
    allowance = Allowance(atol=1e-9, rtol=1e-7, reference=reference)
    assert allowance.along(signs) == pytest.approx(
        allowance.along(signs.astype(np.float64)), rel=1e-12
    )
    assert allowance.along(signs) == pytest.approx(
        1e-9 * reference.size + 1e-7 * np.abs(reference).sum(), rel=1e-12
    )


def test_a_vjp_spec_measures_the_size_of_the_terms_it_sums():
    x = np.array([1.0, -2.0, 3.0])
    grad_output = np.array([1.0, 1.0, -1.0])
    spec = ScalarSpec("identity", lambda x: x * 1.0, {"x": x}, grad_output)
    # <x, g> = 1 - 2 - 3 = -4, from terms of size 1 + 2 + 3
    assert spec.magnitude == 6.0


def test_a_grad_output_of_another_shape_than_the_output_gives_no_value():
    spec = ScalarSpec("pairs", lambda x: x[:2] * 1.0, {"x": np.ones(3)}, np.ones(3))
    assert np.isnan(spec.magnitude)
    assert not spec.slope("x", np.array([1.0, 0.0, 0.0])).resolved


def test_room_is_unlimited_along_a_direction_that_moves_nothing_and_zero_on_an_endpoint():
    spec = ScalarSpec(
        "log", lambda x: torch.log(x).sum(), {"x": np.array([1.0, 2.0])}, None,
        bounds={"x": (1.0, 10.0)},
    )  # fmt: skip
    assert spec.room("x", np.zeros(2)) == float("inf")
    assert spec.room("x", np.array([0.0, 1.0])) == 1.0  # x[1] = 2 is 1 from its lower bound
    assert spec.room("x", np.array([1.0, 0.0])) == 0.0  # x[0] sits on its closed endpoint
    assert not spec.slope("x", np.array([1.0, 0.0])).resolved
    assert np.isnan(spec.screen("x", np.array([1.0, 0.0])).central)  # confirms nothing


def test_a_screen_is_the_central_difference_within_its_rounding_allowance():
    x = np.array([0.3, -1.2, 2.0])
    spec = ScalarSpec("cubes", lambda x: (x**3).sum(), {"x": x}, None)
    direction = np.array([1.0, -1.0, 1.0])
    screen = spec.screen("x", direction)
    t = screen.step
    # the central difference of x**3 is exact up to t**2 * sum(d**3): no truncation allowed
    exact = float(np.dot(3 * x**2, direction)) + t**2 * float(np.sum(direction**3))
    assert abs(screen.central - exact) <= screen.allowed
    assert screen.allowed < 1e-4  # rounding and the relative floor only


def test_a_spec_that_batches_differently_is_evaluated_one_call_at_a_time():
    calls = []

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)  # under vmap the whole batch is one call: it sees another count
        return (x**2).sum() + len(calls)

    x = np.arange(1.0, 5.0)
    spec = ScalarSpec("counting", counting, {"x": x}, None)
    directions = list(np.eye(4))
    screens = spec.screens("x", directions)
    assert fd._VMAPPABLE.get(counting) is False
    # one call each: every difference is taken across two calls, one count apart
    singles = [(2 * x[i]) + (-1 / (2 * s.step)) for i, s in enumerate(screens)]
    assert [s.central for s in screens] == pytest.approx(singles, rel=1e-6)


def test_a_spec_that_vmap_cannot_run_is_remembered_and_evaluated_singly():
    def itemised(x: torch.Tensor) -> torch.Tensor:
        return x.sum() * float(x[0].item() > -100)  # .item() inside vmap raises

    x = np.arange(1.0, 5.0)
    spec = ScalarSpec("itemised", itemised, {"x": x}, None)
    screens = spec.screens("x", list(np.eye(4)))
    assert fd._VMAPPABLE.get(itemised) is False
    assert [s.central for s in screens] == pytest.approx([1.0] * 4, rel=1e-9)
    assert spec.screen_batch("x") == 1


class _Unhashable:
    """A callable spec that cannot be a dict key."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return self is other

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x**2).sum()


def test_an_unhashable_spec_is_never_batched_and_still_screened():
    forward = _Unhashable()
    x = np.arange(1.0, 5.0)
    spec = ScalarSpec("unhashable", forward, {"x": x}, None)
    assert spec.screen_batch("x") == 1
    screens = spec.screens("x", list(np.eye(4)))
    assert [s.central for s in screens] == pytest.approx(list(2 * x), rel=1e-9)


# -- the float32 rounding of autograd itself ----------------------------------------------------


def float64_only(x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float64:
        raise TypeError("this spec is written for float64")
    return (x**2).sum()


def test_a_spec_that_runs_only_in_float64_gives_no_float32_rounding_measure():
    point = {"x": np.array([1.0, 2.0])}
    assert gradients_in_dtype(float64_only, point, ["x"], None, None, torch.float32) is None
    assert gradients_in_dtype(lambda x: x.detach().sum(), point, ["x"], None, None,
                              torch.float32) is None  # fmt: skip
    narrow = gradients_in_dtype(squares, point, ["x"], None, None, torch.float32)
    assert narrow is not None
    np.testing.assert_allclose(narrow["x"], [2.0, 4.0], rtol=1e-6)


def test_dtype_rounding_is_measured_in_float32_only_and_only_where_the_spec_runs_so():
    from gradcheck import Derivation

    point = {"x": np.array([1.0, 2.0])}

    def declared(forward):
        return Derivation(name="sq", forward=forward, backward=lambda x: {"x": 2 * x},
                          shapes={"x": ("N",)}, wrt=["x"])  # fmt: skip

    def rounding(forward, dtype):
        derivation = declared(forward)
        autograd = autograd_gradients("sq", forward, point, ["x"], lambda _: None)
        options = make_options(dtype, 16, 32, 0)
        return dtype_rounding(derivation, point, autograd, {}, options)

    assert rounding(squares, "float64") == {}
    assert rounding(float64_only, "float32") == {}
    assert set(rounding(squares, "float32")) == {"x"}
