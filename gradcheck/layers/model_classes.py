"""The course's numpy model classes, written here as references for ``standard_model``.

``TwoLayerNet`` is assignment 1's (``reg * sum(W*W)``), ``FullyConnectedNet`` assignment 2's
(``0.5 * reg * sum(W*W)``, optional batch or layer norm, dropout by keep ratio), both built
from this package's course-style layers, each backward undoing its forward layer by layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck.layers.dense import (
    affine_backward,
    affine_forward,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
)
from gradcheck.layers.losses import softmax_loss
from gradcheck.layers.normalization import (
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
)

__all__ = ["FullyConnectedNet", "TwoLayerNet"]


class TwoLayerNet:
    """affine - relu - affine - softmax, weights in ``params`` (W1, b1, W2, b2)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, std: float = 1e-4):
        rng = np.random.default_rng(0)
        self.params = {
            "W1": std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }

    def loss(self, X: np.ndarray, y: np.ndarray | None = None, reg: float = 0.0) -> Any:
        """The scores without ``y``; ``(loss, grads)`` with it."""
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        hidden, hidden_cache = affine_forward(X, W1, b1)
        relu, relu_cache = relu_forward(hidden)
        scores, scores_cache = affine_forward(relu, W2, b2)
        if y is None:
            return scores
        data_loss, dscores = softmax_loss(scores, y)
        loss = data_loss + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        drelu, dW2, db2 = affine_backward(dscores, scores_cache)
        dhidden = relu_backward(drelu, relu_cache)
        _, dW1, db1 = affine_backward(dhidden, hidden_cache)
        # the penalty reg * sum(W**2) adds 2 * reg * W
        grads = {"W1": dW1 + 2 * reg * W1, "b1": db1, "W2": dW2 + 2 * reg * W2, "b2": db2}
        return loss, grads


_NORMS = {
    "batchnorm": (batchnorm_forward, batchnorm_backward),
    "layernorm": (layernorm_forward, layernorm_backward),
}


class FullyConnectedNet:
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax."""

    def __init__(
        self,
        hidden_dims: list[int],
        input_dim: int = 3 * 32 * 32,
        num_classes: int = 10,
        dropout_keep_ratio: float = 1,
        normalization: str | None = None,
        reg: float = 0.0,
        weight_scale: float = 1e-2,
        dtype: Any = np.float32,
        seed: int | None = None,
    ):
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        rng = np.random.default_rng(0)
        sizes = [input_dim, *hidden_dims, num_classes]
        self.params: dict[str, np.ndarray] = {}
        for k in range(1, self.num_layers + 1):
            shape = (sizes[k - 1], sizes[k])
            self.params[f"W{k}"] = (weight_scale * rng.standard_normal(shape)).astype(dtype)
            self.params[f"b{k}"] = np.zeros(sizes[k], dtype=dtype)
            if normalization is not None and k < self.num_layers:
                self.params[f"gamma{k}"] = np.ones(sizes[k], dtype=dtype)
                self.params[f"beta{k}"] = np.zeros(sizes[k], dtype=dtype)
        self.dropout_param = {"mode": "train", "p": dropout_keep_ratio, "seed": seed or 0}
        self.norm_params: list[dict[str, Any]] = [
            {"mode": "train"} for _ in range(self.num_layers - 1)
        ]

    def loss(self, X: np.ndarray, y: np.ndarray | None = None) -> Any:
        """The scores without ``y``; ``(loss, grads)`` with it, ``0.5 * reg * sum(W*W)``."""
        mode = "test" if y is None else "train"
        self.dropout_param["mode"] = mode
        h, caches = X.reshape(X.shape[0], -1), []
        for k in range(1, self.num_layers):
            h, affine_cache = affine_forward(h, self.params[f"W{k}"], self.params[f"b{k}"])
            norm_cache = None
            if self.normalization is not None:
                forward = _NORMS[self.normalization][0]
                gamma, beta = self.params[f"gamma{k}"], self.params[f"beta{k}"]
                h, norm_cache = forward(h, gamma, beta, self.norm_params[k - 1])
            h, relu_cache = relu_forward(h)
            drop_cache = None
            if self.use_dropout and mode == "train":
                h, drop_cache = dropout_forward(h, self.dropout_param)
            caches.append((affine_cache, norm_cache, relu_cache, drop_cache))
        last = self.num_layers
        scores, scores_cache = affine_forward(h, self.params[f"W{last}"], self.params[f"b{last}"])
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        grads: dict[str, np.ndarray] = {}
        dh, grads[f"W{last}"], grads[f"b{last}"] = affine_backward(dscores, scores_cache)
        for k in range(self.num_layers - 1, 0, -1):
            affine_cache, norm_cache, relu_cache, drop_cache = caches[k - 1]
            if drop_cache is not None:
                dh = dropout_backward(dh, drop_cache)
            dh = relu_backward(dh, relu_cache)
            if norm_cache is not None:
                backward = _NORMS[str(self.normalization)][1]
                dh, grads[f"gamma{k}"], grads[f"beta{k}"] = backward(dh, norm_cache)
            dh, grads[f"W{k}"], grads[f"b{k}"] = affine_backward(dh, affine_cache)
        for k in range(1, self.num_layers + 1):
            W = self.params[f"W{k}"]
            loss += 0.5 * self.reg * np.sum(W * W)
            grads[f"W{k}"] = grads[f"W{k}"] + self.reg * W  # d/dW of 0.5 * reg * sum(W**2)
        return loss, grads
