"""Admin API messages ⇄ rollout state: Rollout, AuditEntry and CohortRule conversions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.errors import InvalidInput, shorten
from server.rollout.router import CohortRule, Stage
from server.rollout.state import RolloutState
from server.rollout.store import AuditEntry

__all__ = ["audit_pb", "cohort_rule", "rollout_pb"]

_TARGETS = {pb.COHORT_TARGET_CANDIDATE: Stage.CANARY, pb.COHORT_TARGET_STABLE: Stage.STABLE}
_TARGETS_BACK = {v: k for k, v in _TARGETS.items()}
_PHASES = {
    "idle": pb.PHASE_IDLE,
    "shadow": pb.PHASE_SHADOW,
    "canary": pb.PHASE_CANARY,
    "rolled_back": pb.PHASE_ROLLED_BACK,
}


def _ts(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def rollout_pb(state: RolloutState) -> pb.Rollout:
    return pb.Rollout(
        model=state.model,
        stable_version=state.stable,
        candidate_version=state.candidate or "",
        phase=_PHASES[state.phase.value],
        canary_weight_ppm=state.canary_ppm,
        shadow_rate_ppm=state.shadow_ppm,
        paused=state.paused,
        revision=state.revision,
        rollout_id=state.rollout_id,
        previous_stable_version=state.previous_stable or "",
        previous_stable_until=_ts(state.previous_stable_until),
        cohort_rules=[
            pb.CohortRule(metadata_key=r.key, value=r.value, target=_TARGETS_BACK[r.target])
            for r in state.cohort_rules
        ],
        last_candidate_version=state.last_candidate or "",
        updated_at=_ts(state.updated_at),
        automatic=state.policy is not None,
        policy_json=json.dumps(_plain(state.policy), sort_keys=True) if state.policy else "",
        guarded=state.guard is not None,
        guard_policy_json=json.dumps(_plain(state.guard), sort_keys=True) if state.guard else "",
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def audit_pb(entry: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        id=entry.id,
        at=_ts(entry.at),
        actor=entry.actor,
        model=entry.model,
        operation=entry.operation,
        before_json=entry.before or "",
        after_json=entry.after or "",
        reason=entry.reason,
        extra_json=entry.extra or "",
    )


def cohort_rule(rule: pb.CohortRule) -> CohortRule:
    target = _TARGETS.get(rule.target)
    if target is None:
        raise InvalidInput(
            f"cohort rule on '{shorten(rule.metadata_key)}': target must be "
            "COHORT_TARGET_CANDIDATE or COHORT_TARGET_STABLE"
        )
    if not rule.metadata_key:
        raise InvalidInput("cohort rule: metadata_key must not be empty")
    return CohortRule(key=rule.metadata_key.lower(), value=rule.value, target=target)
