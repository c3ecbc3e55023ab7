"""Softmax cross-entropy and the multiclass SVM hinge loss, course-style.

A course writes a loss as one function returning the loss and its gradient:
``loss, dx = softmax_loss(x, y)`` for scores ``x`` (N, C) and integer labels ``y`` (N,).
Both average over the batch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["softmax_loss", "svm_loss", "temporal_softmax_loss"]


def softmax_loss(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """``loss = mean_i -log softmax(x_i)[y_i]`` and ``dx``.

    >>> loss, dx = softmax_loss(np.zeros((1, 2)), np.array([0]))
    >>> round(float(loss), 4), dx
    (0.6931, array([[-0.5,  0.5]]))
    """
    n = x.shape[0]
    rows = np.arange(n)
    shifted = x - x.max(axis=1, keepdims=True)  # softmax is unchanged; exp cannot overflow
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, C)
    probs = np.exp(log_probs)
    loss = -log_probs[rows, y].sum() / n
    # d(-log softmax(x)[y]) / dx = softmax(x) - one_hot(y), then / N for the mean
    dx = probs.copy()
    dx[rows, y] -= 1.0
    dx /= n
    return float(loss), dx


def svm_loss(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """``loss = mean_i sum_{j != y_i} max(0, x_ij - x_iy_i + 1)`` and ``dx``.

    >>> loss, dx = svm_loss(np.array([[1.0, 1.5]]), np.array([0]))
    >>> float(loss), dx
    (1.5, array([[-1.,  1.]]))
    """
    n = x.shape[0]
    rows = np.arange(n)
    correct = x[rows, y][:, None]  # (N, 1): the score of the right class
    margins = np.maximum(0.0, x - correct + 1.0)  # (N, C): hinge with margin 1
    margins[rows, y] = 0.0  # the right class does not compete with itself
    loss = margins.sum() / n
    # each positive margin adds +1 to d/dx_ij and -1 to d/dx_iy_i; then / N for the mean
    active = (margins > 0).astype(x.dtype)  # (N, C)
    dx = active.copy()
    dx[rows, y] -= active.sum(axis=1)
    dx /= n
    return float(loss), dx


def temporal_softmax_loss(
    x: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> tuple[float, np.ndarray]:
    """Softmax loss at every step of x (N, T, V) with labels y (N, T), counted only where
    the boolean ``mask`` (N, T) is True, summed over steps and averaged over the batch N.

    >>> loss, dx = temporal_softmax_loss(np.zeros((1, 1, 2)), np.array([[0]]), np.array([[True]]))
    >>> round(float(loss), 4), dx
    (0.6931, array([[[-0.5,  0.5]]]))
    """
    n, t_steps, v = x.shape
    rows = np.arange(n * t_steps)
    flat_x, flat_y, flat_mask = x.reshape(-1, v), y.reshape(-1), mask.reshape(-1)
    shifted = flat_x - flat_x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -(flat_mask * log_probs[rows, flat_y]).sum() / n
    # d(-log softmax[y]) = softmax - one_hot(y), only where masked in, then / N
    dx = np.exp(log_probs)
    dx[rows, flat_y] -= 1.0
    dx *= flat_mask[:, None] / n
    return float(loss), dx.reshape(x.shape)
