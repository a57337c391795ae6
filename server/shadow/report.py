"""The shadow report: one (model, candidate)'s aggregates at one moment, and its JSON form."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LatencyReport",
    "OutputReport",
    "RateEstimate",
    "ShadowReport",
    "WorstDisagreement",
    "json_float",
]


@dataclass(frozen=True)
class RateEstimate:
    """count of n, as a rate with its Wilson 95% interval; rate is None when n == 0."""

    count: int
    n: int
    rate: float | None
    low: float
    high: float


@dataclass(frozen=True)
class WorstDisagreement:
    """One of the worst disagreements seen: enough to find and replay the request."""

    request_id: str
    routing_key: str | None
    output: str
    reason: str
    max_abs_err: float | None
    severity: float | None  # None only in reports, where a non-finite severity is not JSON


@dataclass(frozen=True)
class OutputReport:
    """How one output compared so far: counts summed over runs, then error and agreement."""

    count: int
    disagree: int
    missing: int
    shape_mismatch: int
    dtype_mismatch: int
    nan_primary: int
    nan_shadow: int
    inf_primary: int
    inf_shadow: int
    max_abs_err: float | None
    mean_abs_err: float | None
    max_rel_err: float | None
    argmax_agree_rate: float | None  # row-weighted, for class-score outputs
    topk_overlap: float | None
    class_rows: int


@dataclass(frozen=True)
class LatencyReport:
    """Percentiles of the candidate's shadow runs, in milliseconds (None before any run)."""

    p50: float | None
    p99: float | None
    samples: int


@dataclass(frozen=True)
class ShadowReport:
    """One (model, candidate)'s shadow aggregates at one moment; `as_dict()` is its JSON form."""

    model: str
    candidate: str
    sampled: int
    submitted: int
    dropped: int
    completed: int
    errors: int
    timeouts: int
    disagreements: int
    disagreement_rate: RateEstimate
    latency: LatencyReport
    outputs: dict[str, OutputReport]
    worst: tuple[WorstDisagreement, ...]
    recent_errors: tuple[str, ...]
    dropped_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    """Why sampled requests were not compared: `queue_full` (the shadow queue), `primary_busy`
    (another inference call was being served: the primary needed the CPU), `cpu_busy` (the
    process used more than shadow_max_cpu of its cores), `primary_queued`
    (stable had requests waiting), `candidate_busy` (the candidate's slots were taken by its
    own traffic), `budget` (shadow_max_busy), `shutdown`."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the admin API's report_json), key names as documented in docs/."""
        doc = dataclasses.asdict(self)
        rate = self.disagreement_rate
        doc["disagreement_rate"] = {"rate": rate.rate, "low": rate.low, "high": rate.high}
        doc["latency_ms"] = doc.pop("latency")
        doc["worst"] = [dict(w) for w in doc["worst"]]
        doc["recent_errors"] = list(self.recent_errors)
        return doc


def json_float(x: float | None, scale: float = 1.0) -> float | None:
    """`x * scale`, or None when `x` is None or not finite (a report is JSON, which has no NaN)."""
    return x * scale if x is not None and math.isfinite(x) else None
