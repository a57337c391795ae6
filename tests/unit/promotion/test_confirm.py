"""A refused confirmation (the pre-promotion hook) holds an automatic step and says why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.promotion.confirm import CONFIRM_CHECK
from server.promotion.controller import PromotionController
from server.promotion.decision import Action, CheckStatus, Decision
from server.rollout.state import StartRollout
from tests.support.waiting import WAIT
from tests.unit.promotion.test_controller import POLICY, Rig

WHY = "pre-promotion hook http://gate:9 answered 500"


class Gate:
    def __init__(self) -> None:
        self.answer: str | None = WHY
        self.asked: list[Decision] = []

    def __call__(self, decision: Decision) -> str | None:
        self.asked.append(decision)
        return self.answer


@pytest.fixture
def rig() -> Iterator[tuple[Rig, Gate]]:
    r = Rig()
    gate = Gate()
    r.controller = PromotionController(r.rollouts, r.windows, r.shadow, clock=r.clock, confirm=gate)
    yield r, gate
    assert r.shadow.shutdown(WAIT)


def test_a_refused_step_holds_is_explained_and_audited_then_proceeds_when_allowed(
    rig: tuple[Rig, Gate],
) -> None:
    r, gate = rig
    started = r.start()
    r.traffic(candidate=100)
    r.clock.advance(POLICY.min_duration_s)
    (held,) = r.controller.evaluate_due()
    assert held.action is Action.HOLD
    assert held.reason == f"holding the next step: {WHY}"
    assert held.next_canary_ppm is None
    check = held.checks[-1]
    assert (check.name, check.status, check.detail) == (CONFIRM_CHECK, CheckStatus.FAIL, WHY)
    assert r.controller.explain("m") == held
    assert r.state() == started  # nothing moved
    assert r.store.audit("m")[-1].operation == "auto_hold"
    assert gate.asked[0].action is Action.ADVANCE

    gate.answer = None
    r.clock.advance(POLICY.interval_s)
    (advance,) = r.controller.evaluate_due()
    assert advance.action is Action.ADVANCE
    assert r.state().canary_ppm == 500_000


def test_holds_and_rollbacks_are_not_asked_and_a_refused_promotion_holds(
    rig: tuple[Rig, Gate],
) -> None:
    r, gate = rig
    r.start()
    r.clock.advance(POLICY.min_duration_s)
    (hold,) = r.controller.evaluate_due()  # no data: a hold of its own, not the gate's
    assert hold.action is Action.HOLD and gate.asked == []
    gate.answer = None
    r.traffic(candidate=100)
    r.clock.advance(POLICY.interval_s)
    r.controller.evaluate_due()  # advances to the last step
    gate.answer = WHY
    r.traffic(candidate=100)
    r.clock.advance(POLICY.min_duration_s)
    (held,) = r.controller.evaluate_due()
    assert held.reason == f"holding promotion: {WHY}"
    assert r.state().candidate == "2"


def test_a_manual_rollout_with_guard_rails_is_never_asked(rig: tuple[Rig, Gate]) -> None:
    r, gate = rig
    command = StartRollout("2", canary_ppm=100_000, guard=POLICY.as_dict())
    r.rollouts.execute("m", command, actor="ops", reason="manual")
    r.traffic(candidate=100)
    r.clock.advance(POLICY.min_duration_s)
    r.controller.evaluate_due()
    assert gate.asked == []


def test_while_the_hook_is_asked_explain_never_shows_the_step_it_may_refuse(
    rig: tuple[Rig, Gate],
) -> None:
    """The hook is an HTTP call: `rollout explain` meanwhile says the previous decision, then
    the held one, never the "advance" the hook is about to refuse."""
    r, gate = rig
    seen: list[Decision | None] = []

    def asking(decision: Decision) -> str | None:
        seen.append(r.controller.explain("m"))  # what an operator sees during the call
        return Gate.__call__(gate, decision)

    r.controller._confirm = asking
    r.start()
    r.clock.advance(POLICY.min_duration_s)
    (first,) = r.controller.evaluate_due()  # no data yet: a hold of its own
    r.traffic(candidate=100)
    r.clock.advance(POLICY.interval_s)
    (held,) = r.controller.evaluate_due()
    assert held.action is Action.HOLD and seen == [first]
    assert r.controller.explain("m") == held
