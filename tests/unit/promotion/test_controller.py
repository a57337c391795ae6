"""The promotion controller on a fake clock: windows fed by hand, rollouts in a MemoryStore.

No thread, no sleep: each test calls evaluate_due() (what the controller's loop calls every
tick) after moving the clock, and reads the rollout state and the audit log it left behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from server.errors import FailedPrecondition, ModelNotFound
from server.promotion.controller import ACTOR, PromotionController, step_of
from server.promotion.decision import Action, Decision
from server.promotion.gates import first_step
from server.promotion.policy import SHADOW_STEP, Policy
from server.rollout.controller import RolloutController
from server.rollout.state import (
    Pause,
    Phase,
    Resume,
    Rollback,
    RolloutState,
    SetWeight,
    StartRollout,
)
from server.shadow.executor import ShadowExecutor
from server.testing import FakeClock, MemoryStore
from tests.support.shadow import record_results
from tests.support.spans import feed, window_processor
from tests.support.waiting import WAIT

T0 = 1_000.0
#: Two canary steps, small sample minimums, gates wide enough for equal latencies.
POLICY = Policy(
    shadow_ppm=0,
    steps=(100_000, 500_000),
    min_requests=20,
    min_duration_s=10.0,
    interval_s=5.0,
    failure_threshold=2,
    max_error_rate_increase=0.05,
    min_latency_samples=20,
)


class Rig:
    """A RolloutController on a MemoryStore, windows and a shadow executor, one FakeClock."""

    def __init__(self) -> None:
        self.clock = FakeClock(now=T0)
        self.store = MemoryStore()
        self.rollouts = RolloutController(
            self.store,
            ready_versions=lambda model: frozenset({"1", "2", "3"}),
            publish=lambda table: None,
            clock=self.clock,
            salt_factory=lambda: "salt",
        )
        self.rollouts.adopt({"m": "1", "idle": "1"})
        self.windows = window_processor(self.clock)
        self.shadow = ShadowExecutor()
        self.decisions: list[Decision] = []
        self.controller = PromotionController(
            self.rollouts,
            self.windows,
            self.shadow,
            clock=self.clock,
            on_decision=self.decisions.append,
        )

    def start(self, policy: Policy = POLICY, candidate: str = "2") -> RolloutState:
        """An automatic rollout, as the admin service starts one: at the policy's first step."""
        _, canary_ppm, shadow_ppm = first_step(policy)
        command = StartRollout(
            candidate, shadow_ppm=shadow_ppm, canary_ppm=canary_ppm, policy=policy.as_dict()
        )
        return self.rollouts.execute("m", command, actor="ops", reason="automatic").after

    def traffic(self, candidate: int, stable: int = 200, code: str = "OK") -> None:
        """Finished calls at the clock's now: `candidate` on v2 ending in `code`, `stable` on v1."""
        feed(self.windows, "m", "2", candidate, code=code)
        feed(self.windows, "m", "1", stable)

    def state(self) -> RolloutState:
        return self.rollouts.get("m")

    def operations(self) -> list[tuple[str, str]]:
        """(operation, actor) of the model's audit rows after its adoption and start."""
        return [(e.operation, e.actor) for e in self.store.audit("m")[2:]]


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    assert r.shadow.shutdown(WAIT)


def test_a_passing_step_advances_to_the_next_weight_and_the_last_one_promotes(rig: Rig) -> None:
    started = rig.start()
    assert started.canary_ppm == 100_000 and started.policy is not None
    rig.traffic(candidate=100)
    rig.clock.advance(POLICY.min_duration_s)
    (advance,) = rig.controller.evaluate_due()
    assert advance.action is Action.ADVANCE, advance.reason
    assert (advance.next_step_index, advance.next_canary_ppm) == (1, 500_000)
    after = rig.state()
    assert (after.phase, after.canary_ppm, after.revision) == (Phase.CANARY, 500_000, 3)
    row = rig.store.audit("m")[-1]
    assert (row.operation, row.actor, row.reason) == ("auto_advance", ACTOR, advance.reason)
    assert row.extra is not None and json.loads(row.extra)["action"] == "advance"

    # The new step starts from nothing: the calls of the first step do not count for it.
    rig.clock.advance(POLICY.interval_s)
    (hold,) = rig.controller.evaluate_due()
    assert hold.action is Action.HOLD
    assert "0 of 20 candidate requests" in hold.reason
    rig.traffic(candidate=100)
    rig.clock.advance(POLICY.min_duration_s)
    (promote,) = rig.controller.evaluate_due()
    assert promote.action is Action.PROMOTE, promote.reason
    final = rig.state()
    assert (final.phase, final.stable, final.candidate) == (Phase.IDLE, "2", None)
    assert rig.operations() == [
        ("auto_advance", ACTOR),
        ("auto_hold", ACTOR),
        ("auto_promote", ACTOR),
    ]
    assert rig.decisions == [advance, hold, promote]
    assert rig.controller.counts == {("m", "advance"): 1, ("m", "hold"): 1, ("m", "promote"): 1}


def test_no_data_holds_the_step_and_audits_the_hold_once(rig: Rig) -> None:
    started = rig.start()
    rig.clock.advance(POLICY.min_duration_s)
    decisions = []
    for _ in range(4):
        decisions += rig.controller.evaluate_due()
        rig.clock.advance(POLICY.interval_s)
    assert [d.action for d in decisions] == [Action.HOLD] * 4
    assert len({d.reason for d in decisions}) == 1
    assert decisions[0].reason.startswith("hold: 0 of 20 candidate requests in this step")
    assert all(d.failed_checks == 0 for d in decisions)
    assert rig.state() == started  # nothing written: same weight, same revision
    assert rig.operations() == [("auto_hold", ACTOR)]  # audited when its reason changes


def test_failing_checks_roll_back_at_the_failure_threshold(rig: Rig) -> None:
    rig.start()
    rig.traffic(candidate=40, code="INTERNAL")
    (first,) = rig.controller.evaluate_due()
    assert (first.action, first.failed_checks) == (Action.HOLD, 1)
    assert first.reason.startswith("check failed 1 of 2 before rollback: error_rate failed")
    assert rig.state().phase is Phase.CANARY

    rig.clock.advance(POLICY.interval_s)
    (second,) = rig.controller.evaluate_due()
    assert (second.action, second.failed_checks) == (Action.ROLLBACK, 2)
    after = rig.state()
    assert (after.phase, after.stable, after.last_candidate) == (Phase.ROLLED_BACK, "1", "2")
    assert rig.operations() == [("auto_hold", ACTOR), ("auto_rollback", ACTOR)]
    evidence = json.loads(rig.store.audit("m")[-1].extra or "{}")["evidence"]
    assert evidence["candidate"]["errors"] == 40
    assert len(evidence["candidate"]["error_trace_ids"]) == 5  # examples to look up

    rig.clock.advance(POLICY.interval_s)
    assert rig.controller.evaluate_due() == []  # nothing left to evaluate


def test_a_paused_rollout_is_not_evaluated_until_resumed(rig: Rig) -> None:
    rig.start()
    paused = rig.rollouts.execute("m", Pause(), actor="ops", reason="hands off").after
    rig.traffic(candidate=100)
    rig.clock.advance(POLICY.min_duration_s)
    for _ in range(3):
        assert rig.controller.evaluate_due() == []
        assert rig.controller.evaluate("m") is None
        rig.clock.advance(POLICY.interval_s)
    assert rig.state() == paused
    assert rig.decisions == [] and rig.controller.explain("m") is None

    rig.rollouts.execute("m", Resume(), actor="ops", reason="go on")
    rig.traffic(candidate=100)  # the resume began a step of its own
    rig.clock.advance(POLICY.min_duration_s)
    (decision,) = rig.controller.evaluate_due()
    assert decision.action is Action.ADVANCE  # the same evidence moves an unpaused rollout


def test_a_manual_step_holds_until_an_operator_approves_it(rig: Rig) -> None:
    rig.start(Policy(**{**POLICY.as_dict(), "manual_steps": [0]}))
    rig.traffic(candidate=100)
    rig.clock.advance(POLICY.min_duration_s)
    (waiting,) = rig.controller.evaluate_due()
    assert waiting.action is Action.HOLD
    assert waiting.reason == "hold: step 0 (10% canary) waits for an operator's approval"
    assert rig.state().canary_ppm == 100_000

    assert rig.controller.approve("m") == waiting
    (approved,) = rig.controller.evaluate_due()  # at the next tick, without waiting the interval
    assert approved.action is Action.ADVANCE and approved.evidence.approved
    assert rig.state().canary_ppm == 500_000


def test_only_automatic_rollouts_can_be_approved_or_explained(rig: Rig) -> None:
    with pytest.raises(FailedPrecondition, match="no automatic rollout"):
        rig.controller.approve("m")
    rig.rollouts.execute("m", StartRollout("2", canary_ppm=10), actor="ops", reason="manual")
    with pytest.raises(FailedPrecondition, match="no automatic rollout"):
        rig.controller.approve("m")
    with pytest.raises(ModelNotFound):
        rig.controller.explain("nope")
    assert rig.controller.evaluate("nope") is None
    assert rig.controller.evaluate_due() == []  # a manual rollout is the operator's


def test_evaluations_come_once_per_interval_on_the_clock(rig: Rig) -> None:
    rig.start()
    assert len(rig.controller.evaluate_due()) == 1  # the first is due at once
    assert rig.controller.evaluate_due() == []
    rig.clock.advance(POLICY.interval_s - 0.5)
    assert rig.controller.evaluate_due() == []
    rig.clock.advance(0.5)
    assert len(rig.controller.evaluate_due()) == 1
    explained = rig.controller.explain("m")
    assert explained is not None and explained == rig.decisions[-1]


def test_an_operator_change_keeps_the_failure_count_of_the_same_rollout(rig: Rig) -> None:
    rig.start()
    rig.traffic(candidate=40, code="INTERNAL")
    (first,) = rig.controller.evaluate_due()
    assert first.failed_checks == 1
    rig.clock.advance(1.0)
    rig.rollouts.execute("m", SetWeight(200_000), actor="ops", reason="ramp by hand")
    rig.traffic(candidate=40, code="INTERNAL")  # the new step fails too
    rig.clock.advance(POLICY.interval_s)
    (second,) = rig.controller.evaluate_due()
    assert (second.action, second.failed_checks) == (Action.ROLLBACK, 2)
    assert rig.state().phase is Phase.ROLLED_BACK


def test_a_new_rollout_starts_its_failure_count_from_zero(rig: Rig) -> None:
    rig.start()
    rig.traffic(candidate=40, code="INTERNAL")
    (first,) = rig.controller.evaluate_due()
    assert first.failed_checks == 1
    rig.clock.advance(1.0)
    rig.rollouts.execute("m", Rollback(), actor="ops", reason="not this one")
    rig.start(candidate="3")
    feed(rig.windows, "m", "3", 40, code="INTERNAL")
    feed(rig.windows, "m", "1", 200)
    rig.clock.advance(POLICY.interval_s)
    (fresh,) = rig.controller.evaluate_due()
    assert (fresh.action, fresh.failed_checks) == (Action.HOLD, 1)  # not the second failure


def test_an_operator_write_between_decision_and_action_wins(rig: Rig) -> None:
    """The controller acts with compare-and-set: a write that got there first is kept."""
    rig.start()
    rig.traffic(candidate=100)
    rig.clock.advance(POLICY.min_duration_s)

    def operator_first(decision: Decision) -> None:
        rig.rollouts.execute("m", SetWeight(300_000), actor="ops", reason="mine")

    rig.controller = PromotionController(
        rig.rollouts, rig.windows, rig.shadow, clock=rig.clock, on_decision=operator_first
    )
    (decision,) = rig.controller.evaluate_due()
    assert decision.action is Action.ADVANCE
    assert rig.state().canary_ppm == 300_000  # the operator's weight, not the advance's
    assert [op for op, _ in rig.operations()] == ["set_weight"]


def test_the_shadow_step_advances_on_shadow_comparisons_and_stops_shadowing(rig: Rig) -> None:
    policy = Policy(**{**POLICY.as_dict(), "shadow_ppm": 1_000_000, "max_disagreement_rate": 0.05})
    started = rig.start(policy)
    assert (started.phase, started.shadow_ppm, started.canary_ppm) == (Phase.SHADOW, 10**6, 0)
    assert step_of(started, policy) == SHADOW_STEP
    record_results(rig.shadow.reset("m", "2"), agree=100)
    feed(rig.windows, "m", "1", 200)  # the stable's error rate is the baseline
    rig.clock.advance(policy.min_duration_s)
    (decision,) = rig.controller.evaluate_due()
    assert decision.action is Action.ADVANCE, decision.reason
    assert decision.evidence.shadow is not None and decision.evidence.shadow.completed == 100
    after = rig.state()
    assert (after.phase, after.shadow_ppm, after.canary_ppm) == (Phase.CANARY, 0, 100_000)
    # Shadow off first, then the weight: every intermediate state is valid.
    assert [op for op, _ in rig.operations()] == ["auto_advance", "auto_advance"]
    states = [json.loads(e.after or "{}") for e in rig.store.audit("m")[-2:]]
    assert [(s["shadow_ppm"], s["canary_ppm"]) for s in states] == [(0, 0), (0, 100_000)]


def test_disagreeing_shadow_runs_fail_the_shadow_step(rig: Rig) -> None:
    policy = Policy(**{**POLICY.as_dict(), "shadow_ppm": 1_000_000, "failure_threshold": 1})
    rig.start(policy)
    record_results(rig.shadow.reset("m", "2"), agree=50, disagree=50)
    feed(rig.windows, "m", "1", 200)
    (decision,) = rig.controller.evaluate_due()
    assert decision.action is Action.ROLLBACK
    assert "shadow_disagreement failed" in decision.reason
    assert rig.state().phase is Phase.ROLLED_BACK


@pytest.mark.parametrize(
    ("phase", "canary_ppm", "step"),
    [
        (Phase.SHADOW, 0, SHADOW_STEP),
        (Phase.CANARY, 50_000, 0),  # below the first step: counted as the first
        (Phase.CANARY, 100_000, 0),
        (Phase.CANARY, 300_000, 0),  # between steps: the last one reached
        (Phase.CANARY, 500_000, 1),
        (Phase.CANARY, 1_000_000, 1),
    ],
)
def test_the_step_is_derived_from_the_durable_state(
    phase: Phase, canary_ppm: int, step: int
) -> None:
    state = RolloutState(
        model="m", stable="1", candidate="2", phase=phase, canary_ppm=canary_ppm, shadow_ppm=1
    )
    assert step_of(state, POLICY) == step
