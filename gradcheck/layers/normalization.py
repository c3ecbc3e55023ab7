"""Batch norm (train mode) and layer norm, course-style, backward one node at a time.

Both compute ``out = gamma * (x - mean) / sqrt(var + eps) + beta``; batch norm takes the
statistics of each feature over the batch (axis 0), layer norm those of each sample over its
features (axis 1). The backward runs the graph in reverse::

    mu = mean(x)        xc = x - mu        var = mean(xc**2)
    std = sqrt(var + eps)        xhat = xc / std        out = gamma * xhat + beta
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["batchnorm_backward", "batchnorm_forward", "layernorm_backward", "layernorm_forward"]

Cache = Any


def _normalized(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, *, axis: int, keepdims: bool
) -> tuple[np.ndarray, Cache]:
    """``out = gamma * xhat + beta``, ``x`` normalised with its mean and (biased) variance
    over ``axis``, and the cache both backwards read."""
    mu = x.mean(axis=axis, keepdims=keepdims)
    xc = x - mu  # (N, D)
    var = (xc**2).mean(axis=axis, keepdims=keepdims)
    std = np.sqrt(var + eps)
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xhat, xc, var, eps, gamma)


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Batch norm in train mode for ``x`` (N, D): each feature normalised over the batch.

    ``bn_param`` holds ``"mode"`` (only ``"train"`` here) and ``"eps"`` (default 1e-5).

    >>> out, _ = batchnorm_forward(np.array([[1.0], [3.0]]), np.ones(1), np.zeros(1),
    ...                            {"mode": "train", "eps": 0.0})
    >>> out
    array([[-1.],
           [ 1.]])
    """
    if bn_param.get("mode", "train") != "train":
        raise ValueError(
            f"batchnorm_forward: mode={bn_param['mode']!r}; this reference layer is the train "
            "mode only (test mode uses running statistics, with no batch to differentiate)."
        )
    # statistics (D,): the batch's own, the variance biased
    return _normalized(x, gamma, beta, bn_param.get("eps", 1e-5), axis=0, keepdims=False)


def batchnorm_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x (N, D), gamma (D,) and beta (D,), given ``dout`` (N, D)."""
    xhat, xc, var, eps, gamma = cache
    n = dout.shape[0]
    std = np.sqrt(var + eps)
    # out = gamma * xhat + beta; gamma and beta are broadcast over the batch
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    # xhat = xc / std
    dxc = dxhat / std
    dstd = -(dxhat * xc).sum(axis=0) / std**2
    # std = sqrt(var + eps)
    dvar = dstd / (2.0 * std)
    # var = mean(xc**2) over the batch
    dxc = dxc + dvar * 2.0 * xc / n
    # xc = x - mu
    dmu = -dxc.sum(axis=0)
    # mu = mean(x) over the batch
    dx = dxc + dmu / n
    return dx, dgamma, dbeta


def layernorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, ln_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Layer norm for ``x`` (N, D): each sample normalised over its own D features.

    ``ln_param`` holds ``"eps"`` (default 1e-5).

    >>> out, _ = layernorm_forward(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2),
    ...                            {"eps": 0.0})
    >>> out
    array([[-1.,  1.]])
    """
    # statistics (N, 1): each sample's own
    return _normalized(x, gamma, beta, ln_param.get("eps", 1e-5), axis=1, keepdims=True)


def layernorm_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x (N, D), gamma (D,) and beta (D,), given ``dout`` (N, D)."""
    xhat, xc, var, eps, gamma = cache
    d = dout.shape[1]
    std = np.sqrt(var + eps)  # (N, 1)
    # out = gamma * xhat + beta; gamma and beta are broadcast over the batch
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    # xhat = xc / std
    dxc = dxhat / std
    dstd = -(dxhat * xc).sum(axis=1, keepdims=True) / std**2
    # std = sqrt(var + eps)
    dvar = dstd / (2.0 * std)
    # var = mean(xc**2) over the features
    dxc = dxc + dvar * 2.0 * xc / d
    # xc = x - mu
    dmu = -dxc.sum(axis=1, keepdims=True)
    # mu = mean(x) over the features
    dx = dxc + dmu / d
    return dx, dgamma, dbeta
