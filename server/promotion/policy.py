"""The promotion policy: how a candidate climbs, as data an operator configures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.promotion.documents import (
    Document,
    InvalidPromotionInput,
    check_int,
    check_list,
    check_number,
)
from server.promotion.outcome_gate import OutcomeGate, outcome_gates
from server.rollout.router import PPM

__all__ = ["DAYS", "SHADOW_STEP", "Policy", "ReleaseWindow"]

#: Evidence.step_index of the shadow step (the candidate runs off the request path only).
SHADOW_STEP = -1


#: Days of the week as a release window names them, Monday first (datetime.weekday order).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(where: str, value: object) -> int:
    """ "HH:MM" (00:00 .. 24:00) as minutes since midnight."""
    text = value if isinstance(value, str) else ""
    hh, sep, mm = text.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2):
        raise InvalidPromotionInput(f'{where} must be "HH:MM", got {value!r}')
    minutes = int(hh) * 60 + int(mm)
    if int(mm) > 59 or minutes > 24 * 60:
        raise InvalidPromotionInput(f"{where} must be within 00:00..24:00, got {value!r}")
    return minutes


@dataclass(frozen=True)
class ReleaseWindow(Document):
    """When automatic steps and promotion may happen: days of the week and hours, in a time
    zone. Outside it the controller holds (rollbacks and step-downs still happen)."""

    days: tuple[str, ...] = DAYS
    start: str = "00:00"  # local time, inclusive
    end: str = "24:00"  # local time, exclusive; before `start`: the window spans midnight
    timezone: str = "UTC"  # an IANA name (zoneinfo), e.g. "Europe/Berlin"

    def __post_init__(self) -> None:
        days = check_list("release_window.days", self.days, str)
        for day in days:
            if day not in DAYS:
                raise InvalidPromotionInput(
                    f"release_window.days: {day!r} is not one of {', '.join(DAYS)}"
                )
        if not days:
            raise InvalidPromotionInput("release_window.days must name at least one day")
        object.__setattr__(self, "days", tuple(d for d in DAYS if d in days))
        if _minutes("release_window.start", self.start) == _minutes("release_window.end", self.end):
            raise InvalidPromotionInput("release_window: start and end must differ")
        try:
            if not isinstance(self.timezone, str) or not self.timezone:
                raise ValueError
            ZoneInfo(self.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise InvalidPromotionInput(
                f"release_window.timezone must be an IANA time zone, got {self.timezone!r}"
            ) from None

    def local(self, now: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(now, ZoneInfo(self.timezone))

    def is_open(self, now: float) -> bool:
        """Whether `now` (epoch seconds) falls in the window, on the local day of `now`."""
        at = self.local(now)
        minute = at.hour * 60 + at.minute
        start, end = _minutes("start", self.start), _minutes("end", self.end)
        inside = start <= minute < end if start < end else minute >= start or minute < end
        return inside and DAYS[at.weekday()] in self.days

    def describe(self) -> str:
        return f"{','.join(self.days)} {self.start}-{self.end} {self.timezone}"


@dataclass(frozen=True)
class Policy(Document):
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
    # Instead of rolling back, step the weight down one step this many times per rollout
    # (0: roll back at once); at step 0 a failure still rolls back.
    step_down_limit: int = 0
    # When automatic steps and promotion may happen (None: any time).
    release_window: ReleaseWindow | None = None
    # Business outcome gates (docs/outcomes.md): the candidate's outcomes against stable's.
    outcomes: tuple[OutcomeGate, ...] = ()

    _NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "release_window": ReleaseWindow.from_dict,
        "outcomes": outcome_gates,
    }

    def __post_init__(self) -> None:
        put = object.__setattr__
        if self.release_window is not None and not isinstance(self.release_window, ReleaseWindow):
            raise InvalidPromotionInput("release_window must be a table (docs/promotion.md)")
        check_int("shadow_ppm", self.shadow_ppm, 0, PPM)
        steps = check_list("steps", self.steps, int)
        for i, step in enumerate(steps):
            check_int(f"steps[{i}]", step, 1, PPM)
            if i and step <= steps[i - 1]:
                raise InvalidPromotionInput(f"steps must increase, got {list(steps)}")
        if not steps:
            raise InvalidPromotionInput("steps must hold at least one canary weight")
        put(self, "steps", steps)
        if not all(isinstance(g, OutcomeGate) for g in check_list("outcomes", self.outcomes)):
            raise InvalidPromotionInput("outcomes must be a list of tables (docs/outcomes.md)")
        put(self, "outcomes", tuple(self.outcomes))
        for name in ("min_requests", "failure_threshold", "min_latency_samples"):
            check_int(name, getattr(self, name), 1)
        check_int("step_down_limit", self.step_down_limit, 0)
        for name in ("min_duration_s", "interval_s", "max_latency_p99_ratio", "latency_slack_ms"):
            put(self, name, check_number(name, getattr(self, name), 0.0))
        for name in ("confidence", "max_error_rate_increase", "max_disagreement_rate"):
            put(self, name, check_number(name, getattr(self, name), 0.0, 1.0))
        if not 0.5 < self.confidence < 1.0:
            raise InvalidPromotionInput(f"confidence must be in (0.5, 1), got {self.confidence}")
        if not self.interval_s > 0 or not self.max_latency_p99_ratio > 0:
            raise InvalidPromotionInput("interval_s and max_latency_p99_ratio must be > 0")
        manual = check_list("manual_steps", self.manual_steps, int)
        for i, step in enumerate(manual):  # -1 (the shadow step) only when there is one
            check_int(
                f"manual_steps[{i}]", step, SHADOW_STEP if self.shadow_ppm else 0, len(steps) - 1
            )
        if len(set(manual)) != len(manual):
            raise InvalidPromotionInput(f"manual_steps has duplicates: {list(manual)}")
        put(self, "manual_steps", tuple(sorted(manual)))
