"""Ground truth for every verdict: generated derivations whose truth is known by construction.

A correct derivation (torch autograd's own gradient of the spec, in the dtype and backend the
backward receives) must pass; "inconclusive" is allowed only for a spec holding a kink or tie
op (relu, abs, maximum, clamp, amax, max), and "error" or an exception out of ``verify`` is a
defect of gradcheck. A wrong one (the correct backward with one mutation, visible at random
points of the spec) must fail. Hypothesis draws the derivations, so a wrong verdict shrinks to
the smallest derivation that shows it, printed as a readable description.

Sized by the hypothesis profile: under ``ci`` (50 examples a test) the tests here verify 102
derivations (and draw ~1,000 more for the generator's own checks); under ``thorough`` (500),
thirty times as many, ~3,060. Each derivation is verified with ``INNER_EXAMPLES`` examples.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from gradcheck import Derivation, verify
from tests import ground_truth as gt

# verify's own budget for each generated derivation: small, since the tests here verify many.
INNER_EXAMPLES = 20
# A wrong derivation must fail where its mutation shows at this share of random points or
# more (at 50%, 20 examples all miss it with odds of 1 in a million); one wrong only in a
# sliver of the domain may pass a search of 20 examples.
VISIBLE_ENOUGH = 0.5

_PROFILE_EXAMPLES = settings().max_examples
# The thorough profile (500 examples a test) draws three times its share again: thousands of
# derivations in all, where ci (50) draws about a hundred.
_THOROUGH_FACTOR = 3 if _PROFILE_EXAMPLES >= 500 else 1


def _sized(share: float) -> settings:
    """``share`` of the active profile's examples (at least 5): ci 50 -> share * 50."""
    return settings(
        max_examples=max(5, round(_PROFILE_EXAMPLES * share * _THOROUGH_FACTOR)),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.nested_given,  # verify runs hypothesis's find inside each example
        ],
    )


def _verify(truth: gt.GroundTruth):
    note(truth.description)
    try:
        return verify(
            truth.derivation, seed=truth.seed, max_examples=INNER_EXAMPLES, dtype=truth.dtype
        )
    except Exception as exc:  # any exception out of verify is gradcheck's own defect
        raise AssertionError(
            f"verify raised {type(exc).__name__}: {exc}\n{truth.description}"
        ) from exc


def _assert_never_failed(truth: gt.GroundTruth) -> None:
    report = _verify(truth)
    allowed = ("pass", "inconclusive") if truth.spec.kinked else ("pass",)
    assert report.verdict in allowed, (
        f"a correct derivation got {report.verdict!r} (allowed: {', '.join(allowed)})\n"
        f"{truth.description}\n\n{report}"
    )


def _assert_failed(truth: gt.GroundTruth) -> None:
    report = _verify(truth)
    shown = truth.shown
    if shown >= VISIBLE_ENOUGH:
        assert report.verdict == "fail", (
            f"a wrong derivation got {report.verdict!r} (wrong at {shown:.0%} of random "
            f"points)\n{truth.description}\n\n{report}"
        )
    # else the mutation hardly changes this spec's gradient (by less than the float32
    # tolerance, or in a sliver of the domain): no truth to hold the verdict to, only that
    # verify answers without raising.


# -- correct derivations are never failed -----------------------------------------------------


@_sized(0.6)
@given(gt.derivations(correct=True, vector=False))
def test_a_correct_scalar_loss_passes(truth):
    _assert_never_failed(truth)


@_sized(0.6)
@given(gt.derivations(correct=True, vector=True))
def test_a_correct_vector_jacobian_product_passes(truth):
    _assert_never_failed(truth)


# -- wrong derivations are failed --------------------------------------------------------------

VALUE_MUTATIONS = ("factor", "sign", "one_element", "transposition", "dropped_term")


@_sized(0.4)
@given(gt.derivations(correct=False, mutation_kinds=VALUE_MUTATIONS))
def test_a_gradient_with_a_wrong_value_fails(truth):
    _assert_failed(truth)


@_sized(0.24)
@given(gt.derivations(correct=False, mutation_kinds=("shape", "accumulating", "every_other_call")))
def test_a_gradient_of_the_wrong_shape_or_with_state_between_calls_fails(truth):
    _assert_failed(truth)


@_sized(0.2)
@given(gt.derivations(correct=False, vector=True, mutation_kinds=gt.GRAD_OUTPUT_MUTATIONS))
def test_a_backward_that_misuses_grad_output_fails(truth):
    _assert_failed(truth)


# -- the generator itself is sound ----------------------------------------------------------------


def _declared_forward_vjp(truth: gt.GroundTruth, point, grad_output):
    """float64 autograd through the Derivation's declared forward, apart from the generator's
    own ``autograd_gradients``."""
    names = list(truth.derivation.wrt)
    params = {name: point[name] for name in truth.spec.params}
    fixed = {
        name: torch.as_tensor(point[name]) for name in truth.derivation.shapes if name not in names
    }

    def f(*leaves):
        return truth.derivation.forward(**fixed, **dict(zip(names, leaves, strict=True)), **params)

    leaves = tuple(torch.as_tensor(point[name], dtype=torch.float64) for name in names)
    output = f(*leaves)
    seed = torch.ones_like(output) if grad_output is None else torch.as_tensor(grad_output)
    _, grads = torch.autograd.functional.vjp(f, leaves, seed)
    return dict(zip(names, grads, strict=True))


@_sized(0.4)
@given(gt.derivations(correct=True), st.integers(0, 2**16))
def test_the_correct_backward_is_autograds_gradient_in_the_dtype_and_backend_it_receives(
    truth, seed
):
    note(truth.description)
    rng = np.random.default_rng(seed)
    point = gt.sample_point(truth.spec, rng)
    shape = gt.output_shape(truth, point)
    grad_output = rng.standard_normal(shape) if truth.spec.vector else None
    expected = _declared_forward_vjp(truth, point, grad_output)
    for dtype in ("float64", "float32"):
        got = truth.derivation.backward(**gt.arguments_for(truth, point, dtype, grad_output))
        assert set(got) == set(truth.derivation.wrt)
        for name, value in got.items():
            if isinstance(value, torch.Tensor):
                assert truth.backend == "torch", (name, type(value))
                value = value.to_dense() if value.is_sparse else value
                array = value.detach().numpy()
            else:
                assert truth.backend == "numpy", (name, type(value))
                array = np.asarray(value)
            if truth.form not in ("float_for_0d",):  # a Python float is float64
                assert array.dtype == np.dtype(dtype), (name, array.dtype)
            assert array.shape == np.shape(point[name]), (name, array.shape)
            if dtype == "float64":
                np.testing.assert_allclose(array, expected[name].numpy(), rtol=1e-10, atol=1e-12)


def _drawn(strategy, count: int) -> list:
    """``count`` values of ``strategy``, the same on every run, without shrinking."""
    found = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value):
        found.append(value)

    collect()
    return found


@pytest.mark.parametrize("kind", gt.MUTATIONS, ids=lambda kind: f"{kind} changes a gradient")
def test_each_mutation_changes_the_gradient_it_is_drawn_for(kind):
    """Most derivations drawn with each mutation are visibly wrong, and the wrong-derivation
    tests hold those to "fail"; if few were, those tests would hold nothing. (A mutation
    can be invisible on a spec: a factor on a gradient that is identically zero, as that of
    sum(softmax(x)), or a dropped term whose input is not in wrt.)"""
    vector = True if kind in gt.GRAD_OUTPUT_MUTATIONS else None
    drawn = _drawn(gt.derivations(correct=False, vector=vector, mutation_kinds=(kind,)), 30)
    kinds = [truth.mutation.kind for truth in drawn]
    # a factor where the kind cannot apply (or a known gap keeps it from this spec)
    restricted = kind == "accumulating" and "accumulating_across_shapes" in gt.KNOWN_GAPS
    assert kinds.count(kind) >= (0.2 if restricted else 0.8) * len(kinds), kinds
    shown = [truth.shown >= VISIBLE_ENOUGH for truth in drawn if truth.mutation.kind == kind]
    # A transposition is invisible wherever the gradient is constant (sum(x)): half show.
    least = 0.4 if kind == "transposition" else 0.8
    assert np.mean(shown) >= least, f"{sum(shown)} of {len(shown)} visibly wrong"


def test_a_mutation_on_a_plain_product_is_visible_at_every_kind():
    """On x * y (or its vector) every mutation, known gaps included, shows at most random
    points (a clip of grad_output to [-1, 1] only where some |grad_output| > 1)."""
    x = gt.Input("x", ("A", "B"), None, "default")
    y = gt.Input("y", ("A", "B"), (0.5, 2.0), "one_signed")
    for head in ("vector", "sum"):
        spec = gt.Spec(
            inputs=(x, y),
            stages=(gt.Stage("mul", other="y"),),
            head=head,
            dims={"A": (1, 3), "B": (1, 3)},
            params={},
            text="x * y",
        )
        for kind in gt.MUTATIONS:
            if kind in gt.GRAD_OUTPUT_MUTATIONS and head != "vector":
                continue
            site = 0 if kind == "dropped_term" else None
            for backend in ("numpy", "torch"):
                mutation = gt.Mutation(kind, "x", site)
                truth = gt.GroundTruth(
                    derivation=gt._derivation(spec, backend, mutation),
                    spec=spec,
                    mutation=mutation,
                    backend=backend,
                    dtype="float64",
                    seed=0,
                )
                assert gt.visible(truth) >= 0.5, (head, kind, backend)


_SPECS = None


def _specs() -> list:
    global _SPECS
    if _SPECS is None:
        _SPECS = _drawn(gt.specs(), 600)
    return _SPECS


def test_every_op_of_the_vocabulary_is_drawn():
    drawn = {stage.op for spec in _specs() for stage in spec.stages}
    assert set(gt.OPS) <= drawn, f"never drawn: {sorted(set(gt.OPS) - drawn)}"


FEATURES = {
    "an input of rank 4": lambda spec: any(len(i.shape) == 4 for i in spec.inputs),
    "an input of rank 0": lambda spec: any(len(i.shape) == 0 for i in spec.inputs),
    "a vector output": lambda spec: spec.vector,
    "a 0-d result as a vector of one": lambda spec: spec.head == "as_vector",
    "params": lambda spec: bool(spec.params),
    "where": lambda spec: spec.where is not None,
    "integer inputs": lambda spec: any(i.indexes is not None for i in spec.inputs),
    "an input not in wrt": lambda spec: any(not i.wrt and i.indexes is None for i in spec.inputs),
    "an input used twice": lambda spec: any(
        sum(s.other == i.name for s in spec.stages) + (i is spec.inputs[0]) >= 2
        for i in spec.inputs
    ),
    "a kink": lambda spec: spec.kinked,
    "three stages": lambda spec: len(spec.stages) == 3,
    **{
        f"{kind} bounds": lambda spec, kind=kind: any(i.bounds_kind == kind for i in spec.inputs)
        for kind in gt.BOUND_KINDS
    },
}


@pytest.mark.parametrize("feature", list(FEATURES), ids=lambda f: f"a spec with {f} is drawn")
def test_every_kind_of_declaration_is_drawn(feature):
    if feature.endswith(" bounds") and gt._gap_bounds(feature.removesuffix(" bounds")):
        pytest.skip(f"{feature} are a known gap: {gt.KNOWN_GAPS}")
    assert any(FEATURES[feature](spec) for spec in _specs())


# -- the known gaps still show --------------------------------------------------------------------
# Each entry of KNOWN_GAPS, reduced to its repro (in full in /tmp/gt_repros). Marked xfail
# strict: when the engine is fixed the test passes, fails the run as XPASS, and says which
# entry of KNOWN_GAPS to delete (so that the generator draws that class again).


def _layer_norm(t, eps):
    centred = t - t.mean(dim=-1, keepdim=True)
    return centred / torch.sqrt((centred * centred).mean(dim=-1, keepdim=True) + eps)


def _accumulating_across_shapes():
    previous = {}

    def backward(x):
        g = 9.0 * (x > 1.0005)
        stale = previous.get("x")  # a forgotten grad.zero_()
        out = g + stale if stale is not None and stale.shape == g.shape else g
        previous["x"] = g
        return {"x": out}

    return Derivation(
        name="accumulating_shapes",
        forward=lambda x: (9.0 * torch.clamp(x, min=1.0005)).sum(),
        backward=backward,
        shapes={"x": ("B", "A", "C")},
        wrt=["x"],
        bounds={"x": (0.001, 2.0)},
        dims={"A": (1, 4), "B": (1, 4), "C": (1, 4)},
    )


def _every_other_call_float32():
    def spec(x):
        return torch.relu(x).amax(dim=-1).reshape(1)

    calls = [0]

    def backward(x, grad_output):  # wrong on every second call
        xt = torch.from_numpy(np.array(x)).requires_grad_(True)
        (g,) = torch.autograd.grad(spec(xt), [xt], torch.from_numpy(np.array(grad_output)))
        calls[0] += 1
        return {"x": (2 if calls[0] % 2 == 0 else 1) * g.numpy()}

    return Derivation(
        name="every_other_call",
        forward=spec,
        backward=backward,
        shapes={"x": ("A",)},
        wrt=["x"],
        dims={"A": (1, 3)},
        where=lambda s: s["A"] != 2,
    )


def _far_narrow_kink():
    c = 1e8 + 50.0

    def backward(x):  # sign flipped
        g = np.zeros_like(x)
        i = np.argmax(x)
        g[i] = -1.0 if x[i] > c else 0.0
        return {"x": g}

    return Derivation(
        name="max_clamp_far",
        forward=lambda x: torch.clamp(x, min=c).max(dim=-1).values.mean(),
        backward=backward,
        shapes={"x": ("D",)},
        wrt=["x"],
        bounds={"x": (1e8, 1e8 + 100.0)},
        dims={"D": (1, 2)},
    )


def _identically_zero_gradient():
    def forward(x, y, eps0, eps2):
        return _layer_norm(_layer_norm(x, eps0) - y, eps2).sum()

    def backward(x, y, eps0, eps2):  # correct: autograd's own
        yt = y.detach().clone().requires_grad_(True)
        (gy,) = torch.autograd.grad(forward(x, yt, eps0, eps2), [yt])
        return {"y": gy}

    return Derivation(
        name="layer_norm_shift",
        forward=forward,
        backward=backward,
        backend="torch",
        shapes={"x": ("A", "A", "D"), "y": ()},
        wrt=["y"],
        bounds={"x": (-20.0, 20.0), "y": (-20.0, 20.0)},
        dims={"A": (1, 2), "D": (1, 3)},
        where=lambda s: s["D"] != 2,
        params={"eps0": [1e-5, 1e-3], "eps2": [1e-5, 1e-3]},
    )


def _large_offset_float32():
    return Derivation(
        name="offset",
        forward=lambda x, v: x + v,
        backward=lambda x, v: {"v": -np.ones_like(v)},  # sign flipped
        shapes={"x": (), "v": ()},
        wrt=["v"],
        bounds={"x": (1e8, 1e8 + 100.0), "v": (0.2, 3.0)},
    )


def _float32_far_cancellation():
    def spec(x, y):
        return _layer_norm(x, 1e-3) @ y

    def backward(x, y, grad_output):  # sign flipped
        xt = torch.from_numpy(np.array(x)).requires_grad_(True)
        (gx,) = torch.autograd.grad(
            spec(xt, torch.from_numpy(np.array(y))), [xt], torch.from_numpy(np.array(grad_output))
        )
        return {"x": -gx.numpy()}

    return Derivation(
        name="far_layer_norm",
        forward=spec,
        backward=backward,
        shapes={"x": ("B", 3), "y": (3, "C")},
        wrt=["x"],
        bounds={"x": (1e8, 1e8 + 100.0)},
        dims={"B": (1, 3), "C": (1, 3)},
    )


# gap -> (its repro, dtype, the seed it shows at, the verdict its truth calls for)
GAP_REPROS = {
    "far_narrow_kink": (_far_narrow_kink, "float32", 1, "fail"),
    "identically_zero_gradient": (_identically_zero_gradient, "float64", 30022, "pass"),
    "large_offset_float32": (_large_offset_float32, "float32", 0, "fail"),
    "float32_far_cancellation": (_float32_far_cancellation, "float32", 0, "fail"),
}


# Gaps the engine has closed since they were found: their repros keep their verdicts.
CLOSED_GAPS = {
    "every_other_call_float32": (_every_other_call_float32, "float32", 0, "fail"),
    "accumulating_across_shapes": (_accumulating_across_shapes, "float64", 2, "fail"),
}


@pytest.mark.parametrize("gap", list(CLOSED_GAPS), ids=lambda gap: f"{gap} stays closed")
def test_a_closed_gap_keeps_the_verdict_its_truth_calls_for(gap):
    make, dtype, seed, expected = CLOSED_GAPS[gap]
    report = verify(make(), seed=seed, max_examples=INNER_EXAMPLES, dtype=dtype)
    assert report.verdict == expected, str(report)


def test_every_known_gap_has_a_repro():
    assert set(GAP_REPROS) == set(gt.KNOWN_GAPS)


@pytest.mark.parametrize(
    "gap",
    [
        pytest.param(gap, marks=pytest.mark.xfail(strict=True, reason=gt.KNOWN_GAPS[gap]))
        for gap in GAP_REPROS
    ],
    ids=lambda gap: f"{gap} is still a gap (delete it from KNOWN_GAPS when this passes)",
)
def test_a_known_gap_gets_the_verdict_its_truth_calls_for(gap):
    make, dtype, seed, expected = GAP_REPROS[gap]
    report = verify(make(), seed=seed, max_examples=INNER_EXAMPLES, dtype=dtype)
    assert report.verdict == expected, str(report)
