"""Beyond single gradients: check hand-written training steps and models against their spec.

- ``TrainingStep`` + ``check_step`` / ``verify_step``: does a hand-written update do what
  torch autograd and a torch optimizer (``sgd``, ``adam``) would do, step after step?
- ``ModelSpec`` + ``check_model`` / ``verify_model``: does a ``torch.nn.Module`` compute the
  function its spec says, with its parameters mapped by name?
- ``method_step``: a numpy training class whose methods update its weights in place
  (seed 004's ``SimpleReLUNN``), as a ``TrainingStep`` held to plain SGD, in one line.
- ``gradcheck.training.systems``: the seed notebooks' training systems, rewritten and verified.

Seed 001's mask taken from the gradient, caught in the first step of a training loop
(``check_step`` documents how to declare a step of your own):

>>> from gradcheck.training import check_step
>>> from gradcheck.training.systems import SYSTEMS, bugs
>>> start = next(s for s in SYSTEMS if s.name == "numpy_hand_sgd").start(0)
>>> report = check_step(bugs.SEED001_WRONG_MASK, start, steps=3)
>>> report.verdict, report.step
('fail', 1)
"""

from __future__ import annotations

from gradcheck.training.classes import method_step
from gradcheck.training.models import ModelSpec, assert_model_matches, check_model, verify_model
from gradcheck.training.optimizers import OptimizerSpec, adam, sgd
from gradcheck.training.report import LossCurves, TrainingMismatch, TrainingReport
from gradcheck.training.steps import TrainingStep, assert_step_matches, check_step, verify_step

__all__ = [
    "LossCurves",
    "ModelSpec",
    "OptimizerSpec",
    "TrainingMismatch",
    "TrainingReport",
    "TrainingStep",
    "adam",
    "assert_model_matches",
    "assert_step_matches",
    "check_model",
    "check_step",
    "method_step",
    "sgd",
    "verify_model",
    "verify_step",
]
