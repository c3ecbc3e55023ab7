"""Check that a ``torch.nn.Module`` computes the function its spec says, parameters mapped by name.

Autograd differentiates whatever a module's ``forward`` does, so a forward that feeds the
wrong tensor to a layer (seed 000's ``TwoLayerNet`` passes ``h`` where it meant ``relu(h)``)
trains without a single gradient error. Only a comparison with the intended function finds
it: a ``ModelSpec`` writes that function with torch ops over named parameters, and maps each
name to a parameter of the module (``"w1": "linear1.weight.T"``). The check loads the same
values into a float64 copy of the module and into the spec, and compares the outputs; where
they agree it also compares the parameter gradients, which catches a custom
``autograd.Function`` inside the module whose backward is wrong.
"""

from __future__ import annotations

import copy
import difflib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from gradcheck.backward import shape_hint
from gradcheck.compare import Mismatch, compare
from gradcheck.derivation import Derivation, DerivationError
from gradcheck.references.finite_differences import ScalarSpec
from gradcheck.report import Example, Problem
from gradcheck.strategies import array, dims
from gradcheck.tolerances import AUTOGRAD
from gradcheck.training._internal import (
    as_derivation,
    call_spec,
    search,
    searched_report,
    validated_point,
    whole,
)
from gradcheck.training.report import TrainingMismatch, TrainingReport

__all__ = ["ModelSpec", "assert_model_matches", "check_model", "verify_model"]

# The module and the spec compute the same sums in possibly another order (nn.Linear's addmm
# against x @ w + b): float64 rounding, as for gradients; the core's table applies.
TOLERANCE = AUTOGRAD["float64"]

_TARGET = re.compile(r"^(?P<name>[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*?)(?P<transpose>\.T)?$")


@dataclass(frozen=True)
class _Target:
    parameter: str  # the module's parameter name, as in named_parameters()
    transpose: bool

    def __str__(self) -> str:
        return self.parameter + (".T" if self.transpose else "")


@dataclass(frozen=True, eq=False, kw_only=True)
class ModelSpec:
    """The function a module should compute, over named parameters mapped to the module's.

    ``forward`` is called with float64 tensors as keyword arguments: every name in ``inputs``
    and every name in ``parameters``. ``parameters`` maps each spec name to a module
    parameter name from ``named_parameters()``, with ``.T`` where the spec holds its
    transpose (``nn.Linear`` stores ``weight`` as (out, in); a spec writes ``x @ w1``).
    The module is called with the inputs positionally, in the order of ``inputs``.
    ``shapes`` (optional) gives the parameters' shapes in the spec with the same symbolic
    dims as ``inputs``: checking a module binds those dims to its sizes, so ``inputs`` can
    say ``("N", "D_in")``. Without it, ``inputs`` must spell the module's sizes as ints.

    Example::

        ModelSpec(
            name="two_layer_net",
            forward=lambda x, w1, b1, w2, b2: torch.relu(x @ w1 + b1) @ w2 + b2,
            inputs={"x": ("N", "D_in")},
            parameters={"w1": "linear1.weight.T", "b1": "linear1.bias",
                        "w2": "linear2.weight.T", "b2": "linear2.bias"},
            shapes={"w1": ("D_in", "H"), "b1": ("H",), "w2": ("H", "D_out"), "b2": ("D_out",)},
        )
    """

    name: str
    forward: Callable[..., torch.Tensor]
    inputs: Mapping[str, tuple[str | int, ...]]
    parameters: Mapping[str, str]
    shapes: Mapping[str, tuple[str | int, ...]] | None = None
    dims: Mapping[str, tuple[int, int]] | None = None
    bounds: Mapping[str, tuple[float, float]] | None = None
    targets: Mapping[str, _Target] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        owner = f"ModelSpec {self.name!r}"
        if not callable(self.forward):
            raise DerivationError(
                f"{owner}: forward must be callable, got {type(self.forward).__name__}."
            )
        for argument in ("inputs", "parameters"):
            if not isinstance(getattr(self, argument), Mapping) or not getattr(self, argument):
                raise DerivationError(
                    f"{owner}: {argument} must be a non-empty mapping, e.g. "
                    + ("{'x': ('N', 3)}" if argument == "inputs" else "{'w1': 'linear1.weight.T'}")
                    + f"; got {getattr(self, argument)!r}."
                )
        targets: dict[str, _Target] = {}
        for name, target in self.parameters.items():
            if name in self.inputs:
                raise DerivationError(
                    f"{owner}: {name!r} is both an input and a parameter; rename one."
                )
            matched = _TARGET.match(target) if isinstance(target, str) else None
            if matched is None:
                raise DerivationError(
                    f"{owner}: parameters[{name!r}] = {target!r} must name a module parameter "
                    "as named_parameters() spells it, optionally with '.T', e.g. "
                    "'linear1.weight.T' or '0.bias'."
                )
            targets[str(name)] = _Target(matched["name"], matched["transpose"] is not None)
        object.__setattr__(self, "targets", MappingProxyType(targets))
        if self.shapes is not None:
            if not isinstance(self.shapes, Mapping):
                raise DerivationError(
                    f"{owner}: shapes must map parameter names to shapes, got {self.shapes!r}."
                )
            stray = [name for name in self.shapes if name not in self.parameters]
            if stray:
                raise DerivationError(
                    f"{owner}: shapes names {', '.join(map(repr, stray))}, which parameters "
                    f"does not (parameters: {', '.join(self.parameters)})."
                )
            object.__setattr__(self, "shapes", MappingProxyType(dict(self.shapes)))
        # Validate names, shapes, dims and bounds now, before any module is seen.
        declared = dict(self.shapes or {})
        self._derivation(
            {**self.inputs, **{name: declared.get(name, (1,)) for name in self.parameters}},
            dims=self.dims,
        )

    def _derivation(
        self,
        shapes: Mapping[str, tuple[str | int, ...]],
        dims: Mapping[str, tuple[int, int]] | None,
    ) -> Derivation:
        return as_derivation(
            "ModelSpec", name=self.name, forward=self.forward, hand=self.forward,
            shapes=shapes, wrt=tuple(self.parameters), backend="torch", dims=dims,
            bounds=self.bounds,
        )  # fmt: skip

    def __repr__(self) -> str:
        mapping = ", ".join(f"{k}={v}" for k, v in self.targets.items())
        return f"ModelSpec(name={self.name!r}, inputs={list(self.inputs)!r}, {mapping})"


@dataclass(frozen=True)
class _Binding:
    """A spec bound to one module: a float64 copy of the module, the parameter shapes."""

    spec: ModelSpec
    module: torch.nn.Module
    derivation: Derivation


def _bind(module: Any, spec: Any) -> _Binding:
    if not isinstance(spec, ModelSpec):
        raise TypeError(
            f"expected a gradcheck.training.ModelSpec, got {type(spec).__name__}; declare one "
            "with ModelSpec(name=..., forward=..., inputs=..., parameters=...)."
        )
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
    owner = f"ModelSpec {spec.name!r}"
    own = dict(module.named_parameters())
    shapes: dict[str, tuple[int, ...]] = {}
    bound: dict[str, int] = {}
    used: dict[str, str] = {}
    for name, target in spec.targets.items():
        if target.parameter not in own:
            close = difflib.get_close_matches(target.parameter, list(own), n=1)
            raise DerivationError(
                f"{owner}: parameters[{name!r}] = {str(target)!r}, but {type(module).__name__} "
                f"has no parameter {target.parameter!r} (it has: {', '.join(own) or 'none'})"
                + (f"; did you mean {close[0]!r}?" if close else ".")
            )
        if target.parameter in used:
            raise DerivationError(
                f"{owner}: {target.parameter!r} is mapped twice, to {used[target.parameter]!r} "
                f"and {name!r}; map each module parameter once."
            )
        used[target.parameter] = name
        shape = tuple(own[target.parameter].shape)
        if target.transpose:
            if len(shape) != 2:
                raise DerivationError(
                    f"{owner}: parameters[{name!r}] = {str(target)!r} transposes a parameter of "
                    f"shape {shape}; '.T' is for 2-D weights only."
                )
            shape = shape[::-1]
        shapes[name] = shape
        _unify(owner, name, (spec.shapes or {}).get(name), shape, bound, module)
    unmapped = [p for p in own if p not in used]
    if unmapped:
        raise DerivationError(
            f"{owner}: {type(module).__name__} has parameters the spec does not map: "
            f"{', '.join(unmapped)}. Map each to a spec name (the module computes with them)."
        )
    # A float64 CPU copy: the caller's module (its dtype, device and values) is untouched.
    float_module = copy.deepcopy(module).to(device="cpu", dtype=torch.float64)
    inputs = {
        name: tuple(bound.get(d, d) if isinstance(d, str) else d for d in shape)
        for name, shape in spec.inputs.items()
    }
    free = {d: r for d, r in (spec.dims or {}).items() if d not in bound}
    derivation = spec._derivation({**inputs, **shapes}, dims=free)
    return _Binding(spec=spec, module=float_module, derivation=derivation)


def _unify(
    owner: str,
    name: str,
    declared: tuple[str | int, ...] | None,
    shape: tuple[int, ...],
    bound: dict[str, int],
    module: torch.nn.Module,
) -> None:
    """Bind the symbolic dims of a declared parameter shape to the module's sizes."""
    if declared is None:
        return
    if len(declared) != len(shape):
        raise DerivationError(
            f"{owner}: shapes[{name!r}] = {tuple(declared)} has {len(declared)} dims, but "
            f"{type(module).__name__} gives {name!r} the shape {shape}."
        )
    for dim, size in zip(declared, shape, strict=True):
        if isinstance(dim, str) and bound.setdefault(dim, size) != size:
            raise DerivationError(
                f"{owner}: dim {dim!r} is {bound[dim]} by one parameter of "
                f"{type(module).__name__} but {size} by {name!r}: the module's layers do not "
                "fit the spec's shapes."
            )
        if isinstance(dim, int) and dim != size:
            raise DerivationError(
                f"{owner}: shapes[{name!r}] = {tuple(declared)}, but {type(module).__name__} "
                f"gives {name!r} the shape {shape}."
            )


def _load(binding: _Binding, point: Mapping[str, np.ndarray]) -> None:
    own = dict(binding.module.named_parameters())
    with torch.no_grad():
        for name, target in binding.spec.targets.items():
            value = torch.tensor(point[name], dtype=torch.float64)
            own[target.parameter].copy_(value.T if target.transpose else value)


def _evaluate(
    binding: _Binding, point: Mapping[str, np.ndarray], sizes: Mapping[str, int], seed: int
) -> TrainingReport:
    started = time.perf_counter()
    spec = binding.spec
    _load(binding, point)
    report = TrainingReport(
        derivation=spec.name,
        verdict="pass",
        example=Example(dims=dict(sizes), inputs=dict(point)),
        dtype="float64",
    )
    problems = _compare(binding, point, seed)
    if problems:
        kinds = {p.kind for p in problems}
        verdict = (
            "inconclusive" if kinds == {"kink"}
            else "error" if kinds <= {"kink", "references_disagree"}
            else "fail"
        )  # fmt: skip
        problems.sort(key=lambda p: p.kind in ("kink", "references_disagree"))
        report = replace(
            report,
            verdict=verdict,  # type: ignore[arg-type]
            problems=tuple(problems),
            parameter=problems[0].parameter,
            inconclusive=int(verdict == "inconclusive"),
        )
    else:
        report = replace(
            report,
            notes=("the module's output and parameter gradients match the spec's",),
        )
    return replace(report, elapsed=time.perf_counter() - started)


def _compare(binding: _Binding, point: Mapping[str, np.ndarray], seed: int) -> list[Problem]:
    spec, module = binding.spec, binding.module
    own = dict(module.named_parameters())
    mapped = ", ".join(f"{k} = {v}" for k, v in spec.targets.items())
    with torch.enable_grad():
        inputs = [torch.tensor(point[name], dtype=torch.float64) for name in spec.inputs]
        try:
            output = module(*inputs)
        except Exception as exc:  # the module is user code: any failure is a verdict
            return [Problem("raised", f"the module's forward raised {type(exc).__name__}: {exc}")]
        if not isinstance(output, torch.Tensor):
            return [
                Problem(
                    "returned",
                    f"the module's forward returned {type(output).__name__}, not a tensor.",
                )
            ]
        leaves = {
            name: torch.tensor(point[name], dtype=torch.float64, requires_grad=True)
            for name in spec.parameters
        }
        tensors = {name: torch.tensor(point[name], dtype=torch.float64) for name in spec.inputs}
        expected = call_spec("ModelSpec", "forward", spec.name, spec.forward, {**tensors, **leaves})
        if tuple(output.shape) != tuple(expected.shape):
            return [
                Problem(
                    "shape",
                    f"the module's forward differs from the spec: its output has shape "
                    f"{tuple(output.shape)}, the spec's {tuple(expected.shape)}"
                    f"{shape_hint(tuple(output.shape), tuple(expected.shape))}.",
                    parameter="output",
                )
            ]
        actual_np = output.detach().numpy()
        expected_np = expected.detach().numpy()
        mismatch = compare(
            actual_np, expected_np, TOLERANCE.allowed(expected_np),
            parameter="output", reference=f"the spec {spec.name!r}",
        )  # fmt: skip
        if mismatch is not None:
            return [
                Problem(
                    "mismatch",
                    "the module's forward differs from the spec: at the same inputs and the "
                    f"same parameters ({mapped}) its output is not the spec's.",
                    parameter="output",
                    mismatch=mismatch,
                )
            ]
        # The forward agrees: does the module's backward (its own autograd graph, custom
        # Functions included) agree with autograd of the spec?
        grad_output = torch.from_numpy(
            np.random.default_rng(seed).standard_normal(expected_np.shape)
        )
        names = list(spec.parameters)
        targets = [own[spec.targets[name].parameter] for name in names]
        if not output.requires_grad or not expected.requires_grad:
            return []
        theirs = torch.autograd.grad(output, targets, grad_output, allow_unused=True)
        ours = torch.autograd.grad(
            expected, [leaves[n] for n in names], grad_output, allow_unused=True
        )
    fd = ScalarSpec(spec.name, spec.forward, point, grad_output.numpy())
    problems = []
    for name, module_grad, spec_grad, leaf in zip(names, theirs, ours, targets, strict=True):
        got = torch.zeros_like(leaf) if module_grad is None else module_grad
        got_np = (got.T if spec.targets[name].transpose else got).detach().numpy()
        reference = np.zeros(point[name].shape) if spec_grad is None else spec_grad.numpy()
        mismatch = compare(
            got_np, reference, TOLERANCE.allowed(reference),
            parameter=name, reference=f"torch autograd of the spec {spec.name!r}",
        )  # fmt: skip
        if mismatch is not None:
            target = spec.targets[name]
            problems.append(_judge_gradient(fd, name, target, got_np, reference, mismatch))
    return problems


def _judge_gradient(
    fd: ScalarSpec,
    name: str,
    target: _Target,
    got: np.ndarray,
    reference: np.ndarray,
    mismatch: Mismatch,
) -> Problem:
    """The module's gradient differs from autograd of the spec: let finite differences of the
    spec, along the difference, say whether the spec has a kink there (both are valid),
    whether they side with the spec (the module's backward is wrong), or with the module."""
    delta = got - reference
    slope = fd.slope(name, delta)
    along_module, along_spec = float(np.sum(got * delta)), float(np.sum(reference * delta))
    if slope.kink:
        return Problem(
            "kink",
            f"the module's gradient for {name!r} ({target}) differs from the spec's only at a "
            f"non-differentiable point of the spec (one-sided slopes {slope.left:.6g} and "
            f"{slope.right:.6g} along the difference): more than one gradient is valid here.",
            parameter=name,
        )
    if abs(slope.central - along_spec) > slope.allowed:
        sides_with = (
            "the module" if abs(slope.central - along_module) <= slope.allowed else "neither"
        )
        return Problem(
            "references_disagree",
            f"for {name!r}, finite differences of the spec ({slope.central:.6g} +- "
            f"{slope.allowed:.2g}) side with {sides_with} (module {along_module:.6g}), not "
            f"with torch autograd of the spec ({along_spec:.6g}): the spec is not what "
            "autograd differentiates (a detach, an in-place op), or the point is "
            "ill-conditioned. The module is not judged here.",
            parameter=name,
        )
    return Problem(
        "mismatch",
        f"the module's backward differs from the spec: its gradient for {name!r} ({target}) "
        "is not autograd's of the spec, although the forward agrees; finite differences of "
        "the spec side with autograd (a custom autograd.Function with a wrong backward?).",
        parameter=name,
        mismatch=mismatch,
    )


def _seeded_array(
    shape: tuple[int, ...], low: float, high: float, *, stream: int
) -> st.SearchStrategy[np.ndarray]:
    """A uniform array from one drawn seed (its own ``stream`` per parameter, so that seed 0
    does not give every parameter the same values)."""

    def make(seed: int) -> np.ndarray:
        return np.random.default_rng([seed, stream]).uniform(low, high, size=shape)

    return st.integers(0, 2**32 - 1).map(make)


def _examples(binding: _Binding) -> st.SearchStrategy[Example]:
    """Dims, then the spec's inputs element by element (so they shrink to simple values),
    and each parameter array from one drawn seed: a module's parameters are many elements
    of fixed shape, which hypothesis would otherwise shrink one float at a time (measured:
    thousands of shrink steps, 5-15 s for a 3-4-2 net, against ~1 s)."""
    derivation = binding.derivation
    spec = binding.spec

    def point(sizes: dict[str, int]) -> st.SearchStrategy[Example]:
        arrays: dict[str, st.SearchStrategy[np.ndarray]] = {}
        for name, (low, high) in derivation.input_bounds.items():
            shape = derivation.concrete_shape(name, sizes)
            if name in spec.inputs:
                arrays[name] = array(shape, low=low, high=high)
            else:
                arrays[name] = _seeded_array(shape, low, high, stream=len(arrays))
        return st.fixed_dictionaries(arrays).map(lambda values: Example(dims=sizes, inputs=values))

    return dims(derivation).flatmap(point)


def check_model(
    module: torch.nn.Module,
    spec: ModelSpec,
    inputs: Mapping[str, Any],
    *,
    parameters: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> TrainingReport:
    """Compare ``module`` with ``spec`` at one point: ``inputs`` for every spec input, and the
    module's own parameter values unless ``parameters`` gives them (by spec name, in the
    spec's orientation). ``seed`` draws the grad_output the gradients are pulled back by.

    Nothing passed is modified: the check runs on a float64 copy of the module.

    >>> import torch
    >>> spec = ModelSpec(name="affine", forward=lambda x, w, b: x @ w + b,
    ...                  inputs={"x": ("N", 3)}, parameters={"w": "weight.T", "b": "bias"})
    >>> check_model(torch.nn.Linear(3, 2), spec, {"x": torch.ones(4, 3)}).ok
    True
    """
    binding = _bind(module, spec)
    seed = whole("seed", seed, minimum=0)
    given = dict(parameters or {})
    unknown = [name for name in given if name not in spec.parameters]
    if unknown:
        raise DerivationError(
            f"check_model({spec.name!r}): parameters names {', '.join(map(repr, unknown))}, "
            f"which the spec does not (its parameters: {', '.join(spec.parameters)})."
        )
    if not isinstance(inputs, Mapping):
        raise DerivationError(
            f"check_model({spec.name!r}): inputs must be a mapping {{input name: array}}, "
            f"got {type(inputs).__name__}."
        )
    own = dict(binding.module.named_parameters())
    point: dict[str, Any] = dict(inputs)
    for name, target in spec.targets.items():
        if name in point:
            raise DerivationError(
                f"check_model({spec.name!r}): inputs[{name!r}] is a parameter; pass it in "
                "parameters=, or leave it out to use the module's own value."
            )
        if name in given:
            point[name] = given[name]
        else:
            value = own[target.parameter].detach()
            point[name] = (value.T if target.transpose else value).numpy()
    validated, sizes = validated_point(f"check_model({spec.name!r})", binding.derivation, point)
    return _evaluate(binding, validated, sizes, seed)


def verify_model(
    module: torch.nn.Module,
    spec: ModelSpec,
    *,
    max_examples: int | None = None,
    seed: int | None = None,
) -> TrainingReport:
    """Search inputs and parameter values with hypothesis for a point where ``module`` and
    ``spec`` compute different things; shrink it to the smallest.

    The module's parameter shapes are kept; their values are drawn like the inputs.
    """
    binding = _bind(module, spec)
    started = time.perf_counter()

    def verdict_of(example: Example) -> str:
        return _evaluate(binding, example.inputs, example.dims, 0).verdict

    found = search(_examples(binding), verdict_of, max_examples=max_examples, seed=seed)
    reproduce = (
        f"verify_model({type(module).__name__}, {spec.name}, seed={found.seed}, "
        f"max_examples={found.budget})"
    )
    if found.smallest is not None:
        report = _evaluate(binding, found.smallest.inputs, found.smallest.dims, 0)
        notes = (*report.notes, f"found after searching {found.tried} examples; shrunk")
    else:
        report = TrainingReport(derivation=spec.name, verdict="pass", dtype="float64")
        notes = (f"{found.tried} examples passed: outputs and parameter gradients match",)
    return searched_report(report, found, notes, started, reproduce)


def assert_model_matches(
    module: torch.nn.Module,
    spec: ModelSpec,
    inputs: Mapping[str, Any] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    max_examples: int | None = None,
    seed: int | None = None,
) -> TrainingReport:
    """``check_model`` at ``inputs`` (or ``verify_model`` without them); raise
    ``TrainingMismatch`` with the whole report unless the module matches its spec."""
    __tracebackhide__ = True
    if inputs is None:
        if parameters is not None:
            raise ValueError(
                "parameters= fixes the point of check_model; without inputs the search draws "
                "parameters itself. Pass inputs too, or drop parameters."
            )
        report = verify_model(module, spec, max_examples=max_examples, seed=seed)
    else:
        if max_examples is not None:
            raise ValueError("max_examples steers a search; with inputs, drop it.")
        report = check_model(module, spec, inputs, parameters=parameters, seed=seed or 0)
    if not report.ok:
        raise TrainingMismatch(str(report))
    return report
