"""op_derivation: a torch.library custom op checked like a Function, and its registration
by opcheck at a bounded number of shapes. The ops are the examples' (examples/)."""

from __future__ import annotations

import pytest
import torch

from examples import rms_norm_op
from gradcheck import DerivationError, verify
from gradcheck.derivations.relu_function import MyReLU
from gradcheck.ops import OP_CHECKS, op_derivation
from gradcheck.ops import registration as reg
from gradcheck.report import Problem

EXAMPLES = 10


def _verify(derivation):
    return verify(derivation, max_examples=EXAMPLES, seed=0)


def test_a_correct_custom_op_passes_and_the_report_says_where_opcheck_ran():
    report = _verify(rms_norm_op.correct)
    assert report.verdict == "pass", str(report)
    checked = [n for n in report.notes if n.startswith("registration: checked at ")]
    assert 1 <= len(checked) <= reg.REGISTRATION_SHAPES
    text = str(report)
    assert "run at the first 3 distinct shapes only" in text
    assert "jvp: not run: examples::rms_norm has no forward-mode AD formula" in text


def test_a_fake_kernel_of_the_wrong_shape_fails_registration_naming_the_dims():
    report = _verify(rms_norm_op.planted)
    assert report.verdict == "fail"
    assert [(p.kind, p.parameter) for p in report.problems] == [("registration", "fake tensor")]
    text = str(report)
    assert "- [fake tensor] registration: opcheck's test_faketensor: register_fake returns " in (
        text
    )
    assert "shape (D, N) where the op returns (N, D)" in text
    assert "Traceback" not in text and 'File "' not in text  # none of opcheck's stack


def test_only_the_registration_check_catches_a_wrong_fake_kernel():
    without = [c for c in OP_CHECKS if c != "registration"]
    derivation = op_derivation(
        rms_norm_op.rms_norm_transposed_fake, checks=without, **rms_norm_op.DECLARED
    )
    report = _verify(derivation)
    assert report.verdict == "pass", str(report)
    assert "registration: not run: switched off by checks=" in str(report)


def test_no_registration_shapes_runs_no_opcheck():
    derivation = op_derivation(
        rms_norm_op.rms_norm_transposed_fake, registration_shapes=0, **rms_norm_op.DECLARED
    )
    assert _verify(derivation).verdict == "pass"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"op": MyReLU}, "for a torch.autograd.Function use function_derivation"),
        ({"params": {}}, "not declared in shapes or params: eps"),
        ({"checks": ("backward", "registraton")}, "did you mean 'registration'?"),
        ({"registration_shapes": -1}, "registration_shapes=-1 must be an int >= 0"),
    ],
    ids=[
        "a Function, not an op",
        "a schema argument left undeclared",
        "a misspelled check",
        "a negative number of shapes",
    ],
)
def test_bad_op_declarations_name_the_argument_and_the_fix(arguments, fragment):
    declaration = {"op": rms_norm_op.rms_norm, **rms_norm_op.DECLARED, **arguments}
    op = declaration.pop("op")
    with pytest.raises(DerivationError) as raised:
        op_derivation(op, **declaration)
    assert fragment in str(raised.value)


def test_the_ops_of_torch_ops_are_accepted_as_the_custom_op_itself():
    derivation = op_derivation(torch.ops.examples.rms_norm, **rms_norm_op.DECLARED)
    assert derivation.name == "examples::rms_norm"


def test_a_fake_mismatch_is_said_in_the_dims_names_where_each_size_names_one():
    op = rms_norm_op.rms_norm_transposed_fake
    arguments = (torch.ones(2, 3), torch.ones(3), 1e-6)
    assert reg.fake_mismatch(op, arguments, {"N": 2, "D": 3}) == (
        "register_fake returns shape (D, N) where the op returns (N, D) (N=2, D=3)"
    )
    square = (torch.ones(2, 2), torch.ones(2), 1e-6)
    assert reg.fake_mismatch(op, square, {"N": 2, "D": 2}) is None  # the same shape
    assert reg.fake_mismatch(rms_norm_op.rms_norm, arguments, {"N": 2, "D": 3}) is None


def test_opcheck_failures_are_one_line_each_and_the_same_words_are_said_once():
    error = RuntimeError("The output must not alias an input\n  File x.py, line 3\n    y")
    problems = reg.registration_problems(
        {"test_schema": error, "test_faketensor": error, "test_aot_dispatch_dynamic": error},
        None,
    )
    assert len(problems) == 1
    assert problems[0] == Problem(
        "registration",
        "opcheck's test_schema: RuntimeError: The output must not alias an input. The schema "
        "must say what the op does: name every argument it writes in mutates_args, and return "
        "fresh tensors, never an input or a view of one. (fake tensor fails the same way.) "
        "(aot dispatch fails the same way.)",
        "schema",
    )
    after = reg.registration_problems(
        {"test_faketensor": "x", "test_aot_dispatch_dynamic": RuntimeError("y")}, "fake words"
    )
    assert after[0].message.startswith("opcheck's test_faketensor: fake words. register_fake")
    assert after[1].message.endswith("fix register_fake first.")
