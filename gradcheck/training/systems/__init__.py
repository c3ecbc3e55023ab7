"""The seed notebooks' training systems, rewritten and verified.

Each ``SeedSystem`` is a ``TrainingStep`` (the loop body, held to autograd and the torch
optimizer it claims to be) with the seeds it comes from, the sizes of its canonical starting
point, and, for the ``nn.Module`` systems, the module and the ``ModelSpec`` it must compute.
``python -m gradcheck.training.systems`` checks them all and prints the table with the
measured agreement; ``tests/test_training_systems.py`` asserts the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from gradcheck.training.models import ModelSpec
from gradcheck.training.steps import TrainingStep
from gradcheck.training.systems import linear_stack, modules, scalar, two_layer

__all__ = ["SYSTEMS", "SeedSystem"]

ModuleFactory = Callable[[Mapping[str, int]], torch.nn.Module]


@dataclass(frozen=True)
class SeedSystem:
    """One seed training system: its step declaration and where it comes from."""

    step: TrainingStep
    seeds: str  # the seed notebooks it is taken from, e.g. "000, 001, 003"
    summary: str  # what it is, in a few words
    sizes: Mapping[str, int]  # the dims of the canonical starting point
    module: ModuleFactory | None = None  # the nn.Module it trains, at given dims
    spec: ModelSpec | None = None  # the function that module must compute
    devices: tuple[str, ...] = ("cpu",)

    @property
    def name(self) -> str:
        return self.step.name

    def start(self, seed: int = 0) -> dict[str, np.ndarray]:
        """A starting point at ``sizes``: every parameter and batch input drawn uniformly
        within its declared bounds."""
        rng = np.random.default_rng(seed)
        derivation = self.step.derivation
        return {
            name: rng.uniform(low, high, size=derivation.concrete_shape(name, self.sizes))
            for name, (low, high) in derivation.input_bounds.items()
        }


TWO_LAYER_SIZES = {"N": 8, "D_in": 6, "H": 5, "D_out": 3}
SCALAR_SIZES = {"N": 12}  # three minibatches of the DataLoader: 5, 5, 2
STACK_SIZES = {"N": 12, "D0": 2, "D1": 2, "D2": 2}  # the seed's 2-2-2-1 stack


def _sequential(sizes: Mapping[str, int]) -> torch.nn.Module:
    return modules.two_layer_sequential(sizes["D_in"], sizes["H"], sizes["D_out"])


def _net(sizes: Mapping[str, int]) -> torch.nn.Module:
    return modules.TwoLayerNet(sizes["D_in"], sizes["H"], sizes["D_out"])


def _bias_free_net(sizes: Mapping[str, int]) -> torch.nn.Module:
    return modules.BiasFreeTwoLayerNet(sizes["D_in"], sizes["H"], sizes["D_out"])


SYSTEMS: tuple[SeedSystem, ...] = (
    SeedSystem(two_layer.NUMPY_HAND_SGD, "000, 001, 003", "numpy, hand backward, SGD",
               TWO_LAYER_SIZES),
    SeedSystem(two_layer.TORCH_HAND_SGD, "000, 001, 003",
               "torch tensors, hand backward, in-place SGD", TWO_LAYER_SIZES,
               devices=("cpu", "cuda")),
    SeedSystem(two_layer.AUTOGRAD_MANUAL_SGD, "000, 001, 003",
               "autograd, manual update, grad.zero_()", TWO_LAYER_SIZES),
    SeedSystem(two_layer.MY_RELU_MANUAL_SGD, "000", "MyReLU autograd.Function, manual update",
               TWO_LAYER_SIZES),
    SeedSystem(two_layer.SIMPLE_RELU_NN, "004", "SimpleReLUNN class (bug fixed), SGD",
               TWO_LAYER_SIZES),
    SeedSystem(modules.SEQUENTIAL_MANUAL_SGD, "000, 001", "nn.Sequential, manual update",
               TWO_LAYER_SIZES, _sequential, modules.SEQUENTIAL_SPEC),
    SeedSystem(modules.SEQUENTIAL_OPTIM_SGD, "001", "nn.Sequential, optim.SGD",
               TWO_LAYER_SIZES, _sequential, modules.SEQUENTIAL_SPEC),
    SeedSystem(modules.SEQUENTIAL_ADAM, "000, 001", "nn.Sequential, optim.Adam",
               TWO_LAYER_SIZES, _sequential, modules.SEQUENTIAL_SPEC),
    SeedSystem(modules.CUSTOM_MODULE_ADAM, "000", "custom nn.Module TwoLayerNet, optim.Adam",
               TWO_LAYER_SIZES, _net, modules.NET_SPEC),
    SeedSystem(modules.BIAS_FREE_MODULE_ADAM, "004", "bias-free nn.Module, optim.Adam",
               TWO_LAYER_SIZES, _bias_free_net, modules.BIAS_FREE_SPEC),
    SeedSystem(scalar.LINEAR_DATALOADER, "002", "a*x+b, DataLoader, autograd, per-parameter lr",
               SCALAR_SIZES),
    SeedSystem(scalar.SCALAR_CHAIN_DATALOADER, "002",
               "scalar chain a2*(a1*x+b1)+b2, DataLoader, autograd", SCALAR_SIZES),
    SeedSystem(linear_stack.LINEAR_STACK_CAL_GRAD, "002",
               "3-layer linear stack, cal_grad-style layer VJP, DataLoader", STACK_SIZES),
)  # fmt: skip
