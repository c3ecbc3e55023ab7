"""verify's progress bar inside Jupyter, driven through a stand-in for IPython's display."""

from __future__ import annotations

import sys
import types

import pytest

from gradcheck import verify
from gradcheck.progress import notebook_progress
from tests.test_display import _relu, relu_backward, relu_mask_from_gradient


class _Handle:
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    def update(self, bundle, raw=False):
        self.log.append(("update", bundle["text/plain"]))


@pytest.fixture
def jupyter(monkeypatch):
    """A fake IPython inside a kernel; yields the log of what was displayed."""
    log: list[tuple[str, str]] = []

    def display(bundle, raw=False, display_id=False):
        assert raw and display_id and "<progress" in bundle["text/html"]
        log.append(("display", bundle["text/plain"]))
        return _Handle(log)

    shell = types.SimpleNamespace(kernel=object())
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    ipython_display = types.ModuleType("IPython.display")
    ipython_display.display = display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)
    monkeypatch.setattr("gradcheck.progress.REFRESH_S", 0.0)
    return log


def test_verify_in_a_notebook_shows_one_bar_that_ends_with_the_verdict(jupyter):
    report = verify(_relu(relu_backward), max_examples=4, seed=0)
    assert report.verdict == "pass"
    assert [kind for kind, _ in jupyter].count("display") == 1
    assert jupyter[0][1].startswith("relu_step: 0 examples, searching")
    assert "relu_step: 4 examples, searching" in jupyter[-2][1]
    assert jupyter[-1][1].startswith("relu_step: 4 examples, PASS")


def test_a_failing_verify_bar_ends_with_fail(jupyter):
    verify(_relu(relu_mask_from_gradient), max_examples=4, seed=0)
    assert ", FAIL (" in jupyter[-1][1]


def test_a_progress_callback_replaces_the_notebook_bar(jupyter):
    seen: list[int] = []
    verify(_relu(relu_backward), max_examples=3, seed=0, progress=seen.append)
    assert seen[-1] == 3 and jupyter == []


def test_no_bar_outside_a_kernel(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert notebook_progress("x", 10) is None
    plain = types.ModuleType("IPython")
    plain.get_ipython = lambda: None  # type: ignore[attr-defined]  # IPython imported, no shell
    monkeypatch.setitem(sys.modules, "IPython", plain)
    assert notebook_progress("x", 10) is None
    terminal = types.ModuleType("IPython")
    terminal.get_ipython = lambda: types.SimpleNamespace()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", terminal)  # the terminal IPython: no kernel
    assert notebook_progress("x", 10) is None
