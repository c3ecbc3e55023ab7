"""The harness around the verdicts never dies, hangs or misleads: exits and interrupts,
time limits, names, notes, warnings, locations (issue 10), and the library side of them."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from gradcheck import Derivation, check, verify
from gradcheck.derivation import DerivationError
from gradcheck.guard import validated_deadline
from gradcheck.targets import TargetError, duplicate_names, find_derivations


def square(x):
    return (x**2).sum()


def _square(backward, name="square"):
    return Derivation(name=name, forward=square, backward=backward, shapes={"x": ("N",)}, wrt=["x"])


def exits(x):
    sys.exit(3)


def loops_forever(x):
    while True:
        pass


def test_a_backward_that_calls_sys_exit_fails_its_derivation_and_the_search_goes_on():
    report = verify(_square(exits), max_examples=5, seed=0)
    assert report.verdict == "fail"
    assert "backward called sys.exit(3)" in str(report)
    assert "test_harness.py" in str(report)  # located in the user's backward


def test_a_correct_backward_passes_under_the_same_guard():
    assert verify(_square(lambda x: {"x": 2 * x}), max_examples=5, seed=0).verdict == "pass"


def test_a_forward_that_calls_sys_exit_is_a_declaration_error_not_an_exit():
    def forward(x):
        sys.exit(4)

    derivation = Derivation(
        name="f", forward=forward, backward=lambda x: {"x": x}, shapes={"x": ("N",)}, wrt=["x"]
    )
    with pytest.raises(DerivationError, match=r"forward called sys.exit\(4\)"):
        check(derivation, {"x": np.ones(2)})


def test_a_backward_that_never_returns_fails_with_a_timeout_and_the_time_taken():
    report = verify(_square(loops_forever), max_examples=5, seed=0, deadline=0.3)
    assert report.verdict == "fail"
    assert [p.kind for p in report.problems] == ["timeout"]
    message = report.problems[0].message
    assert "the backward took" in message and "past the deadline of 0.3 s per call" in message


def test_check_takes_a_deadline_too():
    report = check(_square(loops_forever), {"x": np.ones(2)}, deadline=0.2)
    assert report.verdict == "fail" and report.problems[0].kind == "timeout"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "60", True], ids=repr)
def test_a_bad_deadline_names_the_argument(bad):
    with pytest.raises(ValueError, match=r"deadline=.* must be a positive number of seconds"):
        validated_deadline(bad)


def test_extra_keys_returned_by_a_backward_keep_their_note_in_verify():
    report = verify(_square(lambda x: {"x": 2 * x, "bias": x}), max_examples=3, seed=0)
    assert report.verdict == "pass"
    assert any("also returned 'bias', not in wrt" in note for note in report.notes)
    assert "also returned 'bias'" in str(report)


def test_warnings_from_user_code_are_collected_once_not_flooded():
    def overflowing(x):
        np.exp(np.full(2, 1000.0))
        return {"x": 2 * x}

    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        report = verify(_square(overflowing), max_examples=10, seed=0)
    assert not [w for w in leaked if "overflow" in str(w.message)]
    notes = [note for note in report.notes if "overflow encountered in exp" in note]
    assert len(notes) == 1
    assert "RuntimeWarning" in notes[0] and "times" in notes[0]


def test_a_crash_inside_numpy_is_located_in_the_users_file():
    def backward(x):
        return {"x": np.sum(x, axis=3)}

    report = check(_square(backward), {"x": np.ones(2)})
    message = report.problems[0].message
    assert "AxisError" in message
    assert "test_harness.py" in message and "in backward)" in message
    assert "fromnumeric" not in message


def test_the_slow_search_warning_says_the_estimate_and_how_to_bound_it():
    from gradcheck.runner import slow_search_warning

    text = slow_search_warning("conv", 3.0, 100, option="--max-examples")
    assert "conv: one example took 3.0 s, so 100 examples will take about 5 min" in text
    assert "fewer examples (--max-examples 3)" in text and "smaller dims" in text


# ---- targets: lists and dicts, names ---------------------------------------------------

TARGET = """
import torch
from gradcheck import Derivation

def square(x):
    return (x ** 2).sum()

def make(name):
    return Derivation(name=name, forward=square, backward=lambda x: {"x": 2 * x},
                      shapes={"x": ("N",)}, wrt=["x"])

alone = make("alone")
LAYERS = [make("in_list"), alone]
BY_NAME = {"k": make("in_dict")}
_MUTANTS = [make("private")]
"""


def test_module_level_lists_and_dicts_are_collected_with_their_own_names(tmp_path):
    path = tmp_path / "many.py"
    path.write_text(TARGET)
    found = find_derivations(str(path))
    assert [(f.variable, f.derivation.name) for f in found] == [
        ("alone", "alone"),
        ("LAYERS[0]", "in_list"),
        ("BY_NAME['k']", "in_dict"),
    ]
    assert [f.alone for f in found] == [
        f"{path}:alone",
        f"{path}:LAYERS.in_list",
        f"{path}:BY_NAME.in_dict",
    ]
    # each reproduce target names exactly one derivation
    for item in found:
        assert [f.derivation.name for f in find_derivations(item.alone)] == [item.derivation.name]


def test_two_derivations_with_one_name_are_named_by_their_variables(tmp_path):
    path = tmp_path / "twins.py"
    path.write_text(TARGET + "\nagain = make('alone')\n")
    clash = duplicate_names(find_derivations(str(path)))
    assert clash is not None
    assert "two Derivations are named 'alone': alone" in clash and "again" in clash


def test_a_sys_exit_at_import_is_a_target_error(tmp_path):
    path = tmp_path / "exits.py"
    path.write_text("import sys\nsys.exit(5)\n")
    with pytest.raises(TargetError, match=r"called sys.exit\(5\) while being imported"):
        find_derivations(str(path))


def test_torch_is_untouched_by_the_guard():
    # a timer left armed would interrupt whatever runs next
    import signal

    check(_square(lambda x: {"x": 2 * x}), {"x": np.ones(2)}, deadline=0.5)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert torch.ones(1).item() == 1.0


def test_a_forward_that_never_returns_times_out_too():
    def forward(x):
        while True:
            pass

    derivation = Derivation(
        name="f", forward=forward, backward=lambda x: {"x": x}, shapes={"x": ("N",)}, wrt=["x"]
    )
    report = check(derivation, {"x": np.ones(2)}, deadline=0.2)
    assert report.problems[0].kind == "timeout"
    assert "the forward took" in report.problems[0].message


def test_off_the_main_thread_a_late_return_still_fails():
    # no SIGALRM there: the call cannot be interrupted, but it is timed
    import threading
    import time

    def slow(x):
        time.sleep(0.3)
        return {"x": 2 * x}

    reports = []
    worker = threading.Thread(
        target=lambda: reports.append(check(_square(slow), {"x": np.ones(2)}, deadline=0.1))
    )
    worker.start()
    worker.join()
    assert reports[0].problems[0].kind == "timeout"


def test_the_builtins_reproduce_target_names_one_derivation():
    from gradcheck.runner import _builtins

    for found in _builtins():
        assert [f.derivation.name for f in find_derivations(found.alone)] == [found.derivation.name]


def test_the_slow_search_warning_needs_slow_examples_not_one_slow_moment():
    from gradcheck import runner

    clock = iter([0.0, 3.0, 4.5, 4.6, 4.7, 4.8])  # start, then after each example
    said: list[float] = []
    watch = runner.SlowWatch(said.append, clock=lambda: next(clock))
    for examples in range(1, 6):
        watch(examples)
    assert said == [1.5]  # the first (3 s, warm-up) is left out; then 1.5 s per example
    clock = iter([0.0, 0.1, 0.2, 0.3, 1.8, 1.9])  # one example of 1.5 s among 0.1 s ones
    quiet: list[float] = []
    watch = runner.SlowWatch(quiet.append, clock=lambda: next(clock))
    for examples in range(1, 6):
        watch(examples)
    assert quiet == []
