"""What one promotion decision reads and says: windows, evidence, checks and the decision."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from server.promotion.documents import (
    Document,
    InvalidPromotionInput,
    check_int,
    check_list,
    check_number,
)
from server.promotion.outcome_gate import OutcomeWindow
from server.promotion.policy import SHADOW_STEP

__all__ = [
    "Action",
    "Check",
    "CheckStatus",
    "Decision",
    "Evidence",
    "ShadowWindow",
    "VersionWindow",
]


class Action(enum.StrEnum):
    """What a decision does to the rollout."""

    HOLD = "hold"  # stay at this step, change nothing
    ADVANCE = "advance"  # set next_canary_ppm (and next_shadow_ppm when not None)
    PROMOTE = "promote"  # the candidate becomes stable
    ROLLBACK = "rollback"  # the candidate is withdrawn
    STEP_DOWN = "step_down"  # back one step (next_canary_ppm) instead of rolling back


class CheckStatus(enum.StrEnum):
    """One check's verdict on the evidence."""

    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no_data"  # not enough evidence either way: holds the step if the check is required


@dataclass(frozen=True)
class VersionWindow(Document):
    """One version's rolling window: live requests, server-side errors, latency percentiles."""

    requests: int
    errors: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_trace_ids: tuple[str, ...] = ()  # examples of failing requests
    window_s: float = 0.0

    def __post_init__(self) -> None:
        check_int("errors", self.errors, 0, check_int("requests", self.requests, 0))
        for name in ("p50_ms", "p95_ms", "p99_ms"):
            if (ms := getattr(self, name)) is not None:
                object.__setattr__(self, name, check_number(name, ms, 0.0))
        ids = check_list("error_trace_ids", self.error_trace_ids, str)
        object.__setattr__(self, "error_trace_ids", ids)
        object.__setattr__(self, "window_s", check_number("window_s", self.window_s, 0.0))


@dataclass(frozen=True)
class ShadowWindow(Document):
    """Shadow runs of the candidate: compared runs, those that disagreed, runs that raised."""

    completed: int  # runs whose outputs were compared (errored runs are not among them)
    disagreements: int
    errors: int
    worst_request_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_int("disagreements", self.disagreements, 0, check_int("completed", self.completed, 0))
        check_int("errors", self.errors, 0)
        ids = check_list("worst_request_ids", self.worst_request_ids, str)
        object.__setattr__(self, "worst_request_ids", ids)


@dataclass(frozen=True)
class Evidence(Document):
    """What the controller saw for one rollout at one evaluation; windows cover the current step."""

    _NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "stable": VersionWindow.from_dict,
        "candidate": VersionWindow.from_dict,
        "shadow": ShadowWindow.from_dict,
        "outcomes": lambda v: tuple(OutcomeWindow.from_dict(w) for w in check_list("outcomes", v)),
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
    step_downs: int = 0  # step-downs so far in this rollout (Policy.step_down_limit)
    now: float | None = None  # epoch seconds of the evaluation (Policy.release_window)
    outcomes: tuple[OutcomeWindow, ...] = ()  # Policy.outcomes, stable and candidate
    replicas: tuple[str, ...] = ()  # in a fleet: the replicas whose windows were merged

    def __post_init__(self) -> None:
        check_int("step_index", self.step_index, SHADOW_STEP)
        check_int("failed_checks", self.failed_checks, 0)
        check_int("step_downs", self.step_downs, 0)
        secs = check_number("seconds_in_step", self.seconds_in_step, 0.0)
        object.__setattr__(self, "seconds_in_step", secs)
        object.__setattr__(self, "replicas", check_list("replicas", self.replicas, str))
        if not isinstance(self.approved, bool):
            raise InvalidPromotionInput(f"approved must be true or false, got {self.approved!r}")


@dataclass(frozen=True)
class Check(Document):
    """One gate's verdict: what was observed, against which threshold, and the test in words."""

    name: str  # error_rate, latency_p99, shadow_disagreement, min_requests, min_duration, ...
    status: CheckStatus
    observed: float | None
    threshold: float | None
    detail: str
    required: bool = True  # False: a no_data verdict does not hold the step (a fail still counts)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", CheckStatus(self.status))


@dataclass(frozen=True)
class Decision(Document):
    """decide()'s answer: the action, one sentence why, what to set next, and all the evidence."""

    _NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "checks": lambda v: tuple(Check.from_dict(c) for c in check_list("checks", v)),
        "evidence": Evidence.from_dict,
    }
    action: Action
    reason: str
    next_step_index: int | None  # ADVANCE and STEP_DOWN only
    next_canary_ppm: int | None  # ADVANCE and STEP_DOWN only
    next_shadow_ppm: int | None  # ADVANCE only; None: leave the shadow rate as it is
    failed_checks: int  # the new consecutive-failure count, to pass into the next Evidence
    checks: tuple[Check, ...]
    evidence: Evidence
    step_downs: int = 0  # the new step-down count, to pass into the next Evidence

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Action(self.action))
        object.__setattr__(self, "checks", tuple(self.checks))

    def trace_attributes(self) -> dict[str, str | int | float]:
        """The decision as span-event attributes (the telemetry of each decision)."""
        ev = self.evidence
        return {
            "canary.decision.action": self.action.value,
            "canary.decision.reason": self.reason,
            "canary.decision.step": ev.step_index,
            "canary.decision.candidate_requests": ev.candidate.requests,
            "canary.decision.stable_requests": ev.stable.requests,
            "canary.decision.failed_checks": self.failed_checks,
        }
