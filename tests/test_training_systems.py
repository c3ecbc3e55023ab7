"""The seed training systems: each one agrees with autograd + its torch optimizer over 100
float64 steps, and each seed bug is caught with the diagnosis asserted.

The seed-systems figures of docs/training.md come from `python -m gradcheck.training.systems`,
which runs the same checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import settings

from gradcheck.training import check_model, check_step, verify_model, verify_step
from gradcheck.training.systems import SYSTEMS, SeedSystem, bugs, modules, scalar, two_layer

STEPS = 100
# The searches vary shapes and starting points; 100 steps from each is what the canonical
# check above does, and 30 already turn every DataLoader over ten epochs and every Adam state.
SEARCH_STEPS = 30
# Losses along the hand's trajectory and along a reference trajectory run on its own agree to
# ~1e-15 (measured); 1e-9 is the bar and still sees a bug in the ninth digit.
AGREEMENT = 1e-9


def search_budget() -> int:
    """A tenth of the active profile's examples, at least 3: each runs 100 steps."""
    return max(3, settings().max_examples // 10)


def _reads(system: SeedSystem) -> str:
    return f"{system.name} matches {system.step.optimizer.cls.__name__}"


@pytest.mark.parametrize("system", SYSTEMS, ids=_reads)
def test_each_seed_system_agrees_with_autograd_and_its_optimizer_over_100_steps(system):
    report = check_step(system.step, system.start(0), steps=STEPS)
    assert report.verdict == "pass", str(report)
    assert report.curves is not None and len(report.curves.hand) == STEPS
    assert report.curves.agreement <= AGREEMENT
    assert report.curves.parameter_agreement <= AGREEMENT
    assert report.curves.hand[-1] < 0.9 * report.curves.hand[0]  # it trained


@pytest.mark.parametrize("system", SYSTEMS, ids=_reads)
def test_each_seed_system_passes_a_search_of_shapes_and_starting_points(system):
    report = verify_step(system.step, steps=SEARCH_STEPS, max_examples=search_budget(), seed=0)
    assert report.verdict == "pass", str(report)


@pytest.mark.parametrize(
    "system", [s for s in SYSTEMS if s.spec is not None], ids=lambda s: f"{s.name}'s module"
)
def test_each_seed_module_computes_its_spec(system):
    torch.manual_seed(0)
    assert system.module is not None and system.spec is not None
    report = verify_model(system.module(system.sizes), system.spec, max_examples=20, seed=0)
    assert report.verdict == "pass", str(report)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_hand_sgd_on_cuda_agrees_with_the_cpu_reference():
    system = next(s for s in SYSTEMS if "cuda" in s.devices)
    report = check_step(system.step, system.start(0), steps=STEPS, device="cuda")
    assert report.verdict == "pass", str(report)
    assert report.curves is not None and report.curves.agreement <= AGREEMENT


# -- the seed bugs, must fail with their diagnosis ---------------------------------------


def test_seed004_stale_w2_parts_at_step_1_on_w1_and_is_diagnosed():
    start = SYSTEMS[0].start(0)
    report = check_step(bugs.SEED004_STALE_W2, start, steps=STEPS)
    assert (report.verdict, report.step, report.parameter) == ("fail", 1, "w1")
    assert [p.parameter for p in report.problems] == ["w1"]  # w2's own update is right
    text = str(report)
    assert (
        "[w1] mismatch: step 1 of 100: the update of 'w1' differs from torch.optim.SGD(lr=0.001)"
        in text
    )
    assert "Mismatched elements: 30 / 30 (100.0%)" in text
    assert report.diagnoses == (
        "the update of 'w1' is what back-propagating through the already updated 'w2' gives: "
        "'w2' was changed before the gradient of 'w1' was computed from it. Compute every "
        "gradient first, then update the parameters.",
    )
    # The same class with the order fixed passes from the same start.
    assert check_step(two_layer.SIMPLE_RELU_NN, start, steps=STEPS).verdict == "pass"


def test_seed004_stale_w2_is_found_by_search_and_shrunk_to_a_single_unit():
    report = verify_step(
        bugs.SEED004_STALE_W2, steps=SEARCH_STEPS, max_examples=search_budget(), seed=0
    )
    assert (report.verdict, report.step, report.parameter) == ("fail", 1, "w1")
    assert report.example is not None
    assert report.example.dims == {"D_in": 1, "H": 1, "D_out": 1, "N": 1}
    assert "back-propagating through the already updated 'w2'" in report.diagnoses[0]


def test_seed000_forward_bug_fails_the_model_check_saying_the_forward_differs():
    torch.manual_seed(0)
    report = verify_model(bugs.Seed000TwoLayerNet(3, 4, 2), modules.NET_SPEC, seed=0)
    assert (report.verdict, report.parameter) == ("fail", "output")
    assert "the module's forward differs from the spec" in str(report)
    assert report.example is not None and report.example.dims == {"N": 1}
    # At the module's own initial weights and a plain input, too.
    at_init = check_model(
        bugs.Seed000TwoLayerNet(3, 4, 2), modules.NET_SPEC, {"x": np.ones((4, 3))}
    )
    assert "the module's forward differs from the spec" in str(at_init)
    # The module as meant passes.
    assert verify_model(modules.TwoLayerNet(3, 4, 2), modules.NET_SPEC, seed=0).verdict == "pass"


def test_seed000_forward_bug_also_fails_the_step_check_where_a_unit_is_off():
    system = next(s for s in SYSTEMS if s.name == "custom_module_adam")
    report = check_step(bugs.SEED000_H_NOT_RELU_ADAM, system.start(0), steps=STEPS)
    assert (report.verdict, report.step) == ("fail", 1)


def test_seed002_if_a_grad_keeps_bs_old_gradient_after_a_zero_minibatch():
    report = check_step(bugs.SEED002_IF_GRAD, bugs.SEED002_ZERO_BATCH, steps=STEPS)
    assert (report.verdict, report.step, report.parameter) == ("fail", 2, "b")
    assert [p.parameter for p in report.problems] == ["b"]
    assert "step 2 of 100: the update of 'b' differs" in str(report)
    assert "with the gradient of step 1 still added" in report.diagnoses[0]
    fixed = check_step(scalar.LINEAR_DATALOADER, bugs.SEED002_ZERO_BATCH, steps=STEPS)
    assert fixed.verdict == "pass", str(fixed)


def test_seed001_mask_from_the_gradient_fails_at_step_1_on_w1():
    report = check_step(bugs.SEED001_WRONG_MASK, SYSTEMS[0].start(0), steps=STEPS)
    assert (report.verdict, report.step, report.parameter) == ("fail", 1, "w1")
    assert [p.parameter for p in report.problems] == ["w1"]


def test_system_starting_points_are_reproducible_and_within_bounds():
    system = SYSTEMS[0]
    first, again = system.start(0), system.start(0)
    for name, value in first.items():
        np.testing.assert_array_equal(value, again[name])
        low, high = system.step.derivation.input_bounds[name]
        assert low <= value.min() and value.max() <= high
