"""The torch specs of the standard layers: what each hand-derived layer claims to compute.

Each is written with torch's own ops (``F.conv2d``, ``F.batch_norm``, ``F.cross_entropy``,
...), never with the numpy code it checks, and is called with float64 tensors as keyword
arguments, params included. The losses average over the batch, as the course layers do.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "affine",
    "avg_pool",
    "batchnorm",
    "conv",
    "dropout",
    "dropout_keep",
    "layernorm",
    "max_pool",
    "relu",
    "sigmoid",
    "softmax_loss",
    "svm_loss",
    "tanh",
]


def affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x`` of any rank, each sample flattened: ``x.reshape(N, D) @ w + b``."""
    return F.linear(x.flatten(start_dim=1), w.T, b)


def relu(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


def softmax_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax of scores ``x`` (N, C) with labels ``y``, batch mean."""
    return F.cross_entropy(x, y)


def svm_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multiclass hinge loss with margin 1, summed over classes, averaged over the batch.

    torch's ``multi_margin_loss`` also divides each sample's sum by the number of classes C;
    the course loss does not, hence the factor C.
    """
    return F.multi_margin_loss(x, y, p=1, margin=1.0) * x.shape[1]


def dropout_keep(shape: tuple[int, ...], p: float, seed: int) -> np.ndarray:
    """Which units inverted dropout keeps: ``rand < p`` from ``np.random.seed(seed)``, the
    draw the course's ``dropout_forward`` makes with ``dropout_param["seed"]``."""
    return np.random.RandomState(seed).rand(*shape) < p


def dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Inverted dropout in train mode: kept units scaled by ``1 / p`` (p = keep probability)."""
    keep = torch.from_numpy(dropout_keep(tuple(x.shape), p, seed))
    return torch.where(keep, x / p, torch.zeros_like(x))


def batchnorm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """Batch norm in train mode: each feature normalised by the batch's own mean and
    (biased) variance."""
    return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)


def layernorm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer norm: each sample normalised over its own features."""
    return F.layer_norm(x, (x.shape[1],), gamma, beta, eps=eps)


def conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """2-D cross-correlation, zero padding ``pad`` on every side, output size floored."""
    return F.conv2d(x, w, b, stride=stride, padding=pad)


def max_pool(x: torch.Tensor, pool_height: int, pool_width: int, stride: int) -> torch.Tensor:
    return F.max_pool2d(x, (pool_height, pool_width), stride=stride)


def avg_pool(x: torch.Tensor, pool_height: int, pool_width: int, stride: int) -> torch.Tensor:
    return F.avg_pool2d(x, (pool_height, pool_width), stride=stride)
