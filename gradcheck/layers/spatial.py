"""Spatial batch norm and spatial group norm for images (N, C, H, W), course-style.

Spatial batch norm normalises each channel over the batch and every pixel: it is batch norm
with the image flattened to rows of C features. Group norm normalises each sample's groups of
C / G channels over their pixels. Both backwards run the normalisation graph in reverse::

    mu = mean(x)        xc = x - mu        var = mean(xc**2)
    std = sqrt(var + eps)        xhat = xc / std        out = gamma * xhat + beta
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck.layers.normalization import batchnorm_backward, batchnorm_forward

__all__ = [
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
    "spatial_groupnorm_backward",
    "spatial_groupnorm_forward",
]

Cache = Any


def _rows(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) to (N * H * W, C): one row per pixel, the channels as features."""
    n, c, height, width = x.shape
    return x.transpose(0, 2, 3, 1).reshape(n * height * width, c)


def _image(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n, c, height, width = shape
    return rows.reshape(n, height, width, c).transpose(0, 3, 1, 2)


def spatial_batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Batch norm per channel over (N, H, W), train mode; gamma and beta are (C,).

    >>> x = np.array([[[[1.0, 3.0]]]])
    >>> spatial_batchnorm_forward(x, np.ones(1), np.zeros(1), {"mode": "train", "eps": 0.0})[0]
    array([[[[-1.,  1.]]]])
    """
    out, cache = batchnorm_forward(_rows(x), gamma, beta, bn_param)
    return _image(out, x.shape), (cache, x.shape)


def spatial_batchnorm_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x, gamma and beta: batch norm's, on the same rows."""
    rows_cache, shape = cache
    dx, dgamma, dbeta = batchnorm_backward(_rows(dout), rows_cache)
    return _image(dx, shape), dgamma, dbeta


def spatial_groupnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, G: int, gn_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Each sample's G groups of C / G channels normalised over their channels and pixels;
    gamma and beta are (1, C, 1, 1), one scale and shift per channel."""
    eps = gn_param.get("eps", 1e-5)
    n, c, height, width = x.shape
    grouped = x.reshape(n, G, c // G * height * width)  # one row per (sample, group)
    mu = grouped.mean(axis=2, keepdims=True)
    xc = grouped - mu
    var = (xc**2).mean(axis=2, keepdims=True)
    std = np.sqrt(var + eps)
    xhat = (xc / std).reshape(x.shape)
    out = gamma * xhat + beta
    return out, (xhat, xc, std, G, gamma)


def spatial_groupnorm_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x (N, C, H, W), gamma and beta (1, C, 1, 1), given ``dout``."""
    xhat, xc, std, G, gamma = cache
    n, c, height, width = dout.shape
    m = c // G * height * width  # values per group
    # out = gamma * xhat + beta: gamma and beta are broadcast over samples and pixels
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * xhat).sum(axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(n, G, m)
    # xhat = xc / std
    dxc = dxhat / std
    dstd = -(dxhat * xc).sum(axis=2, keepdims=True) / std**2
    # std = sqrt(var + eps), var = mean(xc**2) over the group
    dvar = dstd / (2.0 * std)
    dxc = dxc + dvar * 2.0 * xc / m
    # xc = x - mu, mu = mean(x) over the group
    dx = dxc - dxc.sum(axis=2, keepdims=True) / m
    return dx.reshape(dout.shape), dgamma, dbeta
