"""Linear classifiers' losses, course-style: ``loss, dW = f(W, X, y, reg)``.

Scores are ``X @ W`` for data X (N, D) and weights W (D, C); the data loss is averaged over
the batch and the L2 penalty is ``reg * sum(W * W)``, so its gradient is ``2 * reg * W``.
(Some years of the course write ``0.5 * reg * sum(W * W)``; ``standard_layer`` accepts both.)
"""

from __future__ import annotations

import numpy as np

from gradcheck.layers.losses import softmax_loss, svm_loss

__all__ = ["softmax_loss_vectorized", "svm_loss_vectorized"]


def softmax_loss_vectorized(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float
) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy of the scores X @ W plus ``reg * sum(W * W)``, and dW.

    >>> loss, dW = softmax_loss_vectorized(np.zeros((1, 2)), np.ones((1, 1)), np.array([0]), 0.0)
    >>> round(loss, 4), dW
    (0.6931, array([[-0.5,  0.5]]))
    """
    data_loss, dscores = softmax_loss(X @ W, y)
    # scores = X @ W, then the penalty reg * sum(W**2) adds 2 * reg * W
    return data_loss + reg * float(np.sum(W * W)), X.T @ dscores + 2.0 * reg * W


def svm_loss_vectorized(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float
) -> tuple[float, np.ndarray]:
    """Multiclass hinge loss (margin 1) of the scores X @ W plus ``reg * sum(W * W)``, and dW.

    >>> loss, dW = svm_loss_vectorized(np.zeros((1, 2)), np.ones((1, 1)), np.array([0]), 0.0)
    >>> loss, dW
    (1.0, array([[-1.,  1.]]))
    """
    data_loss, dscores = svm_loss(X @ W, y)
    return data_loss + reg * float(np.sum(W * W)), X.T @ dscores + 2.0 * reg * W
