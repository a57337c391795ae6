"""Audit rows become events: type, severity, details, evidence and a Slack text."""

from __future__ import annotations

import json

import pytest

from server.notify.events import TYPES, Event, from_audit, matches
from server.rollout.state import RolloutState
from server.rollout.store import AuditEntry

STABLE = RolloutState(model="m", stable="1")
CANARY = RolloutState(
    model="m", stable="1", candidate="2", phase="canary", canary_ppm=50_000, salt="s", revision=3
)
ROLLED_BACK = RolloutState(
    model="m", stable="1", phase="rolled_back", last_candidate="2", revision=4
)
DECISION = {
    "action": "rollback",
    "reason": "rollback: error_rate failed",
    "checks": [{"name": "error_rate", "status": "fail", "observed": 0.4, "threshold": 0.05}],
    "evidence": {
        "candidate": {"requests": 50, "errors": 20, "error_trace_ids": ["aa" * 16, "bb" * 16]},
        "stable": {"requests": 500, "errors": 0, "error_trace_ids": []},
    },
}


def row(
    operation: str, before: RolloutState | None, after: RolloutState | None, **kw: object
) -> AuditEntry:
    return AuditEntry(
        id=7,
        at=1_700_000_000.5,
        actor=str(kw.get("actor", "alice")),
        model="m",
        operation=operation,
        before=before.to_json() if before else None,
        after=after.to_json() if after else None,
        reason=str(kw.get("reason", "why")),
        extra=json.dumps(kw["extra"]) if "extra" in kw else None,
    )


@pytest.mark.parametrize(
    ("operation", "before", "after", "kind", "severity", "summary"),
    [
        ("start", STABLE, CANARY, "rollout.started", "info", "rollout of version 2 started"),
        (
            "set_weight",
            CANARY,
            CANARY,
            "rollout.stepped",
            "info",
            "version 2 now serves 5% of keyed traffic",
        ),
        (
            "auto_advance",
            CANARY,
            CANARY,
            "rollout.stepped",
            "info",
            "version 2 now serves 5% of keyed traffic",
        ),
        ("pause", CANARY, CANARY, "rollout.paused", "info", "rollout of version 2 paused"),
        (
            "promote",
            CANARY,
            RolloutState(model="m", stable="2"),
            "rollout.promoted",
            "info",
            "version 2 promoted to stable",
        ),
        (
            "rollback",
            CANARY,
            ROLLED_BACK,
            "rollout.rolled_back",
            "warning",
            "version 2 rolled back; stable is 1",
        ),
        (
            "auto_rollback",
            CANARY,
            ROLLED_BACK,
            "rollout.rolled_back",
            "critical",
            "version 2 rolled back; stable is 1",
        ),
        (
            "guard_rollback",
            CANARY,
            ROLLED_BACK,
            "rollout.rolled_back",
            "critical",
            "version 2 rolled back; stable is 1",
        ),
        (
            "kill_switch",
            CANARY,
            ROLLED_BACK,
            "rollout.kill_switch",
            "critical",
            "kill switch: version 2 rolled back; stable is 1",
        ),
        (
            "undo",
            STABLE,
            ROLLED_BACK,
            "rollout.undone",
            "warning",
            "promotion undone: stable is 1 again",
        ),
        ("drill_start", STABLE, CANARY, "drill.started", "info", "drill started on version 2"),
    ],
)
def test_each_rollout_operation_is_an_event(
    operation: str,
    before: RolloutState,
    after: RolloutState,
    kind: str,
    severity: str,
    summary: str,
) -> None:
    event = from_audit(row(operation, before, after))
    assert event is not None
    assert (event.type, event.severity, event.summary) == (kind, severity, summary)
    assert (event.model, event.actor, event.reason) == ("m", "alice", "why")
    assert event.type in TYPES
    assert event.details["audit_id"] == 7


@pytest.mark.parametrize("operation", ["adopt", "load", "unload", "sync", "version_replaced"])
def test_rows_that_are_no_rollout_event_give_none(operation: str) -> None:
    assert from_audit(row(operation, None, STABLE)) is None


def test_a_rollback_carries_the_decision_and_its_example_trace_ids() -> None:
    event = from_audit(row("auto_rollback", CANARY, ROLLED_BACK, actor="promotion", extra=DECISION))
    assert event is not None
    assert event.details["decision"]["checks"][0]["observed"] == 0.4
    assert event.details["trace_ids"] == ["aa" * 16, "bb" * 16]
    payload = json.loads(event.body())
    assert payload["type"] == "rollout.rolled_back" and payload["at"] == "2023-11-14T22:13:20.500Z"
    assert payload["text"].startswith(":rotating_light: *m*: version 2 rolled back; stable is 1")
    assert "aa" * 16 in payload["text"] and "(by promotion)" in payload["text"]


def test_a_hold_is_an_event_when_a_person_is_needed_or_a_check_failed() -> None:
    decision = {
        "action": "hold",
        "evidence": {},
        "checks": [{"name": "manual_approval", "status": "no_data"}],
    }
    event = from_audit(row("auto_hold", None, None, extra=decision))
    assert event is not None and event.type == "rollout.waiting_for_approval"
    failing = {**decision, "checks": [{"name": "pre_promotion_hook", "status": "fail"}]}
    held = from_audit(row("auto_hold", None, None, extra=failing))
    assert held is not None and (held.type, held.severity) == ("rollout.held", "warning")
    waiting_for_data = {**decision, "checks": [{"name": "min_requests", "status": "no_data"}]}
    assert from_audit(row("auto_hold", None, None, extra=waiting_for_data)) is None


def test_filters_take_exact_types_and_prefixes() -> None:
    assert matches("rollout.promoted", ())
    assert matches("rollout.promoted", ("rollout.*",))
    assert matches("stable.alert.firing", ("stable.alert.*",))
    assert not matches("rollout.promoted", ("rollout.rolled_back", "stable.*"))


def test_event_ids_are_unique_and_the_body_is_json() -> None:
    a = Event(type="t", model="m", severity="info", summary="s", at=0.0)
    b = Event(type="t", model="m", severity="info", summary="s", at=0.0)
    assert a.id != b.id
    assert json.loads(a.body())["text"] == ":information_source: *m*: s"


def test_an_audit_only_hold_names_its_versions_from_the_decision() -> None:
    decision = {
        "action": "hold",
        "checks": [{"name": "error_rate", "status": "fail"}],
        "evidence": {"stable_version": "1", "candidate_version": "2"},
    }
    event = from_audit(row("guard_hold", None, None, extra=decision))
    assert event is not None and event.summary == "rollout of version 2 holds"
    assert (event.details["stable_version"], event.details["candidate_version"]) == ("1", "2")
    assert "canary_weight_percent" not in event.details  # no state in the row: not made up
    approved = from_audit(row("approve_step", None, None))
    assert approved is not None and approved.summary == "step of the candidate approved"
