"""Beyond single gradients: check hand-written training steps and models against their spec.

- ``TrainingStep`` + ``check_step`` / ``verify_step``: does a hand-written update do what
  torch autograd and a torch optimizer (``sgd``, ``adam``) would do, step after step?
- ``ModelSpec`` + ``check_model`` / ``verify_model``: does a ``torch.nn.Module`` compute the
  function its spec says, with its parameters mapped by name?
- ``method_step``: a numpy training class whose methods update its weights in place
  (seed 004's ``SimpleReLUNN``), as a ``TrainingStep`` held to plain SGD, in one line.
- ``gradcheck.training.systems``: the seed notebooks' training systems, rewritten and verified.

>>> import numpy as np
>>> from gradcheck.training import TrainingStep, check_step, sgd
>>> def hand(w, x, y):
...     return {"w": w - 0.01 * 2 * x.T @ (x @ w - y)}
>>> declaration = TrainingStep(
...     name="least_squares", step=hand, loss=lambda w, x, y: ((x @ w - y) ** 2).sum(),
...     params={"w": ("D", 1)}, batch={"x": ("N", "D"), "y": ("N", 1)},
...     optimizer=sgd(lr=0.01))
>>> check_step(declaration, {"w": np.zeros((2, 1)), "x": np.eye(2), "y": np.ones((2, 1))}).ok
True
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
