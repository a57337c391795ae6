"""Tests of the pure rollout stage machine: every transition from every phase, JSON, build_table."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.errors import InvalidInput, InvalidTransition
from server.rollout.router import (
    PPM,
    CandidateRouting,
    CohortRule,
    ModelRouting,
    RoutingTable,
    Stage,
)
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
    apply,
    build_table,
    initial_state,
)

NOW = 1_000.0
GRACE = 300.0
READY = frozenset({"1", "2", "3"})

IDLE = initial_state("m", "1", 10.0)
SHADOW = dataclasses.replace(
    IDLE, candidate="2", phase=Phase.SHADOW, shadow_ppm=10_000, salt="s1", rollout_id=1, revision=2
)
CANARY = dataclasses.replace(SHADOW, phase=Phase.CANARY, canary_ppm=50_000, revision=3)
PAUSED = dataclasses.replace(CANARY, paused=True, revision=4)
ROLLED_BACK = dataclasses.replace(
    IDLE, phase=Phase.ROLLED_BACK, last_candidate="2", salt="s1", rollout_id=1, revision=4
)
STATES = {
    "idle": IDLE,
    "shadow": SHADOW,
    "canary": CANARY,
    "paused": PAUSED,
    "rolled_back": ROLLED_BACK,
}


def run(state: RolloutState, command: Command) -> RolloutState:
    return apply(state, command, now=NOW, new_salt="fresh", ready=READY, grace_seconds=GRACE)


ENDED = {
    "candidate": None,
    "canary_ppm": 0,
    "shadow_ppm": 0,
    "paused": False,
    "cohort_rules": (),
    "last_candidate": "2",
}
PROMOTED = {
    **ENDED,
    "phase": Phase.IDLE,
    "stable": "2",
    "previous_stable": "1",
    "previous_stable_until": NOW + GRACE,
}
ROLLED = {**ENDED, "phase": Phase.ROLLED_BACK}

# (start state, command, the fields that change besides revision and updated_at)
VALID: list[tuple[str, Command, dict[str, Any]]] = [
    ("idle", StartRollout("2", shadow_ppm=5), {"candidate": "2", "phase": Phase.SHADOW}),
    ("idle", StartRollout("3", canary_ppm=1), {"candidate": "3", "phase": Phase.CANARY}),
    ("idle", StartRollout("2"), {"candidate": "2", "phase": Phase.SHADOW}),
    ("rolled_back", StartRollout("3", canary_ppm=PPM), {"candidate": "3", "phase": Phase.CANARY}),
    ("shadow", SetWeight(1_000), {"canary_ppm": 1_000, "phase": Phase.CANARY}),
    ("shadow", SetShadow(PPM), {"shadow_ppm": PPM}),
    ("shadow", SetShadow(0), {"shadow_ppm": 0}),
    ("shadow", Promote(), PROMOTED),
    ("shadow", Rollback(), ROLLED),
    ("shadow", Pause(), {"paused": True}),
    ("canary", SetWeight(0), {"canary_ppm": 0, "phase": Phase.SHADOW}),
    ("canary", SetWeight(PPM), {"canary_ppm": PPM}),
    ("canary", SetShadow(1), {"shadow_ppm": 1}),
    ("canary", Promote(), PROMOTED),
    ("canary", Rollback(), ROLLED),
    ("canary", Pause(), {"paused": True}),
    ("paused", Resume(), {"paused": False}),
    ("paused", SetWeight(60_000), {"canary_ppm": 60_000}),  # pause binds only the automation
    ("paused", Promote(), PROMOTED),
    ("paused", Rollback(), ROLLED),
]


@pytest.mark.parametrize(("start", "command", "changes"), VALID)
def test_valid_transition(start: str, command: Command, changes: dict[str, Any]) -> None:
    """Each allowed command changes exactly the expected fields and the revision."""
    before = STATES[start]
    after = run(before, command)
    expected = dataclasses.replace(
        before, revision=before.revision + 1, updated_at=NOW, **_start_fields(before, command)
    )
    expected = dataclasses.replace(expected, **changes)
    assert after == expected
    assert after.revision == before.revision + 1


def _start_fields(before: RolloutState, command: Command) -> dict[str, Any]:
    if not isinstance(command, StartRollout):
        return {}
    return {
        "candidate": command.candidate,
        "phase": Phase.CANARY if command.canary_ppm else Phase.SHADOW,
        "canary_ppm": command.canary_ppm,
        "shadow_ppm": command.shadow_ppm,
        "salt": "fresh",
        "rollout_id": before.rollout_id + 1,
    }


NO_OPS: list[tuple[str, Command]] = [
    ("shadow", SetWeight(0)),
    ("shadow", SetShadow(10_000)),
    ("shadow", Resume()),
    ("canary", SetWeight(50_000)),
    ("canary", SetShadow(10_000)),
    ("canary", Resume()),
    ("paused", Pause()),
    ("rolled_back", Rollback()),
]


@pytest.mark.parametrize(("start", "command"), NO_OPS)
def test_no_op_returns_the_identical_object(start: str, command: Command) -> None:
    assert run(STATES[start], command) is STATES[start]


NO_CANDIDATE = "there is no candidate; start a rollout first"
ACTIVE = "candidate '2' is active; promote or roll it back first"
INVALID: list[tuple[str, Command, str]] = [
    *[
        (phase, command, NO_CANDIDATE)
        for phase in ("idle", "rolled_back")
        for command in (SetWeight(1), SetShadow(1), Promote(), Pause(), Resume())
    ],
    ("idle", Rollback(), NO_CANDIDATE),
    ("shadow", StartRollout("3"), ACTIVE),
    ("canary", StartRollout("3", canary_ppm=5), ACTIVE),
    ("paused", StartRollout("3"), ACTIVE),
    ("idle", StartRollout("1"), "version '1' is already stable; pick another version"),
    ("idle", StartRollout("9"), "version '9' is not loaded and ready (ready: 1, 2, 3)"),
]


@pytest.mark.parametrize(("start", "command", "why"), INVALID)
def test_invalid_transition_says_why(start: str, command: Command, why: str) -> None:
    state = STATES[start]
    with pytest.raises(InvalidTransition) as caught:
        run(state, command)
    assert caught.value.current == str(state.phase)
    assert caught.value.action == command.action
    assert caught.value.model == "m"
    assert why in str(caught.value)
    assert f"cannot {command.action} model 'm' in phase {state.phase}" in str(caught.value)


def test_not_ready_with_nothing_ready_says_none() -> None:
    with pytest.raises(InvalidTransition, match=r"ready: none\); load it first"):
        apply(IDLE, StartRollout("2"), now=NOW, new_salt="x", ready=frozenset(), grace_seconds=1)


def test_rollback_after_promotion_points_at_the_previous_stable() -> None:
    promoted = run(CANARY, Promote())
    with pytest.raises(InvalidTransition, match="previous stable '1'"):
        run(promoted, Rollback())


@pytest.mark.parametrize("value", [-1, PPM + 1, 2**63, 1.5, True, "10"])
@pytest.mark.parametrize(
    "make",
    [
        SetWeight,
        SetShadow,
        lambda v: StartRollout("2", canary_ppm=v),
        lambda v: StartRollout("2", shadow_ppm=v),
    ],
)
@pytest.mark.parametrize("start", ["idle", "canary"])
def test_weights_out_of_range_name_the_range(start: str, make: Any, value: Any) -> None:
    with pytest.raises(InvalidInput, match=rf"must be an integer in 0\.\.{PPM}"):
        run(STATES[start], make(value))


def test_start_rejects_an_empty_candidate() -> None:
    with pytest.raises(InvalidInput, match="candidate must name a version"):
        run(IDLE, StartRollout(""))


def test_start_sets_salt_rules_policy_and_clears_pause() -> None:
    rules = (CohortRule("region", "eu", Stage.CANARY),)
    after = run(ROLLED_BACK, StartRollout("3", canary_ppm=7, cohort_rules=rules, policy={"k": 1}))
    assert (after.salt, after.rollout_id, after.cohort_rules) == ("fresh", 2, rules)
    assert after.policy == {"k": 1}
    assert after.last_candidate == "2"  # kept until this rollout ends


def test_promotion_keeps_the_old_stable_for_the_grace_period() -> None:
    after = apply(CANARY, Promote(), now=5_000.0, new_salt="x", ready=READY, grace_seconds=60.0)
    assert (after.stable, after.previous_stable, after.previous_stable_until) == ("2", "1", 5_060.0)
    assert after.phase is Phase.IDLE and after.updated_at == 5_000.0


def test_ending_a_rollout_clears_its_settings() -> None:
    rules = (CohortRule("region", "eu", Stage.CANARY),)
    active = run(IDLE, StartRollout("2", canary_ppm=9, cohort_rules=rules, policy={"steps": [1]}))
    for command in (Promote(), Rollback()):
        ended = run(active, command)
        assert (ended.cohort_rules, ended.policy, ended.salt) == ((), None, "fresh")


def test_policy_is_frozen_and_detached_from_the_caller() -> None:
    policy: dict[str, Any] = {"steps": [1, 2], "gate": {"max_error_rate": 0.01}}
    state = run(IDLE, StartRollout("2", policy=policy))
    policy["steps"].append(3)
    assert state.policy == {"steps": (1, 2), "gate": {"max_error_rate": 0.01}}
    with pytest.raises(TypeError):
        state.policy["new"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    "fields",
    [
        {"candidate": "2"},  # active candidate needs SHADOW/CANARY
        {"phase": Phase.SHADOW},  # SHADOW needs a candidate
        {"canary_ppm": 5},  # weight without a candidate
        {"previous_stable": "0"},  # without its deadline
        {"policy": {"x": float("nan")}},
        {"policy": {1: "x"}},
    ],
)
def test_state_invariants_are_enforced(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(IDLE, **fields)


def test_state_invariants_for_active_candidates() -> None:
    with pytest.raises(ValueError, match="equals stable"):
        dataclasses.replace(SHADOW, candidate="1")
    with pytest.raises(ValueError, match="phase canary with canary_ppm=0"):
        dataclasses.replace(CANARY, canary_ppm=0)
    with pytest.raises(ValueError, match="outside"):
        dataclasses.replace(CANARY, canary_ppm=PPM + 1)


# -- JSON --------------------------------------------------------------------------------------

FIELD_ORDER = [f.name for f in dataclasses.fields(RolloutState)]


def test_json_keys_follow_field_order_and_are_stable() -> None:
    text = CANARY.to_json()
    assert list(json.loads(text)) == FIELD_ORDER
    assert FIELD_ORDER[:4] == ["model", "stable", "candidate", "phase"]
    assert RolloutState.from_json(text).to_json() == text
    assert '"phase":"canary"' in text


def test_from_json_rejects_unknown_keys_and_non_objects() -> None:
    doc = json.loads(IDLE.to_json()) | {"surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        RolloutState.from_json(json.dumps(doc))
    with pytest.raises(ValueError, match="must be an object"):
        RolloutState.from_json("[]")


json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
ppm = st.integers(0, PPM)
times = st.floats(0, 4e9, allow_nan=False)


@st.composite
def states(draw: st.DrawFn) -> RolloutState:
    stable = draw(st.text(min_size=1))
    phase = draw(st.sampled_from(Phase))
    prev = draw(st.none() | st.text())
    fields: dict[str, Any] = {
        "model": draw(st.text(min_size=1)),
        "stable": stable,
        "phase": phase,
        "salt": draw(st.text()),
        "rollout_id": draw(st.integers(0, 2**40)),
        "revision": draw(st.integers(1, 2**40)),
        "previous_stable": prev,
        "previous_stable_until": None if prev is None else draw(times),
        "policy": draw(st.none() | st.dictionaries(st.text(), json_values, max_size=4)),
        "last_candidate": draw(st.none() | st.text()),
        "updated_at": draw(times),
    }
    if phase in (Phase.SHADOW, Phase.CANARY):
        fields["candidate"] = draw(st.text(min_size=1).filter(lambda c: c != stable))
        fields["canary_ppm"] = draw(st.integers(1, PPM)) if phase is Phase.CANARY else 0
        fields["shadow_ppm"] = draw(ppm)
        fields["paused"] = draw(st.booleans())
        rule = st.builds(
            CohortRule, st.text(), st.text(), st.sampled_from([Stage.CANARY, Stage.STABLE])
        )
        fields["cohort_rules"] = tuple(draw(st.lists(rule, max_size=3)))
    return RolloutState(**fields)


@given(states())
def test_json_round_trip(state: RolloutState) -> None:
    text = state.to_json()
    back = RolloutState.from_json(text)
    assert back == state
    assert back.to_json() == text


# -- build_table -------------------------------------------------------------------------------


def test_build_table() -> None:
    """build_table turns states and ready sets into an immutable routing table."""
    rules = (CohortRule("region", "eu", Stage.CANARY),)
    canary = dataclasses.replace(CANARY, model="b", cohort_rules=rules)
    states = {"b": canary, "a": dataclasses.replace(IDLE, model="a"), "c": ROLLED_BACK}
    ready = {"a": frozenset({"1"}), "b": frozenset({"1", "2"})}
    table = build_table(states, ready, allow_pinning=False, revision=7)
    assert isinstance(table, RoutingTable)
    assert (table.allow_pinning, table.revision) == (False, 7)
    assert list(table.models) == ["a", "b", "c"]
    assert table.models["a"] == ModelRouting(stable="1", rollout=None, ready=frozenset({"1"}))
    assert table.models["b"] == ModelRouting(
        stable="1",
        rollout=CandidateRouting(
            candidate="2", salt="s1", canary_ppm=50_000, shadow_ppm=10_000, cohort_rules=rules
        ),
        ready=frozenset({"1", "2"}),
    )
    assert table.models["c"] == ModelRouting(stable="1", rollout=None, ready=frozenset())
    with pytest.raises(TypeError):
        table.models["d"] = table.models["a"]  # type: ignore[index]


def test_build_table_shadow_only_rollout_has_zero_weight() -> None:
    table = build_table({"m": SHADOW}, {}, allow_pinning=True, revision=1)
    rollout = table.models["m"].rollout
    assert rollout is not None
    assert (rollout.candidate, rollout.canary_ppm, rollout.shadow_ppm) == ("2", 0, 10_000)
