"""A spec that is NaN/inf inside its bounds is said once, shrunk; a loss exactly zero at the
point is judged against the scale of its terms, not against zero."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gradcheck import Derivation, check, verify
from gradcheck.spec_domain import Culprit, non_finite_spec_message


def _log_backward(x: np.ndarray, grad_output: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": grad_output / x}


def _log(bounds: tuple[float, float]) -> Derivation:
    return Derivation(
        name="log", forward=torch.log, backward=_log_backward, shapes={"x": ("N",)}, wrt=["x"],
        bounds={"x": bounds},
    )  # fmt: skip


def test_a_spec_nan_inside_its_bounds_is_said_once_at_a_shrunk_example():
    report = verify(_log((-1.0, 2.0)), seed=0, max_examples=30)
    assert report.verdict == "error", str(report)
    assert [p.kind for p in report.problems] == ["spec_non_finite"], str(report)
    assert report.example is not None and report.example.dims == {"N": 1}, str(report)
    (x,) = report.example.inputs["x"]
    assert x < 0
    text = str(report)
    assert "the spec forward returned NaN at this point" in text
    assert f"depends there on x = [{x:.6g}]" in text
    assert "narrow `bounds` (now {'x': (-1.0, 2.0)})" in text
    assert "not what autograd differentiates" not in text


def test_the_same_spec_inside_its_domain_passes():
    assert verify(_log((0.1, 2.0)), seed=0, max_examples=30).verdict == "pass"


def test_check_at_a_nan_point_names_the_element_and_does_not_judge_the_backward():
    report = check(_log((-1.0, 2.0)), {"x": np.array([0.5, -0.25, 1.0])})
    assert report.verdict == "error"
    assert [p.kind for p in report.problems] == ["spec_non_finite"]
    assert "1 of 3 output elements (first at (1,)); it depends there on x[1] = -0.25" in str(report)


def test_the_non_finite_spec_message_names_inf_the_values_and_the_bounds():
    message = non_finite_spec_message(
        np.array([1.0, np.inf]),
        [Culprit("x", ((1,),), (0.0,), 2)],
        {"x": (-1.0, 1.0), "w": (-2.0, 2.0)},
    )
    assert "returned inf at this point in 1 of 2 output elements (first at (1,))" in message
    assert "depends there on x[1] = 0" in message
    assert "narrow `bounds` (now {'x': (-1.0, 1.0)})" in message


def test_a_scalar_nan_loss_lists_the_inputs_it_depends_on():
    message = non_finite_spec_message(
        np.array(np.nan), [Culprit("x", ((0,), (1,)), (1.0, -1.0), 2)], {"x": (-1.0, 1.0)}
    )
    assert message.startswith("the spec forward returned NaN at this point; it depends")
    assert "x = [1, -1]" in message


# A one-class softmax loss is log(1) = 0 exactly, and so is autograd's gradient. A correct
# hand softmax via log-sum-exp (exp(s - log(sum(exp(s))))) leaves ~2e-16 of the terms it
# cancels: a residue, not a bug.
def _one_class_loss(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(x @ w, y, reduction="sum")


def _one_class_backward(reg: float):
    def backward(x: np.ndarray, w: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        scores = x @ w
        probs = np.exp(scores - np.log(np.exp(scores).sum(axis=1, keepdims=True)))
        probs[np.arange(len(y)), y] -= 1
        return {"x": probs @ w.T, "w": x.T @ probs + 2 * reg * w}  # the spec has no reg

    return backward


def _one_class(reg: float) -> Derivation:
    return Derivation(
        name="softmax_one_class",
        forward=_one_class_loss,
        backward=_one_class_backward(reg),
        shapes={"x": ("N", "D"), "w": ("D", 1), "y": ("N",)},
        wrt=["x", "w"],
        integers={"y": (0, 0)},
    )


ONE_CLASS_POINT = {"x": np.array([[0.25]]), "w": np.array([[0.328125]]), "y": np.array([0])}


def test_a_correct_gradient_of_a_loss_exactly_zero_passes_despite_its_rounding_residue():
    report = check(_one_class(0.0), ONE_CLASS_POINT)
    assert report.verdict == "pass", str(report)
    assert verify(_one_class(0.0), seed=0, max_examples=30).verdict == "pass"


def test_a_small_wrong_term_where_the_loss_is_exactly_zero_still_fails():
    # reg 1e-6 left in: 2e-6 * w, a millionth of the terms' scale, where autograd says 0.
    report = check(_one_class(1e-6), ONE_CLASS_POINT)
    assert report.verdict == "fail", str(report)
    assert {p.parameter for p in report.problems if p.kind == "mismatch"} == {"w"}
