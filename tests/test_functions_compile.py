"""Issue 21, goal 2: the optional compile check, forward and gradients under
torch.compile(fullgraph=True) against eager, and 'not run' with the reason where it cannot."""

from __future__ import annotations

import pytest
import torch

from gradcheck import function_derivation, verify
from gradcheck.functions import compiled


class Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


class TanhWithItem(torch.autograd.Function):
    """Right eagerly, but .item() in the forward breaks the graph: no fullgraph compile."""

    @staticmethod
    def forward(ctx, x):
        scale = 1.0 + 0.0 * float(x.abs().max().item())
        y = torch.tanh(x) * scale
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


def _declared(function, checks=("backward", "compile")):
    return function_derivation(
        function, spec=torch.tanh, shapes={"x": ("N",)}, wrt=["x"], checks=checks
    )


@pytest.mark.skipif(compiled.compile_unavailable() is not None, reason="no torch.compile here")
def test_a_function_that_compiles_to_what_it_computes_eagerly_passes():
    report = verify(_declared(Tanh), seed=0, max_examples=4)
    assert report.verdict == "pass", report
    assert not any("compile" in note for note in report.notes), report.notes


@pytest.mark.skipif(compiled.compile_unavailable() is not None, reason="no torch.compile here")
def test_a_graph_break_in_the_forward_fails_the_compile_check_only():
    report = verify(_declared(TanhWithItem), seed=0, max_examples=4)
    assert report.verdict == "fail"
    (problem,) = report.problems
    assert problem.kind == "compile"
    assert "TanhWithItem.apply does not run under torch.compile(fullgraph=True)" in problem.message
    # without the compile check the same Function passes: only this check catches it
    assert verify(_declared(TanhWithItem, ("backward",)), seed=0, max_examples=4).ok


def test_compile_is_not_run_unless_asked_for():
    report = verify(_declared(Tanh, ("backward",)), seed=0, max_examples=3)
    assert report.ok and not any(note.startswith("compile") for note in report.notes)


def test_without_a_cpp_compiler_the_report_says_compile_not_run_and_why(monkeypatch):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    report = verify(_declared(Tanh), seed=0, max_examples=3)
    assert report.ok
    assert any(note.startswith("compile: not run: no C++ compiler found") for note in report.notes)
