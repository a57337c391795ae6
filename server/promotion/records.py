"""What a promotion decision reads and writes, as plain validated records.

`Policy` (steps and gates, the data an operator configures), the evidence of one step
(`VersionWindow`, `ShadowWindow`, `Evidence`) and the outcome (`Check`, `Decision`). Each
record round-trips through a JSON-ready dict for the audit log and the admin API.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from server.errors import InvalidInput
from server.rollout.router import PPM

__all__ = [
    "SHADOW_STEP",
    "Action",
    "Check",
    "Decision",
    "Evidence",
    "InvalidPromotionInput",
    "Policy",
    "ShadowWindow",
    "Status",
    "VersionWindow",
]

#: Evidence.step_index of the shadow step (the candidate runs off the request path only).
SHADOW_STEP = -1


class InvalidPromotionInput(InvalidInput, ValueError):
    """A policy, window or decision document that does not validate; the message names the key."""


class Action(enum.StrEnum):
    HOLD = "hold"  # stay at this step, change nothing
    ADVANCE = "advance"  # set next_canary_ppm (and next_shadow_ppm when not None)
    PROMOTE = "promote"  # the candidate becomes stable
    ROLLBACK = "rollback"  # the candidate is withdrawn


class Status(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no_data"  # not enough evidence either way: holds the step if the check is required


def _int(where: str, value: object, low: int, high: int | None = None) -> int:
    bad = isinstance(value, bool) or not isinstance(value, int)
    if bad or value < low or (high is not None and value > high):  # type: ignore[operator]
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InvalidPromotionInput(f"{where} must be an integer {bound}, got {value!r}")
    return value  # type: ignore[return-value]


def _num(where: str, value: object, low: float, high: float = math.inf) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or not low <= value <= high:  # type: ignore[operator]
        raise InvalidPromotionInput(
            f"{where} must be a number in [{low:g}, {high:g}], got {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


def _seq(where: str, value: object, kind: type = object) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidPromotionInput(f"{where} must be a list, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, kind):
            raise InvalidPromotionInput(f"{where}[{i}] must be a {kind.__name__}, got {item!r}")
    return tuple(value)


def _plain(value: Any) -> Any:
    """Dataclasses to dicts, tuples to lists, enums to their values: ready for json.dumps."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


class _Doc:
    """JSON round trip for the frozen dataclasses below: unknown or missing keys are named."""

    _NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def as_dict(self) -> dict[str, Any]:
        return dict(_plain(self))

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Self:
        what = cls.__name__
        if not isinstance(doc, Mapping):
            raise InvalidPromotionInput(f"{what} must be a JSON object, got {type(doc).__name__}")
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        names = [f.name for f in fields]
        for key in doc:
            if key not in names:
                raise InvalidPromotionInput(f"unknown {what} key {key!r} (known: {names})")
        for f in fields:
            if f.default is dataclasses.MISSING and f.name not in doc:
                raise InvalidPromotionInput(f"{what} is missing the key {f.name!r}")
        kw = dict(doc)
        for key, load in cls._NESTED.items():
            if kw.get(key) is not None:
                kw[key] = load(kw[key])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Policy(_Doc):
    """How a candidate climbs: steps, sample minimums, gates and the rollback threshold."""

    shadow_ppm: int = 1_000_000  # shadow rate of the first step; 0 skips the shadow step
    # Canary ppm; passing the last promotes (at 50 % the stable still sees traffic to compare).
    steps: tuple[int, ...] = (10_000, 50_000, 250_000, 500_000)
    min_requests: int = 200  # candidate requests (shadow comparisons) before a step may pass
    min_duration_s: float = 30.0
    interval_s: float = 5.0  # how often the controller evaluates
    failure_threshold: int = 2  # failed checks in a row before rollback
    confidence: float = 0.95  # of each one-sided bound
    max_error_rate_increase: float = 0.01  # absolute, over stable's upper bound
    max_latency_p99_ratio: float = 1.3
    # p99 differences smaller than this are timer and scheduling noise of a Python server,
    # however large their ratio at sub-millisecond latencies.
    latency_slack_ms: float = 0.25
    min_latency_samples: int = 100
    max_disagreement_rate: float = 0.005
    manual_steps: tuple[int, ...] = ()  # step indices (-1: the shadow step) needing approval

    def __post_init__(self) -> None:
        put = object.__setattr__
        _int("shadow_ppm", self.shadow_ppm, 0, PPM)
        steps = _seq("steps", self.steps, int)
        for i, step in enumerate(steps):
            _int(f"steps[{i}]", step, 1, PPM)
            if i and step <= steps[i - 1]:
                raise InvalidPromotionInput(f"steps must increase, got {list(steps)}")
        if not steps:
            raise InvalidPromotionInput("steps must hold at least one canary weight")
        put(self, "steps", steps)
        for name in ("min_requests", "failure_threshold", "min_latency_samples"):
            _int(name, getattr(self, name), 1)
        for name in ("min_duration_s", "interval_s", "max_latency_p99_ratio", "latency_slack_ms"):
            put(self, name, _num(name, getattr(self, name), 0.0))
        for name in ("confidence", "max_error_rate_increase", "max_disagreement_rate"):
            put(self, name, _num(name, getattr(self, name), 0.0, 1.0))
        if not 0.5 < self.confidence < 1.0:
            raise InvalidPromotionInput(f"confidence must be in (0.5, 1), got {self.confidence}")
        if not self.interval_s > 0 or not self.max_latency_p99_ratio > 0:
            raise InvalidPromotionInput("interval_s and max_latency_p99_ratio must be > 0")
        manual = _seq("manual_steps", self.manual_steps, int)
        for i, step in enumerate(manual):  # -1 (the shadow step) only when there is one
            _int(f"manual_steps[{i}]", step, SHADOW_STEP if self.shadow_ppm else 0, len(steps) - 1)
        if len(set(manual)) != len(manual):
            raise InvalidPromotionInput(f"manual_steps has duplicates: {list(manual)}")
        put(self, "manual_steps", tuple(sorted(manual)))


@dataclass(frozen=True)
class VersionWindow(_Doc):
    """One version's rolling window: live requests, server-side errors, latency percentiles."""

    requests: int
    errors: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_trace_ids: tuple[str, ...] = ()  # examples of failing requests
    window_s: float = 0.0

    def __post_init__(self) -> None:
        _int("errors", self.errors, 0, _int("requests", self.requests, 0))
        for name in ("p50_ms", "p95_ms", "p99_ms"):
            if (ms := getattr(self, name)) is not None:
                object.__setattr__(self, name, _num(name, ms, 0.0))
        ids = _seq("error_trace_ids", self.error_trace_ids, str)
        object.__setattr__(self, "error_trace_ids", ids)
        object.__setattr__(self, "window_s", _num("window_s", self.window_s, 0.0))


@dataclass(frozen=True)
class ShadowWindow(_Doc):
    """Shadow runs of the candidate: compared runs, those that disagreed, runs that raised."""

    completed: int  # runs whose outputs were compared (errored runs are not among them)
    disagreements: int
    errors: int
    worst_request_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _int("disagreements", self.disagreements, 0, _int("completed", self.completed, 0))
        _int("errors", self.errors, 0)
        ids = _seq("worst_request_ids", self.worst_request_ids, str)
        object.__setattr__(self, "worst_request_ids", ids)


@dataclass(frozen=True)
class Evidence(_Doc):
    """What the controller saw for one rollout at one evaluation; windows cover the current step."""

    _NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "stable": VersionWindow.from_dict,
        "candidate": VersionWindow.from_dict,
        "shadow": ShadowWindow.from_dict,
    }
    model: str
    stable_version: str
    candidate_version: str
    step_index: int  # SHADOW_STEP (-1) or an index into Policy.steps
    seconds_in_step: float
    stable: VersionWindow
    candidate: VersionWindow
    shadow: ShadowWindow | None = None
    failed_checks: int = 0  # consecutive failed evaluations so far in this rollout
    approved: bool = False  # an operator approved the current (manual) step

    def __post_init__(self) -> None:
        _int("step_index", self.step_index, SHADOW_STEP)
        _int("failed_checks", self.failed_checks, 0)
        secs = _num("seconds_in_step", self.seconds_in_step, 0.0)
        object.__setattr__(self, "seconds_in_step", secs)
        if not isinstance(self.approved, bool):
            raise InvalidPromotionInput(f"approved must be true or false, got {self.approved!r}")


@dataclass(frozen=True)
class Check(_Doc):
    """One gate's verdict: what was observed, against which threshold, and the test in words."""

    name: str  # error_rate, latency_p99, shadow_disagreement, min_requests, min_duration, ...
    status: Status
    observed: float | None
    threshold: float | None
    detail: str
    required: bool = True  # False: a no_data verdict does not hold the step (a fail still counts)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))


@dataclass(frozen=True)
class Decision(_Doc):
    """decide()'s answer: the action, one sentence why, what to set next, and all the evidence."""

    _NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "checks": lambda v: tuple(Check.from_dict(c) for c in _seq("checks", v)),
        "evidence": Evidence.from_dict,
    }
    action: Action
    reason: str
    next_step_index: int | None  # ADVANCE only
    next_canary_ppm: int | None  # ADVANCE only
    next_shadow_ppm: int | None  # ADVANCE only; None: leave the shadow rate as it is
    failed_checks: int  # the new consecutive-failure count, to pass into the next Evidence
    checks: tuple[Check, ...]
    evidence: Evidence

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Action(self.action))
        object.__setattr__(self, "checks", tuple(self.checks))
