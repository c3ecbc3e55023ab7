"""Naive 2-D convolution, max pool and average pool, course-style.

Images are (N, C, H, W) and need not be square. Each output position ``(i, j)`` reads one
window of the input; the backward visits the same windows and sends each output's gradient
back to the elements of its window, adding where windows overlap (stride < window).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "avg_pool_backward_naive",
    "avg_pool_forward_naive",
    "conv_backward_naive",
    "conv_forward_naive",
    "max_pool_backward_naive",
    "max_pool_forward_naive",
]

Cache = Any


def conv_forward_naive(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Cross-correlate ``x`` (N, C, H, W) with filters ``w`` (F, C, HH, WW), add ``b`` (F,).

    ``conv_param`` holds ``"stride"`` and ``"pad"`` (zeros on every side). The output is
    (N, F, H_out, W_out) with ``H_out = 1 + (H + 2 * pad - HH) // stride``, likewise W_out.

    >>> out, _ = conv_forward_naive(np.ones((1, 1, 3, 4)), np.ones((1, 1, 2, 2)), np.zeros(1),
    ...                             {"stride": 1, "pad": 0})
    >>> out.shape
    (1, 1, 2, 3)
    """
    stride, pad = conv_param["stride"], conv_param["pad"]
    n, _, height, width = x.shape
    filters, _, hh, ww = w.shape
    h_out = 1 + (height + 2 * pad - hh) // stride
    w_out = 1 + (width + 2 * pad - ww) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, filters, h_out, w_out), dtype=np.result_type(x, w))
    for i in range(h_out):
        for j in range(w_out):
            window = x_pad[:, :, i * stride : i * stride + hh, j * stride : j * stride + ww]
            # out[n, f, i, j] = sum_{c, u, v} window[n, c, u, v] * w[f, c, u, v] + b[f]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, conv_param)


def conv_backward_naive(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x, w and b, given ``dout`` (N, F, H_out, W_out)."""
    x, w, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, height, width = x.shape
    _, _, hh, ww = w.shape
    _, _, h_out, w_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = np.zeros(x_pad.shape, dtype=np.result_type(dout, x))
    dw = np.zeros(w.shape, dtype=np.result_type(dout, w))
    db = dout.sum(axis=(0, 2, 3))  # b[f] is added at every output position of filter f
    for i in range(h_out):
        for j in range(w_out):
            rows = slice(i * stride, i * stride + hh)
            cols = slice(j * stride, j * stride + ww)
            window = x_pad[:, :, rows, cols]  # (N, C, HH, WW)
            dout_ij = dout[:, :, i, j]  # (N, F)
            # d out[n, f, i, j] / d w[f, c, u, v] = window[n, c, u, v], summed over n
            dw += np.tensordot(dout_ij, window, axes=([0], [0]))
            # d out[n, f, i, j] / d window[n, c, u, v] = w[f, c, u, v], summed over f
            dx_pad[:, :, rows, cols] += np.tensordot(dout_ij, w, axes=([1], [0]))
    # the padding is not part of x: keep rows pad .. pad + H (not [pad:-pad], empty at pad 0)
    dx = dx_pad[:, :, pad : pad + height, pad : pad + width]
    return dx, dw, db


def _pool_geometry(
    x_shape: tuple[int, ...], pool_param: dict[str, Any]
) -> tuple[int, int, int, int, int]:
    """Window height and width, stride, and the output's height and width."""
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    _, _, height, width = x_shape
    return ph, pw, stride, 1 + (height - ph) // stride, 1 + (width - pw) // stride


def _pooled(
    x: np.ndarray, pool_param: dict[str, Any], reduce: Callable[..., np.ndarray]
) -> np.ndarray:
    """``reduce`` (np.max, np.mean) of each window of ``x``: (N, C, H_out, W_out)."""
    ph, pw, stride, h_out, w_out = _pool_geometry(x.shape, pool_param)
    n, c, _, _ = x.shape
    out = np.zeros((n, c, h_out, w_out), dtype=x.dtype)
    for i in range(h_out):
        for j in range(w_out):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            out[:, :, i, j] = reduce(window, axis=(2, 3))
    return out


def max_pool_forward_naive(x: np.ndarray, pool_param: dict[str, Any]) -> tuple[np.ndarray, Cache]:
    """The maximum of each ``pool_height`` x ``pool_width`` window of ``x`` (N, C, H, W),
    windows ``pool_param["stride"]`` apart.

    >>> x = np.arange(6.0).reshape(1, 1, 2, 3)
    >>> max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 1})[0]
    array([[[[4., 5.]]]])
    """
    return _pooled(x, pool_param, np.max), (x, pool_param)


def max_pool_backward_naive(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of x: each window's dout goes to the element that won its max (the first
    one on a tie, as torch picks)."""
    x, pool_param = cache
    ph, pw, stride, h_out, w_out = _pool_geometry(x.shape, pool_param)
    n, c, _, _ = x.shape
    dx = np.zeros(x.shape, dtype=np.result_type(dout, x))
    batch, channel = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")  # (N, C) each
    for i in range(h_out):
        for j in range(w_out):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            winner = window.reshape(n, c, ph * pw).argmax(axis=2)  # (N, C): flat index
            u, v = np.divmod(winner, pw)  # its row and column in the window
            # d max / d window = 1 at the winner, 0 elsewhere; += where windows overlap
            np.add.at(dx, (batch, channel, i * stride + u, j * stride + v), dout[:, :, i, j])
    return dx


def avg_pool_forward_naive(x: np.ndarray, pool_param: dict[str, Any]) -> tuple[np.ndarray, Cache]:
    """The mean of each ``pool_height`` x ``pool_width`` window of ``x`` (N, C, H, W),
    windows ``pool_param["stride"]`` apart.

    >>> x = np.arange(6.0).reshape(1, 1, 2, 3)
    >>> avg_pool_forward_naive(x, {"pool_height": 2, "pool_width": 3, "stride": 1})[0]
    array([[[[2.5]]]])
    """
    return _pooled(x, pool_param, np.mean), (x.shape, pool_param)


def avg_pool_backward_naive(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of x: each window's dout is shared equally by its ph * pw elements."""
    x_shape, pool_param = cache
    ph, pw, stride, h_out, w_out = _pool_geometry(x_shape, pool_param)
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(h_out):
        for j in range(w_out):
            # d mean / d window = 1 / (ph * pw) for every element; += where windows overlap
            share = dout[:, :, i, j][:, :, None, None] / (ph * pw)
            dx[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw] += share
    return dx
