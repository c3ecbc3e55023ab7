"""check_model / verify_model: does an nn.Module compute the function its spec says?"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import settings
from torch import nn

from gradcheck import DerivationError
from gradcheck.derivations.relu_function import MyReLU
from gradcheck.training import (
    ModelSpec,
    TrainingMismatch,
    assert_model_matches,
    check_model,
    verify_model,
)

AFFINE = ModelSpec(
    name="affine",
    forward=lambda x, w, b: x @ w + b,
    inputs={"x": ("N", "D_in")},
    parameters={"w": "weight.T", "b": "bias"},
    shapes={"w": ("D_in", "D_out"), "b": ("D_out",)},
    dims={"N": (1, 6)},
)


def two_layer(x, w1, b1, w2, b2):
    return torch.relu(x @ w1 + b1) @ w2 + b2


NET = ModelSpec(
    name="two_layer_net",
    forward=two_layer,
    inputs={"x": ("N", "D_in")},
    parameters={
        "w1": "linear1.weight.T",
        "b1": "linear1.bias",
        "w2": "linear2.weight.T",
        "b2": "linear2.bias",
    },
    shapes={"w1": ("D_in", "H"), "b1": ("H",), "w2": ("H", "D_out"), "b2": ("D_out",)},
    dims={"N": (1, 6)},
)


class Net(nn.Module):
    def __init__(self, activation: Any = torch.relu) -> None:
        super().__init__()
        self.linear1 = nn.Linear(3, 4)
        self.linear2 = nn.Linear(4, 2)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))


class HNotReLU(Net):
    """Seed 000's slip: relu(h) is computed, h goes on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        self.activation(h)
        return self.linear2(h)


class MaskFromGradient(torch.autograd.Function):
    """ReLU whose backward masks by the incoming gradient (seed 001's slip)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.clone()
        grad[grad_output < 0] = 0
        return grad


class OneAtZero(MyReLU):
    """``MyReLU`` with the other subgradient at 0: relu'(0) = 1."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_output * (x >= 0).to(grad_output.dtype)


def budget() -> int:
    return settings().max_examples


def x_batch(n: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).uniform(-2, 2, (n, 3))}


def test_a_linear_layer_matches_x_at_w_plus_b_with_its_weight_transposed():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    report = check_model(layer, AFFINE, x_batch())
    assert report.verdict == "pass", str(report)
    assert verify_model(layer, AFFINE, max_examples=budget(), seed=0).verdict == "pass"


def test_a_correct_two_layer_net_passes_the_search():
    torch.manual_seed(0)
    report = verify_model(Net(), NET, max_examples=budget(), seed=0)
    assert report.verdict == "pass", str(report)
    assert 1 < report.examples <= budget()  # hypothesis skips repeats of an example


def test_seed000_forward_bug_is_found_and_shrunk_to_one_sample():
    torch.manual_seed(0)
    report = verify_model(HNotReLU(), NET, max_examples=budget(), seed=0)
    assert (report.verdict, report.parameter) == ("fail", "output")
    text = str(report)
    assert "[output] mismatch: the module's forward differs from the spec" in text
    assert "w1 = linear1.weight.T" in text
    assert "Mismatched elements:" in text and "Greatest absolute difference" in text
    assert report.example is not None and report.example.dims == {"N": 1}


def test_seed000_forward_bug_shows_at_the_modules_own_weights():
    torch.manual_seed(0)
    report = check_model(HNotReLU(), NET, x_batch(n=8))
    assert report.verdict == "fail"
    assert "the module's forward differs from the spec" in str(report)


def test_a_weight_mapped_without_its_transpose_makes_the_forward_differ():
    square = nn.Linear(3, 3)
    untransposed = ModelSpec(
        name="affine", forward=lambda x, w, b: x @ w + b, inputs={"x": ("N", 3)},
        parameters={"w": "weight", "b": "bias"},
    )  # fmt: skip
    report = check_model(square, untransposed, x_batch())
    assert (report.verdict, report.parameter) == ("fail", "output")


def test_a_custom_function_with_a_wrong_backward_fails_on_its_gradients():
    torch.manual_seed(0)
    report = verify_model(Net(MaskFromGradient.apply), NET, max_examples=budget(), seed=0)
    assert report.verdict == "fail"
    assert report.parameter in ("w1", "b1")
    text = str(report)
    assert "the module's backward differs from the spec" in text
    assert "finite differences of the spec side with autograd" in text
    assert "forward differs" not in text


def test_the_other_subgradient_at_an_exact_kink_is_inconclusive_not_a_failure():
    torch.manual_seed(0)
    module = Net(OneAtZero.apply)
    parameters = {
        "w1": np.eye(3, 4),
        "b1": np.array([0.0, 0.5, 0.5, 0.5]),  # unit 0 sits on its hinge where x[0] = 0
        "w2": np.ones((4, 2)),
        "b2": np.zeros(2),
    }
    at_kink = check_model(module, NET, {"x": [[0.0, 1.0, -1.0]]}, parameters=parameters)
    assert at_kink.verdict == "inconclusive", str(at_kink)
    assert "only at a non-differentiable point of the spec" in str(at_kink)
    off_kink = check_model(module, NET, {"x": [[0.5, 1.0, -1.0]]}, parameters=parameters)
    assert off_kink.verdict == "pass"


def test_a_spec_that_detaches_a_parameter_is_an_error_in_the_spec_not_a_verdict():
    detached = ModelSpec(
        name="affine", forward=lambda x, w, b: x @ w.detach() + b, inputs={"x": ("N", "D_in")},
        parameters=AFFINE.parameters, shapes=AFFINE.shapes,
    )  # fmt: skip
    report = check_model(nn.Linear(3, 2), detached, x_batch())
    assert (report.verdict, report.parameter) == ("error", "w")
    assert "finite differences of the spec" in str(report)
    assert "side with the module" in str(report)


def test_the_callers_module_keeps_its_dtype_and_values():
    torch.manual_seed(0)
    module = HNotReLU()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    inputs = x_batch()
    pristine = inputs["x"].copy()
    check_model(module, NET, inputs, parameters={"b2": np.ones(2)})
    verify_model(module, NET, max_examples=5, seed=0)
    for name, value in module.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    np.testing.assert_array_equal(inputs["x"], pristine)


def test_assert_model_matches_raises_an_assertion_error_with_the_report():
    torch.manual_seed(0)
    with pytest.raises(TrainingMismatch) as caught:
        assert_model_matches(HNotReLU(), NET, max_examples=budget(), seed=0)
    assert isinstance(caught.value, AssertionError)
    assert "the module's forward differs from the spec" in str(caught.value)
    assert assert_model_matches(Net(), NET, x_batch()).ok


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({**NET.parameters, "w1": "linear.weight.T"}, "has no parameter 'linear.weight'"),
        ({k: v for k, v in NET.parameters.items() if k != "b2"}, "does not map: linear2.bias"),
        ({**NET.parameters, "b1": "linear1.bias.T"}, "'.T' is for 2-D weights only"),
        ({**NET.parameters, "b2": "linear1.bias"}, "'linear1.bias' is mapped twice"),
    ],
    ids=["a misspelled parameter", "an unmapped parameter", "a transposed bias", "a double map"],
)
def test_a_mapping_that_does_not_fit_the_module_names_the_fix(parameters, fragment):
    shapes = {k: v for k, v in (NET.shapes or {}).items() if k in parameters}
    spec = ModelSpec(
        name="net", forward=two_layer, inputs=NET.inputs, parameters=parameters, shapes=shapes
    )
    with pytest.raises(DerivationError) as caught:
        check_model(Net(), spec, x_batch())
    assert fragment in str(caught.value)


def test_a_misspelled_parameter_gets_a_suggestion():
    spec = ModelSpec(
        name="net", forward=two_layer, inputs={"x": ("N", 3)},
        parameters={**NET.parameters, "w1": "linear1.weigth.T"},
    )  # fmt: skip
    with pytest.raises(DerivationError, match=r"did you mean 'linear1\.weight'"):
        check_model(Net(), spec, x_batch())


def test_spec_shapes_that_do_not_fit_the_modules_layers_are_rejected():
    spec = ModelSpec(
        name="net", forward=two_layer, inputs=NET.inputs, parameters=NET.parameters,
        shapes={**(NET.shapes or {}), "w2": ("D_out", "H")},
    )  # fmt: skip
    with pytest.raises(DerivationError, match="the module's layers do not fit the spec's shapes"):
        check_model(Net(), spec, x_batch())


def test_model_check_arguments_are_validated():
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.Module"):
        check_model(two_layer, NET, x_batch())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expected a gradcheck\.training\.ModelSpec"):
        check_model(Net(), two_layer, x_batch())  # type: ignore[arg-type]
    with pytest.raises(DerivationError, match=r"inputs\['w1'\] is a parameter; pass it in"):
        check_model(Net(), NET, {**x_batch(), "w1": np.zeros((3, 4))})
    with pytest.raises(DerivationError, match="parameters names 'w3'"):
        check_model(Net(), NET, x_batch(), parameters={"w3": 1.0})
    with pytest.raises(DerivationError, match="must name a module parameter"):
        ModelSpec(name="m", forward=two_layer, inputs={"x": ("N", 3)}, parameters={"w": "a b"})
    with pytest.raises(DerivationError, match="'x' is both an input and a parameter"):
        ModelSpec(name="m", forward=two_layer, inputs={"x": ("N", 3)}, parameters={"x": "w"})
    with pytest.raises(DerivationError, match="ModelSpec 'm': dims names 'M'"):
        ModelSpec(
            name="m", forward=two_layer, inputs={"x": ("N", 3)}, parameters={"w": "w"},
            dims={"M": (1, 2)},
        )  # fmt: skip
