"""function_derivation: a torch.autograd.Function checked beyond its backward. Every check
has a Function that must pass it and a planted bug that must fail it, naming the check."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from gradcheck import DerivationError, check, function_derivation, verify
from gradcheck.cli import main
from gradcheck.derivations.relu_function import MyReLU
from gradcheck.functions import CHECKS, judge, messages, runner
from gradcheck.functions.layouts import LAYOUTS, in_layout
from gradcheck.tolerances import for_dtype
from tests import function_mutants as mutants

pytest_plugins = ["pytester"]

# Small searches: every planted bug here is found within a few examples.
EXAMPLES = 12


def _verify(derivation: Any) -> Any:
    return verify(derivation, max_examples=EXAMPLES, seed=0)


def _backward_only(derivation: Any, function: type, spec: Any) -> Any:
    return function_derivation(
        function, spec=spec, shapes=derivation.shapes, wrt=derivation.wrt, checks=("backward",)
    )


def test_the_seed_relu_function_passes_every_check_it_declares_and_says_which_were_not_run():
    derivation = function_derivation(MyReLU, spec=torch.relu, shapes={"x": ("N", "D")}, wrt=["x"])
    report = _verify(derivation)
    assert report.verdict == "pass", str(report)
    text = str(report)
    assert "jvp: not run: MyReLU defines no jvp staticmethod" in text
    assert "vmap: not run: MyReLU declares neither generate_vmap_rule" in text


def test_a_function_with_jvp_and_a_differentiable_backward_passes_jvp_and_double_backward():
    report = _verify(mutants.tanh)
    assert report.verdict == "pass", str(report)
    assert "jvp: not run" not in str(report) and "double backward: not run" not in str(report)


def test_a_wrong_jvp_fails_the_jvp_check_with_finite_differences_siding_with_the_spec():
    report = _verify(mutants.tanh_wrong_jvp)
    assert report.verdict == "fail"
    assert "- [output] jvp: the Function's forward-mode tangent" in str(report)
    assert "Finite differences agree with the spec along the difference" in str(report)


def test_a_backward_that_detaches_what_it_saved_fails_double_backward_but_passes_backward_only():
    report = _verify(mutants.tanh_detached_backward)
    assert report.verdict == "fail"
    assert "- [x] double backward: the derivative of the Function's VJP" in str(report)
    assert "Hessian-vector product" in str(report)
    backward_only = _backward_only(mutants.tanh, mutants.TanhDetachedBackward, torch.tanh)
    assert _verify(backward_only).verdict == "pass"


def test_a_once_differentiable_backward_is_not_differentiated_twice_and_the_report_says_so():
    report = _verify(mutants.tanh_once_differentiable)
    assert report.verdict == "pass", str(report)
    assert "double backward: not run: TanhOnceDifferentiable.backward is marked" in str(report)


def test_a_backward_reading_grad_output_as_if_contiguous_fails_the_strided_check_naming_it():
    report = _verify(mutants.scale_rows_as_strided)
    assert report.verdict == "fail"
    text = str(report)
    assert "- [grad_output] strided: Given grad_output " in text
    assert "as if it were contiguous" in text
    backward_only = _backward_only(
        mutants.scale_rows, mutants.ScaleRowsAsStrided, mutants.scale_rows_spec
    )
    assert _verify(backward_only).verdict == "pass"


def test_the_same_function_reading_grad_output_through_its_strides_passes():
    assert _verify(mutants.scale_rows).verdict == "pass"


def test_the_strided_check_names_the_transposed_layout_where_it_applies():
    point = {"x": np.arange(6.0).reshape(2, 3) + 1, "s": np.array([1.0, 2.0])}
    report = check(mutants.scale_rows_as_strided, point)
    assert report.verdict == "fail"
    assert "Given grad_output transposed (strides (1, 2))" in str(report)


def test_images_are_also_checked_channels_last_and_a_view_needing_contiguity_fails_there():
    rng = np.random.default_rng(0)
    point = {"x": rng.uniform(-2, 2, (2, 3, 2, 2)), "s": rng.uniform(-2, 2, 3)}
    assert check(mutants.channel_scale, point).verdict == "pass"
    report = check(mutants.channel_scale_view, point)
    assert report.verdict == "fail"
    assert "- [grad_output] strided: Given grad_output channels_last (strides (12, 1, 6, 3))" in (
        str(report)
    )


def test_a_nondeterministic_backward_fails_determinism_saying_by_how_much():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    point = {"x": rng.uniform(-2, 2, (8, 3)), "w": rng.uniform(-2, 2, (3, 2))}
    report = check(mutants.matmul_atomic_order, point)
    assert report.verdict == "fail"
    assert "- [w] determinism: two backward runs on the same inputs" in str(report)
    assert "differ by up to " in str(report) and "nondet_tol=0 allows no more" in str(report)


def test_a_nondeterminism_within_nondet_tol_passes():
    torch.manual_seed(0)
    tolerant = function_derivation(
        mutants.MatmulAtomicOrder,
        spec=mutants.matmul_spec,
        shapes=mutants.MATMUL_SHAPES,
        wrt=["x", "w"],
        nondet_tol=1e-12,
    )
    rng = np.random.default_rng(0)
    point = {"x": rng.uniform(-2, 2, (8, 3)), "w": rng.uniform(-2, 2, (3, 2))}
    assert check(tolerant, point).verdict == "pass"


def test_a_setup_context_function_with_jvp_and_a_generated_vmap_rule_passes():
    report = _verify(mutants.center)
    assert report.verdict == "pass", str(report)
    assert "vmap: not run" not in str(report)


def test_a_setup_context_function_whose_vmap_rule_mixes_the_batch_fails_the_vmap_check():
    report = _verify(mutants.center_wrong_vmap)
    assert report.verdict == "fail"
    assert "- [output] vmap: the output under torch.func.vmap over a batch of 3" in str(report)


def _without(derivation: Any, function: type, spec: Any, check_name: str, **declared: Any) -> Any:
    """The same declaration with every check but ``check_name``."""
    kept = tuple(c for c in CHECKS if c != check_name)
    return function_derivation(
        function, spec=spec, shapes=derivation.shapes, wrt=derivation.wrt, checks=kept, **declared
    )


def test_a_memory_efficient_swish_and_focal_loss_pass_the_reentrant_check():
    for derivation in (mutants.swish, mutants.focal_loss):
        report = _verify(derivation)
        assert report.verdict == "pass", str(report)
        assert "reentrant: not run" not in str(report)


@pytest.mark.parametrize(
    ("name", "parameter", "edited"),
    [
        ("swish_in_place", "x", "ctx.grad"),
        ("focal_loss_in_place", "logits", "ctx.grads"),
    ],
    ids=["a swish scaling ctx.grad in place", "a focal loss scaling ctx.grads in place"],
)
def test_a_backward_editing_what_its_ctx_holds_fails_reentrant_naming_the_tensor(
    name, parameter, edited
):
    report = _verify(getattr(mutants, name))
    assert report.verdict == "fail"
    text = str(report)
    assert (
        f"- [{parameter}] reentrant: the gradient for {parameter!r} from a second backward" in text
    )
    assert f"Its backward edited {edited} in place during the first" in text
    assert [p.kind for p in report.problems] == ["reentrant"]


def test_only_the_reentrant_check_catches_a_backward_that_edits_its_saved_gradient():
    spec, params = mutants.focal_loss_spec, {"alpha": [0.25], "gamma": [2.0]}
    others = _without(
        mutants.focal_loss_in_place, mutants.FocalLossInPlace, spec, "reentrant",
        params=params, integers={"label": (0, 1)},
    )  # fmt: skip
    report = _verify(others)
    assert report.verdict == "pass", str(report)
    assert "reentrant: not run: switched off by checks=" in str(report)


def test_a_saved_tensor_edited_in_place_fails_reentrant_when_the_second_backward_raises():
    report = _verify(mutants.swish_saved_in_place)
    assert report.verdict == "fail"
    text = str(report)
    assert "- [every input] reentrant: a second backward through the same graph" in text
    assert "raised where the first returned (RuntimeError: one of the variables" in text
    assert "Its backward edited saved_tensors[0] in place" in text


def test_reentrant_messages_name_the_edited_tensor_or_say_what_to_look_for():
    what, why = messages.not_reentrant("x", ["ctx.grad", "saved_tensors[1] (the input 'w')"])
    assert what.startswith("the gradient for 'x' from a second backward through the same graph")
    assert "edited ctx.grad, saved_tensors[1] (the input 'w') in place" in why
    assert "a tensor its ctx holds" in messages.not_reentrant("x", [])[1]
    assert "(RuntimeError: boom). Its backward" in messages.not_reentrant_raised(
        "RuntimeError: boom.", []
    )


def test_an_error_in_the_functions_forward_is_reported_as_the_forwards_not_the_backwards():
    report = _verify(mutants.row_normalize_item)
    assert report.verdict == "fail"
    text = str(report)
    assert "the Function's forward raised RuntimeError: a Tensor with 2 elements" in text
    assert "function_mutants.py:" in text and "in forward)" in text
    assert "backward raised" not in text


def test_an_error_in_a_checks_forward_or_backward_names_its_phase():
    assert messages.raised("Given x transposed", "ValueError: v", "forward") == (
        "Given x transposed, the Function's forward raised ValueError: v"
    )
    assert "the Function's backward raised" in messages.raised("At the example", "E: e", "backward")
    assert "vmap over a batch of 3, the Function raised" in messages.raised(
        "Under torch.func.vmap over a batch of 3", "E: e", None
    )


def test_a_nan_second_derivative_where_the_specs_is_finite_fails_double_backward_with_the_point():
    report = _verify(mutants.entmax15)  # a report, never a DerivationError
    assert report.verdict == "fail"
    assert [(p.kind, p.parameter) for p in report.problems] == [("double backward", "x")]
    text = str(report)
    assert "with respect to 'x' is not finite at " in text
    assert "where the spec's Hessian-vector product (autograd of autograd, float64) is " in text
    assert "takes the sqrt" in text
    assert report.example is not None and "x" in report.example.inputs


def test_the_same_entmax_backward_marked_once_differentiable_passes():
    assert _verify(mutants.entmax15_once).verdict == "pass"


def test_a_second_derivative_the_spec_lacks_is_not_judged_and_one_the_function_lacks_fails():
    reference = np.array([[1.0, np.inf]])
    unjudged = judge.spec_not_finite("double backward", "x", reference, "the spec's HVP")
    assert unjudged.kind == "kink"
    assert "the spec's HVP is inf at index (0, 1)" in unjudged.message
    hand, finite = np.array([[np.nan, 1.0]]), np.array([[0.5, 1.0]])
    mismatch, _ = judge.differs(
        hand, finite, for_dtype("float64"), parameter="x", reference="the spec's HVP"
    )
    failed = judge.not_finite("double backward", mismatch, hand, finite, "the VJP's slope", "Fix.")
    assert failed.kind == "double backward"
    assert failed.message == (
        "the VJP's slope is not finite at 1 of 2 elements (at index (0, 0): nan, where the "
        "spec's HVP is 0.5). Fix."
    )
    assert judge.not_finite("double backward", mismatch, finite, finite, "w", "h") is None


def test_a_backward_whose_values_are_wrong_is_told_to_fix_them_before_its_second_derivative():
    report = _verify(mutants.rms_norm_other_eps)
    assert report.verdict == "fail"
    text = str(report)
    assert any(p.kind == "mismatch" for p in report.problems)  # the backward check's
    assert "- [x] double backward:" in text and "fix the backward first" in text
    assert "not differentiable as written" not in text
    assert _verify(mutants.rms_norm).verdict == "pass"


def test_a_backward_right_at_first_order_with_half_its_derivative_lost_is_told_so():
    report = _verify(mutants.tanh_half_detached)
    assert [(p.kind, p.parameter) for p in report.problems] == [("double backward", "x")]
    assert "Its backward passes at first order, but its derivative is not the spec's" in str(report)


def test_a_spec_that_raises_away_from_the_point_leaves_the_check_unjudged_not_an_error(
    monkeypatch,
):
    def raising(run: Any) -> list:
        raise DerivationError("Derivation 'Tanh': forward raised IndexError: out of bounds.")

    monkeypatch.setattr(runner.run_checks, "double_backward_check", raising)
    report = check(mutants.tanh, {"x": np.array([[0.5, -0.25]])})
    assert report.verdict == "error"
    assert "- references_disagree: double backward: the spec could not be evaluated where" in (
        str(report)
    )


@pytest.mark.parametrize(
    "name",
    ["sin_cos", "sin_cos_unmaterialized", "mean_var"],
    ids=["sin and cos", "sin and cos, materialize_grads off", "mean and variance"],
)
def test_functions_with_several_outputs_pass_every_check(name):
    report = _verify(getattr(mutants, name))
    assert report.verdict == "pass", str(report)


def test_an_integer_output_is_noted_and_left_out_of_every_check():
    report = _verify(mutants.max_with_index)
    assert report.verdict == "pass", str(report)
    assert "output 1 (int64) is not differentiable: left out of every check" in str(report)


def test_a_backward_that_ignores_one_outputs_gradient_fails_the_backward_check():
    report = _verify(mutants.sin_cos_ignores_cos)
    assert report.verdict == "fail"
    assert "- [x] mismatch: gradient for 'x' does not match torch autograd" in str(report)


def test_each_output_is_compared_with_the_specs_and_a_wrong_one_is_named():
    report = _verify(mutants.mean_var_unbiased)
    assert [(p.kind, p.parameter) for p in report.problems] == [("forward", "output 1")]
    assert "- [output 1] forward: the Function's output 1 differs from the spec's output 1" in (
        str(report)
    )


def test_a_backward_that_uses_a_none_gradient_fails_undefined_grad_for_each_output():
    report = _verify(mutants.sin_cos_uses_none)
    assert report.verdict == "fail"
    text = str(report)
    assert "- [output 0] undefined grad: With output 0 unused (autograd hands its backward " in text
    assert "the Function's backward raised TypeError: unsupported operand" in text
    assert {p.kind for p in report.problems} == {"undefined grad"}


def test_a_backward_that_takes_a_none_gradient_for_ones_fails_undefined_grad_by_how_much():
    report = _verify(mutants.sin_cos_none_as_ones)
    assert report.verdict == "fail"
    text = str(report)
    assert "- [x] undefined grad: the gradient for 'x' with output 1 unused differs from the " in (
        text
    )
    assert "the same backward given zeros for output 1" in text


def test_only_the_undefined_grad_check_catches_a_backward_that_mishandles_none():
    for function in (mutants.SinCosUsesNone, mutants.SinCosNoneAsOnes):
        others = _without(
            mutants.sin_cos,
            function,
            mutants.sin_cos_spec,
            "undefined_grad",
            bounds={"x": (0.2, 1.4)},
        )
        assert _verify(others).verdict == "pass"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (torch.sin, "the Function returns 2 outputs of shapes (1,), (1,); the spec one tensor"),
        (
            lambda x: (torch.sin(x), torch.cos(x), x),
            "the spec 3 outputs of shapes (1,), (1,), (1,)",
        ),
    ],
    ids=["the spec returns one tensor", "the spec returns three"],
)
def test_a_spec_returning_other_outputs_than_the_function_is_told_so_not_a_torch_error(
    spec, fragment
):
    derivation = function_derivation(mutants.SinCos, spec=spec, shapes={"x": ("N",)}, wrt=["x"])
    report = check(derivation, {"x": np.array([0.5])})
    assert report.verdict == "fail"
    assert fragment in str(report)
    assert "Mismatch in shape" not in str(report)


def test_several_outputs_messages_say_what_each_side_returns():
    pair = (torch.zeros(2), torch.zeros(2, dtype=torch.int64))
    assert messages.output_structure(pair, torch.zeros(3)) == (
        "the Function returns 2 outputs of shapes (2,), (2,) int64; the spec one tensor of "
        "shape (3,). The spec must return what the Function does, in the same order and shapes"
    )
    assert "output 1 of the Function is int64, the spec's is float64" in messages.output_kinds(
        1, "int64", "float64"
    )
    assert messages.undefined_result("x", 1) == "the gradient for 'x' with output 1 unused"


def test_checks_switched_off_are_not_run_and_the_report_says_so():
    only_backward = _backward_only(mutants.tanh, mutants.TanhWrongJvp, torch.tanh)
    report = _verify(only_backward)
    assert report.verdict == "pass"
    assert "jvp: not run: switched off by checks=" in str(report)


def test_float32_functions_are_checked_against_the_float32_tolerances():
    assert verify(mutants.tanh, max_examples=6, seed=0, dtype="float32").verdict == "pass"
    assert verify(mutants.tanh_wrong_jvp, max_examples=6, seed=0, dtype="float32").verdict == "fail"


def test_without_cuda_the_cuda_check_is_skipped_and_the_report_says_so(monkeypatch):
    monkeypatch.setattr(runner, "accelerator_available", lambda: False)
    derivation = function_derivation(MyReLU, spec=torch.relu, shapes={"x": ("N",)}, wrt=["x"])
    report = check(derivation, {"x": np.array([1.0, -0.5])})
    assert report.verdict == "pass"
    assert "cuda: not run: no CUDA device is visible" in str(report)


def test_the_accelerator_path_runs_every_check_again_and_compares_with_the_cpu(monkeypatch):
    # The GPU path, exercised on the CPU: the same checks with a device prefix, plus agreement.
    monkeypatch.setattr(runner, "accelerator_available", lambda: True)
    monkeypatch.setattr(runner, "ACCELERATOR", "cpu")
    good = function_derivation(mutants.Tanh, spec=torch.tanh, shapes={"x": ("N",)}, wrt=["x"])
    assert check(good, {"x": np.array([1.0, -0.5])}).verdict == "pass"
    bad = function_derivation(
        mutants.TanhWrongJvp, spec=torch.tanh, shapes={"x": ("N",)}, wrt=["x"]
    )
    report = check(bad, {"x": np.array([1.0, -0.5])})
    assert "- [output] jvp:" in str(report) and "- [output] cpu jvp:" in str(report)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_functions_pass_and_fail_as_on_the_cpu():
    assert _verify(mutants.tanh).verdict == "pass"
    report = _verify(mutants.tanh_detached_backward)
    assert "- [x] cuda double backward:" in str(report)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_holds_the_same_values_without_being_contiguous(layout):
    tensor = torch.arange(24.0).reshape(2, 3, 2, 2)
    values, view = in_layout(tensor, layout)
    assert not view.is_contiguous()
    assert torch.equal(view, values)
    if layout != "expanded":
        assert torch.equal(values, tensor)


def test_layouts_that_cannot_change_a_tensors_memory_are_skipped():
    assert in_layout(torch.ones(1, 1), "transposed") is None
    assert in_layout(torch.ones(1), "expanded") is None
    assert in_layout(torch.ones(2, 3), "channels_last") is None


def test_the_function_checks_run_from_the_command_line(capsys):
    code = main(["verify", "tests/function_mutants.py:scale_rows_as_strided", "--seed", "0",
                 "--max-examples", str(EXAMPLES)])  # fmt: skip
    assert code == 1
    assert "[grad_output] strided" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"function": MyReLU.apply}, "must be a torch.autograd.Function subclass"),
        ({"checks": ("backward", "double_backwards")}, "did you mean 'double_backward'?"),
        ({"checks": ("jvp",)}, "leaves out 'backward'"),
        ({"checks": "jvp"}, "checks must be a sequence of check names"),
        ({"nondet_tol": -1.0}, "nondet_tol=-1.0 must be a finite number >= 0"),
        ({"dtype": "float16"}, "dtype='float16' is not one of"),
        ({"shapes": {"y": ("N",)}, "wrt": ["y"]}, "not declared in shapes or params: x"),
    ],
    ids=[
        "an apply, not the class",
        "a misspelled check",
        "checks without backward",
        "checks as one string",
        "a negative nondet_tol",
        "an unsupported dtype",
        "a forward argument with no shape",
    ],
)
def test_bad_declarations_name_the_argument_and_the_fix(arguments, fragment):
    declaration = {
        "function": MyReLU,
        "spec": torch.relu,
        "shapes": {"x": ("N",)},
        "wrt": ["x"],
        **arguments,
    }
    function = declaration.pop("function")
    with pytest.raises(DerivationError, match=None) as raised:
        function_derivation(function, **declaration)
    assert fragment in str(raised.value)


def test_messages_name_the_numbers_and_the_fix():
    assert "differ by up to 5.55e-17 (at index (0, 1)); nondet_tol=0" in messages.nondeterministic(
        "w", 5.55e-17, (0, 1), 0.0
    )
    assert messages.layout_result("x", "grad_output", "transposed", " (strides (1, 2))") == (
        "Given grad_output transposed (strides (1, 2)), the gradient for 'x'"
    )
    assert messages.layout_hint("grad_output", ["s"]).startswith("('s' differs too.) ")
    assert messages.not_run("vmap", "why") == "vmap: not run: why"
    assert "Hessian-vector product" in messages.second_derivative("x")[1]
    assert "Jacobian-vector product" in messages.second_derivative("grad_output")[1]


PLUGIN_FILE = """
import torch
from gradcheck import function_derivation


class Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y**2)


class TanhDetached(Tanh):
    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y.detach() ** 2)


tanh = function_derivation(Tanh, spec=torch.tanh, shapes={"x": ("N",)}, wrt=["x"])
tanh_detached = function_derivation(
    TanhDetached, spec=torch.tanh, shapes={"x": ("N",)}, wrt=["x"]
)
"""


def test_the_pytest_plugin_collects_function_derivations_like_any_other(pytester):
    pytester.makepyfile(test_function_derivations=PLUGIN_FILE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-max-examples", "8")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*TanhDetached FAILED (float64)*", "*[[]x[]] double backward:*"])
