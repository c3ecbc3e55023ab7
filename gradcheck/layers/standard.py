"""What each standard layer is checked over: its spec, shapes, searched params and dims.

One declaration per layer, shared by the built-in reference layers (``STANDARD_LAYERS``)
and by a learner's own functions (``standard_layer("conv", my_forward, my_backward)``),
so a learner's layer is searched over exactly the settings the reference passes.

Sizes stay small (a few channels, images up to 6 x 6, never forced square) so that each
layer verifies in about a second; bugs in strides, padding and aspect show at these sizes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from gradcheck.derivation import Derivation, DerivationError
from gradcheck.layers import convolution, dense, losses, normalization, specs
from gradcheck.layers.adapter import course_loss, layer_kind
from gradcheck.layers.conventions import CONVENTION_LAYERS
from gradcheck.layers.standard_recurrent import RECURRENT_LAYERS

__all__ = ["STANDARD_LAYERS", "standard_layer"]

Function = Callable[..., Any]


def _labels(s: Mapping[str, Any]) -> tuple[int, int]:
    return 0, s["C"] - 1


def _flattened(s: Mapping[str, Any]) -> tuple[int, int]:
    return s["C"] * s["H"] * s["W"], s["C"] * s["H"] * s["W"]


def _rows_for(kernel: str) -> Callable[[Mapping[str, Any]], tuple[int, int]]:
    """An image side at least as long as the (padded) window: the output has a row."""

    def side(s: Mapping[str, Any]) -> tuple[int, int]:
        return max(1, s[kernel] - 2 * s.get("pad", 0)), 6

    return side


def _conv_stride_fits(s: Mapping[str, Any]) -> bool:
    """The course's valid settings: the stride steps the (padded) window exactly to the
    far edge, so that its output size is a whole number however a learner rounds it."""
    return (s["H"] + 2 * s["pad"] - s["HH"]) % s["stride"] == 0 and (
        s["W"] + 2 * s["pad"] - s["WW"]
    ) % s["stride"] == 0


def _pool_stride_fits(s: Mapping[str, Any]) -> bool:
    """As for conv: the pool windows, ``stride`` apart, end at the image's far edge."""
    return (s["H"] - s["pool_height"]) % s["stride"] == 0 and (s["W"] - s["pool_width"]) % s[
        "stride"
    ] == 0


_declare_affine = layer_kind(
    specs.affine,
    shapes={"x": ("N", "D"), "w": ("D", "M"), "b": ("M",)},
    dims={"N": (1, 4), "D": (1, 6), "M": (1, 6)},
)
_declare_affine_4d = layer_kind(
    specs.affine,
    shapes={"x": ("N", "C", "H", "W"), "w": ("D", "M"), "b": ("M",)},
    # D is C * H * W: each image is flattened into one row
    dims={"N": (1, 3), "C": (1, 2), "H": (1, 3), "W": (1, 3), "M": (1, 4), "D": _flattened},
)


def _elementwise(spec: Function) -> Callable[[Function, Function, str], Derivation]:
    return layer_kind(spec, shapes={"x": ("N", "D")}, dims={"N": (1, 4), "D": (1, 6)})


def _declare_norm(
    spec: Function,
    param_dict: str,
    *,
    dims: Mapping[str, tuple[int, int]],
    fixed: Mapping[str, Any] | None = None,
) -> Callable[[Function, Function, str], Derivation]:
    """A normalisation of x (N, D) with gamma and beta (D,), its settings in ``param_dict``."""
    return layer_kind(
        spec,
        shapes={"x": ("N", "D"), "gamma": ("D",), "beta": ("D",)},
        params={"eps": [1e-5, 1e-3, 1e-1]},
        param_dict=param_dict,
        fixed=fixed,
        dims=dims,
    )


_declare_batchnorm = _declare_norm(
    specs.batchnorm,
    "bn_param",
    fixed={"mode": "train"},
    # train mode needs a batch: torch refuses to normalise a single sample
    dims={"N": (2, 6), "D": (1, 5)},
)
_declare_layernorm = _declare_norm(specs.layernorm, "ln_param", dims={"N": (1, 4), "D": (1, 6)})

_declare_conv = layer_kind(
    specs.conv,
    shapes={"x": ("N", "C", "H", "W"), "w": ("F", "C", "HH", "WW"), "b": ("F",)},
    params={"stride": (1, 3), "pad": (0, 2)},
    param_dict="conv_param",
    dims={
        "N": (1, 2),
        "C": (1, 2),
        "F": (1, 2),
        "HH": (1, 3),
        "WW": (1, 3),
        "H": _rows_for("HH"),
        "W": _rows_for("WW"),
    },
    where=_conv_stride_fits,
)


def _declare_pool(spec: Function) -> Callable[[Function, Function, str], Derivation]:
    return layer_kind(
        spec,
        shapes={"x": ("N", "C", "H", "W")},
        params={"pool_height": (1, 3), "pool_width": (1, 3), "stride": (1, 3)},
        param_dict="pool_param",
        # the image holds at least one window: pool_height x pool_width pixels
        dims={
            "N": (1, 2),
            "C": (1, 2),
            "H": lambda s: (s["pool_height"], 6),
            "W": lambda s: (s["pool_width"], 6),
        },
        where=_pool_stride_fits,
    )


def _declare_loss(spec: Function) -> Callable[[Function, None, str], Derivation]:
    def declare(loss: Function, backward: None, name: str) -> Derivation:
        return course_loss(
            loss,
            name=name,
            spec=spec,
            shapes={"x": ("N", "C"), "y": ("N",)},
            integers={"y": _labels},
            dims={"N": (1, 5), "C": (1, 6)},
        )

    return declare


_LAYERS: dict[str, tuple[Callable[..., Derivation], Function, Function | None]] = {
    "affine": (_declare_affine, dense.affine_forward, dense.affine_backward),
    "affine_4d": (_declare_affine_4d, dense.affine_forward, dense.affine_backward),
    "relu": (_elementwise(specs.relu), dense.relu_forward, dense.relu_backward),
    "sigmoid": (_elementwise(specs.sigmoid), dense.sigmoid_forward, dense.sigmoid_backward),
    "tanh": (_elementwise(specs.tanh), dense.tanh_forward, dense.tanh_backward),
    "dropout": CONVENTION_LAYERS["dropout"],
    "softmax_loss": (_declare_loss(specs.softmax_loss), losses.softmax_loss, None),
    "svm_loss": (_declare_loss(specs.svm_loss), losses.svm_loss, None),
    "batchnorm": (
        _declare_batchnorm,
        normalization.batchnorm_forward,
        normalization.batchnorm_backward,
    ),
    "layernorm": (
        _declare_layernorm,
        normalization.layernorm_forward,
        normalization.layernorm_backward,
    ),
    "conv": (_declare_conv, convolution.conv_forward_naive, convolution.conv_backward_naive),
    "max_pool": (
        _declare_pool(specs.max_pool),
        convolution.max_pool_forward_naive,
        convolution.max_pool_backward_naive,
    ),
    "avg_pool": (
        _declare_pool(specs.avg_pool),
        convolution.avg_pool_forward_naive,
        convolution.avg_pool_backward_naive,
    ),
    "softmax_classifier": CONVENTION_LAYERS["softmax_classifier"],
    "svm_classifier": CONVENTION_LAYERS["svm_classifier"],
    **RECURRENT_LAYERS,
}
_LOSSES = frozenset(kind for kind, (_, _, backward) in _LAYERS.items() if backward is None)


# How each loss kind is called, for messages (the rest: loss, dx = kind(x, y)).
_LOSS_CALLS = {
    "temporal_softmax_loss": "loss, dx = {kind}(x, y, mask)",
    "softmax_classifier": "loss, dW = softmax_loss_vectorized(W, X, y, reg)",
    "svm_classifier": "loss, dW = svm_loss_vectorized(W, X, y, reg)",
}


def standard_layer(
    kind: str,
    forward: Function,
    backward: Function | None = None,
    *,
    name: str | None = None,
) -> Derivation:
    """Your own course-style layer, checked like the standard layer ``kind``: the same torch
    spec, shapes, params and dims. ``kind`` is one of the names in ``STANDARD_LAYERS``; for
    the losses (``softmax_loss``, ``svm_loss``, ``temporal_softmax_loss``) and the linear
    classifiers (``softmax_classifier``, ``svm_classifier``: ``loss, dW = f(W, X, y, reg)``)
    pass the one loss function and no backward. Layers with several outputs take them as the
    course writes them: ``next_h, next_c, cache = lstm_step_forward(...)`` and
    ``lstm_step_backward(dnext_h, dnext_c, cache)``.

    Example (in ``my_layers.py``, then ``gradcheck verify my_layers.py``)::

        def conv_forward_naive(x, w, b, conv_param): ...
        def conv_backward_naive(dout, cache): ...

        conv = standard_layer("conv", conv_forward_naive, conv_backward_naive)
    """
    if not isinstance(kind, str) or kind not in _LAYERS:
        close = difflib.get_close_matches(str(kind), list(_LAYERS), n=1) or [
            known for known in _LAYERS if str(kind).startswith(known) or known.startswith(str(kind))
        ]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DerivationError(
            f"standard_layer: kind={kind!r} is not a standard layer (one of "
            f"{', '.join(_LAYERS)}){hint}"
        )
    if kind in _LOSSES and backward is not None:
        raise DerivationError(
            f"standard_layer({kind!r}): a course loss is one function, "
            f"{_LOSS_CALLS.get(kind, 'loss, dx = {kind}(x, y)').format(kind=kind)}; pass it "
            "as forward and leave out backward (got "
            f"backward={getattr(backward, '__name__', backward)!r})."
        )
    if kind not in _LOSSES and backward is None:
        raise DerivationError(
            f"standard_layer({kind!r}): pass both the forward and the backward, e.g. "
            f"standard_layer({kind!r}, {kind}_forward, {kind}_backward)."
        )
    declare = _LAYERS[kind][0]
    return declare(forward, backward, kind if name is None else name)


STANDARD_LAYERS: tuple[Derivation, ...] = tuple(
    declare(forward, backward, kind) for kind, (declare, forward, backward) in _LAYERS.items()
)
