"""Window summaries that merge across replicas: per-bucket counts, shadow counters, freshness.

A replica's windows are time buckets aligned to the wall clock (`start = t - t % bucket_s`)
holding requests, errors, calls by gRPC code and a latency histogram over the fixed
LATENCY_BOUNDS_MS. Because bucket edges and histogram bounds are the same everywhere, the
buckets of several replicas merge by adding them up, bucket by bucket; quantiles are then read
from the merged histogram, never averaged. Merging is associative and commutative, and the
merged counts are the sums (tests/unit/telemetry/test_merge.py holds the properties).

What a replica publishes, and in which pieces, is telemetry.publication's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from server.telemetry.windows import LATENCY_BOUNDS_MS, RawBucket, WindowSummary, summary_of

__all__ = [
    "BucketCounts",
    "ShadowCounts",
    "VersionBuckets",
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
    kept = tuple(t for at, t in traces if at >= lo)
    return summary_of(requests, errors, hist, kept, now=now, lo=lo)


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
