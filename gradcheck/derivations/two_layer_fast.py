"""The two-layer ReLU net's hand backward, built for speed: same chain rule, no allocations.

``two_layer.py`` writes each term of the chain rule as a fresh array, which reads like the
math. Here the same terms are written into a workspace allocated once per shape and dtype:
every matmul has an ``out=``, the ReLU and its derivative are applied in place, and in torch
the ``2 * (y_pred - y)`` term is folded into the matmul that makes ``y_pred`` (``addmm``
with ``beta=-2, alpha=2``). A step is then its five matmuls and little else: no allocation,
no page fault on fresh memory, however large the net (see benchmarks/README.md for what
that buys at each size).

The gradients returned are the workspace's own arrays: they hold this step's result until the
next call with the same shapes, dtype (and device) overwrites them, as a training loop that
consumes its gradients before the next step expects. Copy them to keep them. The inputs are
never written; passing a returned gradient back in as an input is refused, because the
step would then overwrite its own input.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> point = {"x": rng.standard_normal((4, 3)), "y": rng.standard_normal((4, 2)),
...          "w1": rng.standard_normal((3, 5)), "w2": rng.standard_normal((5, 2))}
>>> grads = backward_numpy_fast(**point)
>>> from gradcheck.derivations.two_layer import backward_numpy
>>> bool(np.allclose(grads["w1"], backward_numpy(**point)["w1"]))
True
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from gradcheck.derivations.two_layer import SHAPES, two_layer_relu

__all__ = [
    "WORKSPACES_KEPT",
    "backward_numpy_fast",
    "backward_torch_fast",
    "two_layer_relu_numpy_fast",
    "two_layer_relu_torch_fast",
]

# Workspaces kept per thread, most recently used first. A training loop uses one shape; the
# harness walks through many (each example draws new dims), so the cache is bounded: a few
# entries cover alternating shapes (say train and eval batch sizes) without holding on to
# every shape a search ever tried.
WORKSPACES_KEPT = 8

Dims = tuple[int, int, int, int]  # (N, D_in, H, D_out)


class _Workspace(Protocol):
    def holds(self, value: Any) -> bool: ...


W = TypeVar("W", bound=_Workspace)


@dataclass(frozen=True)
class NumpyWorkspace:
    """The buffers of one numpy step at one (N, D_in, H, D_out) and dtype."""

    h_relu: np.ndarray  # (N, H): x @ w1, then relu of it in place
    active: np.ndarray  # (N, H) bool: relu'(h)
    grad_y_pred: np.ndarray  # (N, D_out)
    grad_h: np.ndarray  # (N, H): grad of h_relu, then of h once masked in place
    grad_w1: np.ndarray  # (D_in, H): returned
    grad_w2: np.ndarray  # (H, D_out): returned

    @classmethod
    def allocate(cls, dims: Dims, x: np.ndarray) -> NumpyWorkspace:
        n, d_in, h, d_out = dims
        return cls(
            h_relu=np.empty((n, h), x.dtype),
            active=np.empty((n, h), np.bool_),
            grad_y_pred=np.empty((n, d_out), x.dtype),
            grad_h=np.empty((n, h), x.dtype),
            grad_w1=np.empty((d_in, h), x.dtype),
            grad_w2=np.empty((h, d_out), x.dtype),
        )

    def holds(self, value: np.ndarray) -> bool:
        """``value`` is (a view of) a gradient this workspace returns."""
        owner = value if value.base is None else value.base  # a view's base owns the memory
        return owner is self.grad_w1 or owner is self.grad_w2


@dataclass(frozen=True)
class TorchWorkspace:
    """The buffers of one torch step at one (N, D_in, H, D_out), dtype and device."""

    h_relu: torch.Tensor  # (N, H): x @ w1, then relu of it in place
    grad_y_pred: torch.Tensor  # (N, D_out)
    grad_h: torch.Tensor  # (N, H): grad of h_relu, then of h once masked in place
    grad_w1: torch.Tensor  # (D_in, H): returned
    grad_w2: torch.Tensor  # (H, D_out): returned
    result_storages: frozenset[int]  # where grad_w1 and grad_w2 live, to refuse them as inputs

    @classmethod
    def allocate(cls, dims: Dims, x: torch.Tensor) -> TorchWorkspace:
        n, d_in, h, d_out = dims

        def empty(*shape: int) -> torch.Tensor:
            return torch.empty(shape, dtype=x.dtype, device=x.device)

        grad_w1, grad_w2 = empty(d_in, h), empty(h, d_out)
        return cls(
            h_relu=empty(n, h),
            grad_y_pred=empty(n, d_out),
            grad_h=empty(n, h),
            grad_w1=grad_w1,
            grad_w2=grad_w2,
            # A zero-size buffer has no storage (address 0): nothing can alias it.
            result_storages=frozenset(
                ptr for out in (grad_w1, grad_w2) if (ptr := out.untyped_storage().data_ptr())
            ),
        )

    def holds(self, value: torch.Tensor) -> bool:
        """``value`` shares storage with a gradient this workspace returns."""
        return value.untyped_storage().data_ptr() in self.result_storages


def _dims(function: str, x: Any, y: Any, w1: Any, w2: Any) -> Dims:
    """(N, D_in, H, D_out), with a message naming the argument when the shapes disagree."""
    for name, value in (("x", x), ("y", y), ("w1", w1), ("w2", w2)):
        if value.ndim != 2:
            raise ValueError(
                f"{function}: {name} has shape {tuple(value.shape)}; it must be 2-d "
                f"({', '.join(map(str, SHAPES[name]))}). Reshape a single sample to (1, D)."
            )
    n, d_in = x.shape
    h, d_out = w2.shape
    expected = {"y": (n, d_out), "w1": (d_in, h)}
    for name, value in (("y", y), ("w1", w1)):
        if tuple(value.shape) != expected[name]:
            raise ValueError(
                f"{function}: {name} has shape {tuple(value.shape)}, but x is {tuple(x.shape)} "
                f"and w2 is {tuple(w2.shape)}, so {name} must be {expected[name]} "
                f"({', '.join(map(str, SHAPES[name]))})."
            )
    return n, d_in, h, d_out


@dataclass(frozen=True)
class _Inputs:
    """What one library's step accepts, and the fix a message names when an input is not."""

    array: type  # np.ndarray or torch.Tensor
    floats: tuple[Any, ...]  # the dtypes it takes
    not_array: str  # the fix for an input of another type
    not_float: str  # the fix for x of another dtype
    mixed: str  # an input in another dtype (or on another device) than x; for str.format


def _validated(function: str, accepted: _Inputs, x: Any, y: Any, w1: Any, w2: Any) -> Dims:
    """(N, D_in, H, D_out) of four inputs of the library's array type, in one float dtype
    on one device; a message naming the argument and the fix otherwise."""
    inputs = {"x": x, "y": y, "w1": w1, "w2": w2}
    for name, value in inputs.items():
        if not isinstance(value, accepted.array):
            raise TypeError(f"{function}: {name} is a {type(value).__name__}; {accepted.not_array}")
    if x.dtype not in accepted.floats:
        raise TypeError(f"{function}: x has dtype {x.dtype}; {accepted.not_float}")
    for name, value in inputs.items():
        if value.dtype != x.dtype or _device(value) != _device(x):
            raise TypeError(f"{function}: " + accepted.mixed.format(name=name, value=value, x=x))
    return _dims(function, x, y, w1, w2)


class _Workspaces(Generic[W]):
    """One step's workspaces: a small per-thread LRU, so that two threads never share buffers.

    ``get`` looks a workspace up by a cheap key (types, shapes, dtypes, devices of the
    inputs); only on a miss are the inputs validated and the buffers allocated, so that this
    happens once per shape, not on every step. An input that is one of the gradients the
    workspace returns is refused: the step would overwrite it while reading it.
    """

    def __init__(
        self, function: str, accepted: _Inputs, allocate: Callable[[Dims, Any], W]
    ) -> None:
        self.function, self.accepted, self.allocate = function, accepted, allocate
        self._local = threading.local()

    def _new(self, x: Any, y: Any, w1: Any, w2: Any) -> W:
        return self.allocate(_validated(self.function, self.accepted, x, y, w1, w2), x)

    def get(self, x: Any, y: Any, w1: Any, w2: Any) -> W:
        try:
            key: Hashable = (
                type(x), type(y), type(w1), type(w2),
                x.shape, y.shape, w1.shape, w2.shape,
                x.dtype, y.dtype, w1.dtype, w2.dtype,
                getattr(x, "device", None), getattr(y, "device", None),
                getattr(w1, "device", None), getattr(w2, "device", None),
            )  # fmt: skip
        except AttributeError:  # not arrays: let the validation say so
            return self._new(x, y, w1, w2)
        cache: OrderedDict[Hashable, W] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        workspace = cache.get(key)
        if workspace is None:
            workspace = cache[key] = self._new(x, y, w1, w2)
            while len(cache) > WORKSPACES_KEPT:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        for name, value in (("x", x), ("y", y), ("w1", w1), ("w2", w2)):
            if workspace.holds(value):
                raise ValueError(
                    f"{self.function}: {name} is (a view of) a gradient returned by an earlier "
                    f"call, which this call overwrites; pass a copy ({name}.copy() or "
                    f"{name}.clone()) to use it as an input."
                )
        return workspace


def _device(value: Any) -> Any:
    """A tensor's device; numpy arrays have none before numpy 2 and only the CPU after."""
    return getattr(value, "device", None)


# Each step's workspaces, with what it accepts and the fix that each message names.
_NUMPY_WORKSPACES = _Workspaces(
    "backward_numpy_fast",
    _Inputs(
        array=np.ndarray,
        floats=(np.float32, np.float64),
        not_array="pass numpy arrays (np.asarray(...)), or use backward_torch_fast for tensors.",
        not_float="use float32 or float64 (x.astype(np.float64)).",
        mixed=(
            "{name} has dtype {value.dtype} but x has {x.dtype}; pass all four in one dtype "
            "(the workspace is built per dtype)."
        ),
    ),
    NumpyWorkspace.allocate,
)
_TORCH_WORKSPACES = _Workspaces(
    "backward_torch_fast",
    _Inputs(
        array=torch.Tensor,
        floats=(torch.float32, torch.float64),
        not_array=(
            "pass torch tensors (torch.as_tensor(...)), or use backward_numpy_fast for arrays."
        ),
        not_float="use torch.float32 or torch.float64.",
        mixed=(
            "{name} is {value.dtype} on {value.device} but x is {x.dtype} on {x.device}; pass "
            "all four in one dtype on one device."
        ),
    ),
    TorchWorkspace.allocate,
)


# ---------------------------------------------------------------------------------- numpy


def backward_numpy_fast(
    x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray
) -> dict[str, np.ndarray]:
    """Gradients of ``sum((relu(x @ w1) @ w2 - y)**2)`` wrt w1 and w2, into a workspace.

    The arrays returned are overwritten by the next call with the same shapes and dtype.
    """
    ws = _NUMPY_WORKSPACES.get(x, y, w1, w2)
    h_relu = np.matmul(x, w1, out=ws.h_relu)  # h = x @ w1
    np.maximum(h_relu, 0.0, out=h_relu)  # h_relu = relu(h); h itself is not needed again
    np.greater(h_relu, 0.0, out=ws.active)  # relu'(h): h > 0 exactly where h_relu > 0
    grad_y_pred = np.matmul(h_relu, w2, out=ws.grad_y_pred)  # y_pred = h_relu @ w2
    np.subtract(grad_y_pred, y, out=grad_y_pred)
    np.multiply(grad_y_pred, 2.0, out=grad_y_pred)  # d/dy_pred of sum((y_pred - y)**2)
    np.matmul(h_relu.T, grad_y_pred, out=ws.grad_w2)  # y_pred = h_relu @ w2
    grad_h = np.matmul(grad_y_pred, w2.T, out=ws.grad_h)  # grad of h_relu
    np.multiply(grad_h, ws.active, out=grad_h)  # h_relu = relu(h)
    np.matmul(x.T, grad_h, out=ws.grad_w1)  # h = x @ w1
    return {"w1": ws.grad_w1, "w2": ws.grad_w2}


# ---------------------------------------------------------------------------------- torch


def _torch_step(
    x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor
) -> dict[str, torch.Tensor]:
    ws = _TORCH_WORKSPACES.get(x, y, w1, w2)
    h_relu = torch.mm(x, w1, out=ws.h_relu)  # h = x @ w1
    h_relu.relu_()  # h_relu = relu(h); h itself is not needed again
    # y_pred = h_relu @ w2 and d/dy_pred of sum((y_pred - y)**2) = 2 * (y_pred - y), as one
    # GEMM: addmm computes beta * y + alpha * (h_relu @ w2). Scaling by 2 is exact, so this
    # rounds exactly as 2 * (y_pred - y) would.
    grad_y_pred = torch.addmm(y, h_relu, w2, beta=-2.0, alpha=2.0, out=ws.grad_y_pred)
    torch.mm(h_relu.t(), grad_y_pred, out=ws.grad_w2)  # y_pred = h_relu @ w2
    grad_h = torch.mm(grad_y_pred, w2.t(), out=ws.grad_h)  # grad of h_relu
    # h_relu = relu(h): zero the gradient where h_relu <= 0, in place, with the op autograd's
    # ReLU uses (5 us at the seeds' size, against 17 for masked_fill_ and 25 for a product
    # with a fresh bool mask).
    torch.ops.aten.threshold_backward.grad_input(grad_h, h_relu, 0.0, grad_input=grad_h)
    torch.mm(x.t(), grad_h, out=ws.grad_w1)  # h = x @ w1
    return {"w1": ws.grad_w1, "w2": ws.grad_w2}


def backward_torch_fast(
    x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Gradients of ``sum((relu(x @ w1) @ w2 - y)**2)`` wrt w1 and w2, into a workspace.

    Works on any device, CUDA included, and inside CUDA-graph capture once a first call has
    built the workspace. The tensors returned are overwritten by the next call with the same
    shapes, dtype and device.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, w1, w2)):
        with torch.no_grad():  # parameters require grad; the hand step records nothing
            return _torch_step(x, y, w1, w2)
    return _torch_step(x, y, w1, w2)


two_layer_relu_numpy_fast = two_layer_relu(
    "two_layer_relu_numpy_fast", backward_numpy_fast, backend="numpy"
)
two_layer_relu_torch_fast = two_layer_relu(
    "two_layer_relu_torch_fast", backward_torch_fast, backend="torch"
)
