"""The reference optimizers a hand-written step is held to: torch's own, described as data.

An ``OptimizerSpec`` names a ``torch.optim`` class and its options; the step check builds a
fresh instance for every trajectory over float64 copies of the parameters, so the reference
never shares state with the code it checks. ``lr`` may differ per parameter (the seeds train
slopes at 1e-4 and intercepts at 1e-3); each parameter then gets its own param group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

__all__ = ["OptimizerSpec", "adam", "sgd"]


def _positive(argument: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{argument}={value!r} must be a finite number > 0, e.g. {argument}=1e-3.")
    return float(value)


def _lr(value: Any) -> float | Mapping[str, float]:
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(
                "lr={} is empty; give one float for every parameter, or a mapping "
                "{parameter name: lr} that names each parameter."
            )
        return MappingProxyType({str(k): _positive(f"lr[{k!r}]", v) for k, v in value.items()})
    return _positive("lr", value)


@dataclass(frozen=True)
class OptimizerSpec:
    """A ``torch.optim`` class with its options: ``build`` makes a fresh instance.

    Example::

        OptimizerSpec(torch.optim.RMSprop, lr=1e-3, options={"alpha": 0.9})
    """

    cls: type[torch.optim.Optimizer]
    lr: float | Mapping[str, float]
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.cls, type) and issubclass(self.cls, torch.optim.Optimizer)):
            raise TypeError(
                f"OptimizerSpec cls={self.cls!r} must be a torch.optim.Optimizer subclass, "
                "e.g. torch.optim.SGD."
            )
        if not isinstance(self.options, Mapping) or "lr" in self.options:
            raise ValueError(
                f"OptimizerSpec options={self.options!r} must be a mapping of keyword "
                "options other than lr (lr is its own argument)."
            )
        object.__setattr__(self, "lr", _lr(self.lr))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def check_names(self, parameters: Sequence[str], owner: str) -> None:
        """A per-parameter ``lr`` must name exactly the parameters of ``owner``."""
        if not isinstance(self.lr, Mapping):
            return
        missing = [p for p in parameters if p not in self.lr]
        extra = [p for p in self.lr if p not in parameters]
        if missing or extra:
            raise ValueError(
                f"{owner}: optimizer lr={dict(self.lr)!r} must name every parameter "
                f"({', '.join(parameters)})"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; not a parameter: {', '.join(extra)}" if extra else "")
                + "."
            )

    def build(self, parameters: Mapping[str, torch.Tensor]) -> torch.optim.Optimizer:
        """A fresh optimizer over ``parameters`` (leaf tensors, in declaration order)."""
        make: Callable[..., torch.optim.Optimizer] = self.cls
        if isinstance(self.lr, Mapping):
            groups = [{"params": [t], "lr": self.lr[name]} for name, t in parameters.items()]
            return make(groups, **self.options)
        return make(list(parameters.values()), lr=self.lr, **self.options)

    def __str__(self) -> str:
        lr = dict(self.lr) if isinstance(self.lr, Mapping) else self.lr
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"torch.optim.{self.cls.__name__}(lr={lr!r}{options})"


def sgd(
    *, lr: float | Mapping[str, float], momentum: float = 0.0, weight_decay: float = 0.0
) -> OptimizerSpec:
    """Plain gradient descent, ``p -= lr * grad`` (with momentum/weight decay if given).

    >>> str(sgd(lr=1e-3))
    'torch.optim.SGD(lr=0.001)'
    """
    options: dict[str, Any] = {}
    for name, value in (("momentum", momentum), ("weight_decay", weight_decay)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and value >= 0)
        ):
            raise ValueError(f"sgd({name}={value!r}): must be a finite number >= 0.")
        if value:
            options[name] = float(value)
    return OptimizerSpec(torch.optim.SGD, lr=lr, options=options)


def adam(
    *,
    lr: float | Mapping[str, float],
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> OptimizerSpec:
    """Adam with bias correction, as ``torch.optim.Adam`` computes it.

    >>> str(adam(lr=1e-4))
    'torch.optim.Adam(lr=0.0001)'
    """
    ok = (
        isinstance(betas, tuple | list)
        and len(betas) == 2
        and all(isinstance(b, int | float) and 0 <= b < 1 for b in betas)
    )
    if not ok:
        raise ValueError(
            f"adam(betas={betas!r}): must be a pair of numbers in [0, 1), e.g. (0.9, 0.999)."
        )
    _positive("eps", eps)
    options: dict[str, Any] = {}
    if tuple(betas) != (0.9, 0.999):
        options["betas"] = (float(betas[0]), float(betas[1]))
    if eps != 1e-8:
        options["eps"] = float(eps)
    return OptimizerSpec(torch.optim.Adam, lr=lr, options=options)
