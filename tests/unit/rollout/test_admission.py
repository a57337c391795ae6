"""Which version a command needs ready on every replica, and a replica that lacks the
candidate: it routes every request to stable, saying candidate_not_ready."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.rollout.admission import needs_ready
from server.rollout.router import RouteReason, Stage, route
from server.rollout.state import (
    Command,
    Pause,
    Phase,
    Promote,
    Resume,
    Rollback,
    RolloutState,
    SetShadow,
    SetWeight,
    StartRollout,
    Undo,
    build_table,
    initial_state,
)

CANARY = dataclasses.replace(
    initial_state("m", "1", 0.0),
    candidate="3",
    phase=Phase.CANARY,
    canary_ppm=100_000,
    shadow_ppm=50_000,
    salt="s",
)
PROMOTED = dataclasses.replace(
    initial_state("m", "3", 0.0), previous_stable="1", previous_stable_until=100.0
)


@pytest.mark.parametrize(
    ("before", "command", "version"),
    [
        (initial_state("m", "1", 0.0), StartRollout("3", canary_ppm=10), "3"),
        (initial_state("m", "1", 0.0), StartRollout("3", shadow_ppm=10), "3"),
        (CANARY, SetWeight(200_000), "3"),  # a step up
        (CANARY, SetShadow(60_000), "3"),
        (CANARY, Promote(), "3"),
        (PROMOTED, Undo(), "1"),  # the previous stable becomes stable again
        (CANARY, SetWeight(100_000), None),  # no change
        (CANARY, SetWeight(50_000), None),  # a step down takes traffic away
        (CANARY, SetShadow(0), None),
        (CANARY, Rollback(), None),
        (CANARY, Pause(), None),
        (CANARY, Resume(), None),
    ],
)
def test_only_commands_that_send_a_version_more_traffic_need_it_everywhere(
    before: RolloutState, command: Command, version: str | None
) -> None:
    assert needs_ready(before, command) == version


def test_a_replica_without_the_candidate_serves_stable_for_every_key() -> None:
    rule_state = dataclasses.replace(CANARY, canary_ppm=1_000_000)
    for ready, expect in [(frozenset({"1", "3"}), "3"), (frozenset({"1"}), "1")]:
        table = build_table({"m": rule_state}, {"m": ready}, True, 1)
        chosen = route(table, "m", "user-1", {}, None)
        assert chosen.version == expect
    assert chosen.reason is RouteReason.CANDIDATE_NOT_READY and chosen.stage is Stage.STABLE
    assert chosen.shadow_version is None  # and no shadow run on a version it does not have


@given(st.text(min_size=1, max_size=20), st.integers(1, 1_000_000), st.integers(0, 1_000_000))
def test_without_the_candidate_no_key_reaches_it_at_any_weight(
    key: str, canary_ppm: int, shadow_ppm: int
) -> None:
    state = dataclasses.replace(CANARY, canary_ppm=canary_ppm, shadow_ppm=shadow_ppm)
    table = build_table({"m": state}, {"m": frozenset({"1"})}, True, 1)
    try:
        chosen = route(table, "m", key, {}, None)
    except Exception:  # keys that are not valid Unicode text are refused, as always
        return
    assert (chosen.version, chosen.shadow_version) == ("1", None)
