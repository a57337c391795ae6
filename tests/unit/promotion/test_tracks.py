"""What the promotion controller remembers of a rollout between evaluations, step to step."""

from __future__ import annotations

import dataclasses

from server.promotion.decision import Action, Decision, Evidence, VersionWindow
from server.promotion.tracks import Track, next_track
from server.rollout.state import Phase, RolloutState

STATE = RolloutState(
    model="m",
    stable="1",
    candidate="2",
    phase=Phase.CANARY,
    canary_ppm=50_000,
    rollout_id=1,
    revision=3,
)


def decided(action: Action, candidate: str = "2", canary_ppm: int | None = None) -> Decision:
    window = VersionWindow(requests=100, errors=0)
    evidence = Evidence(
        model="m",
        stable_version="1",
        candidate_version=candidate,
        step_index=1,
        seconds_in_step=60.0,
        stable=window,
        candidate=window,
    )
    return Decision(
        action=action,
        reason="for the test",
        next_step_index=None,
        next_canary_ppm=canary_ppm,
        next_shadow_ppm=None,
        failed_checks=2,
        checks=(),
        evidence=evidence,
    )


def test_the_same_revision_keeps_the_same_track() -> None:
    track = Track(revision=3, failed_checks=1, approved=True, last_reason="held")
    assert next_track(track, STATE) is track


def test_a_first_evaluation_starts_from_nothing() -> None:
    assert next_track(None, STATE) == Track(revision=3)


def test_a_new_step_drops_the_approval_and_keeps_the_failures_of_the_rollout() -> None:
    track = Track(
        revision=2,
        failed_checks=2,
        step_downs=1,
        approved=True,
        last=decided(Action.ADVANCE, canary_ppm=50_000),
        last_reason="held",
    )
    assert next_track(track, STATE) == Track(revision=3, failed_checks=2, step_downs=1)


def test_a_step_down_to_this_weight_marks_the_step() -> None:
    track = Track(revision=2, failed_checks=2, last=decided(Action.STEP_DOWN, canary_ppm=50_000))
    assert next_track(track, STATE).stepped_down
    # An operator who set another weight since: not the step-down's step.
    elsewhere = dataclasses.replace(STATE, canary_ppm=20_000)
    assert not next_track(track, elsewhere).stepped_down


def test_another_candidate_starts_afresh() -> None:
    track = Track(revision=2, failed_checks=2, step_downs=1, last=decided(Action.HOLD, "9"))
    assert next_track(track, STATE) == Track(revision=3)
