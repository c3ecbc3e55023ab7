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
    "lstm",
    "lstm_step",
    "max_pool",
    "relu",
    "rnn",
    "rnn_step",
    "sigmoid",
    "softmax_loss",
    "spatial_batchnorm",
    "spatial_groupnorm",
    "svm_loss",
    "tanh",
    "temporal_affine",
    "temporal_softmax_loss",
    "word_embedding",
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


def spatial_batchnorm(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float
) -> torch.Tensor:
    """Batch norm of images (N, C, H, W) in train mode: each channel over batch and pixels."""
    return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)


def spatial_groupnorm(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, G: int, eps: float
) -> torch.Tensor:
    """Group norm with G groups; gamma and beta are (1, C, 1, 1) as the course gives them.

    Written out rather than ``F.group_norm``, which refuses a group of one value (where the
    normalised value is 0, a setting the layer handles like any other)."""
    groups = x.reshape(x.shape[0], G, -1)
    mean = groups.mean(dim=2, keepdim=True)
    var = groups.var(dim=2, unbiased=False, keepdim=True)
    xhat = ((groups - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    return gamma * xhat + beta


def rnn_step(
    x: torch.Tensor, prev_h: torch.Tensor, Wx: torch.Tensor, Wh: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    return torch.tanh(x @ Wx + prev_h @ Wh + b)


def rnn(
    x: torch.Tensor, h0: torch.Tensor, Wx: torch.Tensor, Wh: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """Every hidden state (N, T, H) of a vanilla RNN over x (N, T, D), from h0."""
    states, h = [], h0
    for t in range(x.shape[1]):
        h = rnn_step(x[:, t], h, Wx, Wh, b)
        states.append(h)
    return torch.stack(states, dim=1)


def word_embedding(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    return F.embedding(x, W)


def temporal_affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return x @ w + b


def lstm_step(
    x: torch.Tensor,
    prev_h: torch.Tensor,
    prev_c: torch.Tensor,
    Wx: torch.Tensor,
    Wh: torch.Tensor,
    b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(next_h, next_c) of one LSTM step; the gates in the order input, forget, output, g."""
    i, f, o, g = (x @ Wx + prev_h @ Wh + b).chunk(4, dim=1)
    next_c = torch.sigmoid(f) * prev_c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(next_c), next_c


def lstm(
    x: torch.Tensor, h0: torch.Tensor, Wx: torch.Tensor, Wh: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """Every hidden state (N, T, H) of an LSTM over x (N, T, D), from h0 and a zero cell."""
    states, h, c = [], h0, torch.zeros_like(h0)
    for t in range(x.shape[1]):
        h, c = lstm_step(x[:, t], h, c, Wx, Wh, b)
        states.append(h)
    return torch.stack(states, dim=1)


def temporal_softmax_loss(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at every masked-in step, summed over steps, averaged over the batch."""
    log_probs = torch.log_softmax(x, dim=2).gather(2, y.unsqueeze(2)).squeeze(2)
    return -(log_probs * mask).sum() / x.shape[0]
