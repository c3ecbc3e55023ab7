"""Check a whole numpy model class of a course, with no glue code.

Courses' model classes keep their weights in ``model.params`` and compute the loss and every
gradient in one call, ``loss, grads = model.loss(X, y)``. ``course_model`` turns such a class
and a torch spec of its loss into a ``Derivation``: the weights are drawn like any input and
written into ``model.params``, the loss is compared with the spec's, and ``grads`` is matched
to the weights by name. ``standard_model`` does it for the course's own classes:

- ``"two_layer_net"`` (assignment 1): ``TwoLayerNet(input_size, hidden_size, output_size,
  std=1e-4)``, ``loss(X, y=None, reg=0.0)``; affine, ReLU, affine, softmax loss.
- ``"fully_connected_net"`` (assignment 2): ``FullyConnectedNet(hidden_dims, input_dim=...,
  num_classes=..., normalization=None, reg=0.0, dtype=np.float64, ...)``, ``loss(X, y)``;
  1 or 2 hidden layers, with no normalization, batch norm or layer norm, dropout off.

Either convention of the L2 penalty, ``reg * sum(W*W)`` or ``0.5 * reg * sum(W*W)``, is
accepted: the spec uses the one the model's returned loss matches, and the report says which.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradcheck.derivation import Derivation, DerivationError, DimRange, IntegerRange
from gradcheck.layers.adapter import ForwardMismatch, LayerCallError, _forward_mismatch_message
from gradcheck.layers.conventions import PenaltyConvention
from gradcheck.layers.declaration import function_name, require_callable

__all__ = ["course_model", "standard_model"]

Factory = Callable[[Mapping[str, Any]], Any]


def _sizes(shapes: Mapping[str, tuple[str | int, ...]], arrays: Mapping[str, Any]) -> dict:
    """Every symbolic dim's size, read off the arrays that use it."""
    sizes: dict[str, int] = {}
    for name, shape in shapes.items():
        for axis, dim in enumerate(shape):
            if isinstance(dim, str):
                sizes.setdefault(dim, int(np.shape(arrays[name])[axis]))
    return sizes


@dataclass(eq=False, repr=False)  # compared and shown as the object it is
class _ModelRun:
    """Build the model for one point, write the drawn weights into ``model.params``, call
    ``model.loss`` on the data: what both the backward and the penalty's convention need."""

    factory: Factory
    shapes: Mapping[str, tuple[str | int, ...]]
    weights: tuple[str, ...]
    data: tuple[str, ...]
    settings: tuple[str, ...]

    def __call__(self, arrays: Mapping[str, Any], settings: Mapping[str, Any]) -> tuple[Any, Any]:
        context = {**copy.deepcopy(dict(settings)), **_sizes(self.shapes, arrays)}
        model = self.factory(context)
        params = getattr(model, "params", None)
        if not isinstance(params, dict):
            raise LayerCallError(
                f"{function_name(self.factory)} built {type(model).__name__}, which has no "
                "params dict; a course model keeps its weights in model.params."
            )
        for name in self.weights:
            if _used(name, context):
                params[name] = np.array(arrays[name], copy=True)
        returned = model.loss(*(arrays[name] for name in self.data))
        if not isinstance(returned, tuple | list) or len(returned) != 2:
            raise LayerCallError(
                f"{type(model).__name__}.loss returned {type(returned).__name__}; with labels "
                "a course model returns (loss, grads)."
            )
        return returned[0], returned[1]


def _used(name: str, context: Mapping[str, Any]) -> bool:
    """Whether weight ``name`` exists at this depth (``layers`` hidden layers)."""
    layers = context.get("layers")
    if layers is None or not name[-1].isdigit():
        return True
    index = int("".join(c for c in name if c.isdigit()))
    if name.startswith(("gamma", "beta")):
        return index <= layers and context.get("normalization") is not None
    return index <= layers + 1


class _PenaltySpec:
    """The model's torch spec, ``spec(..., penalty_factor=...)``, with the L2 convention the
    model's own loss matches (1 or 1/2)."""

    def __init__(self, spec: Callable[..., torch.Tensor], run: _ModelRun, name: str) -> None:
        self.spec = spec
        self.run = run
        self.__name__ = name
        self.convention = PenaltyConvention()

    def __call__(self, **arguments: Any) -> torch.Tensor:
        if self.convention.factor is None and "reg" in arguments:
            self._decide(arguments)
        factor = 1.0 if self.convention.factor is None else self.convention.factor
        return self.spec(**arguments, penalty_factor=factor)

    def _decide(self, arguments: Mapping[str, Any]) -> None:
        """The learner's loss at this point with reg = REG_PROBE, against both candidates."""
        probe = {**arguments, "reg": self.convention.REG_PROBE}
        with torch.no_grad():
            data = float(self.spec(**probe, penalty_factor=0.0))
            penalty = float(self.spec(**probe, penalty_factor=1.0)) - data
        tensors = {k: v for k, v in probe.items() if isinstance(v, torch.Tensor)}
        arrays = {k: v.detach().numpy().copy() for k, v in tensors.items()}
        settings = {k: v for k, v in probe.items() if k not in tensors}
        try:
            learner: float | None = float(self.run(arrays, settings)[0])
        except Exception:  # the backward runs it again and reports what went wrong
            learner = None
        self.convention.decide(learner, data, penalty)

    def notes(self) -> tuple[str, ...]:
        return self.convention.notes(" over the weights")


class _ModelBackward:
    def __init__(self, run: _ModelRun, spec: Callable[..., torch.Tensor]) -> None:
        self.run = run
        self.spec = spec

    def __call__(self, **arguments: Any) -> dict[str, Any]:
        settings = {name: arguments.pop(name) for name in self.run.settings}
        loss, grads = self.run(arguments, settings)
        tensors = {
            k: torch.tensor(np.asarray(v, dtype=np.int64 if v.dtype.kind in "iu" else None))
            for k, v in arguments.items()
        }
        with torch.no_grad():
            expected = self.spec(**tensors, **copy.deepcopy(settings))
        message = _forward_mismatch_message(
            "model.loss", loss, expected, np.dtype(np.float64), "loss"
        )
        if message is not None:
            raise ForwardMismatch(message)
        if not isinstance(grads, Mapping):
            raise LayerCallError(f"model.loss returned grads of type {type(grads).__name__}.")
        context = {**settings, **_sizes(self.run.shapes, arguments)}
        return {
            name: grads[name] if _used(name, context) else np.zeros_like(arguments[name])
            for name in self.run.weights
            if name in grads or not _used(name, context)
        }


def course_model(
    factory: Factory,
    *,
    spec: Callable[..., torch.Tensor],
    weights: Mapping[str, tuple[str | int, ...]],
    data: Mapping[str, tuple[str | int, ...]] | None = None,
    name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    dims: Mapping[str, DimRange] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    integers: Mapping[str, IntegerRange] | None = None,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Derivation:
    """A ``Derivation`` for a model whose ``loss(X, y)`` returns ``(loss, grads)`` over
    ``model.params``.

    ``factory(s)`` builds the model from one dict ``s``: the searched ``settings`` and the
    size of every dim (``s["D"]``). ``weights`` are the shapes of ``model.params``' entries
    (drawn, then written into it); ``data`` those of ``loss``'s positional arguments
    (default ``X`` (N, D) and integer labels ``y`` (N,) in 0..C-1). ``spec`` is the torch loss,
    called with every weight, data array and setting as keywords, plus ``penalty_factor`` (1
    or 0.5, the L2 convention the model's loss matches) for it to multiply its penalty by.

    Example::

        net = course_model(
            lambda s: TwoLayerNet(s["D"], s["H"], s["C"]),
            spec=lambda W1, b1, W2, b2, X, y, penalty_factor: F.cross_entropy(
                torch.relu(X @ W1 + b1) @ W2 + b2, y
            ),
            weights={"W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",)},
        )
    """
    where_called = f"course_model({function_name(factory)})"
    require_callable(where_called, "factory", factory)
    require_callable(where_called, "spec", spec)
    if not isinstance(weights, Mapping) or not weights:
        raise DerivationError(
            f"{where_called}: weights={weights!r} must map each key of model.params to its "
            "shape, e.g. weights={'W1': ('D', 'H'), 'b1': ('H',)}."
        )
    if data is None:
        data = {"X": ("N", "D"), "y": ("N",)}
        integers = {"y": lambda s: (0, s["C"] - 1), **dict(integers or {})}
    shapes = {**weights, **data}
    run = _ModelRun(factory, shapes, tuple(weights), tuple(data), tuple(settings or {}))
    judged = _PenaltySpec(spec, run, function_name(spec))
    return Derivation(
        name=function_name(factory) if name is None else name,
        forward=judged,
        backward=_ModelBackward(run, judged),
        shapes=shapes,
        wrt=tuple(weights),
        dims=dims,
        bounds=bounds,
        params=settings,
        integers=integers,
        where=where,
    )


def _two_layer_spec(
    W1: torch.Tensor,
    b1: torch.Tensor,
    W2: torch.Tensor,
    b2: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    reg: float,
    penalty_factor: float,
) -> torch.Tensor:
    scores = torch.relu(X @ W1 + b1) @ W2 + b2
    penalty = (W1 * W1).sum() + (W2 * W2).sum()
    return F.cross_entropy(scores, y) + penalty_factor * reg * penalty


class _TwoLayerNet:
    """``TwoLayerNet(D, H, C)``, its ``loss(X, y, reg=reg)`` called with the drawn reg."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.__name__ = getattr(cls, "__name__", "TwoLayerNet")

    def __call__(self, s: Mapping[str, Any]) -> Any:
        model = self.cls(s["D"], s["H"], s["C"], std=1e-4)
        loss, reg = model.loss, s["reg"]
        model.loss = lambda X, y: loss(X, y, reg=reg)
        return model


def _fc_spec(
    layers: int,
    normalization: str | None,
    reg: float,
    penalty_factor: float,
    X: torch.Tensor,
    y: torch.Tensor,
    **weights: torch.Tensor,
) -> torch.Tensor:
    """{affine - [norm] - relu} x layers - affine - softmax, L2 over every W."""
    h = X
    for k in range(1, layers + 1):
        h = h @ weights[f"W{k}"] + weights[f"b{k}"]
        gamma, beta = weights[f"gamma{k}"], weights[f"beta{k}"]
        if normalization == "batchnorm":
            h = F.batch_norm(h, None, None, gamma, beta, training=True, eps=1e-5)
        elif normalization == "layernorm":
            h = F.layer_norm(h, (h.shape[1],), gamma, beta, eps=1e-5)
        h = torch.relu(h)
    scores = h @ weights[f"W{layers + 1}"] + weights[f"b{layers + 1}"]
    penalty = sum((weights[f"W{k}"] ** 2).sum() for k in range(1, layers + 2))
    return F.cross_entropy(scores, y) + penalty_factor * reg * penalty


class _FullyConnectedNet:
    """``FullyConnectedNet([H1, ...], input_dim=D, num_classes=C, ...)``, dropout off."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.__name__ = getattr(cls, "__name__", "FullyConnectedNet")
        try:
            parameters = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        # dropout off in each year's meaning: keep ratio 1, or the default of `dropout`
        self.dropout: dict[str, Any] = {}
        if "dropout_keep_ratio" in parameters:
            self.dropout = {"dropout_keep_ratio": 1}
        elif "dropout" in parameters:
            self.dropout = {"dropout": parameters["dropout"].default}

    def __call__(self, s: Mapping[str, Any]) -> Any:
        hidden = [s["H1"], s["O2"]][: s["layers"]]
        return self.cls(
            hidden,
            input_dim=s["D"],
            num_classes=s["C"],
            normalization=s["normalization"],
            reg=s["reg"],
            weight_scale=1e-2,
            dtype=np.float64,
            **self.dropout,
        )


def _out(k: int) -> Callable[[Mapping[str, Any]], tuple[int, int]]:
    """Layer k's width: a hidden width while k <= layers, C at layers + 1, then 1 (unused)."""

    def width(s: Mapping[str, Any]) -> tuple[int, int]:
        if k <= s["layers"]:
            return 1, 4
        size = s["C"] if k == s["layers"] + 1 else 1
        return size, size

    return width


def _declare_fully_connected(cls: type, name: str) -> Derivation:
    widths = ["D", "H1", "O2", "O3"]
    weights: dict[str, tuple[str | int, ...]] = {}
    for k in range(1, 4):
        weights[f"W{k}"] = (widths[k - 1], widths[k])
        weights[f"b{k}"] = (widths[k],)
        if k <= 2:
            weights[f"gamma{k}"] = (widths[k],)
            weights[f"beta{k}"] = (widths[k],)
    return course_model(
        _FullyConnectedNet(cls),
        spec=_fc_spec,
        weights=weights,
        data={"X": ("N", "D"), "y": ("N",)},
        integers={"y": lambda s: (0, s["C"] - 1)},
        name=name,
        settings={
            # 1 or 2 hidden layers (the course's notebooks check [H1, H2]); the weights of a
            # layer deeper than the net are drawn at size 1 and must get a zero gradient
            "layers": (1, 2),
            "normalization": [None, "batchnorm", "layernorm"],
            "reg": (0.0, 1.0),
            "C": (2, 4),
        },
        dims={"N": (1, 4), "D": (1, 4), "H1": (1, 4), "O2": _out(2), "O3": _out(3)},
        # batch norm in train mode needs a batch
        where=lambda s: s["normalization"] != "batchnorm" or s["N"] >= 2,
    )


def _declare_two_layer(cls: type, name: str) -> Derivation:
    return course_model(
        _TwoLayerNet(cls),
        spec=_two_layer_spec,
        weights={"W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",)},
        name=name,
        settings={"reg": (0.0, 1.0)},
        dims={"N": (1, 5), "D": (1, 4), "H": (1, 5), "C": (1, 4)},
    )


_MODELS: dict[str, Callable[[type, str], Derivation]] = {
    "two_layer_net": _declare_two_layer,
    "fully_connected_net": _declare_fully_connected,
}


def standard_model(kind: str, ModelClass: type, *, name: str | None = None) -> Derivation:
    """Your course model class, checked like the standard model ``kind``
    (``"two_layer_net"``, ``"fully_connected_net"``).

    Example (in ``my_models.py``, then ``gradcheck verify my_models.py``)::

        from cs231n.classifiers.neural_net import TwoLayerNet

        net = standard_model("two_layer_net", TwoLayerNet)
    """
    if kind not in _MODELS:
        raise DerivationError(
            f"standard_model: kind={kind!r} is not a standard model (one of {', '.join(_MODELS)})."
        )
    if not callable(ModelClass):
        raise DerivationError(
            f"standard_model({kind!r}): ModelClass={ModelClass!r} is not a class; pass the "
            "class itself, e.g. standard_model('two_layer_net', TwoLayerNet)."
        )
    return _MODELS[kind](ModelClass, kind if name is None else name)
