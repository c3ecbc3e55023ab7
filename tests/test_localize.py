"""The first wrong line: found by tracing the hand backward, or None, never a guess."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from gradcheck import check, verify
from gradcheck.cli import main
from gradcheck.derivations import BUILTINS
from gradcheck.layers import course_layer, course_loss
from gradcheck.localize import localize
from gradcheck.messages import format_localization
from gradcheck.report import Localization
from tests import mutants

POINT = {
    "x": np.array([[0.7, -1.3], [1.1, 0.4]]),
    "y": np.array([[0.2, -0.5], [0.9, 1.4]]),
    "w1": np.array([[0.8, -0.6], [-1.2, 0.9]]),
    "w2": np.array([[1.3, -0.4], [0.5, 1.1]]),
}


def test_seed001_points_at_the_mask_taken_from_the_gradient():
    report = check(mutants.seed001_mask_from_gradient, POINT)
    found = report.localization
    assert found is not None, str(report)
    assert found.code == "grad_h[grad_h < 0] = 0"
    assert found.variable == "grad_h"
    assert found.expected == "dL/dh (autograd)"
    assert found.file.endswith("mutants.py")
    assert "grad_h should equal dL/dh (autograd) but differs at" in found.detail
    assert "First wrong line: " in str(report)


def test_the_torch_backend_is_traced_too():
    point = {k: torch.from_numpy(v) for k, v in POINT.items()}
    found = check(mutants.seed001_mask_from_gradient_torch, point).localization
    assert found is not None and found.code == "grad_h[grad_h < 0] = 0"


def test_a_weight_updated_before_use_is_the_first_wrong_line():
    found = check(mutants.seed004_stale_w2, POINT).localization
    assert found is not None
    assert found.code == "updated_w2 = w2 - learning_rate * grad_w2"
    assert found.expected == "w2 (the spec's forward)"


def test_a_bug_in_the_returned_expression_names_the_return_and_its_sub_expression():
    # The wrong value is never a local, but everything its expression reads is right.
    report = check(mutants.flipped_sign_net, POINT)
    found = report.localization
    assert found is not None, str(report)
    assert found.code.startswith("return {")
    assert found.variable == "w2" and found.expected == "dL/dw2 (autograd)"
    assert "The returned gradient for 'w2', -(h_relu.T @ grad_y_pred), should equal" in found.detail


def test_a_returned_local_that_is_wrong_is_not_blamed_on_the_return():
    # "w2": grad_w2 reads a local that is wrong itself: the return only passes it on.
    def backward(x, y, w1, w2):
        h = x @ w1
        h_relu = np.maximum(h, 0.0)
        grad_y_pred = 2.0 * (h_relu @ w2 - y)
        grad_w2 = h_relu.T @ grad_y_pred * 1.5
        grad_h = (grad_y_pred @ w2.T) * (h > 0)
        return {"w1": x.T @ grad_h, "w2": grad_w2}

    found = check(mutants._two_layer(backward), POINT).localization
    assert found is not None and found.code == "grad_w2 = h_relu.T @ grad_y_pred * 1.5"


@pytest.mark.parametrize("derivation", BUILTINS[:2], ids=["numpy net", "torch net"])
def test_a_correct_derivation_gets_no_localization(derivation):
    report = check(derivation, POINT)
    assert report.verdict == "pass"
    assert report.localization is None
    assert localize(derivation, report) is None


def sigmoid_forward(x):
    return 1 / (1 + np.exp(-x)), x


def sigmoid_backward_slip(dout, cache):
    s = 1 / (1 + np.exp(-cache))
    dx = dout * s * s  # should be s * (1 - s)
    return dx


def sigmoid_backward(dout, cache):
    s = 1 / (1 + np.exp(-cache))
    dx = dout * s * (1 - s)
    return dx


def _sigmoid_layer(backward):
    return course_layer(sigmoid_forward, backward, spec=torch.sigmoid, shapes={"x": ("N", "D")})


def test_through_the_course_adapter_it_points_into_the_students_backward():
    report = verify(_sigmoid_layer(sigmoid_backward_slip), seed=0, max_examples=10)
    found = report.localization
    assert found is not None, str(report)
    assert found.code.startswith("dx = dout * s * s")
    assert found.file == __file__
    assert found.expected == "dL/dx (autograd)"


def test_the_correct_course_layer_passes():
    assert verify(_sigmoid_layer(sigmoid_backward), seed=0, max_examples=10).verdict == "pass"


SEED001_FILE = """
import numpy as np
from tests import mutants

seed001 = mutants.seed001_mask_from_gradient
flipped = mutants.flipped_sign_net
large_batch = mutants.large_batch_only_net
correct = mutants.correct_mask_less
"""


def test_json_gives_each_failing_result_its_localization_or_null(tmp_path):
    target = tmp_path / "nets.py"
    target.write_text(SEED001_FILE)
    out = io.StringIO()
    main(["verify", str(target), "--json", "--seed", "0", "--max-examples", "25"], out=out)
    results = {r["name"]: r for r in json.loads(out.getvalue())["results"]}
    found = results["mask_from_gradient"]["localization"]
    assert set(found) == {"file", "line", "variable", "expected", "detail"}
    assert found["file"].endswith("mutants.py") and isinstance(found["line"], int)
    assert found["variable"] == "grad_h" and found["expected"] == "dL/dh (autograd)"
    assert results["flipped_sign"]["localization"]["variable"] == "w2"  # in its return
    assert results["wrong_only_for_large_batches"]["localization"] is None
    assert "localization" not in results["mask_less"]  # passing results have none


def test_the_section_reads_like_the_issue_example():
    found = Localization(
        file="test_net.py",
        line=27,
        variable="grad_h",
        expected="dL/dh (autograd)",
        detail="grad_h should equal dL/dh (autograd) but differs at 2 of 4 elements.",
        code="grad_h[grad_h < 0] = 0",
        matched=("h", "h_relu", "grad_y_pred = dL/dy_pred"),
        matched_lines=(20, 26),
    )
    assert format_localization(found) == [
        "First wrong line: test_net.py:27  grad_h[grad_h < 0] = 0",
        "grad_h should equal dL/dh (autograd) but differs at 2 of 4 elements.",
        "Lines 20-26 match: h, h_relu, grad_y_pred = dL/dy_pred.",
    ]


# -- item 3: a wrong loss value names its ratio ------------------------------------------------


def _softmax_loss(log):
    def softmax_loss(x, y):
        shifted = x - x.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        loss = -log(probs[np.arange(x.shape[0]), y]).mean()
        dx = probs.copy()
        dx[np.arange(x.shape[0]), y] -= 1
        return loss, dx / x.shape[0]

    return course_loss(
        softmax_loss,
        spec=lambda x, y: torch.nn.functional.cross_entropy(x, y),
        shapes={"x": ("N", "C"), "y": ("N",)},
        integers={"y": lambda s: (0, s["C"] - 1)},
    )


def test_a_loss_in_log10_names_the_ratio_1_over_ln_10():
    report = verify(_softmax_loss(np.log10), seed=0, max_examples=10)
    assert report.verdict == "fail"
    assert "It is 0.434294 (1/ln 10: a log10 where the spec has a natural log)" in str(report)


def test_a_loss_off_by_no_known_ratio_names_none():
    report = verify(_softmax_loss(lambda p: np.log(p) - 0.1), seed=0, max_examples=10)
    assert report.verdict == "fail"
    assert "It is" not in str(report)


def test_a_natural_log_loss_passes():
    assert verify(_softmax_loss(np.log), seed=0, max_examples=10).verdict == "pass"


# -- issue 18, item 18: a correct local derivative is never the first wrong line ---------------


def test_a_line_holding_a_correct_local_derivative_is_never_blamed():
    from tests.localization_set import CASES

    case = next(c for c in CASES if c.label == "a leaky slope, then dout left out")
    found = verify(case.derivation, seed=0, max_examples=10).localization
    # Putting dL/dx into slope fixes dx = slope too; slope is right, dx = slope is not.
    assert found is None or "slope = np.where" not in found.code
    assert found is not None and found.code.startswith("dx = slope")
