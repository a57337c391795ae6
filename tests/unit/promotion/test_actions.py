"""What a promotion decision's action becomes: the rollout commands, in the order executed."""

from __future__ import annotations

import pytest

from server.promotion.actions import commands_for
from server.promotion.decision import Action, Decision, Evidence, VersionWindow
from server.rollout.state import Command, Promote, Rollback, SetShadow, SetWeight

EVIDENCE = Evidence(
    model="m",
    stable_version="1",
    candidate_version="2",
    step_index=0,
    seconds_in_step=60.0,
    stable=VersionWindow(requests=100, errors=0),
    candidate=VersionWindow(requests=100, errors=0),
)


def decision(
    action: Action, canary_ppm: int | None = None, shadow_ppm: int | None = None
) -> Decision:
    return Decision(
        action=action,
        reason=f"{action.value} for the test",
        next_step_index=0 if canary_ppm is not None else None,
        next_canary_ppm=canary_ppm,
        next_shadow_ppm=shadow_ppm,
        failed_checks=0,
        checks=(),
        evidence=EVIDENCE,
    )


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (decision(Action.HOLD), []),
        (decision(Action.ADVANCE, canary_ppm=50_000), [SetWeight(50_000)]),
        # Shadow off before the weight goes up.
        (decision(Action.ADVANCE, 10_000, shadow_ppm=0), [SetShadow(0), SetWeight(10_000)]),
        (decision(Action.ADVANCE, shadow_ppm=20_000), [SetShadow(20_000)]),
        (decision(Action.STEP_DOWN, canary_ppm=10_000), [SetWeight(10_000)]),
        (decision(Action.PROMOTE), [Promote()]),
        (decision(Action.ROLLBACK), [Rollback()]),
    ],
    ids=lambda v: v.action.value if isinstance(v, Decision) else "",
)
def test_an_automatic_rollout_acts_on_every_action(made: Decision, expected: list[Command]) -> None:
    assert commands_for(made, automatic=True) == expected


@pytest.mark.parametrize("action", list(Action))
def test_guard_rails_act_only_on_a_rollback(action: Action) -> None:
    made = decision(action, canary_ppm=10_000 if action is Action.STEP_DOWN else None)
    expected: list[Command] = [Rollback()] if action is Action.ROLLBACK else []
    assert commands_for(made, automatic=False) == expected
