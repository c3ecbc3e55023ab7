"""What the standard spatial-normalisation and recurrent layers are checked over.

The same scheme as ``gradcheck.layers.standard``: one declaration per layer, shared by the
reference layer and by a learner's own functions. Sizes stay small (sequences of up to 4
steps, hidden states up to 4 wide) so each layer verifies in seconds; the bugs that live in
recurrences (a step's gradient not carried back, the gates in the wrong order, a weight's
gradient not summed over steps) show at these sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gradcheck.derivation import Derivation
from gradcheck.layers import losses, recurrent, spatial, specs
from gradcheck.layers.adapter import course_loss, layer_kind

__all__ = ["RECURRENT_LAYERS"]

Function = Callable[..., Any]

# The eps values of the normalisation layers: the course's default, and two larger ones at
# which a missing eps is far above rounding.
EPS_CHOICES = [1e-5, 1e-3, 1e-1]


_declare_spatial_batchnorm = layer_kind(
    specs.spatial_batchnorm,
    shapes={"x": ("N", "C", "H", "W"), "gamma": ("C",), "beta": ("C",)},
    params={"eps": EPS_CHOICES},
    param_dict="bn_param",
    fixed={"mode": "train"},
    dims={"N": (1, 3), "C": (1, 3), "H": (1, 3), "W": (1, 3)},
    # train mode normalises over N * H * W values per channel: torch refuses one
    where=lambda s: s["N"] * s["H"] * s["W"] >= 2,
)
_declare_spatial_groupnorm = layer_kind(
    specs.spatial_groupnorm,
    # gamma and beta are (1, C, 1, 1), as the course's notebook and docstring give them
    shapes={"x": ("N", "C", "H", "W"), "gamma": (1, "C", 1, 1), "beta": (1, "C", 1, 1)},
    params={"G": (1, 3), "eps": EPS_CHOICES},
    positional_params=("G",),
    param_dict="gn_param",
    dims={"N": (1, 2), "C": (1, 6), "H": (1, 3), "W": (1, 3)},
    # G must divide C (the course: "G should be a divisor of C")
    where=lambda s: s["C"] % s["G"] == 0,
)


_STEP_SHAPES = {
    "x": ("N", "D"),
    "prev_h": ("N", "H"),
    "Wx": ("D", "H"),
    "Wh": ("H", "H"),
    "b": ("H",),
}
_SEQUENCE_SHAPES = {
    "x": ("N", "T", "D"),
    "h0": ("N", "H"),
    "Wx": ("D", "H"),
    "Wh": ("H", "H"),
    "b": ("H",),
}
_SMALL = {"N": (1, 3), "T": (1, 4), "D": (1, 4), "H": (1, 4)}
# Weights and states in (-1, 1): pre-activations of a few terms stay where tanh and the
# sigmoid are not flat, so every gate's gradient is well above rounding.
_RECURRENT_BOUNDS = {"Wx": (-1.0, 1.0), "Wh": (-1.0, 1.0), "b": (-1.0, 1.0)}

_declare_rnn_step = layer_kind(
    specs.rnn_step,
    shapes=_STEP_SHAPES,
    dims={k: v for k, v in _SMALL.items() if k != "T"},
    bounds=_RECURRENT_BOUNDS,
)
_declare_rnn = layer_kind(specs.rnn, shapes=_SEQUENCE_SHAPES, dims=_SMALL, bounds=_RECURRENT_BOUNDS)


def _lstm_shapes(shapes: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The RNN's shapes with the four gates side by side: Wx (D, 4H), Wh (H, 4H), b (4H,)."""
    return {**shapes, "Wx": ("D", "H4"), "Wh": ("H", "H4"), "b": ("H4",)}


_declare_lstm_step = layer_kind(
    specs.lstm_step,
    # the step's inputs in the order lstm_step_forward takes them: prev_c after prev_h
    shapes={
        "x": _STEP_SHAPES["x"],
        "prev_h": _STEP_SHAPES["prev_h"],
        "prev_c": ("N", "H"),
        **_lstm_shapes(_STEP_SHAPES),
    },
    outputs=("next_h", "next_c"),
    dims={"N": (1, 3), "D": (1, 4), "H": (1, 3), "H4": "4*H"},
    bounds=_RECURRENT_BOUNDS,
)
_declare_lstm = layer_kind(
    specs.lstm,
    shapes=_lstm_shapes(_SEQUENCE_SHAPES),
    dims={"N": (1, 3), "T": (1, 4), "D": (1, 4), "H": (1, 3), "H4": "4*H"},
    bounds=_RECURRENT_BOUNDS,
)
_declare_word_embedding = layer_kind(
    specs.word_embedding,
    shapes={"x": ("N", "T"), "W": ("V", "D")},
    integers={"x": lambda s: (0, s["V"] - 1)},  # word indices, repeats included
    dims={"N": (1, 3), "T": (1, 4), "V": (1, 5), "D": (1, 4)},
)
_declare_temporal_affine = layer_kind(
    specs.temporal_affine,
    shapes={"x": ("N", "T", "D"), "w": ("D", "M"), "b": ("M",)},
    dims={"N": (1, 3), "T": (1, 4), "D": (1, 4), "M": (1, 4)},
)


def _declare_temporal_softmax_loss(loss: Function, backward: None, name: str) -> Derivation:
    return course_loss(
        loss,
        name=name,
        spec=specs.temporal_softmax_loss,
        shapes={"x": ("N", "T", "V"), "y": ("N", "T"), "mask": ("N", "T")},
        integers={"y": lambda s: (0, s["V"] - 1)},
        booleans=("mask",),
        dims={"N": (1, 3), "T": (1, 4), "V": (1, 5)},
    )


RECURRENT_LAYERS: dict[str, tuple[Callable[..., Derivation], Function, Function | None]] = {
    "spatial_batchnorm": (
        _declare_spatial_batchnorm,
        spatial.spatial_batchnorm_forward,
        spatial.spatial_batchnorm_backward,
    ),
    "spatial_groupnorm": (
        _declare_spatial_groupnorm,
        spatial.spatial_groupnorm_forward,
        spatial.spatial_groupnorm_backward,
    ),
    "rnn_step": (_declare_rnn_step, recurrent.rnn_step_forward, recurrent.rnn_step_backward),
    "rnn": (_declare_rnn, recurrent.rnn_forward, recurrent.rnn_backward),
    "word_embedding": (
        _declare_word_embedding,
        recurrent.word_embedding_forward,
        recurrent.word_embedding_backward,
    ),
    "temporal_affine": (
        _declare_temporal_affine,
        recurrent.temporal_affine_forward,
        recurrent.temporal_affine_backward,
    ),
    "lstm_step": (_declare_lstm_step, recurrent.lstm_step_forward, recurrent.lstm_step_backward),
    "lstm": (_declare_lstm, recurrent.lstm_forward, recurrent.lstm_backward),
    "temporal_softmax_loss": (
        _declare_temporal_softmax_loss,
        losses.temporal_softmax_loss,
        None,
    ),
}
"""kind: (declare, reference forward, reference backward or None for a loss)."""
