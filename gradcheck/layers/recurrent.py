"""Recurrent layers, course-style: RNN and LSTM steps and sequences, word embeddings, and
affine maps over time.

Shapes as the course writes them: a minibatch of N sequences of T steps, inputs of size D,
hidden states of size H; an LSTM's weights hold its four gates side by side (D, 4H), in the
order input, forget, output, and the candidate g. Each backward walks its forward in reverse,
one chain-rule term per line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "lstm_backward",
    "lstm_forward",
    "lstm_step_backward",
    "lstm_step_forward",
    "rnn_backward",
    "rnn_forward",
    "rnn_step_backward",
    "rnn_step_forward",
    "temporal_affine_backward",
    "temporal_affine_forward",
    "word_embedding_backward",
    "word_embedding_forward",
]

Cache = Any


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # both branches are exp of a non-positive number: no overflow at either end
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def rnn_step_forward(
    x: np.ndarray, prev_h: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """``next_h = tanh(x @ Wx + prev_h @ Wh + b)`` for x (N, D), prev_h (N, H).

    >>> h, _ = rnn_step_forward(np.zeros((1, 2)), np.zeros((1, 3)), np.ones((2, 3)),
    ...                         np.ones((3, 3)), np.zeros(3))
    >>> h
    array([[0., 0., 0.]])
    """
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(
    dnext_h: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x, prev_h, Wx, Wh and b, given ``dnext_h`` (N, H)."""
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1.0 - next_h**2)  # tanh'(a) = 1 - tanh(a)**2
    # a = x @ Wx + prev_h @ Wh + b
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(
    x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """The hidden states h (N, T, H) of an RNN run over x (N, T, D) from h0 (N, H)."""
    n, t_steps, _ = x.shape
    h = np.zeros((n, t_steps, h0.shape[1]), dtype=np.result_type(x, h0))
    caches = []
    prev_h = h0
    for t in range(t_steps):
        prev_h, step = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)
        h[:, t] = prev_h
        caches.append(step)
    return h, caches


def rnn_backward(
    dh: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x, h0, Wx, Wh and b, given ``dh`` (N, T, H), the upstream gradient of
    every hidden state."""
    caches = cache
    n, t_steps, _ = dh.shape
    x0, _, Wx, Wh, _ = caches[0]
    dx = np.zeros((n, t_steps, x0.shape[1]), dtype=dh.dtype)
    dWx, dWh = np.zeros_like(Wx), np.zeros_like(Wh)
    db = np.zeros(Wh.shape[1], dtype=dh.dtype)
    dprev_h = np.zeros((n, Wh.shape[0]), dtype=dh.dtype)
    for t in reversed(range(t_steps)):
        # h[t] feeds the output (dh[:, t]) and the next step (dprev_h from step t + 1)
        dx[:, t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev_h, caches[t])
        dWx += dWx_t  # the weights are shared by every step
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def word_embedding_forward(x: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Look up the vector of each word index in x (N, T), from W (V, D): out is (N, T, D).

    >>> word_embedding_forward(np.array([[1, 0]]), np.array([[0.0], [2.0]]))[0]
    array([[[2.],
            [0.]]])
    """
    return W[x], (x, W.shape)


def word_embedding_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of W: each row collects the dout of every position that looked it up
    (``np.add.at``, since a word may appear twice)."""
    x, w_shape = cache
    dW = np.zeros(w_shape, dtype=dout.dtype)
    np.add.at(dW, x, dout)
    return dW


def temporal_affine_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """The same affine map at every step: x (N, T, D) @ w (D, M) + b gives (N, T, M)."""
    return x @ w + b, (x, w)


def temporal_affine_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x, w and b, given ``dout`` (N, T, M)."""
    x, w = cache
    n, t_steps, d = x.shape
    dx = dout @ w.T
    # w and b are shared by every (sample, step): sum over both
    dw = x.reshape(n * t_steps, d).T @ dout.reshape(n * t_steps, -1)
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def lstm_step_forward(
    x: np.ndarray,
    prev_h: np.ndarray,
    prev_c: np.ndarray,
    Wx: np.ndarray,
    Wh: np.ndarray,
    b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, Cache]:
    """One LSTM step: gates ``a = x @ Wx + prev_h @ Wh + b`` (N, 4H) split into i, f, o, g;
    ``next_c = f * prev_c + i * g``, ``next_h = o * tanh(next_c)``."""
    hidden = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = _sigmoid(a[:, :hidden])
    f = _sigmoid(a[:, hidden : 2 * hidden])
    o = _sigmoid(a[:, 2 * hidden : 3 * hidden])
    g = np.tanh(a[:, 3 * hidden :])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)


def lstm_step_backward(
    dnext_h: np.ndarray, dnext_c: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x, prev_h, prev_c, Wx, Wh and b, given ``dnext_h`` and ``dnext_c``."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    # next_h = o * tanh(next_c): next_c gets its own upstream gradient and this one
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1.0 - tanh_c**2)
    # next_c = f * prev_c + i * g
    df = dc * prev_c
    dprev_c = dc * f
    di = dc * g
    dg = dc * i
    # the gates: sigmoid' = s (1 - s), tanh' = 1 - g**2
    da = np.concatenate(
        [di * i * (1.0 - i), df * f * (1.0 - f), do * o * (1.0 - o), dg * (1.0 - g**2)], axis=1
    )
    # a = x @ Wx + prev_h @ Wh + b
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(
    x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """The hidden states h (N, T, H) of an LSTM run over x (N, T, D) from h0, with the
    cell state starting at zero."""
    n, t_steps, _ = x.shape
    h = np.zeros((n, t_steps, h0.shape[1]), dtype=np.result_type(x, h0))
    prev_h, prev_c = h0, np.zeros_like(h0)
    caches = []
    for t in range(t_steps):
        prev_h, prev_c, step = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        caches.append(step)
    return h, caches


def lstm_backward(
    dh: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of x, h0, Wx, Wh and b, given ``dh`` (N, T, H). The initial cell state is a
    constant zero, so it has no gradient."""
    caches = cache
    n, t_steps, hidden = dh.shape
    x0, _, _, Wx, Wh = caches[0][:5]
    dx = np.zeros((n, t_steps, x0.shape[1]), dtype=dh.dtype)
    dWx, dWh = np.zeros_like(Wx), np.zeros_like(Wh)
    db = np.zeros(4 * hidden, dtype=dh.dtype)
    dprev_h = np.zeros((n, hidden), dtype=dh.dtype)
    dprev_c = np.zeros((n, hidden), dtype=dh.dtype)
    for t in reversed(range(t_steps)):
        step = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, caches[t])
        dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = step
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db
