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
from gradcheck.layers.classifiers import softmax_loss_vectorized, svm_loss_vectorized
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
from gradcheck.layers.losses import softmax_loss, svm_loss, temporal_softmax_loss
from gradcheck.layers.model_classes import FullyConnectedNet, TwoLayerNet
from gradcheck.layers.models import course_model, standard_model
from gradcheck.layers.normalization import (
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from gradcheck.layers.recurrent import (
    lstm_backward,
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
    rnn_backward,
    rnn_forward,
    rnn_step_backward,
    rnn_step_forward,
    temporal_affine_backward,
    temporal_affine_forward,
    word_embedding_backward,
    word_embedding_forward,
)
from gradcheck.layers.spatial import (
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)
from gradcheck.layers.standard import STANDARD_LAYERS, standard_layer

__all__ = [
    "STANDARD_LAYERS",
    "ForwardMismatch",
    "FullyConnectedNet",
    "LayerCallError",
    "TwoLayerNet",
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
    "course_model",
    "dropout_backward",
    "dropout_forward",
    "layernorm_backward",
    "layernorm_forward",
    "lstm_backward",
    "lstm_forward",
    "lstm_step_backward",
    "lstm_step_forward",
    "max_pool_backward_naive",
    "max_pool_forward_naive",
    "relu_backward",
    "relu_forward",
    "rnn_backward",
    "rnn_forward",
    "rnn_step_backward",
    "rnn_step_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_loss",
    "softmax_loss_vectorized",
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
    "spatial_groupnorm_backward",
    "spatial_groupnorm_forward",
    "standard_layer",
    "standard_model",
    "svm_loss",
    "svm_loss_vectorized",
    "tanh_backward",
    "tanh_forward",
    "temporal_affine_backward",
    "temporal_affine_forward",
    "temporal_softmax_loss",
    "word_embedding_backward",
    "word_embedding_forward",
]
