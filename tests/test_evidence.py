"""What finite-difference evidence concludes, rule by rule (gradcheck.evaluation.evidence).

The spec is scripted: each test hands ``judge_mismatch`` / ``judge_probes`` the slopes a
real spec would give at the usual, wider and narrower steps, so that each rule is seen to
decide what it is responsible for (which problem, naming what) and nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.compare import compare
from gradcheck.evaluation.allowance import Allowance
from gradcheck.evaluation.evidence import confirm_jointly, judge_mismatch, judge_probes
from gradcheck.evaluation.steps import NARROWER_STEPS, WIDER_STEPS
from gradcheck.references.finite_differences import UNRESOLVED, Screen, Slope

NAN = float("nan")


def smooth(central: float, allowed: float = 1e-9, step: float = 1e-5) -> Slope:
    """A slope where the spec is smooth: both one-sided slopes equal the central one."""
    return Slope(central=central, allowed=allowed, right=central, left=central, kink=False,
                 step=step)  # fmt: skip


def kinked(left: float, right: float, allowed: float = 1e-9) -> Slope:
    """A slope across a hinge: the central difference is the mean of the one-sided ones."""
    return Slope(central=(left + right) / 2, allowed=allowed, right=right, left=left, kink=True,
                 step=1e-5)  # fmt: skip


class ScriptedSpec:
    """A ``ScalarSpec`` that answers ``slope`` from a table keyed by the step's factor
    (1.0 the usual step, WIDER_STEPS, NARROWER_STEPS), and records what was asked."""

    def __init__(self, slopes: dict[float, Slope], *, default: Slope = UNRESOLVED) -> None:
        self.slopes = slopes
        self.default = default
        self.asked: list[float] = []

    def slope(self, name: str, direction: np.ndarray, widen: float = 1.0) -> Slope:
        self.asked.append(widen)
        return self.slopes.get(widen, self.default)


def never_jumps(*_: object) -> bool:
    return False


def always_jumps(*_: object) -> bool:
    return True


# -- judge_mismatch: hand 2, autograd 1 on a single element; the difference is [1] ------------

HAND = np.array([2.0])
REFERENCE = np.array([1.0])
ALLOWANCE = Allowance(atol=1e-12, rtol=0.0, reference=REFERENCE)


def _mismatch():
    found = compare(HAND, REFERENCE, ALLOWANCE.array(), parameter="x", reference="torch autograd")
    assert found is not None
    return found


def judge(spec: ScriptedSpec, jumps=never_jumps, hand=HAND):
    return judge_mismatch(spec, _mismatch(), hand, REFERENCE, ALLOWANCE, jumps)


def test_fd_siding_with_autograd_along_the_difference_fails_the_derivation():
    problem = judge(ScriptedSpec({1.0: smooth(1.0)}))
    assert problem.kind == "mismatch"
    assert problem.parameter == "x"
    assert "Finite differences agree with autograd along the difference" in problem.message
    assert "autograd 1, hand 2" in problem.message
    assert problem.mismatch is not None and problem.mismatch.max_abs == 1.0


def test_fd_siding_with_the_hand_blames_the_spec_not_the_derivation():
    problem = judge(ScriptedSpec({1.0: smooth(2.0)}, default=smooth(2.0)))
    assert problem.kind == "references_disagree"
    assert "agree with the hand gradient rather than torch autograd (1)" in problem.message


def test_fd_siding_with_neither_says_neither():
    problem = judge(ScriptedSpec({1.0: smooth(5.0)}, default=smooth(5.0)))
    assert problem.kind == "references_disagree"
    assert "agree with neither rather than torch autograd" in problem.message


def test_a_difference_below_what_the_slope_resolves_is_unresolved_not_failed():
    # hand and autograd are 1 apart along the difference; the slope is uncertain by 1
    problem = judge(ScriptedSpec({1.0: smooth(1.0, allowed=1.0)}))
    assert problem.kind == "unresolved"
    assert "differs from autograd by less than finite differences resolve" in problem.message


def test_a_wider_step_that_agrees_with_autograd_fails_the_derivation():
    # the usual step rounds coarsely (slope 7), the first wider one agrees with autograd
    spec = ScriptedSpec({1.0: smooth(7.0), WIDER_STEPS[0]: smooth(1.0)})
    problem = judge(spec)
    assert problem.kind == "mismatch"
    assert "with a wider step" in problem.message
    assert "slope 1, autograd 1, hand 2" in problem.message


def test_a_wider_step_too_blurred_to_separate_hand_and_autograd_is_not_evidence():
    # the wider step agrees with autograd but is uncertain by more than hand - autograd
    spec = ScriptedSpec({1.0: smooth(7.0), WIDER_STEPS[0]: smooth(1.0, allowed=0.6)})
    problem = judge(spec)
    assert problem.kind != "mismatch"


def test_a_narrower_step_that_agrees_with_autograd_fails_the_derivation():
    spec = ScriptedSpec({1.0: smooth(7.0), NARROWER_STEPS[1]: smooth(1.0)})
    problem = judge(spec)
    assert problem.kind == "mismatch"
    assert "with a narrower step (the spec varies faster" in problem.message


def test_a_narrower_step_that_sees_a_kink_is_not_trusted():
    spec = ScriptedSpec({1.0: smooth(7.0), NARROWER_STEPS[0]: kinked(0.0, 2.0)})
    problem = judge(spec)
    assert problem.kind != "mismatch"


def test_a_kink_along_the_difference_is_a_doubt_when_no_narrower_step_settles_it():
    spec = ScriptedSpec({1.0: kinked(1.0, 2.0)}, default=kinked(1.0, 2.0))
    problem = judge(spec)
    assert problem.kind == "kink"
    assert "one-sided slopes are 1 and 2" in problem.message


def test_a_kink_only_at_the_usual_step_is_settled_by_a_narrower_one():
    # the hinge lies within the usual step but not at the point: the narrower step is smooth
    spec = ScriptedSpec({1.0: kinked(1.0, 2.0), NARROWER_STEPS[0]: smooth(1.0)})
    problem = judge(spec)
    assert problem.kind == "mismatch"
    assert "narrower step" in problem.message


def test_a_gradient_that_jumps_a_step_away_is_a_kink():
    spec = ScriptedSpec({1.0: smooth(5.0)}, default=smooth(5.0))
    problem = judge(spec, jumps=always_jumps)
    assert problem.kind == "kink"
    assert "the spec's gradient jumps" in problem.message


def test_differences_that_do_not_settle_across_steps_leave_the_point_unresolved():
    # slope 5 at the usual step, 50 at the narrowest: no answer the steps agree on
    spec = ScriptedSpec({1.0: smooth(5.0)}, default=smooth(50.0, step=1e-9))
    problem = judge(spec)
    assert problem.kind == "unresolved"
    assert "do not settle (slope 5 at step 1e-05, 50 at step 1e-09)" in problem.message


def test_a_difference_with_no_finite_step_at_all_is_unresolved():
    problem = judge(ScriptedSpec({}))
    assert problem.kind == "unresolved"
    assert "are not finite" in problem.message
    assert "along the difference" in problem.message


def test_a_narrower_step_inside_the_domain_judges_where_the_usual_one_leaves_it():
    spec = ScriptedSpec({NARROWER_STEPS[2]: smooth(1.0)})
    problem = judge(spec)
    assert problem.kind == "mismatch"
    assert spec.asked == [1.0, *NARROWER_STEPS]


def test_a_spec_finite_only_at_the_narrowest_step_is_not_blamed_for_disagreeing():
    # the usual step leaves the domain (NaN); the narrowest is finite and sides with the
    # hand: one step is no settled evidence against autograd, so nothing is judged
    spec = ScriptedSpec({NARROWER_STEPS[2]: smooth(2.0)})
    problem = judge(spec)
    assert problem.kind == "unresolved"
    assert "are not finite" in problem.message


# -- judge_probes: element probes of a two-element input -------------------------------------


def probes(spec, hand, reference, *, jumps=never_jumps, extra=None, autograd_noise=None):
    allowance = Allowance(atol=1e-12, rtol=0.0, reference=reference)
    directions = iter(np.eye(reference.size))
    return judge_probes(
        spec, "w", directions, "elements", hand, reference, allowance, jumps,
        screen=False, extra=extra, autograd_noise=autograd_noise,
    )  # fmt: skip


class PerDirection(ScriptedSpec):
    """Slopes per probe: every step along unit direction i gives ``slopes[i]`` (so the
    differences settle unless the slope is UNRESOLVED), and along a direction that moves
    several elements at once, ``joint``."""

    def __init__(self, slopes: list[Slope], joint: Slope = UNRESOLVED) -> None:
        super().__init__({})
        self.per = slopes
        self.joint = joint

    def slope(self, name: str, direction: np.ndarray, widen: float = 1.0) -> Slope:
        if np.count_nonzero(direction) > 1:
            return self.joint
        return self.per[int(np.argmax(np.abs(direction)))]


def test_probes_that_confirm_autograd_hold_the_hand_to_them_and_count_each():
    reference = np.array([1.0, 3.0])
    found, count = probes(PerDirection([smooth(1.0), smooth(3.0)]), reference.copy(), reference)
    assert found == []
    assert count == 2


def test_a_hand_off_the_confirmed_probes_fails_against_finite_differences():
    reference = np.array([1.0, 3.0])
    found, _ = probes(PerDirection([smooth(1.0), smooth(3.0)]), np.array([1.0, 4.0]), reference)
    assert [p.kind for p in found] == ["mismatch"]
    mismatch = found[0].mismatch
    assert mismatch is not None
    assert mismatch.reference == "finite differences"
    assert (mismatch.mismatched, mismatch.total, mismatch.max_abs_index) == (1, 2, (1,))
    assert "Finite differences agree with autograd." in found[0].message


def test_probes_siding_with_neither_say_references_disagree():
    reference = np.array([1.0, 3.0])
    found, _ = probes(PerDirection([smooth(1.0), smooth(9.0)]), reference.copy(), reference)
    assert [p.kind for p in found] == ["references_disagree"]
    assert "torch autograd (3) and finite differences (9" in found[0].message


def test_a_disagreement_within_autograds_own_noise_is_no_evidence():
    reference = np.array([1.0, 3.0])
    spec = PerDirection([smooth(1.0), smooth(3.0 + 1e-6)])
    noisy, _ = probes(spec, reference.copy(), reference, autograd_noise=lambda d: 1e-5)
    quiet, _ = probes(spec, reference.copy(), reference, autograd_noise=lambda d: 1e-8)
    assert noisy == []
    assert [p.kind for p in quiet] == ["references_disagree"]


def test_several_probes_across_kinks_are_said_in_one_line_with_the_count():
    reference = np.array([1.0, 3.0, 5.0])
    # the usual step crosses a hinge whose one-sided slopes leave autograd outside
    spec = PerDirection([kinked(10.0, 20.0)] * 3)
    found, count = probes(spec, reference.copy(), reference)
    assert count == 3
    assert [p.kind for p in found] == ["kink"]
    assert found[0].message.endswith("; 2 more probes like it).")
    assert "one-sided slopes 10 and 20" in found[0].message


def test_a_single_crossing_is_said_without_a_count():
    reference = np.array([1.0, 3.0])
    found, _ = probes(PerDirection([kinked(10.0, 20.0), smooth(3.0)]), reference.copy(), reference)
    assert [p.kind for p in found] == ["kink"]
    assert "more probes like it" not in found[0].message


def test_a_disagreement_where_autograd_jumps_is_a_crossing_not_the_specs_fault():
    reference = np.array([1.0])
    found, _ = probes(PerDirection([smooth(9.0)]), reference.copy(), reference, jumps=always_jumps)
    assert [p.kind for p in found] == ["kink"]


def test_unsettled_probes_leave_the_input_unresolved_once():
    reference = np.array([1.0, 3.0])
    found, _ = probes(PerDirection([UNRESOLVED, UNRESOLVED]), reference.copy(), reference)
    assert [p.kind for p in found] == ["unresolved"]
    assert "along a probe are not finite" in found[0].message


def test_another_subgradient_at_a_kink_is_excused_once_and_then_tied_elements_are_probed():
    reference = np.array([1.0, 1.0])  # a tie: autograd routes 1 to each element
    # along each element the one-sided slopes are 0 and 2: the hand's 0 and 2 are both valid
    # moved together, the tied elements are smooth with slope 2: the hand's 2 + 0 agrees
    spec = PerDirection([kinked(0.0, 2.0), kinked(0.0, 2.0)], joint=smooth(2.0))
    asked = []

    def extra(excused: bool):
        asked.append(excused)
        return iter([np.array([1.0, 1.0])])

    found, count = probes(spec, np.array([2.0, 0.0]), reference, extra=extra)
    assert asked == [True]
    assert count == 3
    assert [p.kind for p in found] == ["kink"]
    assert "takes another subgradient than autograd" in found[0].message


def test_a_tie_gradient_routed_to_every_element_fails_along_the_joint_probe():
    reference = np.array([1.0, 1.0])
    spec = PerDirection([kinked(0.0, 2.0), kinked(0.0, 2.0)], joint=smooth(2.0))
    # 2 to each tied element: along each alone a valid subgradient, together 4 where 2 is
    found, _ = probes(spec, np.array([2.0, 2.0]), reference, extra=lambda _: iter([np.ones(2)]))
    assert [p.kind for p in found] == ["kink", "mismatch"]
    assert found[1].mismatch is not None and found[1].mismatch.unit == "directions"


@pytest.mark.parametrize(
    "hand, kinds",
    [([1.0, 3.0], ["kink"]), ([2.0, 3.0], ["kink", "mismatch"])],
    ids=["a right sum along the group passes", "a wrong sum along the group fails"],
)
def test_probes_that_cross_kinks_send_the_group_to_a_joint_probe_no_kink_excuses(hand, kinds):
    reference = np.array([1.0, 3.0])
    # each element alone crosses a hinge; moved together they are smooth with slope 4
    spec = PerDirection([kinked(10.0, 20.0)] * 2, joint=smooth(4.0))
    asked = []

    def extra(excused: bool):
        asked.append(excused)
        return iter([np.ones(2)])

    found, count = probes(spec, np.array(hand), reference, extra=extra)
    assert asked == [False]  # crossings, no subgradient excused
    assert count == 3
    assert [p.kind for p in found] == kinds


def test_a_hand_outside_the_one_sided_slopes_at_a_kink_is_held_to_the_central_difference():
    reference = np.array([1.0])
    found, _ = probes(PerDirection([kinked(0.0, 2.0)]), np.array([7.0]), reference)
    assert [p.kind for p in found] == ["mismatch"]


# -- screening ---------------------------------------------------------------------------------


class Screening(PerDirection):
    def __init__(self, slopes: list[Slope], screens: list[Screen]) -> None:
        super().__init__(slopes)
        self.screen_list = screens
        self.slopes_taken = 0

    def screen_batch(self, name: str) -> int:
        return 1

    def screens(self, name, directions):
        return [self.screen_list[int(np.argmax(np.abs(d)))] for d in directions]

    def slope(self, name, direction, widen=1.0):
        self.slopes_taken += 1
        return super().slope(name, direction, widen)


def test_a_screen_that_confirms_autograd_spares_the_full_slope():
    reference = np.array([1.0, 3.0])
    spec = Screening(
        [smooth(1.0), smooth(3.0)],
        [Screen(central=1.0, allowed=1e-9, step=1e-5), Screen(central=8.0, allowed=1e-9, step=1)],
    )
    allowance = Allowance(atol=1e-12, rtol=0.0, reference=reference)
    found, count = judge_probes(
        spec, "w", iter(np.eye(2)), "elements", reference.copy(), reference, allowance,
        never_jumps, screen=True,
    )  # fmt: skip
    assert found == []
    assert count == 2
    assert spec.slopes_taken == 1  # only the probe the screen did not confirm


def test_confirm_jointly_confirms_only_within_the_screens_allowance():
    reference = np.array([1.0, 3.0])
    compared = {"w": (reference, reference, Allowance(1e-12, 0.0, reference), None)}
    direction = {"w": np.array([1.0, -1.0])}

    class Joint:
        def __init__(self, central):
            self.central = central

        def screen_jointly(self, directions):
            return Screen(central=self.central, allowed=1e-9, step=1.0), {"w": 0.5}

    # autograd along the joint move: 0.5 * (1 - 3) = -1
    assert confirm_jointly(Joint(-1.0), compared, direction)
    assert not confirm_jointly(Joint(-1.1), compared, direction)
    assert not confirm_jointly(Joint(NAN), compared, direction)
    assert not confirm_jointly(Joint(-1.0), {}, {})


@pytest.mark.parametrize("hand", [np.array([np.nan]), np.array([np.inf])], ids=["NaN", "inf"])
def test_a_non_finite_hand_is_never_confirmed_by_probes(hand):
    reference = np.array([1.0])
    found, _ = probes(PerDirection([smooth(1.0)]), hand, reference)
    assert [p.kind for p in found] == ["mismatch"]
