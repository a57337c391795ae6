"""The promotion policy as data, and decide(): a pure function from step evidence to a decision.

No clock, no threads, no I/O, no grpc. The periodic controller gathers an `Evidence` from the
per-version windows, calls `decide()`, carries out the returned `Action` through the rollout stage
machine and stores `Decision.as_dict()` in the audit log. Rates are judged with ONE-SIDED Wilson
score bounds at `Policy.confidence` (z = 1.645 at 0.95): each bound alone holds with that
probability. docs/promotion.md explains the gates in plain words.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, ClassVar, Self

from server.errors import InvalidInput
from server.router import PPM
from server.shadow_stats import clopper_pearson_lower, wilson_interval

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
    "decide",
    "first_step",
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


def first_step(policy: Policy) -> tuple[int, int, int]:
    """(step_index, canary_ppm, shadow_ppm) to start a rollout with: the shadow step if any."""
    if policy.shadow_ppm > 0:
        return SHADOW_STEP, 0, policy.shadow_ppm
    return 0, policy.steps[0], 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%" if x < 0.01 else f"{x * 100:.1f}%"


def _step_name(policy: Policy, index: int) -> str:
    if index == SHADOW_STEP:
        return "the shadow step"
    return f"step {index} ({policy.steps[index] / 10_000:g}% canary)"


def _error_check(p: Policy, ev: Evidence, z: float, enough: bool) -> Check:
    shadow_step, sh, s = ev.step_index == SHADOW_STEP, ev.shadow, ev.stable
    if shadow_step:  # no live candidate traffic: its shadow runs are the evidence
        who, bad, n = "shadow", (sh.errors if sh else 0), (sh.completed + sh.errors if sh else 0)
    else:
        who, bad, n = "candidate", ev.candidate.errors, ev.candidate.requests
    lo, hi = wilson_interval(bad, n, z)
    s_hi = wilson_interval(s.errors, s.requests, z)[1]
    limit = s_hi + p.max_error_rate_increase
    rate, s_rate = (bad / n if n else None), (s.errors / s.requests if s.requests else None)
    detail = (
        f"{who} error rate {_pct(rate)} ({bad} of {n}; {p.confidence * 100:g}% bounds"
        f" {_pct(lo)} to {_pct(hi)}) vs stable {_pct(s_rate)} ({s.errors} of {s.requests};"
        f" upper {_pct(s_hi)}) + allowed {_pct(p.max_error_rate_increase)} = {_pct(limit)}"
    )
    status = Status.NO_DATA
    if s.requests == 0:  # stable's interval is (0, 1): nothing could fail and anything would pass
        detail += ": no stable requests to compare with"
    elif clopper_pearson_lower(bad, n, p.confidence) > limit:
        status, traces = Status.FAIL, () if shadow_step else ev.candidate.error_trace_ids[:3]
        exact = clopper_pearson_lower(bad, n, p.confidence)
        detail += f": exact lower bound {_pct(exact)} above the limit"
        detail += f" (e.g. traces {', '.join(traces)})" if traces else ""
    elif hi <= limit and enough:
        status = Status.PASS
    else:
        detail += ": not enough requests yet" if not enough else ": upper bound above the limit"
    return Check("error_rate", status, rate, limit, detail)


def _latency_check(p: Policy, ev: Evidence, required: bool) -> Check:
    c, s, need, limit = ev.candidate, ev.stable, p.min_latency_samples, p.max_latency_p99_ratio
    detail = f"p99 latency needs {need} samples each: candidate {c.requests}, stable {s.requests}"
    if c.p99_ms is not None and s.p99_ms is not None and min(c.requests, s.requests) >= need:
        detail = "stable p99 is 0 ms: no ratio to judge"
    if c.p99_ms is None or s.p99_ms is None or min(c.requests, s.requests) < need or not s.p99_ms:
        return Check("latency_p99", Status.NO_DATA, None, limit, detail, required)
    ratio = c.p99_ms / s.p99_ms
    slack = p.latency_slack_ms
    status = Status.FAIL if c.p99_ms > s.p99_ms * limit + slack else Status.PASS
    detail = (
        f"candidate p99 {c.p99_ms:.2f} ms / stable p99 {s.p99_ms:.2f} ms = {ratio:.2f}"
        f" (max {limit:g}, and more than {slack:g} ms above stable x {limit:g} to fail)"
    )
    observed = ratio if math.isfinite(ratio) else None
    return Check("latency_p99", status, observed, limit, detail, required)


def _disagreement_check(p: Policy, sh: ShadowWindow | None, z: float, required: bool) -> Check:
    limit = p.max_disagreement_rate
    if sh is None or sh.completed == 0:
        detail = "no completed shadow comparisons yet"
        return Check("shadow_disagreement", Status.NO_DATA, None, limit, detail, required)
    lo, hi = wilson_interval(sh.disagreements, sh.completed, z)
    rate = sh.disagreements / sh.completed
    detail = (
        f"{sh.disagreements} of {sh.completed} shadow comparisons disagree ({_pct(rate)};"
        f" {p.confidence * 100:g}% bounds {_pct(lo)} to {_pct(hi)}) vs max {_pct(limit)}"
    )
    status = Status.NO_DATA
    exact = clopper_pearson_lower(sh.disagreements, sh.completed, p.confidence)
    if exact > limit:
        status, worst = Status.FAIL, ", ".join(i for i in sh.worst_request_ids[:3] if i)
        detail += f": exact lower bound {_pct(exact)} above the max"
        detail += f" (e.g. requests {worst})" if worst else ""
    elif hi <= limit:
        status = Status.PASS
    else:
        detail += ": upper bound not yet within the max"
    return Check("shadow_disagreement", status, rate, limit, detail, required)


def decide(policy: Policy, evidence: Evidence) -> Decision:
    """The next action for one rollout; pure, deterministic, explained by its checks."""
    p, ev, sh = policy, evidence, evidence.shadow
    if ev.step_index >= len(p.steps):
        raise InvalidPromotionInput(f"step_index {ev.step_index} is past the last step")
    z = NormalDist().inv_cdf(p.confidence)  # one-sided
    shadow_step = ev.step_index == SHADOW_STEP
    n = (sh.completed if sh else 0) if shadow_step else ev.candidate.requests
    what = "completed shadow comparisons" if shadow_step else "candidate requests"
    enough = n >= p.min_requests
    checks = [_error_check(p, ev, z, enough), _latency_check(p, ev, required=not shadow_step)]
    if shadow_step or (sh is not None and sh.completed > 0):
        checks.append(_disagreement_check(p, sh, z, required=shadow_step))
    status = Status.PASS if enough else Status.NO_DATA
    detail = f"{n} {what} in this step ({p.min_requests} needed)"
    if not enough:
        detail = f"{n} of {p.min_requests} {what} in this step — not enough data"
    checks.append(Check("min_requests", status, n, p.min_requests, detail))
    secs = ev.seconds_in_step
    status = Status.PASS if secs >= p.min_duration_s else Status.NO_DATA
    detail = f"{secs:.1f} s of {p.min_duration_s:g} s in this step"
    checks.append(Check("min_duration", status, secs, p.min_duration_s, detail))
    here = _step_name(p, ev.step_index)
    if ev.step_index in p.manual_steps:
        status = Status.PASS if ev.approved else Status.NO_DATA
        detail = f"{here} {'is approved' if ev.approved else 'waits for'} an operator's approval"
        checks.append(Check("manual_approval", status, None, None, detail))

    def made(action: Action, reason: str, failed: int, nxt: int | None = None) -> Decision:
        canary = p.steps[nxt] if nxt is not None else None
        shadow = 0 if nxt is not None and shadow_step else None  # leaving shadow: sampling stops
        return Decision(action, reason, nxt, canary, shadow, failed, tuple(checks), ev)

    fails = [c for c in checks if c.status is Status.FAIL]
    if fails:
        count, limit = ev.failed_checks + 1, p.failure_threshold
        why = "; ".join(f"{c.name} failed: {c.detail}" for c in fails)
        if count >= limit:
            why = f"rollback after {count} failed checks in a row: {why}"
            return made(Action.ROLLBACK, why, count)
        return made(Action.HOLD, f"check failed {count} of {limit} before rollback: {why}", count)
    basics = ("min_requests", "min_duration", "manual_approval")  # named first when holding
    held = [c for c in checks if c.required and c.status is not Status.PASS]
    waiting = [c.detail for c in sorted(held, key=lambda c: c.name not in basics)]
    if waiting:
        return made(Action.HOLD, "hold: " + "; ".join(waiting), ev.failed_checks)
    if ev.step_index == len(p.steps) - 1:
        return made(Action.PROMOTE, f"promote: every gate passed at {here}, the last step", 0)
    nxt = ev.step_index + 1
    why = f"advance: every gate passed at {here}; next {_step_name(p, nxt)}"
    return made(Action.ADVANCE, why, 0, nxt)
