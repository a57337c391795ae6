"""Admin API messages from rollout state and audit rows, and cohort rules from the API."""

from __future__ import annotations

import json

import pytest

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.api.admin_convert import audit_pb, cohort_rule, rollout_pb
from server.errors import InvalidInput
from server.rollout.router import CohortRule, Stage
from server.rollout.state import Phase, RolloutState
from server.rollout.store import AuditEntry


def test_a_rollout_message_carries_every_field_of_the_state() -> None:
    state = RolloutState(
        model="m", stable="1", candidate="2", phase=Phase.CANARY, canary_ppm=50_000,
        shadow_ppm=7, paused=True, salt="s", rollout_id=4, revision=9,
        previous_stable="0", previous_stable_until=1_700_000_000.5,
        cohort_rules=(CohortRule("x-region", "eu", Stage.CANARY),),
        policy={"steps": [10, 20]}, last_candidate="3", updated_at=1_600_000_000.25,
    )  # fmt: skip
    message = rollout_pb(state)
    assert (message.model, message.stable_version, message.candidate_version) == ("m", "1", "2")
    assert (message.phase, message.canary_weight_ppm, message.shadow_rate_ppm) == (
        pb.PHASE_CANARY,
        50_000,
        7,
    )
    assert (message.paused, message.revision, message.rollout_id) == (True, 9, 4)
    assert message.previous_stable_version == "0"
    # Seconds as floats: exact to the microsecond.
    until, updated = message.previous_stable_until, message.updated_at
    assert until.ToNanoseconds() == pytest.approx(1_700_000_000_500_000_000, abs=1_000)
    assert updated.ToNanoseconds() == pytest.approx(1_600_000_000_250_000_000, abs=1_000)
    assert [(r.metadata_key, r.value, r.target) for r in message.cohort_rules] == [
        ("x-region", "eu", pb.COHORT_TARGET_CANDIDATE)
    ]
    assert message.last_candidate_version == "3"
    assert message.automatic and json.loads(message.policy_json) == {"steps": [10, 20]}


def test_an_idle_rollout_leaves_the_optional_fields_empty() -> None:
    message = rollout_pb(RolloutState(model="m", stable="1"))
    assert (message.phase, message.candidate_version, message.automatic) == (
        pb.PHASE_IDLE,
        "",
        False,
    )
    assert not message.HasField("previous_stable_until") and message.policy_json == ""


def test_an_audit_row_becomes_an_audit_message() -> None:
    entry = AuditEntry(7, 12.5, "alice", "m", "start", None, '{"a":1}', "why", '{"k":1}')
    message = audit_pb(entry)
    assert (message.id, message.actor, message.model, message.operation) == (
        7,
        "alice",
        "m",
        "start",
    )
    assert (message.before_json, message.after_json, message.reason, message.extra_json) == (
        "",
        '{"a":1}',
        "why",
        '{"k":1}',
    )
    assert message.at.ToNanoseconds() == 12_500_000_000


def test_a_cohort_rule_key_is_lower_cased_and_its_target_required() -> None:
    rule = pb.CohortRule(metadata_key="X-Region", value="EU", target=pb.COHORT_TARGET_STABLE)
    assert cohort_rule(rule) == CohortRule("x-region", "EU", Stage.STABLE)
    with pytest.raises(InvalidInput, match="'x-region': target must be COHORT_TARGET_CANDIDATE"):
        cohort_rule(pb.CohortRule(metadata_key="x-region", value="eu"))
    with pytest.raises(InvalidInput, match="metadata_key must not be empty"):
        cohort_rule(pb.CohortRule(value="eu", target=pb.COHORT_TARGET_CANDIDATE))
