import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_IDLE: _ClassVar[Phase]
    PHASE_SHADOW: _ClassVar[Phase]
    PHASE_CANARY: _ClassVar[Phase]
    PHASE_ROLLED_BACK: _ClassVar[Phase]

class CohortTarget(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COHORT_TARGET_UNSPECIFIED: _ClassVar[CohortTarget]
    COHORT_TARGET_CANDIDATE: _ClassVar[CohortTarget]
    COHORT_TARGET_STABLE: _ClassVar[CohortTarget]
PHASE_UNSPECIFIED: Phase
PHASE_IDLE: Phase
PHASE_SHADOW: Phase
PHASE_CANARY: Phase
PHASE_ROLLED_BACK: Phase
COHORT_TARGET_UNSPECIFIED: CohortTarget
COHORT_TARGET_CANDIDATE: CohortTarget
COHORT_TARGET_STABLE: CohortTarget

class CohortRule(_message.Message):
    __slots__ = ("metadata_key", "value", "target")
    METADATA_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    metadata_key: str
    value: str
    target: CohortTarget
    def __init__(self, metadata_key: _Optional[str] = ..., value: _Optional[str] = ..., target: _Optional[_Union[CohortTarget, str]] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("model", "stable_version", "candidate_version", "phase", "canary_weight_ppm", "shadow_rate_ppm", "paused", "revision", "rollout_id", "previous_stable_version", "previous_stable_until", "cohort_rules", "last_candidate_version", "updated_at", "automatic", "policy_json", "guarded", "guard_policy_json", "stable_sha256", "candidate_sha256")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CANARY_WEIGHT_PPM_FIELD_NUMBER: _ClassVar[int]
    SHADOW_RATE_PPM_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STABLE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    COHORT_RULES_FIELD_NUMBER: _ClassVar[int]
    LAST_CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    GUARDED_FIELD_NUMBER: _ClassVar[int]
    GUARD_POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    STABLE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    model: str
    stable_version: str
    candidate_version: str
    phase: Phase
    canary_weight_ppm: int
    shadow_rate_ppm: int
    paused: bool
    revision: int
    rollout_id: int
    previous_stable_version: str
    previous_stable_until: _timestamp_pb2.Timestamp
    cohort_rules: _containers.RepeatedCompositeFieldContainer[CohortRule]
    last_candidate_version: str
    updated_at: _timestamp_pb2.Timestamp
    automatic: bool
    policy_json: str
    guarded: bool
    guard_policy_json: str
    stable_sha256: str
    candidate_sha256: str
    def __init__(self, model: _Optional[str] = ..., stable_version: _Optional[str] = ..., candidate_version: _Optional[str] = ..., phase: _Optional[_Union[Phase, str]] = ..., canary_weight_ppm: _Optional[int] = ..., shadow_rate_ppm: _Optional[int] = ..., paused: _Optional[bool] = ..., revision: _Optional[int] = ..., rollout_id: _Optional[int] = ..., previous_stable_version: _Optional[str] = ..., previous_stable_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cohort_rules: _Optional[_Iterable[_Union[CohortRule, _Mapping]]] = ..., last_candidate_version: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., automatic: _Optional[bool] = ..., policy_json: _Optional[str] = ..., guarded: _Optional[bool] = ..., guard_policy_json: _Optional[str] = ..., stable_sha256: _Optional[str] = ..., candidate_sha256: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("id", "at", "actor", "model", "operation", "before_json", "after_json", "reason", "extra_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    BEFORE_JSON_FIELD_NUMBER: _ClassVar[int]
    AFTER_JSON_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: _timestamp_pb2.Timestamp
    actor: str
    model: str
    operation: str
    before_json: str
    after_json: str
    reason: str
    extra_json: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., model: _Optional[str] = ..., operation: _Optional[str] = ..., before_json: _Optional[str] = ..., after_json: _Optional[str] = ..., reason: _Optional[str] = ..., extra_json: _Optional[str] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetRolloutResponse(_message.Message):
    __slots__ = ("rollout", "replicas")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaReadiness]
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., replicas: _Optional[_Iterable[_Union[ReplicaReadiness, _Mapping]]] = ...) -> None: ...

class ReplicaReadiness(_message.Message):
    __slots__ = ("replica", "ready_versions", "candidate_ready")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    READY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_READY_FIELD_NUMBER: _ClassVar[int]
    replica: str
    ready_versions: _containers.RepeatedScalarFieldContainer[str]
    candidate_ready: bool
    def __init__(self, replica: _Optional[str] = ..., ready_versions: _Optional[_Iterable[str]] = ..., candidate_ready: _Optional[bool] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts",)
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("model", "candidate_version", "canary_weight_ppm", "shadow_rate_ppm", "cohort_rules", "expected_revision", "dry_run", "reason", "automatic", "policy_json", "no_guard", "allow_signature_change")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANARY_WEIGHT_PPM_FIELD_NUMBER: _ClassVar[int]
    SHADOW_RATE_PPM_FIELD_NUMBER: _ClassVar[int]
    COHORT_RULES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    NO_GUARD_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SIGNATURE_CHANGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    candidate_version: str
    canary_weight_ppm: int
    shadow_rate_ppm: int
    cohort_rules: _containers.RepeatedCompositeFieldContainer[CohortRule]
    expected_revision: int
    dry_run: bool
    reason: str
    automatic: bool
    policy_json: str
    no_guard: bool
    allow_signature_change: bool
    def __init__(self, model: _Optional[str] = ..., candidate_version: _Optional[str] = ..., canary_weight_ppm: _Optional[int] = ..., shadow_rate_ppm: _Optional[int] = ..., cohort_rules: _Optional[_Iterable[_Union[CohortRule, _Mapping]]] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ..., automatic: _Optional[bool] = ..., policy_json: _Optional[str] = ..., no_guard: _Optional[bool] = ..., allow_signature_change: _Optional[bool] = ...) -> None: ...

class StartRolloutResponse(_message.Message):
    __slots__ = ("rollout", "changed")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    changed: bool
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class SetWeightRequest(_message.Message):
    __slots__ = ("model", "canary_weight_ppm", "expected_revision", "dry_run", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CANARY_WEIGHT_PPM_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    canary_weight_ppm: int
    expected_revision: int
    dry_run: bool
    reason: str
    def __init__(self, model: _Optional[str] = ..., canary_weight_ppm: _Optional[int] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class SetWeightResponse(_message.Message):
    __slots__ = ("rollout", "changed")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    changed: bool
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class SetShadowRequest(_message.Message):
    __slots__ = ("model", "shadow_rate_ppm", "expected_revision", "dry_run", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHADOW_RATE_PPM_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    shadow_rate_ppm: int
    expected_revision: int
    dry_run: bool
    reason: str
    def __init__(self, model: _Optional[str] = ..., shadow_rate_ppm: _Optional[int] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class SetShadowResponse(_message.Message):
    __slots__ = ("rollout", "changed")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    changed: bool
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("model", "expected_revision", "dry_run", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    expected_revision: int
    dry_run: bool
    reason: str
    def __init__(self, model: _Optional[str] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class PromoteResponse(_message.Message):
    __slots__ = ("rollout", "changed")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    changed: bool
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("model", "expected_revision", "dry_run", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    expected_revision: int
    dry_run: bool
    reason: str
    def __init__(self, model: _Optional[str] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("rollout", "changed")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    changed: bool
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("model", "expected_revision", "dry_run", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    expected_revision: int
    dry_run: bool
    reason: str
    def __init__(self, model: _Optional[str] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ("rollout", "changed")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    changed: bool
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("model", "expected_revision", "dry_run", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    expected_revision: int
    dry_run: bool
    reason: str
    def __init__(self, model: _Optional[str] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("rollout", "changed")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    changed: bool
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class KillSwitchRequest(_message.Message):
    __slots__ = ("dry_run", "reason")
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    reason: str
    def __init__(self, dry_run: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class KillSwitchResponse(_message.Message):
    __slots__ = ("rolled_back",)
    ROLLED_BACK_FIELD_NUMBER: _ClassVar[int]
    rolled_back: _containers.RepeatedCompositeFieldContainer[Rollout]
    def __init__(self, rolled_back: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("model", "routing_key", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROUTING_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    model: str
    routing_key: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[str] = ..., routing_key: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("version", "stage", "reason", "position", "shadow_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    stage: str
    reason: str
    position: float
    shadow_version: str
    def __init__(self, version: _Optional[str] = ..., stage: _Optional[str] = ..., reason: _Optional[str] = ..., position: _Optional[float] = ..., shadow_version: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("model", "limit", "after_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    limit: int
    after_id: int
    def __init__(self, model: _Optional[str] = ..., limit: _Optional[int] = ..., after_id: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class WatchRolloutsRequest(_message.Message):
    __slots__ = ("model", "send_current")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEND_CURRENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    send_current: bool
    def __init__(self, model: _Optional[str] = ..., send_current: _Optional[bool] = ...) -> None: ...

class WatchRolloutsResponse(_message.Message):
    __slots__ = ("sequence", "rollout", "audit")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    rollout: Rollout
    audit: AuditEntry
    def __init__(self, sequence: _Optional[int] = ..., rollout: _Optional[_Union[Rollout, _Mapping]] = ..., audit: _Optional[_Union[AuditEntry, _Mapping]] = ...) -> None: ...

class GetShadowReportRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetShadowReportResponse(_message.Message):
    __slots__ = ("model", "candidate_version", "sampled", "completed", "dropped", "errors", "timeouts", "disagreements", "disagreement_rate", "disagreement_rate_low", "disagreement_rate_high", "queue_depth", "report_json", "replicas")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_RATE_LOW_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_RATE_HIGH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    candidate_version: str
    sampled: int
    completed: int
    dropped: int
    errors: int
    timeouts: int
    disagreements: int
    disagreement_rate: float
    disagreement_rate_low: float
    disagreement_rate_high: float
    queue_depth: int
    report_json: str
    replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., candidate_version: _Optional[str] = ..., sampled: _Optional[int] = ..., completed: _Optional[int] = ..., dropped: _Optional[int] = ..., errors: _Optional[int] = ..., timeouts: _Optional[int] = ..., disagreements: _Optional[int] = ..., disagreement_rate: _Optional[float] = ..., disagreement_rate_low: _Optional[float] = ..., disagreement_rate_high: _Optional[float] = ..., queue_depth: _Optional[int] = ..., report_json: _Optional[str] = ..., replicas: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainRolloutRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GateCheck(_message.Message):
    __slots__ = ("name", "status", "observed", "threshold", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    observed: float
    threshold: float
    detail: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., observed: _Optional[float] = ..., threshold: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class ExplainRolloutResponse(_message.Message):
    __slots__ = ("evaluated", "action", "reason", "checks", "decision_json", "replicas")
    EVALUATED_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    DECISION_JSON_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    evaluated: bool
    action: str
    reason: str
    checks: _containers.RepeatedCompositeFieldContainer[GateCheck]
    decision_json: str
    replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, evaluated: _Optional[bool] = ..., action: _Optional[str] = ..., reason: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[GateCheck, _Mapping]]] = ..., decision_json: _Optional[str] = ..., replicas: _Optional[_Iterable[str]] = ...) -> None: ...

class ApproveStepRequest(_message.Message):
    __slots__ = ("model", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ApproveStepResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ModelVersionState(_message.Message):
    __slots__ = ("version", "state", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: str
    state: str
    reason: str
    def __init__(self, version: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model", "version", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersionState]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersionState, _Mapping]]] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model", "version", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersionState]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersionState, _Mapping]]] = ...) -> None: ...

class UndoPromotionRequest(_message.Message):
    __slots__ = ("model", "expected_revision", "dry_run", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    expected_revision: int
    dry_run: bool
    reason: str
    def __init__(self, model: _Optional[str] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class UndoPromotionResponse(_message.Message):
    __slots__ = ("rollout", "changed")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    changed: bool
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class StartDrillRequest(_message.Message):
    __slots__ = ("model", "error_rate_ppm", "added_latency_ms", "canary_weight_ppm", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_PPM_FIELD_NUMBER: _ClassVar[int]
    ADDED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CANARY_WEIGHT_PPM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    error_rate_ppm: int
    added_latency_ms: float
    canary_weight_ppm: int
    reason: str
    def __init__(self, model: _Optional[str] = ..., error_rate_ppm: _Optional[int] = ..., added_latency_ms: _Optional[float] = ..., canary_weight_ppm: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class StartDrillResponse(_message.Message):
    __slots__ = ("rollout", "drill_version")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    DRILL_VERSION_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    drill_version: str
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., drill_version: _Optional[str] = ...) -> None: ...

class EndDrillRequest(_message.Message):
    __slots__ = ("model", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EndDrillResponse(_message.Message):
    __slots__ = ("caught", "seconds_to_rollback", "candidate_requests", "callers_affected", "drill_version", "rollout", "report_json")
    CAUGHT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_TO_ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CALLERS_AFFECTED_FIELD_NUMBER: _ClassVar[int]
    DRILL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    caught: bool
    seconds_to_rollback: float
    candidate_requests: int
    callers_affected: int
    drill_version: str
    rollout: Rollout
    report_json: str
    def __init__(self, caught: _Optional[bool] = ..., seconds_to_rollback: _Optional[float] = ..., candidate_requests: _Optional[int] = ..., callers_affected: _Optional[int] = ..., drill_version: _Optional[str] = ..., rollout: _Optional[_Union[Rollout, _Mapping]] = ..., report_json: _Optional[str] = ...) -> None: ...

class SendTestNotificationRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class NotificationDelivery(_message.Message):
    __slots__ = ("receiver", "delivered", "http_status", "error", "seconds")
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    receiver: str
    delivered: bool
    http_status: int
    error: str
    seconds: float
    def __init__(self, receiver: _Optional[str] = ..., delivered: _Optional[bool] = ..., http_status: _Optional[int] = ..., error: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class SendTestNotificationResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[NotificationDelivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[NotificationDelivery, _Mapping]]] = ...) -> None: ...
