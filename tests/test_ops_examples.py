"""The examples (examples/): each real-style custom gradient passes as written, and its
planted bug fails the check its docstring names."""

from __future__ import annotations

import importlib

import pytest

from gradcheck import verify
from gradcheck.cli import main

EXAMPLES = {
    "rms_norm_op": "a custom op whose fake kernel is transposed",
    "bias_gelu_op": "a custom op with the tanh-GeLU's backward",
    "swiglu_op": "a custom op whose vmap rule misplaces the batch dim",
    "sparsemax": "sparsemax centring over the whole row",
    "softmax_lse": "softmax and logsumexp that use a None gradient",
    "pairwise_distance": "distances whose backward views grad_output",
    "fused_cross_entropy": "cross-entropy scaling its saved gradient in place",
    "mish": "mish with a square dropped from its slope",
    "layer_norm": "layer norm without once_differentiable",
    "bilinear": "a bilinear form whose weight gradient ignores grad_output",
}


@pytest.mark.parametrize("name", EXAMPLES, ids=list(EXAMPLES.values()))
def test_each_example_passes_as_written_and_its_planted_bug_fails_the_check_it_names(name):
    example = importlib.import_module(f"examples.{name}")
    correct = verify(example.correct, max_examples=10, seed=0)
    assert correct.verdict == "pass", str(correct)
    planted = verify(example.planted, max_examples=10, seed=0)
    assert planted.verdict == "fail"
    assert example.CAUGHT_BY in {p.kind for p in planted.problems}, str(planted)


def test_an_example_is_verified_from_the_command_line(capsys):
    code = main(["verify", "examples/fused_cross_entropy.py:planted", "--seed", "0",
                 "--max-examples", "10"])  # fmt: skip
    assert code == 1
    assert "[logits] reentrant:" in capsys.readouterr().out
