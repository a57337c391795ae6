"""The promotion policy: how a candidate climbs, as data an operator configures."""

from __future__ import annotations

from dataclasses import dataclass

from server.promotion.documents import (
    Document,
    InvalidPromotionInput,
    check_int,
    check_list,
    check_number,
)
from server.rollout.router import PPM

__all__ = ["SHADOW_STEP", "Policy"]

#: Evidence.step_index of the shadow step (the candidate runs off the request path only).
SHADOW_STEP = -1


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

    def __post_init__(self) -> None:
        put = object.__setattr__
        check_int("shadow_ppm", self.shadow_ppm, 0, PPM)
        steps = check_list("steps", self.steps, int)
        for i, step in enumerate(steps):
            check_int(f"steps[{i}]", step, 1, PPM)
            if i and step <= steps[i - 1]:
                raise InvalidPromotionInput(f"steps must increase, got {list(steps)}")
        if not steps:
            raise InvalidPromotionInput("steps must hold at least one canary weight")
        put(self, "steps", steps)
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
