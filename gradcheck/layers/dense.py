"""Affine, the elementwise nonlinearities and dropout, course-style.

``out, cache = layer_forward(...)`` keeps what the backward needs; ``layer_backward(dout,
cache)`` walks the chain rule back, one line per term: ``dx = dout * (d out / d x)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "affine_backward",
    "affine_forward",
    "dropout_backward",
    "dropout_forward",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "tanh_backward",
    "tanh_forward",
]

Cache = Any


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """``out = x.reshape(N, D) @ w + b`` for ``x`` of shape (N, d_1, ..., d_k), D = d_1...d_k.

    >>> out, cache = affine_forward(np.ones((2, 3, 4)), np.ones((12, 5)), np.zeros(5))
    >>> out.shape
    (2, 5)
    """
    x_rows = x.reshape(x.shape[0], -1)  # (N, D): each sample flattened, whatever its rank
    out = x_rows @ w + b  # (N, M)
    return out, (x, w)


def affine_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x (in x's own shape), w and b, given ``dout`` (N, M)."""
    x, w = cache
    x_rows = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape)  # d(x_rows @ w)/dx_rows = w.T, then x's own shape
    dw = x_rows.T @ dout  # d(x_rows @ w)/dw = x_rows.T, summed over the batch
    db = dout.sum(axis=0)  # b is broadcast over the batch
    return dx, dw, db


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """``out = max(x, 0)``.

    >>> relu_forward(np.array([-1.0, 2.0]))[0]
    array([0., 2.])
    """
    out = np.maximum(x, 0.0)
    return out, x


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    x = cache
    dx = dout * (x > 0)  # relu'(x) = 1 where x > 0, else 0; dout itself is left alone
    return dx


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """``out = 1 / (1 + exp(-x))``.

    >>> sigmoid_forward(np.zeros(1))[0]
    array([0.5])
    """
    out = 1.0 / (1.0 + np.exp(-x))
    return out, out


def sigmoid_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    out = cache
    dx = dout * out * (1.0 - out)  # sigmoid'(x) = sigmoid(x) * (1 - sigmoid(x))
    return dx


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """``out = tanh(x)``.

    >>> tanh_forward(np.zeros(1))[0]
    array([0.])
    """
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    out = cache
    dx = dout * (1.0 - out**2)  # tanh'(x) = 1 - tanh(x)**2
    return dx


def dropout_forward(x: np.ndarray, dropout_param: dict[str, Any]) -> tuple[np.ndarray, Cache]:
    """Inverted dropout in train mode: keep each unit with probability ``dropout_param["p"]``
    and scale the kept ones by ``1 / p``, so that the expected ``out`` is ``x``.

    The mask is drawn as the course draws it, ``np.random.seed(seed); rand(*x.shape) < p``,
    from a private generator so that the global one is left alone; a fixed ``"seed"`` makes
    it a fixed mask.

    >>> out, _ = dropout_forward(np.ones(4), {"p": 1.0, "seed": 0, "mode": "train"})
    >>> out
    array([1., 1., 1., 1.])
    """
    if dropout_param.get("mode", "train") != "train":
        raise ValueError(
            f"dropout_forward: mode={dropout_param['mode']!r}; this reference layer is the "
            "train mode only (at test time dropout is the identity)."
        )
    p = dropout_param["p"]  # the probability of keeping a unit
    keep = np.random.RandomState(dropout_param["seed"]).rand(*x.shape) < p
    mask = keep / p  # (x.shape): 1/p where kept, 0 where dropped
    out = x * mask
    return out, mask


def dropout_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    mask = cache
    dx = dout * mask  # out = x * mask, and the mask does not depend on x
    return dx
