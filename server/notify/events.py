"""The Event a receiver gets, and how the rollout controller's audit rows become events.

One source: every committed rollout change and every audit-only row of this process passes
through `from_audit`, so manual and automatic changes notify alike; rows that are not
rollout events (adopt, load, unload, sync) give None.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.rollout.store import AuditEntry

__all__ = ["SEVERITIES", "TYPES", "Event", "from_audit", "matches"]

#: Severity names, mildest first (the log level follows: INFO, WARNING, ERROR).
SEVERITIES = ("info", "warning", "critical")

#: audit operation -> event type and severity.
_OPERATIONS: Mapping[str, tuple[str, str]] = {
    "start": ("rollout.started", "info"),
    "set_weight": ("rollout.stepped", "info"),
    "set_shadow": ("rollout.stepped", "info"),
    "auto_advance": ("rollout.stepped", "info"),
    "auto_step_down": ("rollout.stepped_down", "warning"),
    "auto_hold": ("rollout.held", "warning"),
    "guard_hold": ("rollout.held", "warning"),
    "approve_step": ("rollout.approved", "info"),
    "pause": ("rollout.paused", "info"),
    "resume": ("rollout.resumed", "info"),
    "promote": ("rollout.promoted", "info"),
    "auto_promote": ("rollout.promoted", "info"),
    "rollback": ("rollout.rolled_back", "warning"),
    "auto_rollback": ("rollout.rolled_back", "critical"),
    "guard_rollback": ("rollout.rolled_back", "critical"),
    "kill_switch": ("rollout.kill_switch", "critical"),
    "undo": ("rollout.undone", "warning"),
    "drill_start": ("drill.started", "info"),
    "drill_end": ("drill.ended", "info"),
    "drill_report": ("drill.report", "info"),
}

#: Every event type, for the `events` filter of a webhook.
TYPES = (
    *sorted({t for t, _ in _OPERATIONS.values()} | {"rollout.waiting_for_approval"}),
    "stable.alert.firing",
    "stable.alert.resolved",
    "notification.test",
)

_TITLES = {
    "rollout.started": "rollout of {candidate} started",
    "rollout.stepped": "{candidate} now serves {weight} of keyed traffic",
    "rollout.stepped_down": "{candidate} stepped down to {weight}",
    "rollout.held": "rollout of {candidate} holds",
    "rollout.waiting_for_approval": "rollout of {candidate} waits for approval",
    "rollout.approved": "step of {candidate} approved",
    "rollout.paused": "rollout of {candidate} paused",
    "rollout.resumed": "rollout of {candidate} resumed",
    "rollout.promoted": "version {stable} promoted to stable",
    "rollout.rolled_back": "{last} rolled back; stable is {stable}",
    "rollout.kill_switch": "kill switch: {last} rolled back; stable is {stable}",
    "rollout.undone": "promotion undone: stable is {stable} again",
    "drill.started": "drill started on {candidate}",
    "drill.ended": "drill ended",
    "drill.report": "drill report",
}
_ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


@dataclass(frozen=True)
class Event:
    """One notification: what happened to which model, how bad, and the details as JSON."""

    type: str
    model: str
    severity: str
    summary: str  # one line, for people
    at: float  # epoch seconds
    actor: str = ""
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def payload(self) -> dict[str, Any]:
        """The JSON body: the event, its details, and a Slack-compatible `text`."""
        when = datetime.datetime.fromtimestamp(self.at, datetime.UTC)
        return {
            "id": self.id,
            "type": self.type,
            "severity": self.severity,
            "model": self.model,
            "summary": self.summary,
            "actor": self.actor,
            "reason": self.reason,
            "at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "details": dict(self.details),
            "text": self.text(),
        }

    def body(self) -> bytes:
        return json.dumps(self.payload(), sort_keys=True, allow_nan=False, default=str).encode()

    def text(self) -> str:
        """One Slack message: icon, model, summary, then why and who."""
        line = f"{_ICONS.get(self.severity, '')} *{self.model}*: {self.summary}".strip()
        if self.reason:
            line += f"\n> {self.reason}"
        trace_ids = self.details.get("trace_ids") or ()
        if trace_ids:
            line += "\nexample trace ids: " + ", ".join(str(t) for t in list(trace_ids)[:3])
        if self.actor:
            line += f"\n(by {self.actor})"
        return line


def matches(event_type: str, patterns: tuple[str, ...]) -> bool:
    """Whether a webhook filtered to `patterns` wants `event_type` (empty: every event;
    `rollout.*` matches every rollout event)."""
    if not patterns:
        return True
    return any(
        p == event_type or (p.endswith(".*") and event_type.startswith(p[:-1])) for p in patterns
    )


def _percent(ppm: object) -> str:
    return f"{int(ppm) / 10_000:g}%" if isinstance(ppm, int) else "?"


def _version(version: object) -> str:
    return f"version {version}" if version else "the candidate"


def _waiting_for_approval(decision: Mapping[str, Any]) -> bool:
    return any(
        c.get("name") == "manual_approval" and c.get("status") == "no_data"
        for c in decision.get("checks", ())
    )


def _trace_ids(decision: Mapping[str, Any]) -> list[str]:
    evidence = decision.get("evidence") or {}
    ids: list[str] = []
    for side in ("candidate", "stable"):
        ids += [str(t) for t in (evidence.get(side) or {}).get("error_trace_ids", ())]
    return ids


def from_audit(entry: AuditEntry) -> Event | None:
    """The event an audit row is, or None when the row is no rollout event."""
    kind = _OPERATIONS.get(entry.operation)
    if kind is None:
        return None
    event_type, severity = kind
    after: dict[str, Any] = json.loads(entry.after) if entry.after else {}
    before: dict[str, Any] = json.loads(entry.before) if entry.before else {}
    extra: dict[str, Any] = json.loads(entry.extra) if entry.extra else {}
    decision = extra if "action" in extra and "evidence" in extra else {}
    evidence = decision.get("evidence") or {}
    # Audit-only rows (holds, approvals) carry no state: the decision names the versions.
    state = (
        after
        or before
        or {
            "stable": evidence.get("stable_version"),
            "candidate": evidence.get("candidate_version"),
        }
    )
    if event_type == "rollout.held":
        # A hold is news when something is wrong (a gate or the pre-promotion hook failed) or
        # a person is needed; "not enough data yet" changes its reason as calls come in and
        # stays in the audit log only.
        if _waiting_for_approval(decision):
            event_type = "rollout.waiting_for_approval"
        elif any(c.get("status") == "fail" for c in decision.get("checks", ())):
            severity = "warning"
        else:
            return None
    candidate = state.get("candidate") or before.get("candidate")
    details: dict[str, Any] = {
        "operation": entry.operation,
        "stable_version": state.get("stable"),
        "candidate_version": candidate,
        "audit_id": entry.id,
    }
    if after or before:  # the rollout after the change
        details["phase"] = state.get("phase")
        details["canary_weight_percent"] = int(state.get("canary_ppm") or 0) / 10_000
        details["shadow_rate_percent"] = int(state.get("shadow_ppm") or 0) / 10_000
        details["revision"] = state.get("revision")
    if decision:
        details["decision"] = decision
        details["trace_ids"] = _trace_ids(decision)
    elif extra:
        details["extra"] = extra
    last = before.get("candidate") or state.get("last_candidate") or candidate
    title = _TITLES[event_type].format(
        candidate=_version(candidate),
        stable=state.get("stable") or "?",
        last=_version(last),
        weight=_percent(state.get("canary_ppm")),
    )
    return Event(
        type=event_type,
        model=entry.model,
        severity=severity,
        summary=title,
        at=entry.at,
        actor=entry.actor,
        reason=entry.reason,
        details=details,
    )
