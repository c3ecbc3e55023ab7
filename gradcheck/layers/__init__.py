"""Standard layers, hand-derived in numpy the way courses write them, verified with gradcheck.

Each layer is a pair ``out, cache = layer_forward(...)`` / ``dx, ... = layer_backward(dout,
cache)`` (a loss is one function, ``loss, dx = softmax_loss(x, y)``), next to a torch spec in
``gradcheck.layers.specs``. ``STANDARD_LAYERS`` holds a ``Derivation`` for each, searched over
shapes and settings (stride, padding, pool size, eps, non-square images); ``course_layer``
and ``course_loss`` build one for any course-style layer; ``standard_layer`` checks your own
functions against the declaration of a standard layer.

>>> from gradcheck import verify
>>> from gradcheck.layers import STANDARD_LAYERS
>>> relu = next(layer for layer in STANDARD_LAYERS if layer.name == "relu")
>>> verify(relu, max_examples=5, seed=0).ok
True
"""

from __future__ import annotations

from gradcheck.layers.adapter import ForwardMismatch, LayerCallError, course_layer, course_loss
from gradcheck.layers.convolution import (
    avg_pool_backward_naive,
    avg_pool_forward_naive,
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
)
from gradcheck.layers.dense import (
    affine_backward,
    affine_forward,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from gradcheck.layers.losses import softmax_loss, svm_loss
from gradcheck.layers.normalization import (
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from gradcheck.layers.standard import STANDARD_LAYERS, standard_layer

__all__ = [
    "STANDARD_LAYERS",
    "ForwardMismatch",
    "LayerCallError",
    "affine_backward",
    "affine_forward",
    "avg_pool_backward_naive",
    "avg_pool_forward_naive",
    "batchnorm_backward",
    "batchnorm_forward",
    "conv_backward_naive",
    "conv_forward_naive",
    "course_layer",
    "course_loss",
    "dropout_backward",
    "dropout_forward",
    "layernorm_backward",
    "layernorm_forward",
    "max_pool_backward_naive",
    "max_pool_forward_naive",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_loss",
    "standard_layer",
    "svm_loss",
    "tanh_backward",
    "tanh_forward",
]
