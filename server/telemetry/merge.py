"""Window summaries that merge across replicas: per-bucket counts, shadow counters, freshness.

A replica's windows are time buckets aligned to the wall clock (`start = t - t % bucket_s`)
holding requests, errors, calls by gRPC code and a latency histogram over the fixed
LATENCY_BOUNDS_MS. Because bucket edges and histogram bounds are the same everywhere, the
buckets of several replicas merge by adding them up, bucket by bucket; quantiles are then read
from the merged histogram, never averaged. Merging is associative and commutative, and the
merged counts are the sums (tests/unit/telemetry/test_merge.py holds the properties).

A `ReplicaTelemetry` is what one replica publishes for one model: which replica, when, the
span of time its buckets cover, the buckets of each version and the shadow counters of each
candidate. `fresh()` drops the publications older than a bound: a replica that stopped
publishing (hung, or cut off from the store) no longer speaks for the fleet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.telemetry.windows import LATENCY_BOUNDS_MS, RawBucket, WindowSummary, quantile

__all__ = [
    "BucketCounts",
    "ReplicaTelemetry",
    "ShadowCounts",
    "VersionBuckets",
    "fresh",
    "from_raw",
    "merge_buckets",
    "merge_shadow",
    "merge_traces",
    "summarize",
]

K = TypeVar("K")

#: Example error trace ids kept per version, as WindowProcessor keeps them.
MAX_TRACES = 5


@dataclass(frozen=True)
class BucketCounts:
    """One time bucket of one version: calls, errors, calls by gRPC code, latency slots."""

    requests: int = 0
    errors: int = 0
    by_code: Mapping[str, int] = field(default_factory=dict)
    latency: Mapping[int, int] = field(default_factory=dict)  # slot in LATENCY_BOUNDS_MS -> calls

    def __add__(self, other: BucketCounts) -> BucketCounts:
        return BucketCounts(
            self.requests + other.requests,
            self.errors + other.errors,
            _add(self.by_code, other.by_code),
            _add(self.latency, other.latency),
        )


#: A version's buckets by their start (epoch seconds).
VersionBuckets = Mapping[float, BucketCounts]


def _add(a: Mapping[K, int], b: Mapping[K, int]) -> dict[K, int]:
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out


def from_raw(raw: Iterable[RawBucket]) -> dict[float, BucketCounts]:
    """WindowProcessor.export's buckets as mergeable counts."""
    return {s: BucketCounts(n, e, dict(codes), dict(lat)) for s, n, e, codes, lat in raw}


def merge_buckets(a: VersionBuckets, b: VersionBuckets) -> dict[float, BucketCounts]:
    """The buckets of two sources added up, bucket by bucket (same start, same bucket)."""
    out = dict(a)
    for start, counts in b.items():
        out[start] = out[start] + counts if start in out else counts
    return out


def merge_traces(*traces: Iterable[tuple[float, str]]) -> tuple[tuple[float, str], ...]:
    """The latest MAX_TRACES error traces of several sources, oldest first, ties by id."""
    every = sorted({t for source in traces for t in source})
    return tuple(every[-MAX_TRACES:])


def summarize(
    buckets: VersionBuckets,
    *,
    bucket_s: float,
    now: float,
    window_s: float,
    since: float = 0.0,
    traces: Iterable[tuple[float, str]] = (),
) -> WindowSummary:
    """The summary of the buckets in the last `window_s` seconds, not before `since` (a bucket
    that overlaps the span counts whole), as WindowProcessor.summary reads its own."""
    lo = max(now - window_s, since)
    hist = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    requests = errors = 0
    for start, b in buckets.items():
        if start + bucket_s > lo:
            requests += b.requests
            errors += b.errors
            for slot, n in b.latency.items():
                hist[slot] += n
    return WindowSummary(
        requests=requests,
        errors=errors,
        p50_ms=quantile(hist, requests, 0.50),
        p95_ms=quantile(hist, requests, 0.95),
        p99_ms=quantile(hist, requests, 0.99),
        error_trace_ids=tuple(t for at, t in traces if at >= lo),
        window_s=now - lo,
    )


@dataclass(frozen=True)
class ShadowCounts:
    """The counters of one candidate's shadow runs (ShadowStats), the part that merges."""

    sampled: int = 0
    submitted: int = 0
    dropped: int = 0
    completed: int = 0
    errors: int = 0
    timeouts: int = 0
    disagreements: int = 0

    def __add__(self, other: ShadowCounts) -> ShadowCounts:
        return ShadowCounts(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )


def merge_shadow(counts: Iterable[ShadowCounts]) -> ShadowCounts:
    total = ShadowCounts()
    for c in counts:
        total = total + c
    return total


@dataclass(frozen=True)
class ReplicaTelemetry:
    """What one replica published for one model at `published_at` (module docstring)."""

    replica: str
    published_at: float
    bucket_s: float
    span_start: float  # the earliest bucket start it holds; its buckets end at published_at
    versions: Mapping[str, VersionBuckets] = field(default_factory=dict)
    traces: Mapping[str, tuple[tuple[float, str], ...]] = field(default_factory=dict)
    shadow: Mapping[str, ShadowCounts] = field(default_factory=dict)  # by candidate

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "replica": self.replica,
            "published_at": self.published_at,
            "bucket_s": self.bucket_s,
            "span_start": self.span_start,
            "versions": {
                v: [
                    [s, b.requests, b.errors, dict(b.by_code), sorted(b.latency.items())]
                    for s, b in sorted(buckets.items())
                ]
                for v, buckets in self.versions.items()
            },
            "traces": {v: [list(t) for t in ts] for v, ts in self.traces.items()},
            "shadow": {c: vars(s) for c, s in self.shadow.items()},
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ReplicaTelemetry:
        doc = json.loads(text)
        return cls(
            replica=str(doc["replica"]),
            published_at=float(doc["published_at"]),
            bucket_s=float(doc["bucket_s"]),
            span_start=float(doc["span_start"]),
            versions={
                v: {
                    float(s): BucketCounts(
                        int(n), int(e), {str(k): int(c) for k, c in codes.items()},
                        {int(slot): int(c) for slot, c in latency},
                    )
                    for s, n, e, codes, latency in rows
                }
                for v, rows in doc["versions"].items()
            },
            traces={v: tuple((float(a), str(t)) for a, t in ts) for v, ts in doc["traces"].items()},
            shadow={c: ShadowCounts(**s) for c, s in doc["shadow"].items()},
        )  # fmt: skip


def fresh(
    publications: Iterable[ReplicaTelemetry], now: float, max_age_s: float
) -> list[ReplicaTelemetry]:
    """The publications no older than `max_age_s`, one per replica (its latest)."""
    latest: dict[str, ReplicaTelemetry] = {}
    for p in publications:
        if now - p.published_at > max_age_s:
            continue
        seen = latest.get(p.replica)
        if seen is None or p.published_at > seen.published_at:
            latest[p.replica] = p
    return [latest[r] for r in sorted(latest)]
