"""What the benchmarks time: one forward+backward step per implementation, and a large GEMM.

A step computes the gradients of the loss wrt the weights and nothing else (no parameter
update). Every builder here returns a ``Step``: a no-argument callable that runs one step and
returns ``{name: gradient}``, plus what the benchmark records about it. On CUDA the callable
ends with ``torch.cuda.synchronize()``, so that a wall-clock timer measures the kernels and
not only their launch.

FLOPs count 2*m*n*k per matmul and nothing else: elementwise work is small beside the
matmuls at every size here, and a count that ignores it is the same for every
implementation, so GFLOP/s compare like for like.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradcheck.derivations import linear_stack, scalar_chain, two_layer, two_layer_fast

__all__ = [
    "DTYPES",
    "LARGE",
    "NET_SIZES",
    "SEEDS_SIZE",
    "NetSize",
    "Step",
    "Unavailable",
    "gemm_step",
    "linear_stack_flops",
    "linear_stack_step",
    "scalar_chain_step",
    "two_layer_flops",
    "two_layer_point",
    "two_layer_step",
]

DTYPES: dict[str, tuple[type[np.floating], torch.dtype]] = {
    "float32": (np.float32, torch.float32),
    "float64": (np.float64, torch.float64),
}

Gradients = Mapping[str, Any]


class Unavailable(Exception):
    """This implementation cannot run here (no CUDA, torch.compile failed): the reason."""


@dataclass(frozen=True)
class NetSize:
    """The two-layer net's sizes; ``label`` is the parametrize id and the chart's x tick."""

    N: int
    D_in: int
    H: int
    D_out: int
    label: str

    def as_info(self) -> dict[str, int]:
        return {"N": self.N, "D_in": self.D_in, "H": self.H, "D_out": self.D_out}


SEEDS_SIZE = NetSize(64, 1000, 100, 10, "N64")  # the seed notebooks' net
LARGE = NetSize(4096, 4096, 1024, 256, "large")  # GEMM-bound: where peak is in reach
NET_SIZES = (
    SEEDS_SIZE,
    NetSize(512, 1000, 100, 10, "N512"),
    NetSize(4096, 1000, 100, 10, "N4096"),
    LARGE,
)

# The sizes where a step is a few dozen kernel launches of microseconds each: on a GPU the
# launches, not the arithmetic, set the time, which is what a CUDA graph removes.
CUDA_GRAPH_SIZES = (SEEDS_SIZE, NET_SIZES[1])


@dataclass
class Step:
    """One step, ready to call, and what a benchmark records about it."""

    run: Callable[[], Gradients]
    library: str  # whose kernels do the work: "numpy" or "torch"; the peak is looked up by it
    flops: int | None
    compile_s: float | None = None  # torch.compile: the first call, kept out of the timing
    keep: list[Any] = field(default_factory=list)  # objects the step needs kept alive


def two_layer_flops(size: NetSize) -> int:
    """Five matmuls: x @ w1 and h_relu @ w2 forward; h_relu.T @ g, g @ w2.T and x.T @ grad_h
    back. (No gradient is taken wrt x, by the hand code or by autograd.)"""
    n, d_in, h, d_out = size.N, size.D_in, size.H, size.D_out
    return 2 * (2 * n * d_in * h + 3 * n * h * d_out)


def two_layer_point(size: NetSize, dtype: str, *, seed: int = 0) -> dict[str, np.ndarray]:
    """randn inputs (as in the seeds) drawn in float64 and rounded once to ``dtype``."""
    rng = np.random.default_rng(seed)
    shapes = {
        "x": (size.N, size.D_in),
        "y": (size.N, size.D_out),
        "w1": (size.D_in, size.H),
        "w2": (size.H, size.D_out),
    }
    np_dtype = DTYPES[dtype][0]
    return {name: rng.standard_normal(shape).astype(np_dtype) for name, shape in shapes.items()}


def _synchronized(run: Callable[[], Gradients], device: str) -> Callable[[], Gradients]:
    if device != "cuda":
        return run

    def run_and_wait() -> Gradients:
        grads = run()
        torch.cuda.synchronize()
        return grads

    return run_and_wait


def _tensors(point: Mapping[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(value.copy()).to(device) for name, value in point.items()}


def _require(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("CUDA is not available (torch.cuda.is_available() is False)")


NUMPY_BACKWARDS = {
    "numpy_hand": two_layer.backward_numpy,
    "numpy_fast": two_layer_fast.backward_numpy_fast,
}
TORCH_BACKWARDS = {
    "torch_hand": two_layer.backward_torch,
    "torch_fast": two_layer_fast.backward_torch_fast,
}


def two_layer_step(impl: str, device: str, size: NetSize, dtype: str) -> Step:
    """The two-layer net's step for ``impl`` (see README.md for what each one is)."""
    _require(device)
    point = two_layer_point(size, dtype)
    flops = two_layer_flops(size)
    if impl in NUMPY_BACKWARDS:
        if device != "cpu":
            raise Unavailable(f"{impl} runs on the CPU only")
        numpy_backward = NUMPY_BACKWARDS[impl]
        return Step(lambda: numpy_backward(**point), "numpy", flops)
    tensors = _tensors(point, device)
    if impl in TORCH_BACKWARDS:
        torch_backward = TORCH_BACKWARDS[impl]
        return Step(_synchronized(lambda: torch_backward(**tensors), device), "torch", flops)
    if impl == "torch_fast_graph":
        return _cuda_graph_step(tensors, device, flops)
    if impl == "torch_autograd":
        return Step(_synchronized(_autograd_step(tensors), device), "torch", flops)
    if impl == "torch_compile":
        return _compiled_step(tensors, device, flops)
    raise ValueError(f"two_layer_step: impl={impl!r} is not one this module builds.")


def _autograd_step(tensors: Mapping[str, torch.Tensor]) -> Callable[[], Gradients]:
    x, y = tensors["x"], tensors["y"]
    w1 = tensors["w1"].clone().requires_grad_(True)
    w2 = tensors["w2"].clone().requires_grad_(True)

    def step() -> Gradients:
        w1.grad = None  # what optimizer.zero_grad() does (set_to_none=True by default)
        w2.grad = None
        two_layer.loss(x, y, w1, w2).backward()
        return {"w1": w1.grad, "w2": w2.grad}

    return step


def _compiled_step(tensors: Mapping[str, torch.Tensor], device: str, flops: int) -> Step:
    """``torch.func.grad`` of the spec, compiled; the first call (the compile) is timed apart.

    Compiling in this process (compile_threads=1) leaves no pool of compile workers running
    beside the timing. Dynamo's cache is reset first: every case compiles the same function,
    and past its cache limit dynamo would quietly fall back to eager.
    """
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    grad = torch.func.grad(two_layer.loss, argnums=(2, 3))
    compiled = torch.compile(grad, fullgraph=True, dynamic=False)
    args = (tensors["x"], tensors["y"], tensors["w1"], tensors["w2"])
    started = time.perf_counter()
    try:
        with torch._inductor.config.patch(compile_threads=1):
            compiled(*args)
            if device == "cuda":
                torch.cuda.synchronize()
    except Exception as exc:  # any backend failure (no compiler, no triton) means: not here
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise Unavailable(f"torch.compile failed: {type(exc).__name__}: {first_line}") from exc
    compile_s = time.perf_counter() - started

    def step() -> Gradients:
        grad_w1, grad_w2 = compiled(*args)
        return {"w1": grad_w1, "w2": grad_w2}

    return Step(_synchronized(step, device), "torch", flops, compile_s=compile_s)


def _cuda_graph_step(tensors: Mapping[str, torch.Tensor], device: str, flops: int) -> Step:
    """The fast hand step captured once in a CUDA graph and replayed: one launch a step.

    As torch's CUDA-graph recipe asks, a few warm-up calls on a side stream come first; they
    also build the step's workspace, so that the capture allocates nothing and the graph
    replays into the buffers the first calls made.
    """
    if device != "cuda":
        raise Unavailable("a CUDA graph needs CUDA")
    fast = two_layer_fast.backward_torch_fast
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fast(**tensors)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        grads = fast(**tensors)

    def replay() -> Gradients:
        graph.replay()
        torch.cuda.synchronize()
        return grads

    # The graph writes into the workspace's buffers; nothing else runs at this shape while
    # the benchmark replays it, and keeping the inputs alive keeps their memory in place.
    return Step(replay, "torch", flops, keep=[graph, tensors, grads])


# ------------------------------------------------------------------- the seeds' small nets


def scalar_chain_step(impl: str, n: int) -> Step:
    """The seeds' ``a2 * (a1 * x + b1) + b2`` on x = 1, 3, 5, ... and y = 2x + 10, from the
    seeds' starting values (a = 20, b = 30); no matmuls, so ``flops`` is 0."""
    x = np.arange(1.0, 2.0 * n, 2.0)
    y = 2.0 * x + 10.0
    params = {"a1": 20.0, "b1": 30.0, "a2": 20.0, "b2": 30.0}
    if impl == "numpy_hand":
        scalars = {name: np.array(value) for name, value in params.items()}  # 0-d arrays
        return Step(lambda: scalar_chain.backward(x=x, y=y, **scalars), "numpy", 0)
    if impl == "torch_autograd":
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        leaves = {
            name: torch.tensor(value, dtype=torch.float64, requires_grad=True)
            for name, value in params.items()
        }

        def step() -> Gradients:
            for leaf in leaves.values():
                leaf.grad = None
            scalar_chain.loss(x=tx, y=ty, **leaves).backward()
            return {name: leaf.grad for name, leaf in leaves.items()}

        return Step(step, "torch", 0)
    raise ValueError(f"scalar_chain_step: impl={impl!r} is not one this module builds.")


LINEAR_STACK_WIDTHS = (2, 2, 2, 1)  # the seeds' 2-2-2-1 stack


def linear_stack_flops(n: int) -> int:
    """Three matmuls forward, three for the weights and two for the hidden activations back
    (the gradient wrt x is not needed)."""
    d0, d1, d2, d3 = LINEAR_STACK_WIDTHS
    forward = n * d0 * d1 + n * d1 * d2 + n * d2 * d3
    back = forward + n * d2 * d3 + n * d1 * d2
    return 2 * (forward + back)


def linear_stack_step(impl: str, n: int) -> Step:
    """The seeds' three-layer linear stack on their data: x ~ randn(n, 2), y = x @ [2, 1] + 3
    plus randn noise; randn weights and biases."""
    rng = np.random.default_rng(0)
    d0, d1, d2, d3 = LINEAR_STACK_WIDTHS
    x = rng.standard_normal((n, d0))
    point = {
        "x": x,
        "y": x @ np.array([2.0, 1.0]) + 3.0 + rng.standard_normal(n),
        "w1": rng.standard_normal((d0, d1)),
        "b1": rng.standard_normal(d1),
        "w2": rng.standard_normal((d1, d2)),
        "b2": rng.standard_normal(d2),
        "w3": rng.standard_normal((d2, d3)),
        "b3": rng.standard_normal(d3),
    }
    flops = linear_stack_flops(n)
    if impl == "numpy_hand":
        return Step(lambda: linear_stack.stack_backward(**point), "numpy", flops)
    if impl == "torch_autograd":
        tensors = {name: torch.from_numpy(value) for name, value in point.items()}
        leaves = {
            name: tensors[name].clone().requires_grad_(True)
            for name in linear_stack.linear_stack.wrt
        }
        data = {name: tensors[name] for name in ("x", "y")}

        def step() -> Gradients:
            for leaf in leaves.values():
                leaf.grad = None
            linear_stack.stack_loss(**data, **leaves).backward()
            return {name: leaf.grad for name, leaf in leaves.items()}

        return Step(step, "torch", flops)
    raise ValueError(f"linear_stack_step: impl={impl!r} is not one this module builds.")


# ------------------------------------------------------------------------ the machine's limit


def gemm_step(library: str, device: str, n: int, dtype: str) -> Step:
    """``c = a @ b`` for square ``n``-by-``n`` operands, into a preallocated ``c``."""
    _require(device)
    rng = np.random.default_rng(0)
    np_dtype, torch_dtype = DTYPES[dtype]
    a, b = (rng.standard_normal((n, n)).astype(np_dtype) for _ in range(2))
    flops = 2 * n**3
    if library == "numpy":
        if device != "cpu":
            raise Unavailable("numpy runs on the CPU only")
        c = np.empty_like(a)
        return Step(lambda: {"c": np.matmul(a, b, out=c)}, "numpy", flops)
    ta, tb = (torch.from_numpy(m).to(device) for m in (a, b))
    tc = torch.empty((n, n), dtype=torch_dtype, device=device)
    return Step(_synchronized(lambda: {"c": torch.mm(ta, tb, out=tc)}, device), "torch", flops)
