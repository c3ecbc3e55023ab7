"""check_step / verify_step: a hand-written update held to autograd + a torch optimizer.

Every checker verdict here is tested both ways: a correct step passes and the same step with
one planted slip fails, with assertions on the step and parameter the report names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import settings

from gradcheck import DerivationError
from gradcheck.training import (
    OptimizerSpec,
    TrainingMismatch,
    TrainingStep,
    adam,
    assert_step_matches,
    check_step,
    sgd,
    verify_step,
)

LR = 0.01


def least_squares(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x @ w - y) ** 2).sum()


def grad_least_squares(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 2.0 * x.T @ (x @ w - y)  # d/dw of sum((x @ w - y)**2)


def hand_sgd(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return {"w": w - LR * grad_least_squares(w, x, y)}


def declare(step: Any, *, optimizer: OptimizerSpec | None = None, **options: Any) -> TrainingStep:
    return TrainingStep(
        name=options.pop("name", "least_squares"),
        step=step,
        loss=options.pop("loss", least_squares),
        params=options.pop("params", {"w": ("D", 1)}),
        batch=options.pop("batch", {"x": ("N", "D"), "y": ("N", 1)}),
        optimizer=optimizer or sgd(lr=LR),
        dims=options.pop("dims", {"N": (1, 6), "D": (1, 4)}),
        bounds=options.pop("bounds", {"w": (-1.0, 1.0), "x": (-1.0, 1.0), "y": (-1.0, 1.0)}),
        **options,
    )


def point(n: int = 5, d: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w": rng.uniform(-1, 1, (d, 1)),
        "x": rng.uniform(-1, 1, (n, d)),
        "y": rng.uniform(-1, 1, (n, 1)),
    }


def search_budget() -> int:
    """A fifth of the active profile's examples: each runs up to 100 steps."""
    return max(3, settings().max_examples // 5)


# -- correct steps pass ---------------------------------------------------------------------


def test_hand_sgd_matches_torch_sgd_over_100_steps_and_the_loss_curves_agree():
    report = check_step(declare(hand_sgd), point(), steps=100)
    assert report.verdict == "pass", str(report)
    assert report.step is None and report.parameter is None
    assert report.curves is not None and len(report.curves.hand) == 100
    assert report.curves.agreement <= 1e-12
    assert report.curves.parameter_agreement <= 1e-12
    assert report.curves.hand[-1] < report.curves.hand[0]  # it trained
    assert "every update of 100 steps matched the reference" in str(report)


def test_verify_step_passes_a_correct_step_over_every_example():
    report = verify_step(declare(hand_sgd), steps=100, max_examples=search_budget(), seed=0)
    assert report.verdict == "pass", str(report)
    assert 1 < report.examples <= search_budget()  # hypothesis skips repeats of an example
    assert f"{report.examples} examples passed, 100 steps each" in report.notes


def momentum_step(w: np.ndarray, x: np.ndarray, y: np.ndarray, state: dict) -> dict[str, Any]:
    grad = grad_least_squares(w, x, y)
    state["buffer"] = grad if "buffer" not in state else 0.9 * state["buffer"] + grad
    return {"w": w - LR * state["buffer"]}


def test_a_stateful_momentum_step_matches_sgd_with_momentum():
    declaration = declare(momentum_step, optimizer=sgd(lr=LR, momentum=0.9), state=dict)
    assert check_step(declaration, point(), steps=100).verdict == "pass"


def adam_step(
    w: np.ndarray, x: np.ndarray, y: np.ndarray, state: dict, *, bias_correction: str = "right"
) -> dict[str, Any]:
    """Adam by hand: moments of the gradient, bias-corrected by the step count."""
    beta1, beta2, eps, lr = 0.9, 0.999, 1e-8, 0.05
    grad = grad_least_squares(w, x, y)
    state["t"] = state.get("t", 0) + 1
    state["m"] = beta1 * state.get("m", 0.0) + (1 - beta1) * grad
    state["v"] = beta2 * state.get("v", 0.0) + (1 - beta2) * grad**2
    t = {"right": state["t"], "stuck at 1": 1}.get(bias_correction)
    if t is None:  # "none": the moments used as they are
        m_hat, v_hat = state["m"], state["v"]
    else:
        m_hat, v_hat = state["m"] / (1 - beta1**t), state["v"] / (1 - beta2**t)
    return {"w": w - lr * m_hat / (np.sqrt(v_hat) + eps)}


def test_a_hand_written_adam_matches_torch_adam_over_100_steps():
    declaration = declare(adam_step, optimizer=adam(lr=0.05), state=dict)
    report = check_step(declaration, point(), steps=100)
    assert report.verdict == "pass", str(report)
    assert report.curves is not None and report.curves.agreement <= 1e-12


@pytest.mark.parametrize(
    ("bias_correction", "step"),
    [("none", 1), ("stuck at 1", 2)],
    ids=["adam without bias correction parts at step 1", "adam stuck at t=1 parts at step 2"],
)
def test_a_wrong_adam_is_caught_at_the_first_step_it_differs(bias_correction, step):
    def wrong(w, x, y, state):
        return adam_step(w, x, y, state, bias_correction=bias_correction)

    report = check_step(declare(wrong, optimizer=adam(lr=0.05), state=dict), point())
    assert report.verdict == "fail"
    assert (report.step, report.parameter) == (step, "w")
    assert f"step {step} of 100: the update of 'w' differs" in str(report)


# -- broken steps fail, at the step and parameter where they part -------------------------


def test_a_halved_learning_rate_fails_at_step_1_with_the_factor_named():
    def halved(w, x, y):
        return {"w": w - LR / 2 * grad_least_squares(w, x, y)}

    report = check_step(declare(halved), point())
    assert report.verdict == "fail"
    assert (report.step, report.parameter) == (1, "w")
    text = str(report)
    assert (
        "[w] mismatch: step 1 of 100: the update of 'w' differs from torch.optim.SGD(lr=0.01) on"
        in text
    )
    assert "Mismatched elements: 3 / 3 (100.0%)" in text
    assert "Greatest relative difference: 0.5 at index" in text
    assert "the updates of 'w' are 0.5 times the reference's" in text


def test_a_slip_that_starts_at_step_3_is_reported_at_step_3():
    def late(w, x, y, state):
        state["t"] = state.get("t", 0) + 1
        factor = 1.1 if state["t"] >= 3 else 1.0
        return {"w": w - factor * LR * grad_least_squares(w, x, y)}

    report = check_step(declare(late, state=dict), point())
    assert (report.verdict, report.step, report.parameter) == ("fail", 3, "w")
    assert "taken from the same parameters; steps 1-2 agreed" in str(report)


def two_factor_loss(u, v, x, y):
    return ((x @ u @ v - y) ** 2).sum()


def two_factor_grads(u, v, x, y):
    residual = 2.0 * (x @ u @ v - y)  # d/d(out) of the sum of squares
    return x.T @ residual @ v.T, (x @ u).T @ residual


def declare_two_factor(step: Any, **options: Any) -> TrainingStep:
    return declare(
        step,
        name="two_factor",
        loss=two_factor_loss,
        params={"u": ("D", "H"), "v": ("H", 1)},
        dims={"N": (1, 6), "D": (1, 4), "H": (1, 4)},
        bounds=None,
        **options,
    )


def two_factor_point() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "u": rng.uniform(-1, 1, (3, 2)),
        "v": rng.uniform(-1, 1, (2, 1)),
        "x": rng.uniform(-1, 1, (4, 3)),
        "y": rng.uniform(-1, 1, (4, 1)),
    }


def test_updating_v_then_back_propagating_through_it_is_diagnosed():
    def stale(u, v, x, y):
        residual = 2.0 * (x @ u @ v - y)
        v = v - LR * (x @ u).T @ residual
        return {"u": u - LR * x.T @ residual @ v.T, "v": v}  # v is already the new one

    report = check_step(declare_two_factor(stale), two_factor_point())
    assert (report.verdict, report.step, report.parameter) == ("fail", 1, "u")
    assert [p.parameter for p in report.problems] == ["u"]  # v's update is right
    assert report.diagnoses == (
        "the update of 'u' is what back-propagating through the already updated 'v' gives: "
        "'v' was changed before the gradient of 'u' was computed from it. Compute every "
        "gradient first, then update the parameters.",
    )


def test_recomputing_the_loss_after_updating_v_is_diagnosed():
    def sequential(u, v, x, y):
        v = v - LR * two_factor_grads(u, v, x, y)[1]
        return {"u": u - LR * two_factor_grads(u, v, x, y)[0], "v": v}

    report = check_step(declare_two_factor(sequential), two_factor_point())
    assert (report.step, report.parameter) == (1, "u")
    assert "is the reference's at the already updated 'v'" in report.diagnoses[0]


def test_gradients_that_are_never_zeroed_are_diagnosed_at_step_2():
    def accumulating(w, x, y, state):
        state["grad"] = state.get("grad", 0.0) + grad_least_squares(w, x, y)
        return {"w": w - LR * state["grad"]}

    report = check_step(declare(accumulating, state=dict), point())
    assert (report.verdict, report.step, report.parameter) == ("fail", 2, "w")
    assert "with the gradient of step 1 still added" in report.diagnoses[0]


def test_the_reference_steps_come_from_the_minibatches_of_a_dataloader():
    seen: list[int] = []

    def recording(w, x, y):
        seen.append(len(x))
        return hand_sgd(w, x, y)

    report = check_step(declare(recording, batch_size=3), point(n=7), steps=7)
    assert report.verdict == "pass"
    assert seen == [3, 3, 1, 3, 3, 1, 3]  # DataLoader(batch_size=3) over 7 rows, epoch after epoch


def test_a_step_that_takes_full_batches_fails_a_minibatch_declaration():
    data = point(n=6)

    def full_batch(w, x, y):  # ignores its minibatch: trains on all the data every step
        return hand_sgd(w, data["x"], data["y"])

    report = check_step(declare(full_batch, batch_size=2), data)
    assert (report.verdict, report.step) == ("fail", 1)


# -- every way a step can be malformed is named --------------------------------------------


def _raises(w, x, y):
    raise RuntimeError("shapes do not align")


@pytest.mark.parametrize(
    ("step", "kind", "fragment"),
    [
        (_raises, "raised", "step 1 of 100: the step raised RuntimeError: shapes do not align"),
        (lambda w, x, y: [w], "returned", "the step returned list; it must return a mapping"),
        (lambda w, x, y: {"W": w}, "missing", "returned no new value for 'w' (it returned: W)"),
        (lambda w, x, y: {"w": w[:, 0]}, "shape", "size-1 dims were dropped (.squeeze()"),
        (lambda w, x, y: {"w": w.astype(np.float32)}, "dtype", "has dtype float32"),
        (lambda w, x, y: {"w": w * np.nan}, "non_finite", "holds NaN or inf"),
        (lambda w, x, y: {"w": "w"}, "type", "the new 'w' is a str"),
    ],
    ids=["a raise", "a list", "a misspelled key", "a squeeze", "float32", "NaN", "a string"],
)
def test_a_malformed_step_fails_with_its_problem_named(step, kind, fragment):
    report = check_step(declare(step), point())
    assert report.verdict == "fail"
    assert report.problems[0].kind == kind
    assert fragment in str(report)


def test_a_step_that_writes_into_its_batch_is_caught():
    def normalizing(w, x, y):
        x /= np.abs(x).max()  # in place: a loop reusing the batch would see this
        return hand_sgd(w, x, y)

    report = check_step(declare(normalizing), point())
    assert report.problems[0].kind == "mutated"
    assert "modified its batch input 'x' in place" in str(report)


def test_in_place_updates_are_allowed_and_the_callers_arrays_stay_untouched():
    def in_place(w, x, y):
        w -= LR * grad_least_squares(w, x, y)
        return {"w": w}

    given = point()
    pristine = {k: v.copy() for k, v in given.items()}
    assert check_step(declare(in_place), given).verdict == "pass"
    for name, value in given.items():
        np.testing.assert_array_equal(value, pristine[name])


def test_a_learning_rate_too_large_for_the_point_is_an_error_not_a_verdict():
    def huge(w, x, y):
        return {"w": w - 10.0 * grad_least_squares(w, x, y)}

    report = check_step(declare(huge, optimizer=sgd(lr=10.0)), point(), steps=500)
    assert report.verdict == "error"
    assert report.problems[0].kind == "diverged"
    assert "the reference diverged" in str(report)


def relu_sum(w, x, y):
    return (torch.relu(w) * x).sum() + 0 * y.sum()


def test_a_step_at_a_kink_is_inconclusive_whichever_subgradient_it_takes():
    def other_convention(w, x, y):  # relu'(0) = 1, where torch takes 0
        return {"w": w - LR * (w >= 0) * x}

    declaration = declare(
        other_convention, loss=relu_sum, params={"w": ("D",)}, batch={"x": ("D",), "y": ()},
        dims=None, bounds=None,
    )  # fmt: skip
    at_kink = {"w": np.array([0.0, 0.5]), "x": np.array([1.0, 2.0]), "y": np.array(0.0)}
    report = check_step(declaration, at_kink)
    assert (report.verdict, report.step, report.parameter) == ("inconclusive", 1, "w")
    assert "only where the spec loss is not differentiable" in str(report)
    off_kink = {**at_kink, "w": np.array([-0.5, 0.5])}
    assert check_step(declaration, off_kink).verdict == "pass"


# -- the search ------------------------------------------------------------------------------


def test_verify_step_shrinks_a_wrong_step_to_one_sample_and_one_feature():
    def halved(w, x, y):
        return {"w": w - LR / 2 * grad_least_squares(w, x, y)}

    report = verify_step(declare(halved), max_examples=search_budget(), seed=1)
    assert (report.verdict, report.step, report.parameter) == ("fail", 1, "w")
    assert report.example is not None and report.example.dims == {"N": 1, "D": 1}
    assert report.reproduce is not None and "seed=1" in report.reproduce
    again = verify_step(declare(halved), max_examples=search_budget(), seed=1)
    assert again.example is not None
    for name, value in report.example.inputs.items():
        np.testing.assert_array_equal(again.example.inputs[name], value)


def test_assert_step_matches_raises_an_assertion_error_with_the_report():
    def halved(w, x, y):
        return {"w": w - LR / 2 * grad_least_squares(w, x, y)}

    with pytest.raises(TrainingMismatch) as caught:
        assert_step_matches(declare(halved), point())
    assert isinstance(caught.value, AssertionError)
    assert "step 1 of 100: the update of 'w' differs" in str(caught.value)
    assert assert_step_matches(declare(hand_sgd), point(), steps=10).ok


# -- arguments are validated where they enter ----------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"batch": {"w": ("N",), "y": ("N", 1)}}, "'w' is in both params and batch"),
        ({"batch": {"state": ("N",)}}, "'state' is reserved"),
        ({"params": {}}, "params is empty"),
        ({"backend": "jax"}, "backend='jax' is not one of"),
        ({"dims": {"M": (1, 3)}}, "TrainingStep 'least_squares': dims names 'M'"),
        ({"state": 3}, "state=3 must be a zero-argument callable"),
        ({"batch_size": 2, "batch": {"x": ("N", "D"), "y": ("M", 1)}}, "must share one"),
        ({"optimizer": sgd(lr={"v": 0.1})}, "missing w; not a parameter: v"),
    ],
    ids=[
        "a name in params and batch",
        "the reserved name state",
        "no params",
        "an unknown backend",
        "a dim no shape uses",
        "a state that is not callable",
        "minibatches of inputs with different first dims",
        "a per-parameter lr naming the wrong parameter",
    ],
)
def test_a_malformed_declaration_is_rejected_naming_the_fix(options, fragment):
    with pytest.raises(DerivationError if "optimizer" not in options else ValueError) as caught:
        declare(hand_sgd, **options)
    assert fragment in str(caught.value)


def test_an_optimizer_that_is_not_a_spec_is_a_type_error_naming_sgd():
    with pytest.raises(TypeError, match=r"optimizer=sgd\(lr=...\)"):
        declare(hand_sgd, optimizer=torch.optim.SGD)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: sgd(lr=0), "lr=0 must be a finite number > 0"),
        (lambda: sgd(lr=float("nan")), "lr=nan must be a finite number > 0"),
        (lambda: sgd(lr=0.1, momentum=-1), "sgd(momentum=-1): must be a finite number >= 0"),
        (lambda: adam(lr=0.1, betas=(0.9, 1.0)), "adam(betas=(0.9, 1.0)): must be a pair"),
        (lambda: OptimizerSpec(torch.nn.Linear, lr=0.1), "must be a torch.optim.Optimizer"),
        (lambda: OptimizerSpec(torch.optim.SGD, lr=0.1, options={"lr": 1}), "other than lr"),
    ],
    ids=["a zero lr", "a NaN lr", "negative momentum", "beta2 of 1", "a module", "lr twice"],
)
def test_optimizer_arguments_are_validated(make, fragment):
    with pytest.raises((ValueError, TypeError)) as caught:
        make()
    assert fragment in str(caught.value)


def test_check_step_validates_steps_inputs_and_device():
    declaration = declare(hand_sgd)
    with pytest.raises(ValueError, match="steps=0 must be an int >= 1"):
        check_step(declaration, point(), steps=0)
    with pytest.raises(DerivationError, match="inputs must hold exactly w, x, y; missing y"):
        check_step(declaration, {k: v for k, v in point().items() if k != "y"})
    with pytest.raises(DerivationError, match=r"dim 'N' is 5 in inputs\['x'\] but 4"):
        check_step(declaration, {**point(), "y": np.zeros((4, 1))})
    with pytest.raises(ValueError, match="backend='numpy', which runs on the CPU"):
        check_step(declaration, point(), device="cuda")
    with pytest.raises(TypeError, match=r"expected a gradcheck\.training\.TrainingStep"):
        check_step(hand_sgd, point())  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_is_refused_naming_the_fix():
    declaration = declare(lambda w, x, y: {"w": w}, backend="torch")
    with pytest.raises(ValueError, match=r"torch.cuda.is_available\(\) is False; use device='cpu'"):
        check_step(declaration, point(), device="cuda")


def test_a_spec_loss_that_is_not_scalar_is_a_declaration_error():
    declaration = declare(hand_sgd, loss=lambda w, x, y: (x @ w - y) ** 2)
    with pytest.raises(DerivationError, match="it must return the scalar loss"):
        check_step(declaration, point())


def test_a_spec_loss_that_raises_names_the_training_step_and_its_loss():
    declaration = declare(hand_sgd, loss=lambda w, x, y: w @ x)
    with pytest.raises(DerivationError, match="TrainingStep 'least_squares': loss raised"):
        check_step(declaration, point())
