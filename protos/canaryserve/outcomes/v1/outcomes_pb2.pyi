from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(_message.Message):
    __slots__ = ("model", "request_id", "routing_key", "name", "binary", "real", "fallback_routing_key")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTING_KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    REAL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_ROUTING_KEY_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    routing_key: str
    name: str
    binary: bool
    real: float
    fallback_routing_key: str
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., routing_key: _Optional[str] = ..., name: _Optional[str] = ..., binary: _Optional[bool] = ..., real: _Optional[float] = ..., fallback_routing_key: _Optional[str] = ...) -> None: ...

class Attribution(_message.Message):
    __slots__ = ("version", "stage", "route_reason", "joined_by", "gates")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_REASON_FIELD_NUMBER: _ClassVar[int]
    JOINED_BY_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    version: str
    stage: str
    route_reason: str
    joined_by: str
    gates: bool
    def __init__(self, version: _Optional[str] = ..., stage: _Optional[str] = ..., route_reason: _Optional[str] = ..., joined_by: _Optional[str] = ..., gates: _Optional[bool] = ...) -> None: ...

class ReportOutcomeRequest(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    def __init__(self, outcome: _Optional[_Union[Outcome, _Mapping]] = ...) -> None: ...

class ReportOutcomeResponse(_message.Message):
    __slots__ = ("attribution",)
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    attribution: Attribution
    def __init__(self, attribution: _Optional[_Union[Attribution, _Mapping]] = ...) -> None: ...

class ReportOutcomesRequest(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[Outcome, _Mapping]]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("index", "code", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: str
    message: str
    def __init__(self, index: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReportOutcomesResponse(_message.Message):
    __slots__ = ("accepted", "rejected")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: _containers.RepeatedCompositeFieldContainer[Rejection]
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ...) -> None: ...

class CompareOutcomesRequest(_message.Message):
    __slots__ = ("model", "confidence", "window_seconds")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    confidence: float
    window_seconds: float
    def __init__(self, model: _Optional[str] = ..., confidence: _Optional[float] = ..., window_seconds: _Optional[float] = ...) -> None: ...

class Interval(_message.Message):
    __slots__ = ("estimate", "lower", "upper")
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    estimate: float
    lower: float
    upper: float
    def __init__(self, estimate: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ...) -> None: ...

class VersionOutcome(_message.Message):
    __slots__ = ("version", "stage", "count", "sum", "mean", "reported")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    version: str
    stage: str
    count: int
    sum: float
    mean: Interval
    reported: int
    def __init__(self, version: _Optional[str] = ..., stage: _Optional[str] = ..., count: _Optional[int] = ..., sum: _Optional[float] = ..., mean: _Optional[_Union[Interval, _Mapping]] = ..., reported: _Optional[int] = ...) -> None: ...

class OutcomeComparison(_message.Message):
    __slots__ = ("name", "kind", "versions", "difference", "lift")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    versions: _containers.RepeatedCompositeFieldContainer[VersionOutcome]
    difference: Interval
    lift: Interval
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[VersionOutcome, _Mapping]]] = ..., difference: _Optional[_Union[Interval, _Mapping]] = ..., lift: _Optional[_Union[Interval, _Mapping]] = ...) -> None: ...

class CompareOutcomesResponse(_message.Message):
    __slots__ = ("model", "stable_version", "candidate_version", "confidence", "outcomes", "replicas")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    stable_version: str
    candidate_version: str
    confidence: float
    outcomes: _containers.RepeatedCompositeFieldContainer[OutcomeComparison]
    replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., stable_version: _Optional[str] = ..., candidate_version: _Optional[str] = ..., confidence: _Optional[float] = ..., outcomes: _Optional[_Iterable[_Union[OutcomeComparison, _Mapping]]] = ..., replicas: _Optional[_Iterable[str]] = ...) -> None: ...
